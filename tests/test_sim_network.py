"""The lab network's own reads: listeners from /proc, and which host serves the lab cache."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labtorch_sim.network import CACHE_BIND, _cache_host_pid, listening_ports, relay_command


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.5", 0))
        sock.listen()
        yield sock.getsockname()


def test_listening_ports_reads_this_namespace_by_address(listener):
    address, port = listener
    assert port in listening_ports(address)
    assert port in listening_ports()
    assert port not in listening_ports("127.0.0.6")
    assert port in listening_ports(address, os.getpid())


def test_a_connected_socket_is_not_a_listener(listener):
    with socket.create_connection(listener) as client:
        assert client.getsockname()[1] not in listening_ports()


def test_a_process_that_is_gone_listens_nowhere():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    assert listening_ports(None, int(done.stdout)) == set()


def _hosts_dir(tmp_path: Path, pids: dict[str, str]) -> int:
    for name, pid in pids.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "pid").write_text(pid)
    (tmp_path / "lab09").mkdir()  # a host that never started: no pid file
    return os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)


def test_the_cache_host_is_the_one_listening_on_the_cache_address(tmp_path):
    with socket.socket() as nginx:
        nginx.bind((CACHE_BIND, 0))
        nginx.listen()
        port = nginx.getsockname()[1]
        hosts = _hosts_dir(tmp_path, {"lab01": "999999999", "lab02": str(os.getpid())})
        try:
            assert _cache_host_pid(hosts, port) == os.getpid()
            assert _cache_host_pid(hosts, port + 1 if port < 65535 else port - 1) is None
        finally:
            os.close(hosts)


def test_a_listener_on_another_address_is_not_the_cache(tmp_path, listener):
    hosts = _hosts_dir(tmp_path, {"lab01": str(os.getpid())})
    try:
        assert _cache_host_pid(hosts, listener[1]) is None
    finally:
        os.close(hosts)


def test_the_relay_runs_with_this_interpreter_on_the_given_ports(tmp_path):
    command = relay_command(42, 2201, 8701, 9701, tmp_path)
    assert command[:3] == [sys.executable, "-m", "labtorch_sim.network"]
    assert command[3:] == ["42", "2201", "8701", "9701", str(tmp_path)]
