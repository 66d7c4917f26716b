"""The rules' inputs and outputs: what a host is, what the admin asks for, and the plan (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from labtorch.facts.nvidia_smi import SmiFailure, SmiReport

AUTO = "auto"
PLATFORMS = ("linux-64", "linux-aarch64", "osx-arm64", "osx-64", "win-64")
INSTALLERS = ("conda", "pip")
DRIVER_POLICIES = (AUTO, "strict", "minor")
CONDA_CHANNELS = (AUTO, "pytorch", "conda-forge")

PIP = "pip"
CONDA_PYTORCH = "pytorch"
CONDA_FORGE = "conda-forge"
NVIDIA = "nvidia"


class RequestError(ValueError):
    """The request itself is wrong (unknown release, variant, platform): nothing to plan."""


@dataclass(frozen=True)
class HostFacts:
    """What labtorch knows about one host.

    ``nvidia_smi`` is the parsed nvidia-smi output, or ``None`` when nvidia-smi is absent.
    ``python`` is the interpreter pip installs into (None: labtorch chooses).
    """

    platform: str = "linux-64"
    glibc: str | None = None
    macos: str | None = None
    python: str | None = None
    nvidia_smi: SmiReport | SmiFailure | None = None


@dataclass(frozen=True)
class Request:
    """What the admin asks for.

    + torch: a release (``2.3.1``) or a release line (``2.3``: its newest patch)
    + installer: ``conda`` or ``pip``
    + variant: ``auto``, ``cpu`` or a CUDA variant such as ``cu121``
    + driver_policy: ``auto`` (``strict`` when a build runs that way, else the newest build that
      CUDA minor-version compatibility runs with compiled kernels (SASS) for every GPU, with a
      warning), ``strict`` (the driver's CUDA version is at least the build's) or ``minor``
      (CUDA minor-version compatibility: any driver of the build's CUDA major, with a
      limited feature set)
    + toolkit: also install a CUDA toolkit with nvcc that matches the build
    + python: the Python of the env (None: the host's for pip, the newest supported for conda)
    + conda_channel: ``auto``, ``pytorch`` (the old channel, up to 2.5.1) or ``conda-forge``
    + mirror: the mirror for conda channels and PyPI (``tuna``)
    + wheel_mirror: the mirror of the PyTorch wheel indexes, which TUNA does not have
    """

    torch: str
    installer: str = "conda"
    variant: str = AUTO
    driver_policy: str = AUTO
    toolkit: bool = False
    python: str | None = None
    conda_channel: str = AUTO
    mirror: str = "tuna"
    wheel_mirror: str = "aliyun"


@dataclass(frozen=True)
class PackagePin:
    """One package of a plan, pinned exactly.

    ``version`` is the full version (with its local label on the pip route, ``2.3.1+cu121``);
    ``build`` the conda build string (a glob where the channel's hash decides the rest).
    ``source`` names the channel or index; ``url`` is where it is on the mirror.
    """

    name: str
    version: str
    build: str | None
    source: str
    url: str

    @property
    def spec(self) -> str:
        if self.source in (PIP, "pytorch-wheels"):
            return f"{self.name}=={self.version}"
        if self.build:
            return f"{self.name}={self.version}={self.build}"
        return f"{self.name}={self.version}"


@dataclass(frozen=True)
class Plan:
    """The answer for one host: a build and its source, or a refusal; always with reasons."""

    refused: bool
    torch_release: str
    installer: str
    platform: str
    variant: str | None = None
    cuda: str | None = None
    python: str | None = None
    packages: tuple[PackagePin, ...] = ()
    toolkit: tuple[PackagePin, ...] = ()
    channels: tuple[str, ...] = ()
    channel_urls: tuple[str, ...] = ()
    index_url: str | None = None
    wheel_index: tuple[str, str] | None = None
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def torch(self) -> PackagePin | None:
        return next((p for p in self.packages if p.name in ("torch", "pytorch")), None)

    def summary(self) -> str:
        """The decision in one line: the build, its pins, and the reason that chose it."""
        if self.refused:
            return f"refused: {self.reasons[-1] if self.reasons else 'no reason given'}"
        cuda = f"CUDA {self.cuda}" if self.cuda else "no CUDA"
        pins = " ".join(pin.spec for pin in (*self.packages, *self.toolkit))
        chosen = next(
            (r for r in self.reasons if r.startswith((f"{self.variant}:", "CPU build"))),
            self.reasons[0] if self.reasons else "",
        )
        line = f"{self.variant} ({cuda}), Python {self.python}: {pins}; {chosen}"
        return line + (f"; warning: {self.warnings[0]}" if self.warnings else "")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["packages"] = [{**asdict(p), "spec": p.spec} for p in self.packages]
        data["toolkit"] = [{**asdict(p), "spec": p.spec} for p in self.toolkit]
        return data
