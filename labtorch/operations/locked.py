"""Envs installed from a lock: no solve on the host, every file's hash checked, nothing else in
the env.

The lock's file for this host (conda's ``@EXPLICIT`` list with the hash its conda reads, or pip's
hashed requirements) is written to a temporary file by the install command itself, then
installed with ``conda create|install --file`` or ``pip install --no-deps --require-hashes
--no-index -r``; the host reads no repodata and no index page. When the mirror fails, the same
files are installed from each fallback mirror, at the same relative path, checked by the same
hashes. A file whose hash differs fails the install before anything is linked (conda and pip
both download and check every file first), so the env is left as it was; a line
``labtorch: hash mismatch: <file>: the lock says ..., the mirror served ...`` says which.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from labtorch.facts.host_state import InstalledPackage
from labtorch.facts.probe_script import PIP_REPORT
from labtorch.operations.cache import through_cache
from labtorch.operations.util.files import move_aside
from labtorch.operations.util.shell import first_that_succeeds, shell_command
from labtorch.rules.commands import (
    Arg,
    conda_install_explicit,
    conda_remove_offline,
    pip_install_locked,
    pip_uninstall,
)
from labtorch.rules.envdiff import CREATE, OK, REPLACE
from labtorch.rules.locks import (
    LockClass,
    LockedPackage,
    lock_diff,
    rebase,
    rebased,
    render_explicit,
    render_requirements,
)
from labtorch.rules.model import PIP

_END = "LABTORCH_LOCK_END"
_LOCK_FILE = '"$lock"'
# conda's ChecksumMismatchError ("for url '<url>'." ... "expected sha256: X" / "actual sha256: Y")
# and pip's hash-checking error ("<name>@ <url> from <url>:" / "Expected sha256 X" / "Got Y"),
# summarised as one line with both hashes.
_HASH_SUMMARY = (
    "awk '"
    '/for url /{u=$0; sub(/.*for url .?/, "", u); sub(/.\\.?$/, "", u)}'
    '/^ *expected (md5|sha256): /{k=$2; sub(/:$/, "", k); e=$NF}'
    '/^ *actual (md5|sha256): /{n=u; sub(/.*\\//, "", n); gsub(/%2B/, "+", n); '
    'printf "labtorch: hash mismatch: '
    '%s: the lock says %s %s, the mirror served %s\\n", n, k, e, $NF}'
    '/@ .* from .*:$/{u=$0; sub(/ from .*/, "", u); sub(/.*@ */, "", u)}'
    "/^ *Expected sha256 /{e=$NF}"
    '/^ *Got /{n=u; sub(/.*\\//, "", n); gsub(/%2B/, "+", n); '
    'printf "labtorch: hash mismatch: %s: the lock says '
    "sha256 %s, the mirror served %s\\n\", n, e, $NF}'"
)


def with_lock_file(text: str, install: StringCommand) -> StringCommand:
    """One command: ``text`` written to a temporary file ``$lock``, ``install`` run with it, its
    output printed, a hash mismatch summarised on stderr, the file removed, the status kept."""
    body = text if text.endswith("\n") else text + "\n"
    return StringCommand(
        f"( lock=$(mktemp) && cat > \"$lock\" <<'{_END}'\n{body}{_END}\n"
        "out=$(", install, "2>&1); status=$?; rm -f \"$lock\"; printf '%s\\n' \"$out\";",
        f"[ $status -eq 0 ] || printf '%s\\n' \"$out\" | {_HASH_SUMMARY} >&2; exit $status )",
    )  # fmt: skip


def _attempts(
    render, packages: Sequence[LockedPackage], fallbacks: Sequence[Sequence[tuple[str, str]]]
) -> list[tuple[str, list[LockedPackage]]]:
    sets = [list(packages), *(rebased(packages, pairs) for pairs in fallbacks)]
    return [(render(chosen), chosen) for chosen in sets]


def accepted_urls(
    packages: Sequence[LockedPackage], fallbacks: Sequence[Sequence[tuple[str, str]]]
) -> list[str]:
    """The lock's files on each fallback: an env that a fallback served matches its lock."""
    return [rebase(p.url, pairs) for pairs in fallbacks for p in packages]


