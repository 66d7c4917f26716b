"""The pyinfra deploy: facts, then the plan from the rules, then condarc, pip and the env.

Only this module reads ``host.data``. A host that the rules refuse, or whose facts cannot be
read, fails alone with its reason; bad settings fail the whole run before any host is touched.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.inventory import Inventory

from labtorch.data.compat import load_compat
from labtorch.operations.util.condarc import mirror_config
from labtorch.rules.envdiff import OK, env_verdict
from labtorch.facts.pyinfra_facts import LabHost
from labtorch.rules.fallback import PipSource, usable_fallbacks
from labtorch.deploy.inputs import (
    catalog_for,
    expectation_for,
    fallback_requests,
    host_facts,
    request_for,
    reusable_probe,
)
from labtorch.data.mirrors import Mirror, MirrorCatalog
from labtorch.operations import checks, conda, pip
from labtorch.report.model import fleet_report, host_record, render_table
from labtorch.report.html import render_html
from labtorch.rules.plan import PackagePin, Plan, Request, RequestError, plan_for_host
from labtorch.deploy.settings import PREFIX, Settings, SettingsError, check_keys, settings_from
from labtorch.facts.host_state import HostState

REPORT_DIR_ENV = "LABTORCH_REPORT_DIR"
_checked: set[int] = set()
# What the deploy learnt per host, for the fleet report written when the pyinfra run ends.
_fleet: dict[str, dict] = {}


def _where_group_sets(group: str, key: str) -> str:
    """The group_data file that sets ``key`` for ``group``, else the inventory's group."""
    path = Path("group_data") / f"{group}.py"
    if path.is_file() and key in path.read_text(encoding="utf-8"):
        return str(path)
    return f"group {group} of the inventory"


def _check_every_source(inventory: Inventory) -> None:
    check_keys(inventory.get_override_data(), "pyinfra --data")
    for group in ("all", *inventory.groups):
        data = inventory.get_data() if group == "all" else inventory.get_group_data(group)
        for key in (k for k in data if k.startswith(PREFIX)):
            check_keys({key: data[key]}, _where_group_sets(group, key))
    for target in inventory:
        check_keys(target.host_data, f"inventory host {target.name}")


def check_inventory_settings(inventory: Inventory) -> None:
    """Check every ``torch_*`` key of every data source, once per run.

    A bad setting raises PyinfraError while pyinfra prepares, so the run stops before any host
    is touched, with a message that names the file (or host) and the key.
    """
    if id(inventory) in _checked:
        return
    try:
        _check_every_source(inventory)
    except SettingsError as exc:
        raise PyinfraError(f"labtorch settings: {exc}") from None
    _checked.add(id(inventory))


def _plan(
    snapshot: HostState, settings: Settings, request: Request, catalog: MirrorCatalog
) -> Plan | str:
    """The plan for this host, or the reason it has none."""
    try:
        plan = plan_for_host(host_facts(snapshot, settings), request, load_compat(), catalog)
    except RequestError as exc:
        return str(exc)
    if plan.refused:
        return plan.reasons[-1]
    return plan


def _fallbacks(
    snapshot: HostState,
    settings: Settings,
    request: Request,
    catalog: MirrorCatalog,
    plan: Plan,
) -> list[Plan]:
    """The fallback mirrors' plans that pin exactly what ``plan`` pins; the others are named."""
    candidates = {
        name: _plan(snapshot, settings, fallback, catalog)
        for name, fallback in fallback_requests(settings, request, catalog).items()
    }
    usable, skipped = usable_fallbacks(plan, candidates)
    for reason in skipped:
        logger.warning(f"[{host.name}] {reason}")
    return usable


def _conda_steps(
    snapshot: HostState,
    plan: Plan,
    fallbacks: list[Plan],
    pins: list[PackagePin],
    mirror: Mirror,
    catalog: MirrorCatalog,
) -> None:
    conda.condarc(
        name="Point conda at the mirror",
        path=snapshot.condarc_path,
        config=mirror_config(plan, mirror, catalog),
        current=snapshot.condarc,
        has_backup=snapshot.condarc_backup,
    )
    conda.env(
        name="Install torch into the conda env",
        conda=snapshot.conda_exe,
        prefix=snapshot.env_path,
        pins=pins,
        channels=list(plan.channels),
        python=plan.python,
        cuda=plan.cuda,
        installed=snapshot.env_packages,
        fallback_channels=[list(fallback.channel_urls) for fallback in fallbacks],
    )


