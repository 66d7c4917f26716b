"""What ``labtorch lock`` reads from each host: a pyinfra deploy file that runs no operation.

Each host's LabHost fact (the deploy's own snapshot, one command per host) is read with the
host's settings, planned as the deploy plans it, and written as one JSON file per host into
``$LABTORCH_LOCK_COLLECT``: the lock class of its plan (or why it has none), its glibc, conda
version and mirror, and its lock directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pyinfra import host

from labtorch.deploy.locks import plan_of
from labtorch.deploy.pytorch import check_inventory_settings, read_host_state
from labtorch.deploy.settings import settings_from
from labtorch.rules.locks import lock_class

COLLECT_ENV = "LABTORCH_LOCK_COLLECT"


def collect() -> None:
    check_inventory_settings(host.inventory)
    settings = settings_from(host.data.dict())
    record: dict = {"host": host.name, "groups": sorted(host.groups), "lock_dir": settings.lock_dir}
    state = read_host_state(settings)
    if state is None:
        record["refusal"] = "the host's facts could not be read"
    else:
        plan, mirror, fallbacks = plan_of(state, settings)
        record.update(glibc=state.glibc, conda_version=state.conda_version, mirror=mirror)
        if isinstance(plan, str):
            record["refusal"] = plan
        elif (
            settings.installer == "conda"
            and state.conda_exe is None
            and not settings.conda_bootstrap
        ):
            # With torch_conda_bootstrap (the default) the deploy gives such a host Miniforge
            # before its env: it is planned, and locked, as any conda host.
            record["refusal"] = "no conda found"
        else:
            record["inputs"] = lock_class(plan).inputs()
            record["fallbacks"] = [lock_class(fallback).inputs() for fallback in fallbacks]
    directory = Path(os.environ[COLLECT_ENV])
    (directory / f"{host.name}.json").write_text(json.dumps(record))


# pyinfra runs this file as a deploy; imported for anything else, it does nothing.
if os.environ.get(COLLECT_ENV):
    collect()
