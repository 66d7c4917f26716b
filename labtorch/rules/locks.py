"""Locks: one solve per kind of host, installed everywhere with no solve (pure).

Hosts whose plans agree on everything a solve depends on (installer and route, platform, Python,
release, variant and CUDA, toolkit, the mirror's channels or indexes, the specs) form one *lock
class* and share one lock. A lock is written in the formats the hosts' own tools install with no
solve and with every file's hash checked:

- conda: an ``@EXPLICIT`` list, one package URL a line with ``#<sha256>`` for conda 24.9 and newer
  (conda/conda#14048) and ``#<md5>`` for older conda, which fails on a 64-digit hash; both files
  are written for each conda class, and each host gets the one its conda reads;
- pip: a requirements file of direct references with ``--hash=sha256:...``, for
  ``pip install --no-deps --require-hashes --no-index -r``: no index page is read, only the files.

``locks/labtorch-lock.yaml`` indexes the classes: each one's inputs, the virtual packages (conda)
or target (pip) it was solved for, when, against which mirror and channels, with which solver,
the digests of its files and the hosts that use it. This module renders and parses all of it;
solving is :mod:`labtorch.locking`, on the controller.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import unquote

import yaml

from labtorch.facts.host_state import InstalledPackage
from labtorch.rules.commands import plan_specs
from labtorch.rules.envdiff import CREATE, OK, REPAIR, REPLACE
from labtorch.rules.model import PIP, Plan

LOCK_VERSION = 1
INDEX_FILE = "labtorch-lock.yaml"
CONDA = "conda"
SHA256 = "sha256"
MD5 = "md5"
# conda reads a 64-digit (sha256) hash on an explicit URL from 24.9.0 on (conda/conda#14048);
# older conda fails with "ParseError: Could not parse explicit URL".
SHA256_SINCE = (24, 9)
EXPLICIT_FILES = {SHA256: "explicit-sha256.txt", MD5: "explicit-md5.txt"}
REQUIREMENTS_FILE = "requirements.txt"
# What `python -m venv` puts in a venv before labtorch installs anything: not part of a lock.
VENV_SEED = frozenset({"pip", "setuptools", "wheel"})
# The kernel a conda solve assumes (__linux): the floor conda-lock assumes for linux targets; no
# package of the routes labtorch installs asks for more.
LINUX_FLOOR = "5.10"
# The glibc a solve assumes when a host does not report one: conda-forge's floor.
GLIBC_FLOOR = "2.17"
# manylinux tags uv resolves for (uv pip compile --python-platform x86_64-manylinux_2_NN).
_MANYLINUX = (17, 40)
_ARCHSPEC = {"linux-64": "x86_64", "linux-aarch64": "aarch64"}
_UV_ARCH = {"linux-64": "x86_64", "linux-aarch64": "aarch64"}
_HEX = re.compile(r"^[0-9a-f]+$")


class LockError(ValueError):
    """A lock file or the index is malformed: the message names the file and what is wrong."""


# ---- lock classes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LockClass:
    """What a solve depends on: hosts whose plans agree on all of it share one lock.

    ``route`` is ``pip`` or the first conda channel's name (``conda-forge``, ``pytorch``);
    ``channels`` the conda channels' URLs on the mirror, in priority order; ``index_url`` and
    ``wheel_index`` the PyPI index and the variant's wheel page (pip); ``specs`` the plan's pins.
    """

    installer: str
    route: str
    platform: str
    python: str
    torch: str
    variant: str
    cuda: str | None
    toolkit: bool
    channels: tuple[str, ...] = ()
    index_url: str | None = None
    wheel_index: tuple[str, str] | None = None
    specs: tuple[str, ...] = ()

    def inputs(self) -> dict:
        """The class as plain data, as the index records it."""
        return {
            "installer": self.installer,
            "route": self.route,
            "platform": self.platform,
            "python": self.python,
            "torch": self.torch,
            "variant": self.variant,
            "cuda": self.cuda,
            "toolkit": self.toolkit,
            "channels": list(self.channels),
            "index_url": self.index_url,
            "wheel_index": list(self.wheel_index) if self.wheel_index else None,
            "specs": list(self.specs),
        }

    @classmethod
    def from_inputs(cls, data: Mapping) -> LockClass:
        wheel_index = data.get("wheel_index")
        return cls(
            installer=str(data["installer"]),
            route=str(data["route"]),
            platform=str(data["platform"]),
            python=str(data["python"]),
            torch=str(data["torch"]),
            variant=str(data["variant"]),
            cuda=None if data.get("cuda") is None else str(data["cuda"]),
            toolkit=bool(data["toolkit"]),
            channels=tuple(str(c) for c in data.get("channels") or ()),
            index_url=data.get("index_url"),
            wheel_index=(str(wheel_index[0]), str(wheel_index[1])) if wheel_index else None,
            specs=tuple(str(s) for s in data.get("specs") or ()),
        )

    @property
    def digest(self) -> str:
        text = json.dumps(self.inputs(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def id(self) -> str:
        """A readable name that changes with any input: ``conda-forge-linux-64-py3.11-2.7.1-
        cu126-1a2b3c4d``."""
        toolkit = "-toolkit" if self.toolkit else ""
        release = self.torch.split("+")[0]
        return (
            f"{self.route}-{self.platform}-py{self.python}-{release}-{self.variant}{toolkit}"
            f"-{self.digest[:8]}"
        )

    def describe(self) -> str:
        route = "pip" if self.installer == PIP else f"conda ({', '.join(self.channels)})"
        toolkit = " with the CUDA toolkit" if self.toolkit else ""
        return (
            f"torch {self.torch} {self.variant}{toolkit} for {self.platform}, Python "
            f"{self.python}, by {route}"
        )

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The mirror URLs the class was planned against: channels, PyPI, the wheel page."""
        wheel = (self.wheel_index[1],) if self.wheel_index else ()
        return (*self.channels, *((self.index_url,) if self.index_url else ()), *wheel)


