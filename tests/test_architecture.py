"""The layout's promises: the pure core imports no pyinfra, the product never imports the
simulated lab, and `labtorch plan` loads neither."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "labtorch"
# The pure core: data, the facts' scripts and parsers, the rules.
PURE = ["data", "facts", "rules"]
# The one module of facts/ that wraps the parsers for pyinfra.
PYINFRA_SHELL = {PACKAGE / "facts" / "pyinfra_facts.py"}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _modules(*folders: str) -> list[Path]:
    roots = [PACKAGE / folder for folder in folders] if folders else [PACKAGE]
    return sorted(path for root in roots for path in root.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(*PURE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_pure_core_imports_nothing_from_pyinfra(path: Path) -> None:
    if path in PYINFRA_SHELL:
        pytest.skip("the facts' pyinfra wrappers")
    shell = {name for name in _imports(path) if name.split(".")[0] in ("pyinfra", "pyinfra_cli")}
    layers = {
        name
        for name in _imports(path)
        if name.startswith(("labtorch.operations", "labtorch.deploy", "labtorch.report"))
        or name.startswith("labtorch.cli")
    }
    assert not shell, f"{path.name} imports {shell}"
    assert not layers, f"{path.name} imports the layers above it: {layers}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_product_module_imports_the_simulated_lab(path: Path) -> None:
    lab = {name for name in _imports(path) if name.split(".")[0] == "labtorch_sim"}
    assert not lab, f"{path.name} imports {lab}"


def test_the_checks_above_see_real_imports() -> None:
    """The walker finds a lazy import inside a function, and the pyinfra import of the shell."""
    assert "pyinfra.api" in _imports(PACKAGE / "facts" / "pyinfra_facts.py")
    assert "requests" in _imports(PACKAGE / "cli" / "mirrors.py")


def test_labtorch_plan_loads_neither_pyinfra_nor_the_lab(tmp_path: Path) -> None:
    smi = Path(__file__).parent / "fixtures" / "nvidia-smi" / "xml_rtx3090_525.147.05.xml"
    script = (
        "import sys\n"
        "from labtorch.cli.main import main\n"
        f"code = main(['plan', '--torch', '2.3.1', '--nvidia-smi', {str(smi)!r}])\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'pyinfra', 'pyinfra_cli', 'labtorch_sim', 'rattler', 'requests'})\n"
        "print('LOADED', loaded, code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "LOADED [] 0"
