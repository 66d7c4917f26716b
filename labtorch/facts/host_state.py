"""The host state: one shell script that reads everything the deploy decides from, and its parser.

A no-op rerun must cost as few SSH round trips as possible, so the platform, the GPUs (nvidia-smi
and the loaded kernel module), conda, the condarc labtorch owns, the target env's packages and its
pip config all come back from ONE command, in sections marked ``@@labtorch <section>`` and read
back by section name. Parsing is pure and reuses the core's parsers.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from labtorch.data.gpus import ComputeCapability
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport, parse_nvidia_smi
from labtorch.facts.platform import conda_platform
from labtorch.facts.probe_script import CACHE, PIP_REPORT

MARK = "@@labtorch"
# The directory a deploy holds while it changes an env (labtorch.rules.run_lock).
LOCK_SUFFIX = ".labtorch-lock"
BACKUP_SUFFIX = ".labtorch-backup"
CONDA_CANDIDATES = (
    '"$CONDA_EXE"',
    "/opt/conda/bin/conda",
    "/opt/miniconda3/bin/conda",
    "/opt/miniforge3/bin/conda",
    '"$HOME/miniconda3/bin/conda"',
    '"$HOME/miniforge3/bin/conda"',
    '"$HOME/anaconda3/bin/conda"',
    '"$(command -v conda)"',
)


@dataclass(frozen=True)
class InstalledPackage:
    """A package in the target env: conda's name-version-build and the URL it came from, or a
    pip distribution (``build`` None) with its full version label."""

    name: str
    version: str
    build: str | None
    url: str | None


@dataclass(frozen=True)
class HostState:
    """What one host looks like to the deploy, read in one command."""

    system: str
    machine: str
    glibc: str | None
    home: str
    is_root: bool
    python3: str | None
    kernel_driver: str | None
    nvidia_smi: SmiReport | SmiFailure | None
    conda_exe: str | None
    conda_version: str | None
    condarc_path: str | None
    condarc: str | None
    condarc_kind: str | None
    condarc_backup: bool
    env_path: str
    env_prefix: str | None
    env_kinds: tuple[str, ...]
    env_packages: dict[str, InstalledPackage] | None
    env_listing: tuple[str, ...]
    probe_cache: dict | None
    run_lock: str | None
    pip_conf_path: str
    pip_conf: str | None
    pip_conf_kind: str | None
    pip_conf_backup: bool

    @property
    def platform(self) -> str:
        return conda_platform(self.system, self.machine)

    def hardware(self) -> dict:
        """The platform, driver and GPUs, as the reports record them (plain JSON values)."""
        smi = self.nvidia_smi
        report = smi if isinstance(smi, SmiReport) else None
        driver = {
            "version": report.driver_version if report else None,
            "cuda": report.cuda_version if report else None,
            "kernel_module": self.kernel_driver,
            "error": {"kind": smi.kind.value, "meaning": smi.meaning}
            if isinstance(smi, SmiFailure)
            else None,
        }
        gpus = [
            {
                "index": gpu.index,
                "name": gpu.name,
                "capability": str(gpu.capability) if gpu.capability else None,
                "memory_mib": gpu.memory_mib,
                "mig": gpu.mig_enabled,
            }
            for gpu in (report.gpus if report else ())
        ]
        return {"platform": self.platform, "driver": driver, "gpus": gpus}

    def env_is_foreign(self, installer: str) -> bool:
        """Whether a directory is at the env's path that is not an env of ``installer``'s kind
        (a conda env has conda-meta, a venv pyvenv.cfg)."""
        kind = "conda" if installer == "conda" else "venv"
        return self.env_prefix is not None and kind not in self.env_kinds

    @property
    def conda_root(self) -> str | None:
        if self.conda_exe is None:
            return None
        return self.conda_exe.rsplit("/bin/", 1)[0]


# Prints what is at a config file's path when it is there but not a regular file.
_NOT_A_FILE = (
    '[ -e "${var}" ] && [ ! -f "${var}" ]'
    ' && {{ [ -d "${var}" ] && echo directory || echo special; }}'
)


def _q(value: str) -> str:
    return shlex.quote(value)


def host_state_script(
    installer: str, env: str, condarc_scope: str, venv_root: str, pip_scope: str
) -> str:
    """The POSIX sh script that prints every section; it exits 0 whatever it finds."""
    candidates = " ".join(CONDA_CANDIDATES)
    # The conda root's condarc only exists where a conda was found; "auto" takes it when the SSH
    # user is root (who can write it) and ~/.condarc otherwise.
    condarc = {
        "system": '${root:+"$root/.condarc"}',
        "user": '"$HOME/.condarc"',
        "auto": '${root:+"$root/.condarc"}; [ "$(id -u)" = 0 ] || rc="$HOME/.condarc"',
    }.get(condarc_scope, _q(condarc_scope))
    if installer == "conda":
        prefix = f'"$root/envs/"{_q(env)}'
    else:
        prefix = _q(f"{venv_root.rstrip('/')}/{env}")
    pip_conf = {
        "env": '"$prefix/pip.conf"',
        "user": '"$HOME/.config/pip/pip.conf"',
        "global": "/etc/pip.conf",
    }.get(pip_scope, _q(pip_scope))
    return "\n".join(
        [
            f"echo {MARK} system; uname -s",
            f"echo {MARK} machine; uname -m",
            f"echo {MARK} uid; id -u",
            f'echo {MARK} home; echo "$HOME"',
            f"echo {MARK} glibc; getconf GNU_LIBC_VERSION 2>/dev/null",
            f"echo {MARK} python3; python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"
            " 2>/dev/null",
            f"echo {MARK} kernel-driver; cat /sys/module/nvidia/version 2>/dev/null"
            " || sed -n 's/.*Kernel Module *\\([0-9.]*\\).*/\\1/p' /proc/driver/nvidia/version"
            " 2>/dev/null",
            "if command -v nvidia-smi >/dev/null 2>&1; then",
            # Outputs and files may lack a final newline: each is followed by an echo, so that
            # the next marker starts a line of its own.
            f"  echo {MARK} nvidia-smi; nvidia-smi -q -x 2>&1; status=$?; echo;"
            f" echo {MARK} nvidia-smi-status $status",
            f"  echo {MARK} compute-cap;"
            " nvidia-smi --query-gpu=index,compute_cap --format=csv,noheader 2>/dev/null",
            "fi",
            f"conda=; for c in {candidates}; do"
            ' if [ -n "$c" ] && [ -x "$c" ]; then conda=$c; break; fi; done',
            'root=; [ -n "$conda" ] && root=${conda%/bin/conda}',
            # The version from base's conda-meta: running conda costs a Python start-up per host.
            f'echo {MARK} conda; [ -n "$conda" ] && echo "$conda"'
            ' && ls "$root"/conda-meta/conda-[0-9]*.json 2>/dev/null',
            f"rc={condarc}",
            # A link is followed: labtorch updates the file it points to, which others may share.
            '[ -n "$rc" ] && [ -L "$rc" ] && rc=$(readlink -f "$rc")',
            f'echo {MARK} condarc-path; [ -n "$rc" ] && echo "$rc"',
            f'echo {MARK} condarc-kind; [ -n "$rc" ] && {_NOT_A_FILE.format(var="rc")}',
            f'echo {MARK} condarc-backup; [ -n "$rc" ] && test -e "$rc{BACKUP_SUFFIX}" && echo yes',
            f'echo {MARK} condarc; [ -n "$rc" ] && cat "$rc" 2>/dev/null && echo',
            f'prefix={prefix}; echo {MARK} env-path; echo "$prefix"',
            f'echo {MARK} env; [ -d "$prefix" ] && echo "$prefix"',
            f'echo {MARK} env-kind; [ -d "$prefix/conda-meta" ] && echo conda;'
            ' [ -f "$prefix/pyvenv.cfg" ] && echo venv',
            f'echo {MARK} conda-meta; [ -d "$prefix/conda-meta" ] &&'
            ' grep -H -o -m1 \'"url": *"[^"]*"\' "$prefix"/conda-meta/*.json 2>/dev/null',
            f'echo {MARK} dist-info; ls -d "$prefix"/lib/python3*/site-packages/*.dist-info'
            " 2>/dev/null",
            # Where pip took each distribution installed from a URL (a lock's `name @ url`).
            f'echo {MARK} direct-url; [ -f "$prefix/pyvenv.cfg" ] && grep -H -o -m1'
            ' \'"url": *"[^"]*"\' "$prefix"/lib/python3*/site-packages/*.dist-info/direct_url.json'
            " 2>/dev/null",
            # Where pip took each distribution it installed from an index: the install report
            # labtorch asks pip for (a file name says which distribution; the last install's).
            f'echo {MARK} pip-report; [ -f "$prefix/pyvenv.cfg" ] &&'
            f' grep -o \'"url": *"[^"]*"\' "$prefix/{PIP_REPORT}" 2>/dev/null',
            f'echo {MARK} conda-meta-files; ls "$prefix"/conda-meta/*.json 2>/dev/null',
            f'echo {MARK} probe-cache; cat "$prefix/{CACHE}" 2>/dev/null && echo',
            f'echo {MARK} run-lock; [ -d "$prefix{LOCK_SUFFIX}" ] &&'
            f' {{ cat "$prefix{LOCK_SUFFIX}/owner" 2>/dev/null; echo; }}',
            f"pip_conf={pip_conf}",
            '[ -L "$pip_conf" ] && pip_conf=$(readlink -f "$pip_conf")',
            f'echo {MARK} pip-conf-path; echo "$pip_conf"',
            f"echo {MARK} pip-conf-kind; {_NOT_A_FILE.format(var='pip_conf')}",
            f'echo {MARK} pip-conf-backup; test -e "$pip_conf{BACKUP_SUFFIX}" && echo yes',
            f'echo {MARK} pip-conf; cat "$pip_conf" 2>/dev/null && echo',
            "exit 0",
        ]
    )


def script_sections(lines: list[str], mark: str = MARK) -> dict[str, list[str]]:
    """A host script's output cut at its ``<mark> <name>[ <value>]`` lines: each name's lines
    as printed (blank ones too: they end a file's text), an inline value first."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith(mark + " "):
            name = line[len(mark) + 1 :].strip()
            current = sections.setdefault(name.split(" ")[0], [])
            if " " in name:
                current.append(name.split(" ", 1)[1])
            continue
        if current is not None:
            current.append(line)
    return sections


def _file_text(lines: list[str] | None) -> str | None:
    """A file's text from its section: None when absent, without the blank line(s) the script
    adds after it."""
    if not lines:
        return None
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[:end]) + "\n"