def lock_class(plan: Plan) -> LockClass:
    """The lock class of a plan (not a refusal)."""
    if plan.refused or plan.torch is None or plan.variant is None or plan.python is None:
        raise ValueError("a refused plan has no lock class")
    pip = plan.installer == PIP
    return LockClass(
        installer=plan.installer,
        route=PIP if pip else (plan.channels[0] if plan.channels else CONDA),
        platform=plan.platform,
        python=plan.python,
        torch=plan.torch.version,
        variant=plan.variant,
        cuda=plan.cuda,
        toolkit=bool(plan.toolkit),
        channels=() if pip else tuple(plan.channel_urls),
        index_url=plan.index_url if pip else None,
        wheel_index=plan.wheel_index if pip else None,
        specs=tuple(plan_specs(plan)),
    )


def _version_key(version: str | None) -> tuple[int, ...]:
    parts = re.findall(r"\d+", version or "")
    return tuple(int(p) for p in parts)


def oldest_glibc(glibcs: Iterable[str | None]) -> str:
    """The glibc a class is solved for: the oldest of its hosts' (a lock must run on all)."""
    known = [g for g in glibcs if g]
    return min(known, key=_version_key) if known else GLIBC_FLOOR


def virtual_packages(lock: LockClass, glibc: str | None) -> list[tuple[str, str, str]]:
    """The virtual packages a conda solve for ``lock`` assumes, as conda lists them
    (name, version, build): ``__cuda`` at the plan's CUDA (none for a CPU build), the hosts'
    oldest glibc, the kernel floor, the platform's generic microarchitecture."""
    packages = [("__unix", "0", "0")]
    if lock.platform.startswith("linux"):
        packages += [
            ("__archspec", "1", _ARCHSPEC.get(lock.platform, "x86_64")),
            ("__glibc", glibc or GLIBC_FLOOR, "0"),
            ("__linux", LINUX_FLOOR, "0"),
        ]
    if lock.cuda:
        packages.append(("__cuda", lock.cuda, "0"))
    return sorted(packages)


