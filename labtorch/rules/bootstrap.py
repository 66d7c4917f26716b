"""Miniforge for a host without conda: which installer, from where, into which prefix, and the
one command that installs it (pure).

Sources (``shared/reference/locks-cache-bootstrap.md``, "Miniforge from the mirror"; mirrors.md
2.6):

- conda-forge/miniforge publishes, in every release, each installer under a versioned and an
  unversioned name (``Miniforge3-Linux-x86_64.sh``), and beside each a ``.sha256`` file written
  by ``sha256sum <installer> > <installer>.sha256`` (``scripts/build.sh``): the hex digest, two
  spaces and a file name, which may be the versioned one; only the digest is compared here.
  The names follow its CI matrix, ``<OS_NAME>-<ARCH>`` (``.github/workflows/ci.yml``).
- TUNA and BFSU mirror the newest release under ``github-release/conda-forge/miniforge/``, with a
  ``LatestRelease`` link to it (the catalog's ``miniforge``); GitHub's ``releases/latest/download``
  serves the same names upstream.
- ``bash <installer> -b -p PREFIX`` installs without a question; the installer refuses a PREFIX
  that exists unless given ``-u``, which labtorch never gives: it never touches a conda it did
  not install.
- The installer writes ``PREFIX/.condarc`` with ``channels: [conda-forge]``: Miniforge's
  ``construct.yaml`` sets ``write_condarc: True`` and ``channels: [conda-forge]``, and
  constructor's ``add_condarc`` dumps exactly those channels.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from labtorch.data.mirrors import UPSTREAM, MirrorCatalog

NAME = "Miniforge3"
# The prefix labtorch installs Miniforge into: /opt/conda as root, else ~/miniforge3. The host
# state looks for conda in both (facts.host_state.CONDA_CANDIDATES).
ROOT_PREFIX = "/opt/conda"
USER_PREFIX = "miniforge3"
# What Miniforge's installer writes into PREFIX/.condarc (see the module's sources).
MINIFORGE_CONDARC = "channels:\n  - conda-forge\n"
# uname -s / uname -m (lower-cased) -> the <OS_NAME>-<ARCH> of Miniforge's .sh installers.
_INSTALLERS = {
    ("linux", "x86_64"): "Linux-x86_64",
    ("linux", "amd64"): "Linux-x86_64",
    ("linux", "aarch64"): "Linux-aarch64",
    ("linux", "arm64"): "Linux-aarch64",
    ("linux", "ppc64le"): "Linux-ppc64le",
    ("darwin", "x86_64"): "MacOSX-x86_64",
    ("darwin", "arm64"): "MacOSX-arm64",
}


@dataclass(frozen=True)
class Bootstrap:
    """How Miniforge gets onto one host.

    + prefix: where it is installed
    + installer: the installer's file name
    + sources: the release directories to try, in order (the installer and its ``.sha256``)
    """

    prefix: str
    installer: str
    sources: tuple[str, ...]

    @property
    def conda(self) -> str:
        return f"{self.prefix}/bin/conda"


def installer_for(system: str, machine: str) -> str | None:
    """The Miniforge installer for a host (``uname -s``, ``uname -m``); None where there is no
    shell installer (Windows, or an architecture Miniforge does not build)."""
    suffix = _INSTALLERS.get((system.lower(), machine.lower()))
    return f"{NAME}-{suffix}.sh" if suffix else None


def prefix_for(is_root: bool, home: str) -> str:
    """``/opt/conda`` as root, ``~/miniforge3`` otherwise."""
    return ROOT_PREFIX if is_root else f"{home.rstrip('/')}/{USER_PREFIX}"


def sources(catalog: MirrorCatalog, mirrors: Iterable[str]) -> tuple[str, ...]:
    """The Miniforge directories of ``mirrors`` (the mirror, then its fallbacks) that carry it;
    upstream's GitHub releases only when none of them does: the catalog's last resort. A site
    that wants GitHub after its mirrors names ``upstream`` among its fallbacks."""
    found = [catalog[name].miniforge for name in mirrors if catalog[name].miniforge]
    if not found and catalog.mirrors.get(UPSTREAM) and catalog[UPSTREAM].miniforge:
        found.append(catalog[UPSTREAM].miniforge)
    return tuple(dict.fromkeys(url.rstrip("/") for url in found if url))


def bootstrap_for(
    system: str,
    machine: str,
    is_root: bool,
    home: str,
    catalog: MirrorCatalog,
    mirrors: Iterable[str],
) -> Bootstrap | str:
    """How to install Miniforge on this host, or why it cannot be."""
    installer = installer_for(system, machine)
    if installer is None:
        return (
            f"no conda found, and Miniforge has no shell installer for {system} {machine}: "
            "install conda yourself, or set torch_installer = 'pip' for this host"
        )
    found = sources(catalog, mirrors)
    if not found:
        return (
            "no conda found, and no mirror of this run carries the Miniforge installers "
            "(labtorch/data/mirrors.yaml: miniforge): install conda yourself"
        )
    return Bootstrap(prefix_for(is_root, home), installer, found)


_SCRIPT = r"""prefix={prefix}; file={installer}
if [ -x "$prefix/bin/conda" ]; then
  echo "conda is already at $prefix/bin/conda: left as it is"
  exit 0
