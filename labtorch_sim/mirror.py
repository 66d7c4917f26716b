"""The simulated mirror: a document root laid out like TUNA, served over HTTP on 127.0.0.1.

It runs as a detached process (``python -m labtorch_sim.mirror serve --root DIR --state DIR``)
that outlives whoever started it; ``start_mirror`` / ``read_mirror`` / ``stop_mirror`` manage it
through files in the state directory:

- ``mirror.json``: the running mirror (:class:`MirrorProcess`), written by the server once bound;
- ``requests.jsonl``: one JSON line per request, faulted ones included;
- ``faults.json``: faults by path prefix (``set_fault``), read on every request, so they take
  effect without a restart;
- ``mirror.out``: the server's own stdout and stderr.

The same content is served again under ``/fallback/``: a second mirror, as BFSU is to TUNA.
Faults match the path as requested, so one of the two can fail while the other answers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import labtorch_sim

HOST = "127.0.0.1"
MIRROR_JSON = "mirror.json"
LOG = "requests.jsonl"
FAULTS = "faults.json"
OUTPUT = "mirror.out"
FAULT_KINDS = frozenset({"404", "403", "slow", "down"})
STOP_TIMEOUT_S = 5.0
FALLBACK = "/fallback"

# TUNA answers abusive address ranges with a 403 page carrying a hex status code (mirrors.md §2.7).
_BLOCK_PAGE = (
    b"<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n"
    b"<center><h1>403 Forbidden</h1></center>\r\n"
    b"<center>Your access has been blocked due to abnormal traffic. Code: 00000069</center>\r\n"
    b"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class MirrorProcess:
    """A running mirror: where it answers, its process, what it serves and its files."""

    url: str
    pid: int
    root: Path
    log_path: Path
    faults_path: Path

    def to_json(self) -> dict[str, object]:
        fields = asdict(self)
        return {
            key: str(value) if isinstance(value, Path) else value for key, value in fields.items()
        }

    @classmethod
    def from_json(cls, data: dict) -> MirrorProcess:
        return cls(
            url=data["url"],
            pid=int(data["pid"]),
            root=Path(data["root"]),
            log_path=Path(data["log_path"]),
            faults_path=Path(data["faults_path"]),
        )


def _write_json(path: Path, data: object) -> None:
    """Replace ``path`` at once, so that a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(temporary, path)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---- faults ----------------------------------------------------------------------------------


def set_fault(state_dir: Path, path_prefix: str, fault: str | None, delay_s: float = 2.0) -> None:
    """Make requests under ``path_prefix`` fail: ``404``, ``403`` (TUNA's block page), ``slow``
    (served after ``delay_s``) or ``down`` (connection closed, no response); None clears it."""
    if fault is not None and fault not in FAULT_KINDS:
        raise ValueError(f"unknown fault {fault!r}; one of {sorted(FAULT_KINDS)} or None")
    if not path_prefix.startswith("/"):
        raise ValueError(f"a path prefix starts with '/': {path_prefix!r}")
    path = Path(state_dir) / FAULTS
    faults = _read_json(path)
    if fault is None:
        faults.pop(path_prefix, None)
    else:
        faults[path_prefix] = {"fault": fault, "delay_s": delay_s}
    _write_json(path, faults)


def _fault_for(faults_path: Path, path: str) -> dict | None:
    """The fault of the longest prefix of ``path``, if any."""
    faults = _read_json(faults_path)
    matches = [prefix for prefix in faults if path.startswith(prefix)]
    return faults[max(matches, key=len)] if matches else None


# ---- the server ------------------------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    """Files under the root, GET and HEAD, with faults applied and every request logged."""

    server: _MirrorServer
    server_version = "nginx"
    sys_version = ""
    extensions_map = {  # noqa: RUF012 - the attribute SimpleHTTPRequestHandler reads
        **SimpleHTTPRequestHandler.extensions_map,
        ".json": "application/json",
        ".bz2": "application/x-bzip2",
        ".conda": "application/octet-stream",
        ".whl": "application/octet-stream",
    }

    def handle_one_request(self) -> None:
        """Handle one request and log it, whatever happened (bad requests and faults too)."""
        self._status: int | None = None
        self._length = 0
        self._fault: str | None = None
        self._logged = False
        self.raw_requestline = b""
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        if self.raw_requestline and not self._logged:
            self._log()

    def end_headers(self) -> None:
        # Logged before the headers leave, so a client that has its response finds it in the log.
        self._log()
        super().end_headers()

    def do_GET(self) -> None:
        self._serve(super().do_GET)

    def do_HEAD(self) -> None:
        self._serve(super().do_HEAD)

    def _serve(self, serve: Callable[[], None]) -> None:
        fault = _fault_for(self.server.faults_path, unquote(urlsplit(self.path).path))
        self._fault = fault["fault"] if fault else None
        if self._fault == "down":
            self.close_connection = True
        elif self._fault == "404":
            self.send_error(404)
        elif self._fault == "403":
            self._send_page(403, _BLOCK_PAGE)
        else:
            if self._fault == "slow":
                time.sleep(float(fault["delay_s"]))
            serve()

    def translate_path(self, path: str) -> str:
        if path.startswith(FALLBACK + "/"):
            path = path[len(FALLBACK) :]
        return super().translate_path(path)

    def _send_page(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "content-length":
            self._length = int(value)
        super().send_header(keyword, value)

    def _log(self) -> None:
        self._logged = True
        # A request too malformed to parse has no method, path or headers.
        headers = getattr(self, "headers", None)
        self.server.log(
            {
                "time": time.time(),
                "method": self.command,
                "path": getattr(self, "path", None),
                "status": self._status,
                "bytes": 0 if self.command == "HEAD" else self._length,
                "client": self.client_address[0],
                "user_agent": headers.get("User-Agent") if headers else None,
                "fault": self._fault,
            }
        )

    def log_message(self, format: str, *args: object) -> None:
        """Silent: requests go to the JSONL log instead."""


class _MirrorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, root: Path, state_dir: Path) -> None:
        super().__init__((HOST, port), partial(_Handler, directory=str(root)))
        self.faults_path = state_dir / FAULTS
        self.log_path = state_dir / LOG
        self._log_lock = threading.Lock()
        self._log_file = self.log_path.open("a", encoding="utf-8")

    def log(self, entry: dict) -> None:
        with self._log_lock:
            self._log_file.write(json.dumps(entry) + "\n")
            self._log_file.flush()


