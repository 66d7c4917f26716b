"""The audit's script: the host state, then every env with torch probed with its own python (pure).

Used by ``labtorch report``, which has no plan: it finds each conda root, its ``envs/``,
``~/.conda/environments.txt`` and every venv under a few roots, and probes each env holding torch.
"""

from __future__ import annotations

from labtorch.facts.history_script import DIRECTORY as HISTORY_DIR
from labtorch.facts.host_state import CONDA_CANDIDATES, host_state_script, parse_host_state
from labtorch.facts.probe_output import PROBE_SOURCE, probe_result

AUDIT_MARK = "@@labtorch-audit"
ENV_MARK = "@@labtorch-env"
# How many past states the env's history keeps (labtorch.facts.history_script).
HISTORY_MARK = "@@labtorch-env-history"
_PROBE_END = "LABTORCH_PROBE_END"
# Where venvs are looked for, and how deep: a bounded walk, so the audit stays fast.
VENV_ROOTS = ("/opt", "/srv", "/root", "/home/*")
VENV_DEPTH = 4

# The host state script runs in a subshell: its own ``exit 0`` must not end the audit.
_HOST_STATE = host_state_script("conda", "torch", "system", "/opt/labtorch/venvs", "env")

# Candidates are printed as "<kind> <prefix>", each prefix once (a conda env that also holds a
# pyvenv.cfg is a conda env); every one with torch and a python gets a marker line and a probe.
_FIND_ENVS = f"""\
{{
for c in {" ".join(CONDA_CANDIDATES)}; do
  if [ -n "$c" ] && [ -x "$c" ]; then
    r=${{c%/bin/conda}}; echo "conda $r"
    for e in "$r"/envs/*; do [ -d "$e" ] && echo "conda $e"; done
  fi
done
cat "$HOME/.conda/environments.txt" /home/*/.conda/environments.txt 2>/dev/null | sed 's/^/conda /'
for d in {" ".join(VENV_ROOTS)}; do
  [ -d "$d" ] && find "$d" -maxdepth {VENV_DEPTH} -name pyvenv.cfg -type f 2>/dev/null
done | sed 's|/pyvenv.cfg$||; s/^/venv /'
}} | awk '{{p = substr($0, index($0, " ") + 1); if (p != "" && !seen[p]++) print}}' |
while read -r kind p; do
  set -- "$p"/lib/python3*/site-packages/torch/__init__.py
  if [ -f "$1" ] && [ -x "$p/bin/python" ]; then
    echo "{ENV_MARK} $kind $p"
    echo "{HISTORY_MARK} $(ls "$p/{HISTORY_DIR}" 2>/dev/null | grep -c '^[0-9]*[.]json$')"
    "$p/bin/python" -c "$probe" </dev/null 2>&1
  fi
done"""


def audit_command() -> str:
    """The POSIX sh script: the host state, then one marked probe per env with torch."""
    return "\n".join(
        [
            f"(\n{_HOST_STATE}\n)",
            f"echo {AUDIT_MARK}",
            f"probe=$(cat <<'{_PROBE_END}'\n{PROBE_SOURCE}\n{_PROBE_END}\n)",
            _FIND_ENVS,
            "exit 0",
        ]
    )


def _env(header: str, lines: list[str]) -> dict:
    """One env from its marker line, the size of its history, and what its python printed."""
    kind, prefix = header[len(ENV_MARK) + 1 :].split(" ", 1)
    counts = [line for line in lines if line.startswith(HISTORY_MARK + " ")]
    lines = [line for line in lines if not line.startswith(HISTORY_MARK + " ")]
    count = counts[0][len(HISTORY_MARK) + 1 :].strip() if counts else "0"
    history = int(count) if count.isdigit() else 0
    try:
        probe = probe_result(lines)
    except ValueError as exc:
        return {
            "prefix": prefix,
            "kind": kind,
            "probe": None,
            "error": str(exc),
            "history": history,
        }
    printed = [line.strip() for line in lines if line.strip()]
    error = None if probe or not printed else printed[-1]
    return {"prefix": prefix, "kind": kind, "probe": probe, "error": error, "history": history}


def parse_envs(lines: list[str]) -> list[dict]:
    """The audit's env section -> one dict per env, in the order they were found."""
    blocks: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith(ENV_MARK + " "):
            blocks.append((line, []))
        elif blocks:
            blocks[-1][1].append(line)
    return [_env(header, printed) for header, printed in blocks]


def parse_audit(output: list[str]) -> dict:
    """The whole audit output -> ``{"platform", "driver", "gpus", "envs"}`` (plain JSON values).

    ValueError when it is not audit output.
    """
    if AUDIT_MARK not in output:
        raise ValueError("not labtorch audit output (no audit marker)")
    split = output.index(AUDIT_MARK)
    state = parse_host_state(output[:split])
    return {**state.hardware(), "envs": parse_envs(output[split + 1 :])}