fi
if [ -e "$prefix" ] || [ -L "$prefix" ]; then
  echo "labtorch: $prefix exists but holds no conda ($prefix/bin/conda): labtorch installs" \
    "Miniforge only where nothing is, and never touches what is there; move it away," \
    "or install conda yourself" >&2
  exit 1
fi
tmp=$(mktemp -d "${{TMPDIR:-/tmp}}/labtorch-miniforge.XXXXXX") || exit 1
installing=
cleanup() {{ rm -rf "$tmp"; if [ -n "$installing" ]; then rm -rf "$prefix"; fi; }}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
fetch() {{
  if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 2 --connect-timeout 20 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then wget -q -T 20 -t 3 -O "$2" "$1"
  else echo "neither curl nor wget on the host" >&2; false; fi 2>"$tmp/why"
}}
failure() {{ r=$(grep . "$tmp/why" | tail -n 1); echo "${{r:-the download failed}}"; }}
sha256() {{
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1"; else shasum -a 256 "$1"; fi |
    awk '{{print $1}}'
}}
why=; source=
for base in {sources}; do
  rm -f "$tmp/$file" "$tmp/$file.sha256"
  if ! fetch "$base/$file.sha256" "$tmp/$file.sha256"; then
    why="$why; $base/$file.sha256: $(failure)"; continue
  fi
  expected=$(awk 'NR == 1 {{print tolower($1)}}' "$tmp/$file.sha256")
  if [ "${{#expected}}" -ne 64 ] || [ -n "$(printf %s "$expected" | tr -d 0-9a-f)" ]; then
    why="$why; $base/$file.sha256 holds no sha256"; continue
  fi
  if ! fetch "$base/$file" "$tmp/$file"; then
    why="$why; $base/$file: $(failure)"; continue
  fi
  actual=$(sha256 "$tmp/$file")
  if [ "$actual" != "$expected" ]; then
    why="$why; $base/$file: sha256 $actual is not the published $expected"; continue
  fi
  source=$base; break
done
if [ -z "$source" ]; then
  echo "labtorch: no Miniforge installer passed its checksum, nothing installed${{why}}" >&2
  exit 1
fi
installing=1
if ! bash "$tmp/$file" -b -p "$prefix" >"$tmp/log" 2>&1 || [ ! -x "$prefix/bin/conda" ]; then
  echo "labtorch: the Miniforge installer from $source failed, $prefix removed:" \
    "$(grep . "$tmp/log" | tail -n 1)" >&2
  exit 1
fi
installing=
echo "Miniforge installed in $prefix from $source/$file (sha256 $actual)"
"""


def install_script(bootstrap: Bootstrap) -> str:
    """The POSIX sh script that installs Miniforge, or fails the host with one ``labtorch:`` line.

    For each source in turn it downloads the ``.sha256`` and the installer into a temporary
    directory and compares the digest before anything runs; the first that matches is run in
    batch mode. A prefix that exists is never touched; a failed download or checksum leaves
    nothing behind, and a failed install removes the prefix it created (also when interrupted).
    """
    return _SCRIPT.format(
        prefix=shlex.quote(bootstrap.prefix),
        installer=shlex.quote(bootstrap.installer),
        sources=" ".join(shlex.quote(source) for source in bootstrap.sources),
    )
