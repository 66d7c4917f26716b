"""An env's history, on the host: record its exact state, list the states kept, put one back.

Sent to each host and run there with any Python 3 it has (the conda root's, ``python3``, the
env's own): stdlib only, no syntax newer than Python 3.7, no labtorch import.
``labtorch.facts.env_history`` sends this file's text and parses what it prints.

    python - record  PREFIX KIND KEEP RUN REASON [CONDA]
    python - restore PREFIX KIND KEEP RUN TARGET_ID [CONDA]

KIND is ``conda`` or ``pip``. Each state is one JSON file, one line, in ``PREFIX/.labtorch-history``
named by its number (``0007.json``); the newest KEEP are kept. A state holds:

- ``id``, ``time`` (UTC), ``run`` (the labtorch run that recorded it), ``reason``, ``kind``;
- ``packages``: conda: every package of ``conda list --explicit --md5`` (name, version, build,
  URL, md5), which ``conda install --file`` reinstalls exactly; pip: every distribution with its
  version and, where known, the URL and sha256 of the file it was installed from (pip's install
  report that labtorch keeps, ``direct_url.json``, or an older state), the hash-checked
  requirements that put it back;
- ``conda_revision``: the env's revision in ``conda-meta/history`` (``conda list --revisions``);
- ``torch``: torch's version in that state.

``restore`` records the state the env is in first (so a rollback can be rolled back), then puts
the state TARGET_ID back: conda with ``conda install --revision`` to the recorded revision, or,
when that does not give exactly the recorded packages, the recorded explicit list (then removing
what the state did not have); pip by uninstalling what the state did not have and installing
the recorded files with ``--require-hashes``. It checks the result against the state, prints
``LABTORCH_ROLLBACK <json>`` and exits 0, or prints one ``labtorch: <reason>`` line and exits 1.
"""

import argparse
import contextlib
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

DIRECTORY = ".labtorch-history"
PIP_REPORT = "labtorch-pip-report.json"
MARK = "LABTORCH_ROLLBACK "
_ARCHIVE = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)-(?P<build>[^-]+?)(\.conda|\.tar\.bz2)$")


class Failure(Exception):
    """What went wrong, for the one ``labtorch:`` line."""


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _run(command, what):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        said = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "")
        raise Failure(f"{what} failed (exit {done.returncode}): {said}")
    return done.stdout


# ---- the state of an env ---------------------------------------------------------------------


def conda_revision(prefix):
    """The env's last revision number, as ``conda list --revisions`` counts them; None without
    a history."""
    try:
        with open(os.path.join(prefix, "conda-meta", "history")) as handle:
            heads = sum(1 for line in handle if re.match(r"^==>\s*(.+?)\s*<==", line.strip()))
    except OSError:
        return None
    return heads - 1 if heads else None


def _explicit(prefix, conda, algorithm):
    """URL -> hash of ``conda list --explicit --<algorithm>`` (conda leaves out a hash it does
    not know; conda older than 24.9 has no ``--sha256``: no hashes)."""
    command = [conda, "list", "-p", prefix, "--explicit", "--" + algorithm]
    try:
        listing = _run(command, "conda list --explicit")
    except Failure:
        if algorithm == "md5":
            raise
        return {}
    found = {}
    for line in listing.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and line != "@EXPLICIT":
            url, _, digest = line.partition("#")
            found[url] = digest or None
    return found


def conda_packages(prefix, conda):
    """Every package of the env as ``conda list --explicit`` lists them, with its md5 and, where
    conda knows it, its sha256."""
    md5s = _explicit(prefix, conda, "md5")
    sha256s = _explicit(prefix, conda, "sha256") if md5s and None in md5s.values() else {}
    packages = []
    for url, md5 in md5s.items():
        match = _ARCHIVE.match(url.rsplit("/", 1)[-1])
        if not match:
            raise Failure("conda list --explicit printed an unexpected URL: " + url)
        packages.append(
            {
                "name": match.group("name"),
                "version": match.group("version"),
                "build": match.group("build"),
                "url": url,
                "md5": md5,
                "sha256": sha256s.get(url),
            }
        )
    return packages


