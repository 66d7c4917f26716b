"""The audit's one fact: every env with torch on a host, each probed with its own python."""

from __future__ import annotations

from pathlib import Path

from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError
from typing_extensions import override

from labtorch import probe_script
from labtorch.facts.probe import TorchProbe
from labtorch.report import host_hardware
from labtorch.snapshot import CONDA_CANDIDATES, parse_snapshot, snapshot_command

AUDIT_MARK = "@@labtorch-audit"
ENV_MARK = "@@labtorch-env"
_PROBE_END = "LABTORCH_PROBE_END"
# Where venvs are looked for, and how deep: a bounded walk, so the audit stays fast.
VENV_ROOTS = ("/opt", "/srv", "/root", "/home/*")
VENV_DEPTH = 4

# The snapshot runs in a subshell: its own ``exit 0`` must not end the audit.
_SNAPSHOT = snapshot_command("conda", "torch", "system", "/opt/labtorch/venvs", "env")

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
    "$p/bin/python" -c "$probe" </dev/null 2>&1
  fi
done"""


def audit_command() -> str:
    """The POSIX sh script: the host snapshot, then one marked probe per env with torch."""
    probe = Path(probe_script.__file__).read_text(encoding="utf-8")
    return "\n".join(
        [
            f"(\n{_SNAPSHOT}\n)",
            f"echo {AUDIT_MARK}",
            f"probe=$(cat <<'{_PROBE_END}'\n{probe}\n{_PROBE_END}\n)",
            _FIND_ENVS,
            "exit 0",
        ]
    )


def _env(header: str, lines: list[str]) -> dict:
    """One env from its marker line and what its python printed."""
    kind, prefix = header[len(ENV_MARK) + 1 :].split(" ", 1)
    try:
        probe = TorchProbe().process(lines)
    except FactProcessError as exc:
        return {"prefix": prefix, "kind": kind, "probe": None, "error": str(exc)}
    printed = [line.strip() for line in lines if line.strip()]
    error = None if probe or not printed else printed[-1]
    return {"prefix": prefix, "kind": kind, "probe": probe, "error": error}


def parse_envs(lines: list[str]) -> list[dict]:
    """The audit's env section -> one dict per env, in the order they were found."""
    blocks: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith(ENV_MARK + " "):
            blocks.append((line, []))
        elif blocks:
            blocks[-1][1].append(line)
    return [_env(header, printed) for header, printed in blocks]


class TorchEnvs(FactBase[dict | None]):
    """
    Every conda env (each conda's root, its envs and ~/.conda/environments.txt) and every venv
    (a pyvenv.cfg under /opt, /srv, /root or /home/*) that holds torch, each probed with its own
    python; with the host's platform, driver and GPUs, in one command. A plain JSON value:
    ``{"platform", "driver", "gpus", "envs": [{"prefix", "kind", "probe", "error"}]}`` with
    ``driver`` and ``gpus`` as in the fleet report, ``kind`` ``conda`` or ``venv``, ``probe``
    what probe_script printed (None, and ``error`` the last line printed, when it printed none).
    """

    @override
    @staticmethod
    def default() -> None:
        return None

    @override
    def command(self) -> str:
        return audit_command()

    @override
    def process(self, output: list[str]) -> dict:
        if AUDIT_MARK not in output:
            raise FactProcessError("not labtorch audit output (no audit marker)")
        split = output.index(AUDIT_MARK)
        try:
            snapshot = parse_snapshot(output[:split])
        except ValueError as exc:
            raise FactProcessError(str(exc)) from exc
        return {**host_hardware(snapshot), "envs": parse_envs(output[split + 1 :])}
