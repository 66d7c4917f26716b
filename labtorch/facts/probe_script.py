"""The probe that runs on each host with the target env's own python, after the install.

It only gathers facts and prints them as one JSON line; the verdict is decided on the controller
(``labtorch.rules.verdict``). It must run on whatever Python the env has, so: stdlib only, no syntax
newer than Python 3.7, and no labtorch import. ``labtorch.facts.pyinfra_facts.TorchProbe``
sends this file's text.
"""

import contextlib
import glob
import json
import os
import sys
import warnings

MARK = "LABTORCH_PROBE "
# The last result is kept in the env, with what it depends on (the env's packages, the loaded
# driver), so that a rerun that finds both unchanged need not probe again. The loaded driver is
# given after --keep, as the host state read it: one reading, so the two cannot disagree.
CACHE = ".labtorch-probe.json"
KEEP = "--keep"
FAMILY = ("torch", "torchvision", "torchaudio")
CONDA_NAMES = {"torch": "pytorch"}
PIP_REPORT = "labtorch-pip-report.json"


def conda_origin(prefix, name):
    """Channel and URL of a package from the env's conda-meta, or None."""
    pattern = os.path.join(prefix, "conda-meta", CONDA_NAMES.get(name, name) + "-*.json")
    for path in sorted(glob.glob(pattern)):
        with open(path) as handle:
            record = json.load(handle)
        if record.get("name") == CONDA_NAMES.get(name, name):
            channel, url = record.get("channel"), record.get("url")
            return {"installer": "conda", "channel": channel, "url": url}
    return None


def pip_origin(prefix, name):
    """Where pip took a distribution from: direct_url.json, else the report labtorch asked pip
    to write at install time (pip records no index URL of its own)."""
    try:
        from importlib import metadata
    except ImportError:
        return None
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    direct = dist.read_text("direct_url.json")
    if direct:
        return {"installer": "pip", "channel": None, "url": json.loads(direct).get("url")}
    report_path = os.path.join(prefix, PIP_REPORT)
    if os.path.exists(report_path):
        with open(report_path) as handle:
            report = json.load(handle)
        for item in report.get("install", []):
            if item.get("metadata", {}).get("name", "").lower() == name:
                return {"installer": "pip", "channel": None, "url": item["download_info"]["url"]}
    return {"installer": "pip", "channel": None, "url": None}


def versions():
    found = {}
    for name in FAMILY:
        try:
            module = __import__(name)
        except Exception as exc:  # a companion built for another torch fails at import
            found[name] = {"version": None, "error": f"{type(exc).__name__}: {exc}"}
            continue
        found[name] = {"version": getattr(module, "__version__", None), "error": None}
    return found


def matmul(torch, device):
    try:
        a = torch.ones(2, 2, device=device)
        value = (a @ a).sum().item()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok" if value == 8.0 else f"wrong result {value!r}"


def gpu_facts(torch):
    facts = {"cuda": torch.version.cuda, "cudnn": None, "available": False, "arch_list": []}
    with contextlib.suppress(Exception):
        facts["cudnn"] = torch.backends.cudnn.version()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            facts["available"] = bool(torch.cuda.is_available())
            facts["arch_list"] = list(torch.cuda.get_arch_list())
        except Exception as exc:
            facts["error"] = f"{type(exc).__name__}: {exc}"
    facts["warnings"] = [str(w.message).strip() for w in caught]
    facts["visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = []
    if facts["available"]:
        for index in range(torch.cuda.device_count()):
            devices.append(device_facts(torch, index))
    facts["devices"] = devices
    return facts


def device_facts(torch, index):
    """One device's name, capability and a matmul on it. A device that cannot be queried (torch
    counts MIG hosts' GPUs through NVML, CUDA shows one MIG instance) is recorded, not fatal."""
    try:
        major, minor = torch.cuda.get_device_capability(index)
        name = torch.cuda.get_device_name(index)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        return {"index": index, "name": None, "capability": None, "matmul": error}
    return {
        "index": index,
        "name": name,
        "capability": f"{major}.{minor}",
        "matmul": matmul(torch, f"cuda:{index}"),
    }


def listing(prefix):
    """The env's package records: conda-meta files and dist-info directories, by name."""
    names = [os.path.basename(p) for p in glob.glob(os.path.join(prefix, "conda-meta", "*.json"))]
    pattern = os.path.join(prefix, "lib", "python3*", "site-packages", "*.dist-info")
    return sorted(names + [os.path.basename(p) for p in glob.glob(pattern)])


def main():
    prefix = sys.prefix
    result = {"prefix": prefix, "python": "{}.{}".format(*sys.version_info[:2])}
    result["listing"] = listing(prefix)
    result["packages"] = versions()
    result["origins"] = {
        name: conda_origin(prefix, name) or pip_origin(prefix, name) for name in FAMILY
    }
    if result["packages"]["torch"]["version"] is not None:
        import torch

        result["gpu"] = gpu_facts(torch)
        result["cpu_matmul"] = matmul(torch, "cpu")
    # Only the deploy keeps the result: an audit must leave every env as it found it.
    keep = KEEP in sys.argv[1:]
    if keep:
        given = sys.argv[sys.argv.index(KEEP) + 1 :]
        result["kernel_driver"] = (given[0] if given else "") or None
    text = json.dumps(result, sort_keys=True)
    if keep:
        with contextlib.suppress(OSError), open(os.path.join(prefix, CACHE), "w") as handle:
            handle.write(text + "\n")
    sys.stdout.write(MARK + text + "\n")


if __name__ == "__main__":
    main()