def _metadata(path):
    name = version = None
    try:
        with open(os.path.join(path, "METADATA"), encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break
                if line.startswith("Name:") and name is None:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("Version:") and version is None:
                    version = line.split(":", 1)[1].strip()
    except OSError:
        return None
    return (name, version) if name and version else None


def _direct_url(path):
    try:
        with open(os.path.join(path, "direct_url.json")) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    hashes = (data.get("archive_info") or {}).get("hashes") or {}
    legacy = (data.get("archive_info") or {}).get("hash") or ""
    sha256 = hashes.get("sha256") or (legacy[7:] if legacy.startswith("sha256=") else None)
    return (data.get("url"), sha256) if data.get("url") and sha256 else None


def _reported(prefix):
    """(name, version) -> (url, sha256) from the install report labtorch asks pip to write."""
    try:
        with open(os.path.join(prefix, PIP_REPORT)) as handle:
            report = json.load(handle)
    except (OSError, ValueError):
        return {}
    found = {}
    for item in report.get("install", []):
        meta = item.get("metadata") or {}
        info = item.get("download_info") or {}
        hashes = (info.get("archive_info") or {}).get("hashes") or {}
        if meta.get("name") and info.get("url") and hashes.get("sha256"):
            key = (normalize(meta["name"]), meta.get("version"))
            found[key] = (info["url"], hashes["sha256"])
    return found


def pip_packages(prefix, states):
    """Every distribution of the venv, with the file it came from where that is known."""
    known = {}
    for state in states:
        for package in state.get("packages") or []:
            if package.get("url") and package.get("sha256"):
                key = (normalize(package["name"]), package["version"])
                known[key] = (package["url"], package["sha256"])
    known.update(_reported(prefix))
    packages = []
    pattern = os.path.join(prefix, "lib", "python3*", "site-packages", "*.dist-info")
    for path in sorted(glob.glob(pattern)):
        found = _metadata(path)
        if found is None:
            continue
        name, version = found
        url, sha256 = _direct_url(path) or known.get((normalize(name), version)) or (None, None)
        packages.append({"name": name, "version": version, "url": url, "sha256": sha256})
    return packages


def torch_version(kind, packages):
    wanted = "pytorch" if kind == "conda" else "torch"
    return next((p["version"] for p in packages if normalize(p["name"]) == wanted), None)


def current_state(prefix, kind, conda, states):
    if kind == "conda":
        packages = conda_packages(prefix, conda)
        return {"packages": packages, "conda_revision": conda_revision(prefix)}
    return {"packages": pip_packages(prefix, states), "conda_revision": None}


def fingerprint(kind, packages):
    """What must be equal for two states to be the same env: conda's exact builds; pip's
    distributions and versions."""
    if kind == "conda":
        return sorted("{name}-{version}-{build}".format(**p) for p in packages)
    return sorted(normalize(p["name"]) + "==" + p["version"] for p in packages)


# ---- the history directory -------------------------------------------------------------------


def load_states(prefix):
    states = []
    for path in sorted(glob.glob(os.path.join(prefix, DIRECTORY, "[0-9]*.json"))):
        try:
            with open(path) as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and isinstance(state.get("id"), int):
            states.append(state)
    return sorted(states, key=lambda state: state["id"])


def save_state(prefix, kind, keep, run, reason, state, states, spare=None):
    """Write ``state`` as the next number; then drop the oldest beyond ``keep`` (never
    ``spare``, the state a rollback is putting back)."""
    directory = os.path.join(prefix, DIRECTORY)
    os.makedirs(directory, exist_ok=True)
    number = max([s["id"] for s in states] + [0]) + 1
    entry = {
        "id": number,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": run,
        "reason": reason,
        "kind": kind,
        "torch": torch_version(kind, state["packages"]),
        "conda_revision": state["conda_revision"],
        "packages": state["packages"],
    }
    handle, temporary = tempfile.mkstemp(prefix=".new-", dir=directory)
    with os.fdopen(handle, "w") as stream:
        stream.write(json.dumps(entry, sort_keys=True) + "\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, os.path.join(directory, f"{number:04d}.json"))
    older = [s["id"] for s in states if s["id"] != spare]
    for old in older[: max(0, len(older) + 1 + (spare is not None) - keep)]:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(directory, f"{old:04d}.json"))
    return entry


def record(args):
    states = load_states(args.prefix)
    state = current_state(args.prefix, args.kind, args.conda, states)
    entry = save_state(args.prefix, args.kind, args.keep, args.run, args.reason, state, states)
    print("recorded state {} of {}: torch {}".format(entry["id"], args.prefix, entry["torch"]))


# ---- putting a state back --------------------------------------------------------------------


def _restore_conda(args, target, states):
    conda, prefix = args.conda, args.prefix
    want = fingerprint("conda", target["packages"])
    revision = target.get("conda_revision")
    latest = conda_revision(prefix)
    if revision is not None and latest is not None and revision <= latest:
        channels = []
        for package in target["packages"]:
            channel = package["url"].rsplit("/", 2)[0]
            if channel not in channels:
                channels += [channel]
        command = [conda, "install", "-p", prefix, "--revision", str(revision), "-y", "-q"]
        command += ["--override-channels"] + [w for c in channels for w in ("-c", c)]
        with contextlib.suppress(Failure):
            _run(command, f"conda install --revision {revision}")
        if fingerprint("conda", conda_packages(prefix, conda)) == want:
            return f"conda install --revision {revision}"
    handle, explicit = tempfile.mkstemp(prefix="labtorch-explicit-", suffix=".txt")
    with os.fdopen(handle, "w") as stream:
        stream.write("@EXPLICIT\n")
        for package in target["packages"]:
            digest = package.get("md5") or package.get("sha256")
            url = package["url"] + ("#" + digest if digest else "")
            stream.write(url + "\n")
    try:
        _run([conda, "install", "-p", prefix, "--file", explicit, "-y", "-q"], "conda install")
    finally:
        os.remove(explicit)
    names = {p["name"] for p in target["packages"]}
    extra = sorted({p["name"] for p in conda_packages(prefix, conda)} - names)
    if extra:
        command = [conda, "remove", "-p", prefix, "--offline", "-y", "-q", *extra]
        _run(command, "conda remove")
    return "the recorded explicit list (conda install --file)"


def _restore_pip(args, target, states):
    prefix = args.prefix
    python = os.path.join(prefix, "bin", "python")
    current = {normalize(p["name"]): p["version"] for p in pip_packages(prefix, states)}
    names = {normalize(p["name"]) for p in target["packages"]}
    unknown = [
        "{}=={}".format(p["name"], p["version"])
        for p in target["packages"]
        if not (p.get("url") and p.get("sha256"))
        and current.get(normalize(p["name"])) != p["version"]
    ]
    if unknown:
        raise Failure(
            "state {} cannot be put back: the file of {} is not known (no hash recorded)".format(
                target["id"], ", ".join(unknown)
            )
        )
    extra = sorted(name for name in current if name not in names)
    if extra:
        _run([python, "-m", "pip", "uninstall", "-y", "-q", *extra], "pip uninstall")
    changed = [
        p
        for p in target["packages"]
        if p.get("url") and p.get("sha256") and current.get(normalize(p["name"])) != p["version"]
    ]
    if changed:
        handle, requirements = tempfile.mkstemp(prefix="labtorch-requirements-", suffix=".txt")
        with os.fdopen(handle, "w") as stream:
            for p in changed:
                # The hash also in the URL's fragment: pip then keeps it in direct_url.json,
                # where the next state finds it (the lab's pip, 23.0.1, keeps no hash of a
                # direct reference that has none in its URL).
                url = p["url"].split("#", 1)[0] + "#sha256=" + p["sha256"]
                stream.write("{} @ {} --hash=sha256:{}\n".format(p["name"], url, p["sha256"]))
        command = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        command += ["--no-deps", "--require-hashes", "--report", os.path.join(prefix, PIP_REPORT)]
        try:
            _run([*command, "-r", requirements], "pip install --require-hashes")
        finally:
            os.remove(requirements)
    return "the recorded hash-checked requirements (pip install --require-hashes)"


def restore(args):
    states = load_states(args.prefix)
    target = next((s for s in states if s["id"] == args.target), None)
    if target is None:
        kept = ", ".join(str(s["id"]) for s in states) or "none"
        raise Failure(f"no state {args.target} recorded in {args.prefix} (kept: {kept})")
    if target.get("kind") != args.kind:
        raise Failure(
            "state {} is of a {} env, not {}".format(args.target, target["kind"], args.kind)
        )
    before = current_state(args.prefix, args.kind, args.conda, states)
    result = {"target": target["id"], "from": torch_version(args.kind, before["packages"])}
    result["to"] = target.get("torch")
    if fingerprint(args.kind, before["packages"]) == fingerprint(args.kind, target["packages"]):
        result.update(how=None, recorded=None)
        print(MARK + json.dumps(result, sort_keys=True))
        return
    reason = "before the rollback to state {}".format(target["id"])
    saved = save_state(
        args.prefix, args.kind, args.keep, args.run, reason, before, states, spare=target["id"]
    )
    restoring = _restore_conda if args.kind == "conda" else _restore_pip
    how = restoring(args, target, [*states, saved])
    after = current_state(args.prefix, args.kind, args.conda, load_states(args.prefix))
    want, have = (
        fingerprint(args.kind, target["packages"]),
        fingerprint(args.kind, after["packages"]),
    )
    if have != want:
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        raise Failure(
            "after {} the env is not state {}: missing {}; not in the state {}".format(
                how, target["id"], ", ".join(missing) or "nothing", ", ".join(extra) or "nothing"
            )
        )
    result.update(how=how, recorded=saved["id"])
    print(MARK + json.dumps(result, sort_keys=True))


def main():
    parser = argparse.ArgumentParser(prog="labtorch-history")
    commands = parser.add_subparsers(dest="command")
    for name in ("record", "restore"):
        command = commands.add_parser(name)
        command.add_argument("prefix")
        command.add_argument("kind", choices=("conda", "pip"))
        command.add_argument("keep", type=int)
        command.add_argument("run")
        if name == "record":
            command.add_argument("reason")
        else:
            command.add_argument("target", type=int)
        command.add_argument("conda", nargs="?")
    args = parser.parse_args()
    try:
        (record if args.command == "record" else restore)(args)
    except Failure as failure:
        sys.stderr.write(f"labtorch: {failure}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