def pip_target(lock: LockClass, glibc: str | None) -> str:
    """uv's ``--python-platform`` for a pip class: manylinux at the hosts' oldest glibc."""
    arch = _UV_ARCH.get(lock.platform)
    if arch is None:
        raise ValueError(f"pip locks are made for linux-64 and linux-aarch64, not {lock.platform}")
    major, minor = (*_version_key(glibc or GLIBC_FLOOR), 0, 0)[:2]
    if major != 2:
        minor = _MANYLINUX[0]
    minor = max(_MANYLINUX[0], min(_MANYLINUX[1], minor))
    return f"{arch}-manylinux_2_{minor}"


def hash_kind(conda_version: str | None) -> str:
    """The hash a host's conda reads on an explicit URL: sha256 from conda 24.9 on, else md5
    (also when the version is unknown: every conda reads md5)."""
    key = _version_key(conda_version)
    return SHA256 if key and key >= SHA256_SINCE else MD5


# ---- locked packages and the lock files ------------------------------------------------------


@dataclass(frozen=True)
class LockedPackage:
    """One file of a lock: conda's name-version-build (``build`` None for a wheel), its URL on
    the mirror and its digests."""

    name: str
    version: str
    build: str | None
    url: str
    sha256: str
    md5: str | None = None
    depends: tuple[str, ...] = field(default=(), compare=False)

    @property
    def filename(self) -> str:
        return unquote(self.url.rsplit("/", 1)[-1])

    def describe(self) -> str:
        return f"{self.name} {self.version}" + (f" {self.build}" if self.build else "")


def _dependency_order(packages: Sequence[LockedPackage]) -> list[LockedPackage]:
    """Dependencies before what needs them (as ``conda list --explicit`` writes an env), by name
    where the order is free; a cycle is broken by name."""
    by_name = {p.name: p for p in packages}
    needs = {
        p.name: {d.split()[0] for d in p.depends if d.split() and d.split()[0] in by_name}
        - {p.name}
        for p in packages
    }
    ordered: list[LockedPackage] = []
    done: set[str] = set()
    while len(done) < len(by_name):
        ready = sorted(n for n in by_name if n not in done and needs[n] <= done)
        if not ready:
            ready = [min(n for n in by_name if n not in done)]
        for name in ready:
            done.add(name)
            ordered.append(by_name[name])
    return ordered


def render_explicit(
    lock_id: str, lock: LockClass, packages: Sequence[LockedPackage], kind: str, header: str = ""
) -> str:
    """The ``@EXPLICIT`` file of a conda class with ``#<sha256>`` or ``#<md5>`` hashes."""
    lines = [
        f"# labtorch lock {lock_id}: {lock.describe()}",
        *(f"# {line}" for line in header.splitlines() if line),
        f"# platform: {lock.platform}",
        "# install with no solve: conda create -p <env> --file <this file>",
        "@EXPLICIT",
    ]
    for package in _dependency_order(packages):
        digest = package.sha256 if kind == SHA256 else package.md5
        if not digest:
            raise ValueError(f"{package.filename} has no {kind} in the solve")
        lines.append(f"{package.url}#{digest}")
    return "\n".join(lines) + "\n"


def render_requirements(
    lock_id: str, lock: LockClass, packages: Sequence[LockedPackage], header: str = ""
) -> str:
    """The pip requirements of a pip class: direct references with their sha256."""
    lines = [
        f"# labtorch lock {lock_id}: {lock.describe()}",
        *(f"# {line}" for line in header.splitlines() if line),
        "# install with no index and no resolution:",
        "#   pip install --no-deps --require-hashes --no-index -r <this file>",
    ]
    for package in sorted(packages, key=lambda p: p.name):
        lines.append(f"{package.name} @ {package.url} \\\n    --hash=sha256:{package.sha256}")
    return "\n".join(lines) + "\n"


_CONDA_FILE = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)-(?P<build>[^-]+)\.(tar\.bz2|conda)$")
_WHEEL_FILE = re.compile(r"^(?P<dist>[^-]+)-(?P<version>[^-]+)-.+\.whl$")


