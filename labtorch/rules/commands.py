"""The install commands, built in one place: the one ``labtorch plan`` prints and the ones the
deploy runs take their words, and the order of their words, from here (pure).

A command is a list of words; :class:`Arg` marks a word that comes from the admin or the data
(a path, a URL, a spec), which every renderer quotes: :func:`render` for a shell, the operations
through pyinfra's ``QuoteString``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from labtorch.rules.fallback import PipSource
from labtorch.rules.model import PIP, Plan

# Words only the deploy adds: it runs unattended, and quietly.
_CONDA_UNATTENDED = ("-y", "-q")
_PIP_UNATTENDED = ("-q", "--disable-pip-version-check")


@dataclass(frozen=True)
class Arg:
    """A word from the admin or the data: quoted wherever the command is rendered."""

    text: str


Word = str | Arg


def _conda(cuda_override: str | None) -> list[Word]:
    # The solve must not depend on whether conda detects the driver: conda-forge's CUDA builds
    # need __cuda, which CONDA_OVERRIDE_CUDA fixes to the plan's CUDA version.
    return ["env", f"CONDA_OVERRIDE_CUDA={cuda_override}"] if cuda_override else []


def conda_install(
    conda: Word,
    verb: str,
    target: tuple[str, str],
    channels: Sequence[str],
    specs: Sequence[str],
    *,
    python: str | None = None,
    unattended: bool = False,
    cuda_override: str | None = None,
    force_reinstall: bool = False,
) -> list[Word]:
    """``conda create|install`` of ``specs`` from exactly ``channels``, in their order.

    + target: ``("-n", name)`` or ``("-p", prefix)``
    + python: the env's Python, for a create
    + unattended: add ``-y -q`` (the deploy)
    + cuda_override: the CUDA version the solve assumes (``CONDA_OVERRIDE_CUDA``)
    + force_reinstall: fetch the specs again even where the env holds them (from elsewhere)
    """
    flag, where = target
    words: list[Word] = [*_conda(cuda_override), conda, verb, flag, Arg(where)]
    words.append("--override-channels")
    if force_reinstall:
        words.append("--force-reinstall")
    for channel in channels:
        words += ["-c", Arg(channel)]
    if unattended:
        words += _CONDA_UNATTENDED
    if python:
        words.append(Arg(f"python={python}"))
    return words + [Arg(spec) for spec in specs]


def conda_remove_offline(
    conda: Word, prefix: str, packages: Sequence[str], cuda_override: str | None = None
) -> list[Word]:
    """``conda remove`` of ``packages`` from the env at ``prefix``, offline: a removal downloads
    nothing, so a blocked mirror cannot fail it."""
    words: list[Word] = [*_conda(cuda_override), conda, "remove", "-p", Arg(prefix), "--offline"]
    return [*words, *_CONDA_UNATTENDED, *(Arg(package) for package in packages)]


def pip_install(
    python: Sequence[Word],
    source: PipSource,
    specs: Sequence[str],
    *,
    report: str | None = None,
    unattended: bool = False,
    force_reinstall: bool = False,
) -> list[Word]:
    """``python -m pip install`` of ``specs`` from ``source``'s index (and its wheel page).

    + report: where pip writes its install report (the probe's provenance on the pip route)
    + unattended: add ``-q --disable-pip-version-check`` (the deploy)
    + force_reinstall: fetch the specs again even where the venv holds them (from elsewhere):
      pip keeps an installed distribution of the same version, wherever it came from
    """
    words = _pip_install(python, report, unattended, force_reinstall)
    words += ["--index-url", Arg(source.index_url)]
    if source.wheel_index:
        layout, url = source.wheel_index
        words += ["--find-links" if layout == "flat" else "--extra-index-url", Arg(url)]
    return words + [Arg(spec) for spec in specs]


def conda_install_explicit(
    conda: Word, verb: str, prefix: str, lock_file: Word, *, unattended: bool = False
) -> list[Word]:
    """``conda create|install -p PREFIX --file LOCK`` of an ``@EXPLICIT`` lock: conda downloads
    exactly its URLs, checks each file's hash, and neither reads repodata nor solves."""
    words: list[Word] = [conda, verb, "-p", Arg(prefix), "--file", lock_file]
    return words + list(_CONDA_UNATTENDED if unattended else ())


def pip_install_locked(
    python: Sequence[Word],
    lock_file: Word,
    *,
    report: str | None = None,
    unattended: bool = False,
    force_reinstall: bool = False,
) -> list[Word]:
    """``python -m pip install --no-deps --require-hashes --no-index -r LOCK`` of a hashed lock of
    direct references: pip downloads exactly its URLs, refuses any file whose sha256 differs
    before installing anything, reads no index page and resolves nothing.

    + force_reinstall: replace the lock's distributions the venv holds in the same version from
      elsewhere (pip keeps an installed version even for another URL)
    """
    words = _pip_install(python, report, unattended, force_reinstall)
    return [*words, "--no-deps", "--require-hashes", "--no-index", "-r", lock_file]


def _pip_install(
    python: Sequence[Word], report: str | None, unattended: bool, force_reinstall: bool
) -> list[Word]:
    """``python -m pip install`` and the options every pip install of labtorch's may take."""
    words: list[Word] = [*python, "-m", "pip", "install"]
    if unattended:
        words += _PIP_UNATTENDED
    if force_reinstall:
        words.append("--force-reinstall")
    if report:
        words += ["--report", Arg(report)]
    return words


def pip_uninstall(python: Sequence[Word], names: Sequence[str]) -> list[Word]:
    """``python -m pip uninstall -y`` of ``names``: a label pip would keep must go first."""
    return [*python, "-m", "pip", "uninstall", "-y", "-q", *(Arg(name) for name in names)]


def plan_specs(plan: Plan) -> list[str]:
    """The specs of every pin of a plan, toolkit included, in the plan's order."""
    return [pin.spec for pin in (*plan.packages, *plan.toolkit)]


POSIX = "posix"
CMD = "cmd"
POWERSHELL = "powershell"
SHELLS = (POSIX, CMD, POWERSHELL)

# Characters that make a word more than one word, or something else, in each Windows shell.
_CMD_SPECIAL = frozenset(' *<>|&^"')
_POWERSHELL_SPECIAL = frozenset(" '\"`$;,(){}@&|<>#*")


def _quote(word: str, shell: str) -> str:
    if shell == CMD:
        return f'"{word}"' if any(c in _CMD_SPECIAL for c in word) else word
    if shell == POWERSHELL:
        # Single quotes are literal in PowerShell; a quote inside is doubled.
        if word and not any(c in _POWERSHELL_SPECIAL for c in word):
            return word
        return "'" + word.replace("'", "''") + "'"
    return shlex.quote(word)


def default_shell(platform: str) -> str:
    """The shell a command for ``platform`` is written for when none is named."""
    return CMD if platform == "win-64" else POSIX


def render(words: Sequence[Word], windows: bool = False, shell: str | None = None) -> str:
    """A command as one line for a shell: POSIX, cmd.exe or PowerShell (``windows``: cmd.exe,
    for callers that name no shell)."""
    shell = shell or (CMD if windows else POSIX)
    if shell not in SHELLS:
        raise ValueError(f"unknown shell {shell!r}; use {', '.join(SHELLS)}")
    return " ".join(_quote(w.text if isinstance(w, Arg) else w, shell) for w in words)


def install_command(plan: Plan, env_name: str = "torch", shell: str | None = None) -> str:
    """The command that installs ``plan`` through its mirror, for one user, in ``shell``
    (default: cmd.exe for win-64, POSIX elsewhere); empty for a refusal."""
    if plan.refused:
        return ""
    windows = plan.platform == "win-64"
    specs = plan_specs(plan)
    if plan.installer == PIP:
        python = ["py", f"-{plan.python}"] if windows else [f"python{plan.python}"]
        words = pip_install(python, PipSource.of(plan), specs)
    else:
        words = conda_install(
            "conda", "create", ("-n", env_name), plan.channel_urls, specs, python=plan.python
        )
    return render(words, shell=shell or default_shell(plan.platform))
