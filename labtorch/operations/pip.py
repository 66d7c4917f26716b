"""pip: the pip config labtorch owns, and the venv holding exactly the plan's pins (pip route)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from labtorch.facts.host_state import InstalledPackage
from labtorch.facts.probe_script import PIP_REPORT
from labtorch.operations.util.files import update_owned_file
from labtorch.operations.util.pipconf import pip_conf_change
from labtorch.operations.util.shell import first_that_succeeds, shell_command
from labtorch.rules.commands import Arg, pip_install
from labtorch.rules.envdiff import CREATE, OK, env_diff
from labtorch.rules.fallback import PipSource
from labtorch.rules.model import PackagePin


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
    fallbacks: list[PipSource] | None = None,
):
    """
    Create or repair the venv ``prefix`` so that it holds exactly the plan's pins.

    Pins carry their full local label (``torch==2.9.1+cu126``), which only the variant's wheel
    page can satisfy; dependencies come from the mirror's PyPI. When that install fails, the
    same pins from each fallback mirror in turn.

    + python: the interpreter that creates the venv
    + prefix: the venv's directory
    + pins: the plan's packages and toolkit, with full version labels
    + index_url: the mirror's PyPI simple index
    + wheel_index: ``[layout, url]`` of the variant's wheel page (flat or index), or None
    + installed: the venv's distributions as the LabHost fact read them (None: no venv)
    + fallbacks: per fallback mirror, its PyPI index and wheel page
    """
    verdict = env_diff(pins, installed)
    if verdict.action == OK:
        host.noop(f"venv {prefix} already holds {', '.join(p.spec for p in pins)}")
        return
    if verdict.action == CREATE:
        yield StringCommand(QuoteString(python), "-m", "venv", QuoteString(prefix))
    # pip records no index URL of its own; the report it writes is the probe's provenance.
    specs = [pin.spec for pin in pins]
    attempts = [
        shell_command(
            pip_install(
                [Arg(f"{prefix}/bin/python")],
                source,
                specs,
                report=f"{prefix}/{PIP_REPORT}",
                unattended=True,
            )
        )
        for source in (PipSource(index_url, wheel_index), *(fallbacks or ()))
    ]
    yield first_that_succeeds(attempts)
