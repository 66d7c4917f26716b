"""Does an env hold exactly a plan's pins? And if not, what must change.

Versions are compared as full strings (``2.9.1+cu126`` is not ``2.9.1+cpu``: PEP 440 would call
``==2.9.1`` satisfied by both) and conda builds by their exact string or the plan's glob.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from labtorch.facts.host_state import InstalledPackage
from labtorch.rules.model import PackagePin

OK = "ok"
CREATE = "create"
REPAIR = "repair"

# The old pytorch channel pins the variant with one of these; the one a plan does not ask for
# blocks the switch to its variant, so it must go first.
_VARIANT_MARKERS = ("cpuonly", "pytorch-cuda")


@dataclass(frozen=True)
class EnvDiff:
    """``action`` is ok, create or repair; ``problems`` say why; ``remove`` lists packages that
    would block the switch to the planned variant."""

    action: str
    problems: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


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


def env_diff(pins: Sequence[PackagePin], installed: dict[str, InstalledPackage] | None) -> EnvDiff:
    """Compare an env (None: it does not exist) with every pin of a plan, toolkit included."""
    if installed is None:
        return EnvDiff(CREATE, ("the env does not exist",))
    problems = tuple(
        problem for pin in pins if (problem := pin_problem(pin, installed.get(pin.name)))
    )
    if not problems:
        return EnvDiff(OK)
    wanted = {pin.name for pin in pins}
    remove = tuple(m for m in _VARIANT_MARKERS if m in installed and m not in wanted)
    return EnvDiff(REPAIR, problems, remove)
