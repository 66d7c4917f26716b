"""pip: the pip config labtorch owns, and the venv holding exactly the plan's pins (pip route)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from labtorch.envdiff import CREATE, OK, env_verdict
from labtorch.operations.files import update_owned_file
from labtorch.pipconf import pip_conf_change
from labtorch.probe_script import PIP_REPORT
from labtorch.rules import PackagePin
from labtorch.snapshot import InstalledPackage


@operation()
def pip_index(path: str, index_url: str, current: str | None, has_backup: bool):
    """
    Point pip at the mirror's PyPI in the pip.conf labtorch owns, keeping every other setting.

    + path: the pip.conf (``<env>/pip.conf`` for the env's own pip, or the user or global file)
    + index_url: the mirror's PyPI simple index
    + current: the file's text as the LabHost fact read it (None: no file)
    + has_backup: whether labtorch's one-time backup of the user's original already exists
    """
    yield from update_owned_file(
        path,
        lambda: pip_conf_change(current, index_url),
        current,
        has_backup,
        f"{path} already points pip at {index_url}",
    )


@operation()
def venv(
    python: str,
    prefix: str,
    pins: list[PackagePin],
    index_url: str,
    wheel_index: list[str] | None,
    installed: dict[str, InstalledPackage] | None,
):
    """
    Create or repair the venv ``prefix`` so that it holds exactly the plan's pins.

    Pins carry their full local label (``torch==2.9.1+cu126``), which only the variant's wheel
    page can satisfy; dependencies come from the mirror's PyPI.

    + python: the interpreter that creates the venv
    + prefix: the venv's directory
    + pins: the plan's packages and toolkit, with full version labels
    + index_url: the mirror's PyPI simple index
    + wheel_index: ``[layout, url]`` of the variant's wheel page (flat or index), or None
    + installed: the venv's distributions as the LabHost fact read them (None: no venv)
    """
    verdict = env_verdict(pins, installed)
    if verdict.action == OK:
        host.noop(f"venv {prefix} already holds {', '.join(p.spec for p in pins)}")
        return
    if verdict.action == CREATE:
        yield StringCommand(QuoteString(python), "-m", "venv", QuoteString(prefix))
    sources = ["--index-url", QuoteString(index_url)]
    if wheel_index:
        layout, url = wheel_index
        sources += ["--find-links" if layout == "flat" else "--extra-index-url", QuoteString(url)]
    # pip records no index URL of its own; the report it writes is the probe's provenance.
    report = QuoteString(f"{prefix}/{PIP_REPORT}")
    yield StringCommand(
        QuoteString(f"{prefix}/bin/python"), "-m", "pip", "install", "-q",
        "--disable-pip-version-check", "--report", report, *sources,
        *(QuoteString(pin.spec) for pin in pins),
    )  # fmt: skip