def _lock_owner(lines: list[str] | None) -> str | None:
    """The run lock's owner line; "" for a lock whose owner cannot be read; None: no lock."""
    if not lines:
        return None
    return _first(lines) or ""


def _json_or_none(text: str | None) -> dict | None:
    """A JSON file's content; a missing or damaged cache is no cache."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _first(lines: list[str] | None) -> str | None:
    return next((line.strip() for line in lines or [] if line.strip()), None)


_DIST = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)-(?P<build>[^-]+)$")
_CONDA_META = re.compile(
    r'^(?P<file>.*/conda-meta/(?P<dist>[^/]+)\.json):\s*"url":\s*"(?P<url>[^"]*)"'
)
_DIST_INFO = re.compile(r"/(?P<name>[^/]+?)-(?P<version>[^-/]+)\.dist-info$")
_DIRECT_URL = re.compile(
    r'^(?P<dist_info>.*\.dist-info)/direct_url\.json:\s*"url":\s*"(?P<url>[^"]*)"'
)


def parse_conda_meta(lines: list[str]) -> dict[str, InstalledPackage]:
    """``grep -H -o '"url": "..."' conda-meta/*.json`` lines -> packages by name (the match
    alone: a record written on one line reads the same as conda's indented one)."""
    packages = {}
    for line in lines:
        match = _CONDA_META.match(line.strip())
        if not match:
            continue
        dist = _DIST.match(match.group("dist"))
        if dist:
            name = dist.group("name")
            packages[name] = InstalledPackage(
                name, dist.group("version"), dist.group("build"), match.group("url") or None
            )
    return packages


def parse_dist_info(
    lines: list[str], direct_urls: list[str] | None = None, reported_urls: list[str] | None = None
) -> dict[str, InstalledPackage]:
    """``*.dist-info`` directory names -> pip distributions with their full version label, and
    the URL each came from: what its ``direct_url.json`` records (``direct_urls``: ``grep -H -o
    '"url": "..."' */direct_url.json`` lines), else the URL of pip's install report
    (``reported_urls``: ``grep -o '"url": "..."'`` of it) whose file name is that distribution
    at that version."""
    urls = {
        found.group("dist_info"): found.group("url") or None
        for line in direct_urls or ()
        if (found := _DIRECT_URL.match(line.strip()))
    }
    reported = _reported_files(reported_urls or [])
    packages = {}
    for line in lines:
        match = _DIST_INFO.search(line.strip())
        if match:
            name = match.group("name").lower().replace("_", "-")
            version = match.group("version")
            url = urls.get(line.strip()) or reported.get((canonicalize_name(name), _label(version)))
            packages[name] = InstalledPackage(name, version, None, url)
    return packages


_REPORTED_URL = re.compile(r'^"url":\s*"(?P<url>[^"]+)"$')


def _reported_files(lines: list[str]) -> dict[tuple[str, str | None], str]:
    """The URLs of an install report by the distribution and version their file names say
    (wheels and sdists; a URL of no such file, a VCS checkout say, names nothing)."""
    found = {}
    for line in lines:
        match = _REPORTED_URL.match(line.strip())
        if not match:
            continue
        url = match.group("url")
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        try:
            name, version, _, _ = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            try:
                name, version = parse_sdist_filename(filename)
            except InvalidSdistFilename:
                continue
        found[(name, str(version))] = url
    return found


def _label(version: str) -> str | None:
    """A version as :class:`packaging.version.Version` writes it (``2.9.1+cpu``), which is how a
    file name and a dist-info name compare; None when it is no PEP 440 version."""
    try:
        return str(Version(version))
    except InvalidVersion:
        return None


def _nvidia_smi(sections: dict[str, list[str]]) -> SmiReport | SmiFailure | None:
    if "nvidia-smi" not in sections:
        return None
    output = sections["nvidia-smi"]
    status = _first(sections.get("nvidia-smi-status"))
    result = parse_nvidia_smi("\n".join(output))
    if isinstance(result, SmiReport) and status not in (None, "0"):
        return SmiFailure(SmiFailureKind.UNRECOGNISED, f"nvidia-smi exited {status}", output[0])
    if isinstance(result, SmiReport):
        return _with_reported_capabilities(result, sections.get("compute-cap", []))
    return result


def _with_reported_capabilities(report: SmiReport, lines: list[str]) -> SmiReport:
    """Prefer the compute capability nvidia-smi reports (drivers >= 510) to the catalog's."""
    reported = {}
    for line in lines:
        index, _, capability = line.partition(",")
        try:
            reported[int(index)] = ComputeCapability.parse(capability)
        except ValueError:
            continue
    gpus = tuple(
        replace(gpu, capability=reported[gpu.index], capability_source="reported")
        if gpu.index in reported
        else gpu
        for gpu in report.gpus
    )
    return replace(report, gpus=gpus)


