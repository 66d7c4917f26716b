"""An env's history: the commands that record its state and put one back on the host, and the
read a rollback decides from (pure).

The work on the host is :mod:`labtorch.facts.history_script`, sent in a quoted here-document and
run with the first Python the host has: the conda root's, ``python3``, the env's own (a conda
install may replace the env's python while it runs, so that one comes last).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from labtorch.facts import history_script
from labtorch.facts.host_state import HostState, host_state_script, parse_host_state

HISTORY_DIR = history_script.DIRECTORY
SOURCE = Path(history_script.__file__).read_text(encoding="utf-8")
HISTORY_MARK = "@@labtorch-history"
_END = "LABTORCH_HISTORY_END"


def _program(prefix: str, conda: str | None, words: list[str]) -> str:
    """The shell that runs the history program with ``words`` as its arguments."""
    root = conda.rsplit("/bin/", 1)[0] if conda else None
    candidates = [
        *([shlex.quote(f"{root}/bin/python")] if root else []),
        '"$(command -v python3)"',
        shlex.quote(f"{prefix}/bin/python"),
    ]
    arguments = " ".join(shlex.quote(word) for word in words)
    return "\n".join(
        [
            f"py=; for c in {' '.join(candidates)}; do"
            ' if [ -n "$c" ] && [ -x "$c" ]; then py=$c; break; fi; done',
            'if [ -z "$py" ]; then echo "labtorch: no Python on the host to run the env\'s'
            ' history with" >&2; exit 1; fi',
            f"\"$py\" - {arguments} <<'{_END}'\n{SOURCE}\n{_END}",
        ]
    )


def record_command(
    prefix: str, kind: str, keep: int, run: str, reason: str, conda: str | None
) -> str:
    """Record the env's exact state as its next history entry, keeping the newest ``keep``."""
    words = ["record", prefix, kind, str(keep), run, reason, *([conda] if conda else [])]
    return _program(prefix, conda, words)


def restore_command(
    prefix: str, kind: str, keep: int, run: str, target: int, conda: str | None
) -> str:
    """Record the env's state, then put state ``target`` back and check it (the program's
    ``restore``)."""
    words = ["restore", prefix, kind, str(keep), run, str(target), *([conda] if conda else [])]
    return _program(prefix, conda, words)


def rollback_state_script(
    installer: str, env: str, condarc_scope: str, venv_root: str, pip_scope: str
) -> str:
    """The host state, then every state kept in the env's history (one JSON line each)."""
    state = host_state_script(installer, env, condarc_scope, venv_root, pip_scope)
    return "\n".join(
        [
            f"out=$(\n{state}\n)",
            'printf "%s\\n" "$out"',
            "prefix=$(printf '%s\\n' \"$out\" | sed -n '/^@@labtorch env-path$/{n;p;q;}')",
            f"echo {HISTORY_MARK}",
            f'for f in "$prefix/{HISTORY_DIR}"/[0-9]*.json; do'
            ' [ -f "$f" ] && { cat "$f"; echo; }; done',
            "exit 0",
        ]
    )


def parse_states(lines: list[str]) -> list[dict]:
    """History entries, one JSON object a line, oldest first; unreadable lines are skipped."""
    states = []
    for line in lines:
        try:
            state = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(state, dict) and isinstance(state.get("id"), int):
            states.append(state)
    return sorted(states, key=lambda state: state["id"])


def parse_rollback_state(lines: list[str]) -> tuple[HostState, list[dict]]:
    """:func:`rollback_state_script`'s output -> the host state and the env's history.
    ValueError when it is not that output."""
    if HISTORY_MARK in lines:
        at = lines.index(HISTORY_MARK)
        head, tail = lines[:at], lines[at + 1 :]
    else:
        head, tail = lines, []
    return parse_host_state(head), parse_states(tail)


def rollback_result(lines: list[str]) -> dict | None:
    """What ``restore`` printed on success (target, from, to, how, recorded), or None."""
    for line in lines:
        if line.startswith(history_script.MARK):
            try:
                return json.loads(line[len(history_script.MARK) :])
            except json.JSONDecodeError:
                return None
    return None
