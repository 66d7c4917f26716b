"""Helpers shared by the tests that run against a simulated lab."""

from __future__ import annotations

import subprocess
from pathlib import Path


def ssh(lab_dir: Path, host: str, command: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` on a lab host over real SSH, with the lab's own key and known_hosts."""
    return subprocess.run(
        # curve25519: OpenSSH's default post-quantum key exchange costs ~0.1 s of CPU per call.
        [
            "ssh",
            "-F",
            str(lab_dir / "ssh_config"),
            "-o",
            "BatchMode=yes",
            "-o",
            "KexAlgorithms=curve25519-sha256",
            host,
            command,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
