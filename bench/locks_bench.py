"""The first converge at N=30 three ways, in one run, one sample each: the per-host solve
(``torch_lock=off``), locks solved once per class during the run (``auto``, no lock yet), and
from the committed lock (``frozen``), each on clean hosts, after an untimed converge that
bootstraps the hosts without conda. Prints the wall times and the mirror's egress as JSON.

    .venv/bin/python bench/locks_bench.py [--hosts 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import run as bench

WAYS = (
    ("per-host solve (torch_lock=off)", ("torch_lock=off",), True),
    ("locks solved during the run (torch_lock=auto)", (), True),
    ("from the committed lock (torch_lock=frozen)", ("torch_lock=frozen",), False),
)


def _argv_with(data: tuple[str, ...]):
    base = bench._pyinfra_argv

    def argv(counts: Path, inventory: str, deploy: str) -> list[str]:
        return [*base(counts, inventory, deploy), *(a for d in data for a in ("--data", d))]

    return argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=30)
    n = parser.parse_args().hosts
    with tempfile.TemporaryDirectory(prefix="labtorch-locks-bench-") as tmp:
        state, work = Path(tmp) / "lab", Path(tmp) / "work"
        lab = bench.lab_up(n, state)
        base = bench._pyinfra_argv
        try:
            bench.run_pyinfra(lab, work, (n, bench.FIRST, 0), bench.labtorch_deploy())
            results = {}
            for run, (label, data, fresh_locks) in enumerate(WAYS, start=1):
                bench.clean_hosts(lab)
                if fresh_locks:
                    shutil.rmtree(state / "locks", ignore_errors=True)
                bench._pyinfra_argv = _argv_with(data)
                try:
                    sample = bench.first_converge(lab, work, (n, bench.FIRST, run))
                finally:
                    bench._pyinfra_argv = base
                results[label] = {"wall_s": round(sample.measured.wall_s, 2), **sample.egress}
            print(json.dumps(results, indent=2))
        finally:
            bench.lab_down(state)


if __name__ == "__main__":
    main()
