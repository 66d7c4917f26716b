"""bootstrap: Miniforge from the mirror, on a host that has no conda."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation

from labtorch.rules.bootstrap import Bootstrap, install_script


@operation()
def miniforge(
    prefix: str,
    installer: str,
    sources: list[str],
    conda: str | None = None,
):
    """
    Install Miniforge in ``prefix`` when the host has no conda: downloaded from the mirror's
    Miniforge release (then each fallback's) into a temporary directory, its sha256 checked
    against the release's published ``.sha256`` before it runs, installed in batch mode. A conda
    that exists is never touched; a failed download or checksum leaves nothing behind, a failed
    install removes the prefix it made, and the host fails with the reason.

    + prefix: where Miniforge goes (``/opt/conda`` as root, ``~/miniforge3`` otherwise)
    + installer: the installer's file name for the host (``Miniforge3-Linux-x86_64.sh``)
    + sources: the release directories to try, in order
    + conda: the conda the LabHost fact found, if any (then nothing is done)

    **Example:**

    .. code:: python

        bootstrap.miniforge(prefix="/opt/conda", installer="Miniforge3-Linux-x86_64.sh",
                            sources=[f"{mirror}/github-release/conda-forge/miniforge/LatestRelease"])
    """
    if conda is not None:
        host.noop(f"conda found at {conda}: no Miniforge installed")
        return
    yield StringCommand(install_script(Bootstrap(prefix, installer, tuple(sources))))
