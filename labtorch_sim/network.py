"""The lab's network: each host in a network namespace of its own, reaching the mirror, the lab
cache and nothing else.

A lab host's sshd starts in a new network namespace (``unshare --net``, :mod:`labtorch_sim.lab`)
whose only interface is its loopback. One relay per host (this module, ``python -m
labtorch_sim.network``) joins it up with this machine, and does nothing else:

- this machine's ``127.0.0.1:<ssh port>`` leads to the host's sshd (the controller's way in);
- the host's ``127.0.0.1:<mirror port>`` leads to the mirror on this machine;
- the host's and this machine's ``127.0.0.1:<cache port>`` lead to the lab cache: the host
  whose namespace listens on :data:`CACHE_BIND` at that port (found at each connection, since
  the deploy decides which host that is).

So a host's mirror URL, ``http://127.0.0.1:<mirror port>``, is the same inside as outside, and
every other address fails from the host the way it fails on a machine that can reach only its
mirror: another port of 127.0.0.1 refuses the connection, any other address is unreachable. The
kernel enforces it (the namespace has no route anywhere else), which is what the mirror-only
end-to-end test relies on: a download from anywhere else cannot succeed unseen.

A connection the relay cannot carry on (the mirror down, no cache host yet) is reset, so the
host's client fails at once with "connection reset" rather than waiting for a timeout.

The relay joins the host's mount namespace once its sockets are made: it is one of the host's
processes, stopped with it, and lost with it when a test kills the host.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

LOOPBACK = "127.0.0.1"
# Where the lab cache's nginx listens inside its host: another loopback address than the one the
# relays hold, so that the cache host's own relay and its nginx can share the port.
CACHE_BIND = "127.0.0.2"

_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_LISTEN = "0A"
_CHUNK = 1 << 16
_libc = ctypes.CDLL(None, use_errno=True)


def _hex_address(address: str) -> str:
    """An IPv4 address as /proc/net/tcp writes it (little-endian hex)."""
    return "".join(f"{int(part):02X}" for part in reversed(address.split(".")))


def listening_ports(address: str | None = None, pid: int | str = "self") -> set[int]:
    """TCP ports with a listener (on ``address`` only, when given) in the network namespace of
    process ``pid``, from /proc/PID/net/tcp; empty when the process is gone."""
    want = _hex_address(address) if address else None
    ports = set()
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return ports
    for line in lines:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == _LISTEN:
            host, port = local.rsplit(":", 1)
            if want is None or host == want:
                ports.add(int(port, 16))
    return ports


def _setns(fd: int, kind: int) -> None:
    if _libc.setns(fd, kind) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


class _Namespaces:
    """This machine's network namespace and the host's, and sockets made in either.

    A socket belongs for life to the namespace its thread was in when it was made, so a socket for
    the host is made with the thread switched into the host's namespace and switched straight back.
    """

    def __init__(self, host_pid: int) -> None:
        self.machine = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.host = os.open(f"/proc/{host_pid}/ns/net", os.O_RDONLY)

    @contextlib.contextmanager
    def inside(self, namespace: int) -> Iterator[None]:
        if namespace == self.machine:
            yield
            return
        _setns(namespace, _CLONE_NEWNET)
        try:
            yield
        finally:
            _setns(self.machine, _CLONE_NEWNET)

    def listener(self, namespace: int, address: str, port: int, shared: bool) -> socket.socket:
        """A listening socket in ``namespace``; ``shared``: every relay of the lab listens there
        too (SO_REUSEPORT), each connection going to one of them."""
        with self.inside(namespace):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
        return sock

    def client(self, namespace: int) -> socket.socket:
        with self.inside(namespace):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock


def _cache_host_pid(hosts_dir: int, port: int) -> int | None:
    """The lab host whose namespace listens on :data:`CACHE_BIND`:``port`` (``hosts_dir``: the
    lab's ``hosts`` directory, opened before the relay left this machine's mount namespace)."""
    for name in sorted(os.listdir(hosts_dir)):
        try:
            fd = os.open(f"{name}/pid", os.O_RDONLY, dir_fd=hosts_dir)
        except OSError:
            continue
        with os.fdopen(fd) as handle:
            text = handle.read().strip()
        if text.isdigit() and port in listening_ports(CACHE_BIND, text):
            return int(text)
    return None


Target = Callable[[], "tuple[socket.socket, tuple[str, int]] | None"]


class Relay:
    """The relay of one host (see the module's docstring).

    + host_pid: a process in the host's namespaces (its sshd)
    + ssh_port: where the host's sshd listens, inside and, through the relay, outside
    + mirror_port: the mirror's port on this machine
    + cache_port: the lab cache's port
    + hosts_dir: the lab's ``hosts`` directory (each host's ``pid`` file)
    """

    def __init__(
        self, host_pid: int, ssh_port: int, mirror_port: int, cache_port: int, hosts_dir: Path
    ) -> None:
        self.ns = _Namespaces(host_pid)
        self.hosts_dir = os.open(hosts_dir, os.O_RDONLY | os.O_DIRECTORY)
        self.cache_port = cache_port
        machine, host = self.ns.machine, self.ns.host
        to_sshd, to_mirror = self._fixed(host, ssh_port), self._fixed(machine, mirror_port)
        self.routes: list[tuple[socket.socket, Target]] = [
            (self.ns.listener(machine, LOOPBACK, ssh_port, False), to_sshd),
            (self.ns.listener(host, LOOPBACK, mirror_port, False), to_mirror),
            (self.ns.listener(host, LOOPBACK, cache_port, False), self._to_cache),
        ]
        try:
            shared = self.ns.listener(machine, LOOPBACK, cache_port, True)
        except OSError as exc:
            # Something else holds the port without sharing it: the hosts still reach the
            # cache; only this machine's view of it is missing.
            print(f"relay: no listener on {LOOPBACK}:{cache_port} here: {exc}", file=sys.stderr)
        else:
            self.routes.append((shared, self._to_cache))

    def _fixed(self, namespace: int, port: int) -> Target:
        return lambda: (self.ns.client(namespace), (LOOPBACK, port))

    def _to_cache(self) -> tuple[socket.socket, tuple[str, int]] | None:
        pid = _cache_host_pid(self.hosts_dir, self.cache_port)
        if pid is None:
            return None
        try:
            namespace = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        except OSError:
            return None
        try:
            return self.ns.client(namespace), (CACHE_BIND, self.cache_port)
        finally:
            os.close(namespace)

    async def serve(self) -> None:
        servers = [
            await asyncio.start_server(
                lambda r, w, target=target: self._carry(r, w, target), sock=sock
            )
            for sock, target in self.routes
        ]
        await asyncio.gather(*(server.serve_forever() for server in servers))

    async def _carry(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: Target
    ) -> None:
        upstream = None
        try:
            found = target()
            if found is not None:
                sock, address = found
                await asyncio.get_running_loop().sock_connect(sock, address)
                upstream = await asyncio.open_connection(sock=sock)
        except OSError:
            upstream = None
        if upstream is None:
            _reset(writer)
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        for end in (writer, up_writer):
            end.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, which the client reports at once."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Either end may vanish at any time (a client killed, a host stopped): the other then sees
    # its connection end as it would on a real network.
    with contextlib.suppress(OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


def _join_mount_namespace(pid: int) -> None:
    """Enter the mount namespace of process ``pid`` (allowed while single-threaded only)."""
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    try:
        _setns(fd, _CLONE_NEWNS)
    finally:
        os.close(fd)


def relay_command(
    host_pid: int, ssh_port: int, mirror_port: int, cache_port: int, hosts_dir: Path
) -> list[str]:
    """The command that starts a host's relay (run on this machine, by :mod:`labtorch_sim.lab`)."""
    return [
        sys.executable,
        "-m",
        "labtorch_sim.network",
        str(host_pid),
        str(ssh_port),
        str(mirror_port),
        str(cache_port),
        str(hosts_dir),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m labtorch_sim.network")
    parser.add_argument("host_pid", type=int)
    parser.add_argument("ssh_port", type=int)
    parser.add_argument("mirror_port", type=int)
    parser.add_argument("cache_port", type=int)
    parser.add_argument("hosts_dir", type=Path)
    args = parser.parse_args(argv)
    relay = Relay(args.host_pid, args.ssh_port, args.mirror_port, args.cache_port, args.hosts_dir)
    _join_mount_namespace(args.host_pid)
    asyncio.run(relay.serve())


if __name__ == "__main__":
    main()
