"""The Miniforge release on the simulated mirror: an installer with the real name and options
that installs the lab's conda stand-in, and its ``.sha256``.

``build_miniforge_release(root)`` writes, under the mirror's document root, what TUNA's
``github-release/conda-forge/miniforge/`` holds (tunasync-scripts ``github-release.py``): the
newest release's directory, named by the release (``26.7.1-0``, conda's version and the build
number), and ``LatestRelease`` linked to it. The release has, as conda-forge/miniforge publishes
them, the versioned installer and the unversioned copy, each with a ``.sha256`` written as
``sha256sum`` writes it (``scripts/build.sh``). Only the Linux x86_64 installer: the lab's hosts
are that.

The installer is a shell script like constructor's: a header that reads ``-b``, ``-p PREFIX``,
``-u``, ``-f``, ``-h``, refuses a PREFIX that exists unless ``-u`` or ``-f``, and unpacks a tar
payload appended after the header into PREFIX; then it writes ``PREFIX/.condarc`` with
``channels: [conda-forge]`` (Miniforge's ``write_condarc``). The payload is the conda layout of
:func:`labtorch_sim.runtime.conda_files`, its ``conda`` running the stand-in from the runtime
every host mounts, and a conda-forge record of conda in base's conda-meta.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

from labtorch_sim import runtime
from labtorch_sim.conda import CONDA_VERSION

TREE = Path("github-release/conda-forge/miniforge")
LATEST = "LatestRelease"
BUILD = "0"
RELEASE = f"{CONDA_VERSION}-{BUILD}"
PLATFORM = "Linux-x86_64"
VERSIONED = f"Miniforge3-{RELEASE}-{PLATFORM}.sh"
UNVERSIONED = f"Miniforge3-{PLATFORM}.sh"
STAMP = ".labtorch-miniforge.json"
# Replaced by the prefix when the installer unpacks (constructor installers rewrite the prefix
# placeholder of every file that holds one).
PLACEHOLDER = "/opt/__labtorch_miniforge_prefix__"
MARKER = "@@END_HEADER@@"

# conda as Miniforge's base has it: from conda-forge.
_CONDA_RECORD = {
    "name": "conda",
    "version": CONDA_VERSION,
    "build": "py311h38be061_0",
    "build_number": 0,
    "subdir": "linux-64",
    "depends": [],
    "fn": f"conda-{CONDA_VERSION}-py311h38be061_0.conda",
    "url": "https://conda.anaconda.org/conda-forge/linux-64/"
    f"conda-{CONDA_VERSION}-py311h38be061_0.conda",
    "channel": "https://conda.anaconda.org/conda-forge/linux-64",
    "md5": "0" * 32,
    "files": [],
    "paths_data": {"paths": [], "paths_version": 1},
    "requested_spec": "conda",
}

_HEADER = """#!/bin/sh
#
# NAME:  Miniforge3
# VER:   {release}
# PLAT:  linux-64
#
# The labtorch simulated lab's stand-in for conda-forge's Miniforge installer: the options,
# checks and messages of constructor's installers; it installs the lab's conda stand-in.

set -u
unset CONDARC 2>/dev/null || true
BATCH=0; FORCE=0; UPDATE=0
PREFIX="${{HOME:-/opt}}/miniforge3"
USAGE="
usage: $0 [options]

Installs Miniforge3 {release}

-b           run install in batch mode (without manual intervention),
             it is expected the license terms (if any) are agreed upon
-f           no error if install prefix already exists
-h           print this help message and exit
-p PREFIX    install prefix, defaults to $PREFIX, must not contain spaces.
-u           update an existing installation
"
while getopts "bfhp:u" opt; do
    case "$opt" in
        b) BATCH=1 ;;
        f) FORCE=1 ;;
        h) printf "%s\\n" "$USAGE"; exit 2 ;;
        p) PREFIX="$OPTARG" ;;
        u) UPDATE=1 ;;
        ?) printf "ERROR: did not recognize option '%s', please try -h\\n" "$1" >&2; exit 1 ;;
    esac
done
if [ "$BATCH" = "0" ]; then
    printf "ERROR: this stand-in installs in batch mode only (-b)\\n" >&2
    exit 1
fi
case "$PREFIX" in
    *\\ *) printf "ERROR: Cannot install into directories with spaces\\n" >&2; exit 1 ;;
esac
if [ "$FORCE" = "0" ] && [ "$UPDATE" = "0" ] && [ -e "$PREFIX" ]; then
    printf "ERROR: File or directory already exists: '%s'\\n" "$PREFIX" >&2
    printf "If you want to update an existing installation, use the -u option.\\n" >&2
    exit 1
fi
if ! mkdir -p "$PREFIX"; then
    printf "ERROR: Could not create directory: '%s'\\n" "$PREFIX" >&2
    exit 1
fi
PREFIX=$(cd "$PREFIX" && pwd)
printf "PREFIX=%s\\n" "$PREFIX"
printf "Unpacking payload ...\\n"
line=$(grep -a -n -m1 '^{marker}$' "$0" | cut -d: -f1)
if ! tail -n +"$((line + 1))" "$0" | tar -xzf - -C "$PREFIX"; then
    printf "ERROR: could not extract the payload\\n" >&2
    exit 1
fi
sed -i "s|{placeholder}|$PREFIX|g" "$PREFIX/etc/profile.d/conda.sh"
mkdir -p "$PREFIX/envs" "$PREFIX/pkgs"
cat <<EOF >"$PREFIX/.condarc"
channels:
  - conda-forge
EOF
printf "installation finished.\\n"
exit 0
{marker}
"""


def _payload() -> bytes:
    """The tar.gz of the conda layout, with fixed times and owners, so its bytes (and with them
    the installer's sha256) are the same at every build."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for relative, (text, executable) in sorted(
            runtime.conda_files(PLACEHOLDER, _CONDA_RECORD).items()
        ):
            data = text.encode()
            info = tarfile.TarInfo(relative)
            info.size, info.mode, info.mtime = len(data), 0o755 if executable else 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def installer_bytes() -> bytes:
    """The installer: the header, then the payload."""
    header = _HEADER.format(release=RELEASE, marker=MARKER, placeholder=PLACEHOLDER)
    return header.encode() + _payload()


def sha256_line(data: bytes, name: str) -> str:
    """A ``.sha256`` file as ``sha256sum NAME > NAME.sha256`` writes it."""
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n"


def _digest() -> str:
    sources = (Path(__file__), Path(runtime.__file__))
    return hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()


def release_dir(root: Path) -> Path:
    """The release's directory under the mirror's document root."""
    return root / TREE / RELEASE


def build_miniforge_release(root: Path) -> None:
    """Write the Miniforge tree under the mirror's document root ``root``; a no-op when it is
    there already, as built from this code."""
    tree = root / TREE
    stamp = tree / STAMP
    digest = _digest()
    if stamp.is_file() and json.loads(stamp.read_text()).get("digest") == digest:
        return
    shutil.rmtree(tree, ignore_errors=True)
    release = release_dir(root)
    release.mkdir(parents=True)
    installer = installer_bytes()
    for name, published in ((VERSIONED, f"./{VERSIONED}"), (UNVERSIONED, UNVERSIONED)):
        (release / name).write_bytes(installer)
        (release / name).chmod(0o644)
        (release / f"{name}.sha256").write_text(sha256_line(installer, published))
    (tree / LATEST).symlink_to(RELEASE)
    stamp.write_text(json.dumps({"digest": digest}) + "\n")
