"""``labtorch rollback``'s command line without a lab: bad input is exit 2 before pyinfra runs,
and the table says per host what happened."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from labtorch.cli.rollback import add_rollback_parser, render


def _rollback(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="labtorch")
    add_rollback_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["rollback", *argv])
    return args.handler(args)


def test_a_bad_target_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inventory = tmp_path / "inventory.py"
    inventory.write_text("hosts = []\n")
    assert _rollback(str(inventory), "--to", "last") == 2
    assert capsys.readouterr().err == (
        "labtorch rollback: error: --to takes 'previous' or a state's number (1, 2, ...), "
        "not 'last'\n"
    )


def test_a_missing_inventory_is_bad_input(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.py"
    assert _rollback(str(missing)) == 2
    assert capsys.readouterr().err == f"labtorch rollback: error: no inventory file {missing}\n"


def test_the_table_says_per_host_what_happened() -> None:
    state = {"id": 3, "time": "2026-11-29T10:00:00Z", "reason": "before the deploy of torch 2.7.1"}
    results = [
        {
            "name": "lab01", "status": "restored", "env": "/opt/conda/envs/torch", "from": "2.7.1",
            "to": "2.3.1", "state": state, "how": "conda install --revision 1", "recorded": 4,
            "probe": {"passed": True, "failures": [], "notes": []},
        },
        {"name": "lab02", "status": "unchanged", "env": "/e", "to": "2.3.1", "state": state},
        {"name": "lab03", "status": "would restore", "env": "/e", "from": "2.7.1", "to": "2.3.1",
         "state": state},
        {"name": "lab05", "status": "failed", "env": "/e", "state": None,
         "step": "Choose the state", "reason": "no recorded state of /e: ..."},
        {"name": "lab06", "status": "failed", "step": "Connect",
         "reason": "the host could not be reached"},
    ]  # fmt: skip
    lines = render(results).splitlines()
    assert lines[0].split() == ["host", "result", "env", "torch", "detail"]
    assert lines[1].endswith(
        "2.7.1 -> 2.3.1  state 3 by conda install --revision 1; probe passed; undo: --to 4"
    )
    assert lines[2].endswith("2.3.1           already state 3")
    assert "state 3 (recorded 2026-11-29T10:00:00Z: before the deploy of torch 2.7.1)" in lines[3]
    assert lines[4].endswith("Choose the state: no recorded state of /e: ...")
    assert lines[5].endswith("Connect: the host could not be reached")
    assert lines[-1] == "3 of 5 hosts ok, 2 failed"