def parse_explicit(text: str, where: str = "the lock") -> list[tuple[str, str, str]]:
    """``(url, algorithm, digest)`` of each package line after ``@EXPLICIT``."""
    lines = [line.strip() for line in text.splitlines()]
    if "@EXPLICIT" not in lines:
        raise LockError(f"{where}: no @EXPLICIT line: not a conda explicit file")
    entries = []
    for line in lines[lines.index("@EXPLICIT") + 1 :]:
        if not line or line.startswith("#"):
            continue
        url, _, digest = line.partition("#")
        digest = digest.removeprefix("sha256:")
        kind = {32: MD5, 64: SHA256}.get(len(digest))
        if kind is None or not _HEX.match(digest) or not _CONDA_FILE.match(url.rsplit("/")[-1]):
            raise LockError(f"{where}: not a package URL with an md5 or sha256: {line}")
        entries.append((url, kind, digest))
    return entries


def conda_packages(explicit: Mapping[str, str], where: str = "the lock") -> list[LockedPackage]:
    """The packages of a conda class from its explicit files (by hash kind): each file must list
    the same URLs."""
    parsed = {kind: parse_explicit(text, f"{where} ({kind})") for kind, text in explicit.items()}
    urls = {kind: [url for url, _, _ in entries] for kind, entries in parsed.items()}
    if len({tuple(sorted(u)) for u in urls.values()}) > 1:
        raise LockError(f"{where}: its md5 and sha256 files list different packages")
    digests: dict[str, dict[str, str]] = {}
    for entries in parsed.values():
        for url, kind, digest in entries:
            digests.setdefault(url, {})[kind] = digest
    packages = []
    for url in next(iter(urls.values()), []):
        match = _CONDA_FILE.match(unquote(url.rsplit("/", 1)[-1]))
        assert match is not None  # checked by parse_explicit
        packages.append(
            LockedPackage(
                match.group("name"),
                match.group("version"),
                match.group("build"),
                url,
                digests[url].get(SHA256, ""),
                digests[url].get(MD5),
            )
        )
    return packages


def parse_requirements(text: str, where: str = "the lock") -> list[LockedPackage]:
    """The packages of a pip class's requirements file (``name @ url --hash=sha256:...``)."""
    joined = re.sub(r"\\\n", " ", text)
    packages = []
    for raw in joined.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^(?P<name>[A-Za-z0-9._-]+)\s*@\s*(?P<url>\S+)\s+(?P<rest>.*)$", line)
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})\b", match.group("rest")) if match else []
        if not match or len(hashes) != 1:
            raise LockError(f"{where}: not 'name @ url --hash=sha256:<64 hex>': {line}")
        wheel = _WHEEL_FILE.match(unquote(match.group("url").rsplit("/", 1)[-1]))
        if wheel is None:
            raise LockError(f"{where}: not a wheel URL: {match.group('url')}")
        packages.append(
            LockedPackage(
                normalize(match.group("name")), wheel.group("version"), None, match.group("url"),
                hashes[0],
            )
        )  # fmt: skip
    return packages


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


# ---- mirrors: the same relative path on a fallback -------------------------------------------


def rebase_pairs(primary: Sequence[str], fallback: Sequence[str]) -> list[tuple[str, str]]:
    """For each pair of corresponding endpoints (a channel, PyPI, the wheel page) on the primary
    mirror and on a fallback: the two bases under which both have the same relative path
    (``https://a/anaconda/cloud/conda-forge`` and ``https://b/x/anaconda/cloud/conda-forge`` give
    ``https://a`` and ``https://b/x``). Longest first, so the most specific base wins."""
    pairs = []
    for first, second in zip(primary, fallback, strict=False):
        a, b = first.rstrip("/"), second.rstrip("/")
        while a and b and a.rsplit("/", 1)[-1] == b.rsplit("/", 1)[-1] and "/" in a and "/" in b:
            head_a, head_b = a.rsplit("/", 1)[0], b.rsplit("/", 1)[0]
            if head_a.endswith(":/") or head_b.endswith(":/"):
                break
            a, b = head_a, head_b
        if a != b:
            pairs.append((a + "/", b + "/"))
    return sorted(set(pairs), key=lambda pair: -len(pair[0]))


