"""Does an env hold exactly a plan's pins, from the mirror? And if not, what must change (pure).

Versions are compared as full strings (``2.9.1+cu126`` is not ``2.9.1+cpu``: PEP 440 would call
``==2.9.1`` satisfied by both) and conda builds by their exact string or the plan's glob. A
package whose recorded URL is not on an accepted mirror, pinned or a dependency, is reinstalled
from the mirror.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from labtorch.facts.host_state import InstalledPackage
from labtorch.rules.model import PackagePin
from labtorch.rules.provenance import foreign_line, foreign_packages

OK = "ok"
CREATE = "create"
REPAIR = "repair"
# A directory at the env's path that is not an env (an interrupted create, a user's folder): it
# is moved aside, never deleted, and the env created in its place.
REPLACE = "replace"

# The old pytorch channel pins the variant with one of these; the one a plan does not ask for
# blocks the switch to its variant, so it must go first.
_VARIANT_MARKERS = ("cpuonly", "pytorch-cuda")


@dataclass(frozen=True)
class EnvDiff:
    """What separates an env from a plan.

    + action: ok, create, replace or repair
    + problems: why, one line each
    + remove: packages to remove before the install: a variant marker that would block the
      switch (conda), or a pinned distribution whose installed label pip would wrongly accept
      (``2.9.1+cpu`` satisfies ``==2.9.1``)
    + reinstall: packages, pinned or dependencies, that are right but came from elsewhere than
      the mirror
    + foreign: one line per package from elsewhere than the mirror, for the report
    """

    action: str
    problems: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    reinstall: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()


def _describe(package: InstalledPackage) -> str:
    build = f" {package.build}" if package.build else ""
    return f"{package.name} {package.version}{build}"


def pin_problem(pin: PackagePin, installed: InstalledPackage | None) -> str | None:
    """Why ``installed`` does not satisfy ``pin``, or None when it does."""
    wanted = f"{pin.name} {pin.version}" + (f" {pin.build}" if pin.build else "")
    if installed is None:
        return f"{pin.name} is missing (plan: {wanted})"
    if not fnmatchcase(installed.version, pin.version):
        return f"{_describe(installed)} is installed, the plan wants {wanted}"
    if pin.build and (installed.build is None or not fnmatchcase(installed.build, pin.build)):
        return f"{_describe(installed)} is installed, the plan wants {wanted}"
    return None


def _label_kept_by_pip(pin: PackagePin, installed: dict[str, InstalledPackage]) -> bool:
    """pip keeps an installed ``2.9.1+cpu`` for ``==2.9.1`` (PEP 440 ignores the local label
    of the installed version): such a distribution must be uninstalled before the install."""
    found = installed.get(pin.name)
    return (
        found is not None
        and found.build is None
        and "+" not in pin.version
        and found.version.startswith(pin.version + "+")
    )


def env_diff(
    pins: Sequence[PackagePin],
    installed: dict[str, InstalledPackage] | None,
    accepted: Sequence[str] | None = None,
    *,
    foreign: bool = False,
) -> EnvDiff:
    """Compare an env with every pin of a plan, toolkit included.

    + installed: the env's packages (None: no env)
    + accepted: URL prefixes every package of the env, dependencies included, may have come
      from (None: provenance not checked; a package with no recorded URL, as a pip index
      install, cannot be judged here)
    + foreign: a directory is at the env's path but it is not an env
    """
    if foreign:
        return EnvDiff(REPLACE, ("a directory that is not an env is at the env's path",))
    if installed is None:
        return EnvDiff(CREATE, ("the env does not exist",))
    wrong = [
        (pin, problem) for pin in pins if (problem := pin_problem(pin, installed.get(pin.name)))
    ]
    # A pin being replaced is not reinstalled as well: the install of the plan's own replaces it.
    replaced = {pin.name for pin, _ in wrong}
    elsewhere = [
        package
        for package in (foreign_packages(installed, accepted) if accepted is not None else [])
        if package.name not in replaced
    ]
    if not wrong and not elsewhere:
        return EnvDiff(OK)
    wanted = {pin.name for pin in pins}
    markers = tuple(m for m in _VARIANT_MARKERS if m in installed and m not in wanted and wrong)
    relabelled = tuple(pin.name for pin, _ in wrong if _label_kept_by_pip(pin, installed))
    foreign_lines = tuple(map(foreign_line, elsewhere))
    # One install repairs both, so that a run converges the env whatever it found.
    return EnvDiff(
        REPAIR,
        tuple(problem for _, problem in wrong) + foreign_lines,
        markers + relabelled,
        reinstall=tuple(package.name for package in elsewhere),
        foreign=foreign_lines,
    )
