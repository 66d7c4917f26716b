"""conda: the condarc labtorch owns, and the env that holds exactly the plan's pins."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from labtorch.facts.host_state import InstalledPackage
from labtorch.operations.cache import through_cache
from labtorch.operations.util.condarc import CondaMirrorConfig, condarc_change
from labtorch.operations.util.files import move_aside, update_owned_file
from labtorch.operations.util.shell import first_that_succeeds, shell_command
from labtorch.rules.commands import Arg, conda_install, conda_remove_offline
from labtorch.rules.envdiff import CREATE, OK, REPLACE, env_diff
from labtorch.rules.model import PackagePin
from labtorch.rules.provenance import channel_of


@operation()
def condarc(
    path: str,
    config: CondaMirrorConfig,
    current: str | None,
    has_backup: bool,
    kind: str | None = None,
):
    """
    Point conda at the mirror in the condarc labtorch owns, keeping every other key.

    + path: the condarc file (the conda root's ``.condarc``, ``~/.condarc`` or another path)
    + config: the channels, ``default_channels`` and ``custom_channels`` entries to set
    + current: the file's text as the LabHost fact read it (None: no file)
    + has_backup: whether labtorch's one-time backup of the user's original already exists
    + kind: what is at ``path`` when it is not a file (``directory``): the host fails

    **Example:**

    .. code:: python

        conda.condarc(path="/opt/conda/.condarc", config=config, current=state.condarc,
                      has_backup=state.condarc_backup)
    """
    yield from update_owned_file(
        path,
        lambda: condarc_change(current, config),
        current,
        has_backup,
        f"{path} already points conda at the mirror",
        kind,
    )


@operation()
def env(
    conda: str,
    prefix: str,
    pins: list[PackagePin],
    channels: list[str],
    python: str,
    cuda: str | None,
    installed: dict[str, InstalledPackage] | None,
    fallback_channels: list[list[str]] | None = None,
    accepted: list[str] | None = None,
    foreign: bool = False,
    cache: str | None = None,
    channel_urls: list[str] | None = None,
):
    """
    Create or repair the conda env at ``prefix`` so that it holds exactly the plan's pins.

    Installs with ``--override-channels`` and only the plan's channels (resolved to the mirror
    by the condarc labtorch owns), so nothing is fetched upstream; when that install fails, the
    same pins from each fallback mirror's channel URLs in turn. A matching env is left alone;
    a package, pinned or a dependency, that came from anywhere but an accepted mirror is
    reinstalled from the mirror; a directory at ``prefix`` that is not an env is moved aside,
    never deleted; other envs are never touched.

    + conda: the conda executable
    + prefix: the env's directory (by path, not by name: a user's ``envs_dirs`` must not move it)
    + pins: the plan's packages and toolkit, with exact versions and build strings
    + channels: the plan's channel names, in priority order
    + python: the env's Python version
    + cuda: the build's CUDA version (None for a CPU build)
    + installed: the env's packages as the LabHost fact read them (None: no env)
    + fallback_channels: per fallback mirror, the plan's channels as URLs on it
    + accepted: URL prefixes the env's packages may come from (None: not checked)
    + foreign: a directory that is not a conda env is at ``prefix``
    + cache: the lab cache's URL when the first attempt goes through it: the attempt runs
      only when the cache answers, and the next (the mirror itself) follows when not
    + channel_urls: the plan's channels as URLs on the mirror, in the order of ``channels``:
      where a dependency from elsewhere is reinstalled from
    """
    verdict = env_diff(pins, installed, accepted, foreign=foreign)
    if verdict.action == OK:
        host.noop(f"conda env {prefix} already holds {', '.join(p.spec for p in pins)}")
        return
    if verdict.action == REPLACE:
        yield move_aside(prefix)
    if verdict.remove:
        yield shell_command(conda_remove_offline(Arg(conda), prefix, verdict.remove, cuda))
    creating = verdict.action in (CREATE, REPLACE)
    verb = "create" if creating else "install"
    attempts = [
        shell_command(
            conda_install(
                Arg(conda),
                verb,
                ("-p", prefix),
                attempt,
                _specs(pins, verdict.reinstall, attempt_urls, installed or {}),
                python=python if creating else None,
                unattended=True,
                cuda_override=cuda,
                force_reinstall=bool(verdict.reinstall),
            )
        )
        for attempt, attempt_urls in (
            (
                channels,
                {
                    **dict(zip(channels, channel_urls or (), strict=False)),
                    **{pin.source: pin.url for pin in pins},
                },
            ),
            *((urls, dict(zip(channels, urls, strict=False))) for urls in fallback_channels or ()),
        )
    ]
    if cache:
        attempts[0] = through_cache(attempts[0], cache)
    yield first_that_succeeds(attempts)


def _specs(
    pins: list[PackagePin],
    reinstall: tuple[str, ...],
    urls: dict[str, str],
    installed: dict[str, InstalledPackage],
) -> list[str]:
    """The pins' specs; those to reinstall bound to their channel's URL on the mirror
    (``https://.../conda-forge::pytorch=...``): conda matches such a spec only with a record of
    that channel, so it cannot keep the installed one that came from elsewhere. A dependency to
    reinstall is bound, by name alone, to the plan's channel its URL names (``conda-forge`` of
    ``https://conda.anaconda.org/conda-forge/...``), else to the first: the solve picks the
    version the mirror has."""
    specs = [
        f"{urls.get(pin.source, pin.url)}::{pin.spec}" if pin.name in reinstall else pin.spec
        for pin in pins
    ]
    pinned = {pin.name for pin in pins}
    first = next(iter(urls.values()), None)
    for name in reinstall:
        if name not in pinned:
            channel = channel_of(installed[name].url or "")
            specs.append(f"{urls.get(channel or '', first)}::{name}")
    return specs