def rebase(url: str, pairs: Sequence[tuple[str, str]]) -> str:
    """``url`` at the same relative path on the fallback (unchanged when no base applies)."""
    for old, new in pairs:
        if url.startswith(old):
            return new + url[len(old) :]
    return url


def rebased(packages: Sequence[LockedPackage], pairs: Sequence[tuple[str, str]]) -> list:
    return [replace(p, url=rebase(p.url, pairs)) for p in packages]


# ---- the env against its lock ----------------------------------------------------------------


@dataclass(frozen=True)
class LockDiff:
    """What separates an env from its lock.

    + action: ok, create, replace (a directory that is not an env is in the way) or repair
    + problems: why, one line each
    + install: the lock's packages to install (missing, another build or version, or from
      elsewhere than the mirror and its fallbacks)
    + remove: installed packages the lock does not have
    + foreign: the problems of packages from elsewhere than the mirror, for the report
    """

    action: str
    problems: tuple[str, ...] = ()
    install: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()


def _installed_describe(package: InstalledPackage) -> str:
    return f"{package.name} {package.version}" + (f" {package.build}" if package.build else "")


def lock_diff(
    packages: Sequence[LockedPackage],
    installed: Mapping[str, InstalledPackage] | None,
    installer: str,
    accepted_urls: Iterable[str] = (),
    *,
    foreign: bool = False,
) -> LockDiff:
    """Compare an env with its lock, package by package: every package of the env must be one of
    the lock's, with its exact version and build, from its URL on the mirror (or one of
    ``accepted_urls``, the same file on a fallback); nothing else may be there (a venv's own
    pip and setuptools excepted). A package with no recorded URL (pip's dist-info) is judged by
    name and version."""
    if foreign:
        return LockDiff(REPLACE, ("a directory that is not an env is at the env's path",))
    if installed is None:
        return LockDiff(CREATE, ("the env does not exist",))
    pip = installer == PIP
    wanted = {normalize(p.name) if pip else p.name: p for p in packages}
    have = {normalize(name) if pip else name: p for name, p in installed.items()}
    accepted = set(accepted_urls)
    problems, install, remove, foreign = [], [], [], []
    for name, package in sorted(wanted.items()):
        found = have.get(name)
        if found is None:
            problems.append(f"{package.describe()} is missing")
        elif found.version != package.version or (not pip and found.build != package.build):
            problems.append(f"{_installed_describe(found)} is installed, the lock has "
                            f"{package.describe()}")  # fmt: skip
        elif found.url and found.url != package.url and found.url not in accepted:
            foreign.append(f"{package.filename} came from {found.url}, not from the lock's mirror")
            problems.append(foreign[-1])
        else:
            continue
        install.append(package.name)
    for name, found in sorted(have.items()):
        if name not in wanted and not (pip and name in VENV_SEED):
            problems.append(f"{_installed_describe(found)} is not in the lock")
            remove.append(found.name)
    if not problems:
        return LockDiff(OK)
    return LockDiff(REPAIR, tuple(problems), tuple(install), tuple(remove), tuple(foreign))


