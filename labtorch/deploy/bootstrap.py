"""The deploy's bootstrap step: Miniforge on a host without conda, and the host as it will be
once it is there.

pyinfra prepares every operation of a host before it executes any, from the one snapshot read
before the bootstrap: the condarc, env and probe steps that follow must be planned with the conda
the bootstrap will create. :func:`after_bootstrap` is that host state (pure); the steps then
treat it like any conda.
"""

from __future__ import annotations

from dataclasses import replace

from labtorch.data.mirrors import MirrorCatalog
from labtorch.deploy.settings import Settings
from labtorch.facts.host_state import HostState
from labtorch.operations import bootstrap
from labtorch.rules.bootstrap import MINIFORGE_CONDARC, Bootstrap, bootstrap_for

NO_BOOTSTRAP = (
    "no conda found (CONDA_EXE, PATH, /opt/conda, ~/miniconda3, ~/miniforge3) and "
    "torch_conda_bootstrap is off: install Miniconda or Miniforge, set torch_conda_bootstrap = "
    "True to have labtorch install Miniforge from the mirror, or set torch_installer = 'pip' "
    "for this host"
)


def after_bootstrap(state: HostState, plan: Bootstrap, settings: Settings) -> HostState:
    """``state`` as the LabHost fact will read it once Miniforge is in ``plan.prefix``: conda
    there, the condarc labtorch owns (the new root's, which Miniforge writes with its own
    ``channels``, unless the scope names the user's file or a path, which the snapshot read
    already), no env yet, and the pip.conf of that env."""
    condarc = {}
    if state.condarc_path is None:
        condarc = {
            "condarc_path": f"{plan.prefix}/.condarc",
            "condarc": MINIFORGE_CONDARC,
            "condarc_kind": None,
            "condarc_backup": False,
        }
    env_path = f"{plan.prefix}/envs/{settings.env}"
    pip_conf = {}
    if settings.pip_scope == "env":
        pip_conf = {
            "pip_conf_path": f"{env_path}/pip.conf",
            "pip_conf": None,
            "pip_conf_kind": None,
            "pip_conf_backup": False,
        }
    return replace(
        state,
        conda_exe=plan.conda,
        conda_version=None,
        env_path=env_path,
        env_prefix=None,
        env_kinds=(),
        env_packages=None,
        env_listing=(),
        probe_cache=None,
        run_lock=None,
        **condarc,
        **pip_conf,
    )


def conda_for(
    state: HostState, settings: Settings, catalog: MirrorCatalog, mirrors: list[str]
) -> tuple[HostState, Bootstrap] | str:
    """On a host without conda: the host state the next steps plan with, and how Miniforge
    will get there; or why there can be no conda (bootstrap off, no installer for the host, no
    mirror with Miniforge). ``mirrors``: the mirror, then the fallbacks, by catalog name.

    Nothing is installed yet: the caller calls :func:`install` once every check that can still
    fail the host has passed, so that a host refused for another reason is left as it was."""
    if not settings.conda_bootstrap:
        return NO_BOOTSTRAP
    plan = bootstrap_for(state.system, state.machine, state.is_root, state.home, catalog, mirrors)
    if isinstance(plan, str):
        return plan
    return after_bootstrap(state, plan, settings), plan


def install(plan: Bootstrap | None) -> None:
    """The bootstrap operation, where :func:`conda_for` planned one (the first operation that
    changes the host: every later step needs its conda)."""
    if plan is None:
        return
    bootstrap.miniforge(
        name="Install Miniforge from the mirror",
        prefix=plan.prefix,
        installer=plan.installer,
        sources=list(plan.sources),
    )