def bind(root: Path, state_dir: Path, port: int = 0) -> _MirrorServer:
    """A server for ``root``, bound; it announces itself in ``state_dir/mirror.json``."""
    root, state_dir = root.resolve(), state_dir.resolve()
    server = _MirrorServer(port, root, state_dir)
    process = MirrorProcess(
        url=f"http://{HOST}:{server.server_port}",
        pid=os.getpid(),
        root=root,
        log_path=server.log_path,
        faults_path=server.faults_path,
    )
    _write_json(state_dir / MIRROR_JSON, process.to_json())
    return server


# ---- managing the process --------------------------------------------------------------------


def _is_running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (dead, waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _is_mirror_process(pid: int) -> bool:
    """Whether ``pid`` is a running mirror server, not another process that reused the pid."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"labtorch_sim.mirror" in cmdline and _is_running(pid)


def _answers(url: str) -> bool:
    """Whether the mirror accepts connections (a request could hit a fault set on ``/``)."""
    address = urlsplit(url)
    try:
        with socket.create_connection((address.hostname, address.port), timeout=1.0):
            return True
    except OSError:
        return False


def read_mirror(state_dir: Path) -> MirrorProcess | None:
    """The mirror running for ``state_dir``, or None when none is."""
    data = _read_json(Path(state_dir) / MIRROR_JSON)
    if not data:
        return None
    process = MirrorProcess.from_json(data)
    if _is_mirror_process(process.pid) and _answers(process.url):
        return process
    return None


def _launch(root: Path, state_dir: Path, port: int) -> None:
    """Start the server detached, so that it outlives us; returns once it is bound."""
    package_parent = str(Path(labtorch_sim.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "labtorch_sim.mirror", "serve", "--detach"]
    command += ["--root", str(root), "--state", str(state_dir), "--port", str(port)]
    with (state_dir / OUTPUT).open("ab") as output:
        launcher = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env
        )
    if launcher.returncode != 0:
        tail = (state_dir / OUTPUT).read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the mirror did not start (see {state_dir / OUTPUT}):\n{tail}")


def start_mirror(root: Path, state_dir: Path, port: int = 0) -> MirrorProcess:
    """The mirror serving ``root`` for ``state_dir``: the running one, else a new one.

    ``port`` 0 lets the system pick a free port. Returns once the mirror accepts connections.
    A mirror running with another root or port is stopped first.
    """
    root, state_dir = Path(root).resolve(), Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    running = read_mirror(state_dir)
    if running is not None:
        if running.root == root and port in (0, urlsplit(running.url).port):
            return running
        stop_mirror(state_dir)
    (state_dir / MIRROR_JSON).unlink(missing_ok=True)
    _launch(root, state_dir, port)
    process = read_mirror(state_dir)
    if process is None:
        raise RuntimeError(f"the mirror started but does not answer; see {state_dir / OUTPUT}")
    return process


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _is_running(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def stop_mirror(state_dir: Path) -> None:
    """Stop the mirror of ``state_dir`` (TERM, then KILL), wait for it, remove ``mirror.json``."""
    path = Path(state_dir) / MIRROR_JSON
    data = _read_json(path)
    if data:
        pid = MirrorProcess.from_json(data).pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not _is_mirror_process(pid):
                break
            os.kill(pid, sig)
            if _wait_gone(pid, STOP_TIMEOUT_S):
                break
    path.unlink(missing_ok=True)


def read_log(state_dir: Path) -> list[dict]:
    """The requests logged so far, oldest first (a line still being written is left out)."""
    try:
        lines = (Path(state_dir) / LOG).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def _detach() -> int:
    """Fork into a new session, to be adopted by init; return the pipe to report "ok" on.

    The parent waits on that pipe and exits 0 once the child reports ready, 1 if it dies first,
    so that whoever ran it knows the outcome.
    """
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        os._exit(0 if os.read(read_end, 2) == b"ok" else 1)
    os.close(read_end)
    os.setsid()
    return write_end


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m labtorch_sim.mirror")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve a mirror root on 127.0.0.1")
    serve_parser.add_argument("--root", type=Path, required=True)
    serve_parser.add_argument("--state", type=Path, required=True)
    serve_parser.add_argument("--port", type=int, default=0)
    serve_parser.add_argument("--detach", action="store_true", help="fork into the background")
    args = parser.parse_args(argv)
    ready = _detach() if args.detach else None
    server = bind(args.root, args.state, args.port)
    if ready is not None:
        os.write(ready, b"ok")
        os.close(ready)
    server.serve_forever()


if __name__ == "__main__":
    main()