# ---- the index -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockEntry:
    """One class of the index, and its files' text (relative path -> text)."""

    lock: LockClass
    created: str
    solver: str
    mirror: str
    sources: tuple[str, ...]
    hosts: tuple[str, ...]
    files: Mapping[str, str]
    glibc: str | None = None
    virtual: tuple[tuple[str, str, str], ...] = ()
    target: str | None = None
    packages: int = 0

    @property
    def id(self) -> str:
        return self.lock.id

    def packages_for(self, kind: str = SHA256) -> list[LockedPackage]:
        """The locked packages, parsed from the files."""
        if self.lock.installer == PIP:
            return parse_requirements(self.files[f"{self.id}/{REQUIREMENTS_FILE}"], self.id)
        return conda_packages(
            {k: self.files[f"{self.id}/{name}"] for k, name in EXPLICIT_FILES.items()}, self.id
        )

    def file_for(self, conda_version: str | None) -> str:
        """The file a host installs: the pip requirements, or the explicit file its conda
        reads."""
        if self.lock.installer == PIP:
            return f"{self.id}/{REQUIREMENTS_FILE}"
        return f"{self.id}/{EXPLICIT_FILES[hash_kind(conda_version)]}"

    def record(self) -> dict:
        """The entry as the index file holds it."""
        data: dict = {
            "inputs": self.lock.inputs(),
            "created": self.created,
            "solver": self.solver,
            "mirror": self.mirror,
            "solved_against": list(self.sources),
        }
        if self.lock.installer == PIP:
            data["target"] = {"python_platform": self.target, "python_version": self.lock.python}
        else:
            data["virtual_packages"] = [f"{n}={v}={b}" for n, v, b in self.virtual]
        data["glibc"] = self.glibc
        data["packages"] = self.packages
        data["files"] = {path: _digest(text) for path, text in sorted(self.files.items())}
        data["hosts"] = sorted(self.hosts)
        return data


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


INDEX_HEADER = (
    "# labtorch locks: one per class of hosts whose plans agree (made by `labtorch lock`).\n"
    '# Review the diff of this directory and commit it; deploy with torch_lock = "frozen" to\n'
    "# install only what was reviewed. The files beside it are what the hosts install.\n"
)


def render_index(entries: Iterable[LockEntry]) -> str:
    body = {
        "version": LOCK_VERSION,
        "classes": {entry.id: entry.record() for entry in sorted(entries, key=lambda e: e.id)},
    }
    return INDEX_HEADER + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def parse_index(text: str, read_file, where: str = INDEX_FILE) -> dict[str, LockEntry]:
    """The entries of an index; ``read_file(relative path)`` gives each lock file's text (None
    when absent). A file whose digest differs from the index's is an error: a lock is installed
    only as it was made and reviewed."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise LockError(f"{where}: not YAML: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        raise LockError(f"{where}: not a labtorch lock index of version {LOCK_VERSION}")
    entries = {}
    for lock_id, record in (data.get("classes") or {}).items():
        try:
            lock = LockClass.from_inputs(record["inputs"])
        except (KeyError, TypeError) as exc:
            raise LockError(f"{where}: {lock_id}: inputs incomplete ({exc})") from None
        if lock.id != lock_id:
            raise LockError(f"{where}: {lock_id}: its inputs are those of {lock.id}")
        files = {}
        for path, digest in (record.get("files") or {}).items():
            content = read_file(path)
            if content is None:
                raise LockError(f"{where}: {lock_id}: {path} is missing")
            if _digest(content) != digest:
                raise LockError(
                    f"{where}: {lock_id}: {path} was changed after it was made (sha256 "
                    f"{_digest(content)}, the index says {digest}); run `labtorch lock` again"
                )
            files[path] = content
        target = (record.get("target") or {}).get("python_platform")
        virtual = tuple(tuple(str(v).split("=", 2)) for v in record.get("virtual_packages") or ())
        entries[lock_id] = LockEntry(
            lock=lock,
            created=str(record.get("created")),
            solver=str(record.get("solver")),
            mirror=str(record.get("mirror")),
            sources=tuple(record.get("solved_against") or ()),
            hosts=tuple(record.get("hosts") or ()),
            files=files,
            glibc=record.get("glibc"),
            virtual=virtual,  # type: ignore[arg-type]
            target=target,
            packages=int(record.get("packages") or 0),
        )
    return entries


def usable(entry: LockEntry | None, lock: LockClass, glibc: str | None) -> str | None:
    """Why ``entry`` cannot be installed on a host of class ``lock`` with ``glibc``, or None."""
    if entry is None:
        return f"no lock for class {lock.id} ({lock.describe()})"
    if entry.lock != lock:
        return f"the lock {entry.id} was made for other inputs"
    if glibc and entry.glibc and _version_key(glibc) < _version_key(entry.glibc):
        return (
            f"the lock {entry.id} was solved for glibc {entry.glibc} and newer; this host has "
            f"glibc {glibc}"
        )
    return None