def _record(**values) -> None:
    entry = _fleet.setdefault(host.name, {"host": host, "inventory": host.inventory})
    entry.update(values)


def write_fleet_report() -> None:
    """At the end of the run: the fleet table on stderr (stdout may be pyinfra's JSON), and the
    report as JSON and as an HTML page in $LABTORCH_REPORT_DIR (default ./.labtorch)."""
    if not _fleet:
        return
    inventory = next(iter(_fleet.values()))["inventory"]
    records = []
    for target in inventory:
        entry = _fleet.get(target.name, {})
        probe = checks.probe_results.get(target.name, {})
        records.append(
            host_record(
                target.name,
                list(target.groups),
                entry.get("snapshot"),
                entry.get("plan"),
                entry.get("refusal", None if entry else "the host could not be reached"),
                probe.get("probe"),
                probe.get("verdict"),
            )
        )
    report = fleet_report(records)
    directory = Path(os.environ.get(REPORT_DIR_ENV) or ".labtorch")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (directory / "report.html").write_text(render_html(report), encoding="utf-8")
    print("\n--> labtorch fleet report\n" + render_table(report), file=sys.stderr)
    print(f"    written to {directory / 'report.json'} and report.html", file=sys.stderr)


def _refuse(step: str, reason: str) -> None:
    _record(refusal=reason)
    checks.refuse(name=step, reason=reason)


@deploy("labtorch: PyTorch")
def install_pytorch() -> None:
    """Bring this host to the build the rules choose for it, through the mirror, and prove it."""
    check_inventory_settings(host.inventory)
    if not _fleet:
        atexit.register(write_fleet_report)
    _record()
    settings = settings_from(host.data.dict())
    snapshot = host.get_fact(
        LabHost,
        installer=settings.installer,
        env=settings.env,
        condarc_scope=settings.condarc_scope,
        venv_root=settings.venv_root,
        pip_scope=settings.pip_scope,
    )
    if snapshot is None:
        _refuse("Read host facts", "the host's facts could not be read")
        return
    _record(snapshot=snapshot)
    request = request_for(settings)
    catalog = catalog_for(settings)
    mirror = catalog[request.mirror]
    plan = _plan(snapshot, settings, request, catalog)
    if isinstance(plan, str):
        _refuse("Plan PyTorch", plan)
        return
    _record(plan=plan)
    if settings.installer == "conda" and snapshot.conda_exe is None:
        _refuse(
            "Find conda",
            "no conda found (CONDA_EXE, PATH, /opt/conda, ~/miniconda3, ~/miniforge3); "
            "install Miniconda or Miniforge, or set torch_installer = 'pip' for this host",
        )
        return
    pins = [*plan.packages, *plan.toolkit]
    fallbacks = _fallbacks(snapshot, settings, request, catalog, plan)
    if settings.installer == "conda":
        _conda_steps(snapshot, plan, fallbacks, pins, mirror, catalog)
    else:
        pipenv.venv(
            name="Install torch into the venv",
            python="python3",
            prefix=snapshot.env_path,
            pins=pins,
            index_url=plan.index_url,
            wheel_index=list(plan.wheel_index) if plan.wheel_index else None,
            installed=snapshot.env_packages,
            fallbacks=[PipSource.of(fallback) for fallback in fallbacks],
        )
    pipenv.pip_index(
        name="Point pip at the mirror",
        path=snapshot.pip_conf_path,
        index_url=mirror.pypi,
        current=snapshot.pip_conf,
        has_backup=snapshot.pip_conf_backup,
    )
    unchanged = env_verdict(pins, snapshot.env_packages).action == OK
    checks.verify(
        name="Prove torch works",
        python=f"{snapshot.env_path}/bin/python",
        expected=expectation_for(plan, fallbacks, snapshot.nvidia_smi),
        reused=reusable_probe(snapshot) if unchanged and settings.probe == "on-change" else None,
        kernel_driver=snapshot.kernel_driver,
    )