@operation()
def conda_env(
    conda: str,
    prefix: str,
    lock_id: str,
    lock: LockClass,
    packages: list[LockedPackage],
    kind: str,
    installed: dict[str, InstalledPackage] | None,
    fallbacks: list[list[tuple[str, str]]] | None = None,
    foreign: bool = False,
    cache: str | None = None,
):
    """
    Make the conda env at ``prefix`` hold exactly its lock's packages, with no solve.

    + conda: the conda executable
    + prefix: the env's directory
    + lock_id, lock: the lock class, for the file's header
    + packages: the lock's packages (URLs on the mirror, md5 and sha256)
    + kind: ``sha256`` (conda 24.9 and newer) or ``md5``: the hash this host's conda reads
    + installed: the env's packages as the LabHost fact read them (None: no env)
    + fallbacks: per fallback mirror, the base URLs that map the mirror's to its own
    + foreign: a directory that is not a conda env is at ``prefix``
    + cache: the lab cache's URL when the lock's URLs are on it: the first attempt runs only
      when it answers, and the mirror itself follows when not
    """
    fallbacks = fallbacks or []
    diff = lock_diff(packages, installed, "conda", accepted_urls(packages, fallbacks),
                     foreign=foreign)  # fmt: skip
    if diff.action == OK:
        host.noop(f"conda env {prefix} holds exactly the {len(packages)} packages of {lock_id}")
        return
    if diff.action == REPLACE:
        yield move_aside(prefix)
    creating = diff.action in (CREATE, REPLACE)
    wanted = packages if creating else [p for p in packages if p.name in diff.install]
    if wanted:
        verb = "create" if creating else "install"
        install = shell_command(conda_install_explicit(Arg(conda), verb, prefix, _LOCK_FILE,
                                                       unattended=True))  # fmt: skip
        attempts = [
            with_lock_file(text, install)
            for text, _ in _attempts(
                lambda chosen: render_explicit(lock_id, lock, chosen, kind), wanted, fallbacks
            )
        ]
        if cache:
            attempts[0] = through_cache(attempts[0], cache)
        yield first_that_succeeds(attempts)
    if diff.remove:
        yield shell_command(conda_remove_offline(Arg(conda), prefix, diff.remove))


@operation()
def venv(
    python: str,
    prefix: str,
    lock_id: str,
    lock: LockClass,
    packages: list[LockedPackage],
    installed: dict[str, InstalledPackage] | None,
    fallbacks: list[list[tuple[str, str]]] | None = None,
    foreign: bool = False,
    cache: str | None = None,
):
    """
    Make the venv ``prefix`` hold exactly its lock's distributions (and the venv's own pip),
    with no index and no resolution.

    + python: the interpreter that creates the venv
    + prefix: the venv's directory
    + lock_id, lock: the lock class, for the file's header
    + packages: the lock's wheels (URLs on the mirror, sha256)
    + installed: the venv's distributions as the LabHost fact read them (None: no venv)
    + fallbacks: per fallback mirror, the base URLs that map the mirror's to its own
    + foreign: a directory that is not a venv is at ``prefix``
    + cache: the lab cache's URL when the lock's URLs are on it: the first attempt runs only
      when it answers, and the mirror itself follows when not
    """
    fallbacks = fallbacks or []
    diff = lock_diff(packages, installed, PIP, accepted_urls(packages, fallbacks), foreign=foreign)
    if diff.action == OK:
        host.noop(f"venv {prefix} holds exactly the {len(packages)} packages of {lock_id}")
        return
    if diff.action == REPLACE:
        yield move_aside(prefix)
    creating = diff.action in (CREATE, REPLACE)
    if creating:
        yield StringCommand(QuoteString(python), "-m", "venv", QuoteString(prefix))
    venv_python = [Arg(f"{prefix}/bin/python")]
    wanted = packages if creating else [p for p in packages if p.name in diff.install]
    if wanted:
        install = shell_command(
            pip_install_locked(venv_python, _LOCK_FILE, report=f"{prefix}/{PIP_REPORT}",
                               unattended=True, force_reinstall=bool(diff.foreign))
        )  # fmt: skip
        attempts = [
            with_lock_file(text, install)
            for text, _ in _attempts(
                lambda chosen: render_requirements(lock_id, lock, chosen), wanted, fallbacks
            )
        ]
        if cache:
            attempts[0] = through_cache(attempts[0], cache)
        yield first_that_succeeds(attempts)
    # After the install, which fails before it changes anything: the env stays as it was.
    if diff.remove:
        yield shell_command(pip_uninstall(venv_python, diff.remove))