def parse_host_state(lines: list[str]) -> HostState:
    """The output of :func:`host_state_script` -> a HostState. ValueError if it is not one."""
    sections = script_sections(lines)
    system = _first(sections.get("system"))
    if system is None:
        raise ValueError("not labtorch host state output (no system section)")
    conda = sections.get("conda", [])
    base_record = (
        _DIST.match(conda[1].rsplit("/", 1)[-1].removesuffix(".json")) if len(conda) > 1 else None
    )
    conda_version = base_record.group("version") if base_record else None
    prefix = _first(sections.get("env"))
    packages = None
    if prefix is not None:
        packages = parse_conda_meta(sections.get("conda-meta", [])) or parse_dist_info(
            sections.get("dist-info", []),
            sections.get("direct-url", []),
            sections.get("pip-report", []),
        )
    return HostState(
        system=system,
        machine=_first(sections.get("machine")) or "",
        glibc=(_first(sections.get("glibc")) or "").replace("glibc ", "") or None,
        is_root=_first(sections.get("uid")) == "0",
        home=_first(sections.get("home")) or "",
        python3=_first(sections.get("python3")),
        kernel_driver=_first(sections.get("kernel-driver")),
        nvidia_smi=_nvidia_smi(sections),
        conda_exe=_first(conda),
        conda_version=conda_version,
        condarc_path=_first(sections.get("condarc-path")),
        condarc=_file_text(sections.get("condarc")),
        condarc_kind=_first(sections.get("condarc-kind")),
        condarc_backup=_first(sections.get("condarc-backup")) == "yes",
        env_path=_first(sections.get("env-path")) or "",
        env_prefix=prefix,
        env_kinds=tuple(line.strip() for line in sections.get("env-kind", []) if line.strip()),
        env_packages=packages,
        env_listing=tuple(
            sorted(
                line.strip().rsplit("/", 1)[-1]
                for line in (*sections.get("conda-meta-files", []), *sections.get("dist-info", []))
                if line.strip()
            )
        ),
        probe_cache=_json_or_none(_file_text(sections.get("probe-cache"))),
        run_lock=_lock_owner(sections.get("run-lock")),
        pip_conf_path=_first(sections.get("pip-conf-path")) or "",
        pip_conf=_file_text(sections.get("pip-conf")),
        pip_conf_kind=_first(sections.get("pip-conf-kind")),
        pip_conf_backup=_first(sections.get("pip-conf-backup")) == "yes",
    )
