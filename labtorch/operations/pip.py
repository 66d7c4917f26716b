"""pip: the pip config labtorch owns, and the venv holding exactly the plan's pins (pip route)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from labtorch.facts.host_state import InstalledPackage
from labtorch.facts.probe_script import PIP_REPORT
from labtorch.operations.cache import through_cache
from labtorch.operations.util.files import move_aside, update_owned_file
from labtorch.operations.util.pipconf import pip_conf_change
from labtorch.operations.util.shell import first_that_succeeds, shell_command
from labtorch.rules.commands import Arg, pip_install, pip_uninstall
from labtorch.rules.envdiff import CREATE, OK, REPLACE, env_diff
from labtorch.rules.fallback import PipSource
from labtorch.rules.model import PackagePin


@operation()
def pip_index(
    path: str, index_url: str, current: str | None, has_backup: bool, kind: str | None = None
):
    """
    Point pip at the mirror's PyPI in the pip.conf labtorch owns, keeping every other setting.

    + path: the pip.conf (``<env>/pip.conf`` for the env's own pip, or the user or global file)
    + index_url: the mirror's PyPI simple index
    + current: the file's text as the LabHost fact read it (None: no file)
    + has_backup: whether labtorch's one-time backup of the user's original already exists
    + kind: what is at ``path`` when it is not a file (``directory``): the host fails
    """
    yield from update_owned_file(
        path,
        lambda: pip_conf_change(current, index_url),
        current,
        has_backup,
        f"{path} already points pip at {index_url}",
        kind,
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
    foreign: bool = False,
    cache: str | None = None,
    accepted: list[str] | None = None,
):
    """
    Create or repair the venv ``prefix`` so that it holds exactly the plan's pins.

    Pins carry their full local label (``torch==2.9.1+cu126``), which only the variant's wheel
    page can satisfy; dependencies come from the mirror's PyPI. When that install fails, the
    same pins from each fallback mirror in turn. A pinned distribution with another label is
    uninstalled first: pip would keep ``2.9.1+cpu`` for ``torch==2.9.1``. A distribution,
    pinned or a dependency, whose recorded URL (``direct_url.json``) lies outside the accepted
    mirrors is installed again from the mirror. A directory at ``prefix`` that is not a venv is
    moved aside, never deleted.

    + python: the interpreter that creates the venv
    + prefix: the venv's directory
    + pins: the plan's packages and toolkit, with full version labels
    + index_url: the mirror's PyPI simple index
    + wheel_index: ``[layout, url]`` of the variant's wheel page (flat or index), or None
    + installed: the venv's distributions as the LabHost fact read them (None: no venv)
    + fallbacks: per fallback mirror, its PyPI index and wheel page
    + foreign: a directory that is not a venv is at ``prefix``
    + cache: the lab cache's URL when the first attempt goes through it: the attempt runs
      only when the cache answers, and the next (the mirror itself) follows when not
    + accepted: URL prefixes the venv's distributions may come from (None: not checked)
    """
    verdict = env_diff(pins, installed, accepted, foreign=foreign)
    if verdict.action == OK:
        host.noop(f"venv {prefix} already holds {', '.join(p.spec for p in pins)}")
        return
    if verdict.action == REPLACE:
        yield move_aside(prefix)
    if verdict.action in (CREATE, REPLACE):
        yield StringCommand(QuoteString(python), "-m", "venv", QuoteString(prefix))
    venv_python = [Arg(f"{prefix}/bin/python")]
    if verdict.remove:
        yield shell_command(pip_uninstall(venv_python, verdict.remove))
    # pip records no index URL of its own; the report it writes is the probe's provenance.
    pinned = {pin.name for pin in pins}
    specs = [pin.spec for pin in pins]
    # A dependency from elsewhere is asked for by its version, from the mirror's index.
    specs += [f"{name}=={installed[name].version}" for name in verdict.reinstall
              if name not in pinned and installed]  # fmt: skip
    attempts = [
        shell_command(
            pip_install(
                venv_python,
                source,
                specs,
                report=f"{prefix}/{PIP_REPORT}",
                unattended=True,
                force_reinstall=bool(verdict.reinstall),
            )
        )
        for source in (PipSource(index_url, wheel_index), *(fallbacks or ()))
    ]
    if cache:
        attempts[0] = through_cache(attempts[0], cache)
    yield first_that_succeeds(attempts)
