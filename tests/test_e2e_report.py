"""The fleet report and ``labtorch report`` end to end, on a simulated lab of its own.

The tests run in order: a deploy writes report.json and report.html with each host's status;
torch replaced by its CPU build by hand on the Pascal host is flagged by the audit, on that host
alone; the next deploy repairs it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml
from labhelpers import REPO, running_lab, ssh
from labhelpers import deploy as run_deploy

from labtorch.cli.report import add_report_parser
from labtorch.facts.env_discovery import audit_command, parse_audit

HOSTS = [f"lab0{i}" for i in range(1, 10)]
CPU_BUILD = (
    "CONDA_OVERRIDE_CUDA= /opt/conda/bin/conda install -p /opt/conda/envs/torch -y -q "
    "--override-channels -c conda-forge 'pytorch=2.7.1=cpu_*'"
)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    with running_lab(tmp_path_factory, "e2e-report-lab") as state_dir:
        yield state_dir


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e-report")


@pytest.fixture(scope="module")
def first_report(lab_dir, report_dir) -> dict:
    return deploy(lab_dir, report_dir)


@pytest.fixture
def in_lab(lab_dir, monkeypatch) -> None:
    """`labtorch report` runs pyinfra from the repository, on this lab's inventory."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("LABTORCH_SIM_DIR", str(lab_dir))


def deploy(lab_dir: Path, report_dir: Path) -> dict:
    """Run the real deploy; the report.json it wrote, by host name."""
    run_deploy(lab_dir, report_dir)
    report = json.loads((report_dir / "report.json").read_text())
    return {host["name"]: host for host in report["hosts"]}


def labtorch_report(*argv: str) -> int:
    """``labtorch report ARGV`` as the CLI registers it; its exit status."""
    parser = argparse.ArgumentParser(prog="labtorch")
    add_report_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *argv])
    return args.handler(args)


def test_deploy_report_gives_each_host_its_status(first_report, report_dir):
    assert sorted(first_report) == HOSTS
    cpu = first_report["lab07"]
    assert cpu["status"] == "ok" and cpu["installed"]["torch"].endswith("+cpu")
    pascal = first_report["lab04"]
    assert pascal["status"] == "ok"
    assert pascal["plan"]["variant"] == "cu126" and pascal["installed"]["cuda"] == "12.6"
    assert first_report["lab08"]["status"] == "failed"
    assert "driver-not-loaded" in first_report["lab08"]["reason"]
    html = (report_dir / "report.html").read_text()
    assert all(f'id="host-{name}"' in html for name in HOSTS)


def test_audit_flags_a_cpu_build_on_that_host_alone(lab_dir, first_report, in_lab, tmp_path):
    done = ssh(lab_dir, "lab04", CPU_BUILD)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert labtorch_report("inventories/sim.py", "--json", str(tmp_path / "audit.json")) == 1
    audit = {
        host["name"]: host for host in json.loads((tmp_path / "audit.json").read_text())["hosts"]
    }
    assert sorted(audit) == HOSTS
    assert audit["lab04"]["status"] == "failed"
    assert "a CPU build on a host with 1 GPU(s)" in audit["lab04"]["reason"]
    assert [env["variant"] for env in audit["lab04"]["envs"]] == ["cpu"]
    gpu_hosts = [name for name in HOSTS if "gpu" in first_report[name]["groups"]]
    changed = {name for name in gpu_hosts if audit[name]["status"] != first_report[name]["status"]}
    assert changed == {"lab04"}
    assert audit["lab07"]["status"] == "ok"


def test_audit_of_one_group_writes_its_page(in_lab, tmp_path):
    page = tmp_path / "audit.html"
    assert labtorch_report("inventories/sim.py", "--limit", "cpu", "--html", str(page)) == 0
    html = page.read_text()
    assert "labtorch fleet audit: 1 of 1 hosts ok" in html
    assert "/opt/labtorch/venvs/torch" in html


def test_next_deploy_repairs_it(lab_dir, report_dir, first_report):
    repaired = deploy(lab_dir, report_dir)
    assert repaired["lab04"]["status"] == "ok"
    assert repaired["lab04"]["installed"]["cuda"] == "12.6"
    assert {name: host["status"] for name, host in repaired.items()} == {
        name: host["status"] for name, host in first_report.items()
    }


# The audit's discovery on a real host: envs labtorch did not make, where users put them.
SITE = "/opt/conda/envs/torch/lib/python3.11/site-packages"
OTHER_ENVS = f"""
set -e
mkdir -p /opt/other /root/.conda /home/alice/proj /opt/a/b/c
cp -a /opt/conda/envs/torch /opt/other/listed
echo /opt/other/listed >> /root/.conda/environments.txt
for venv in /opt/venvs/shallow /home/alice/proj/.venv /opt/a/b/c/deep /opt/notorch; do
  python3 -m venv --without-pip "$venv"
done
for venv in /opt/venvs/shallow /home/alice/proj/.venv /opt/a/b/c/deep; do
  cp -a {SITE}/torch "$venv"/lib/python3.11/site-packages/
done
"""
REMOVE_OTHER_ENVS = (
    "rm -rf /opt/other /opt/venvs /home/alice /opt/a /opt/notorch && "
    "sed -i '\\|^/opt/other/listed$|d' /root/.conda/environments.txt"
)


def test_the_audit_finds_every_env_with_torch_where_users_put_them(
    lab_dir, first_report, in_lab, tmp_path
):
    """The env-discovery script itself, run on lab01 over SSH: each conda env (the root's envs/,
    ~/.conda/environments.txt) and each venv with torch under /opt and /home/* within 4 levels,
    once each (a conda env holding a pyvenv.cfg is a conda env), each probed with its own python;
    a venv without torch and one 5 levels down are not. `labtorch report` (the TorchEnvs fact
    through pyinfra) finds the same."""
    done = ssh(lab_dir, "lab01", OTHER_ENVS)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    try:
        done = ssh(lab_dir, "lab01", audit_command())
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        audit = parse_audit(done.stdout.decode().splitlines())
        report_file = tmp_path / "audit.json"
        status = labtorch_report(
            "inventories/sim.py", "--limit", "lab01", "--json", str(report_file)
        )
        reported = json.loads(report_file.read_text())["hosts"][0]["envs"]
    finally:
        ssh(lab_dir, "lab01", REMOVE_OTHER_ENVS)
    found = [(env["kind"], env["prefix"]) for env in audit["envs"]]
    # conda's envs first, in the order conda lists them; venvs in find's order.
    assert found[:2] == [("conda", "/opt/conda/envs/torch"), ("conda", "/opt/other/listed")]
    assert sorted(found[2:]) == [("venv", "/home/alice/proj/.venv"), ("venv", "/opt/venvs/shallow")]
    for env in audit["envs"]:
        assert env["error"] is None and env["probe"]["prefix"] == env["prefix"], env
        assert env["probe"]["packages"]["torch"]["version"] == "2.7.1", env
        assert "kernel_driver" not in env["probe"]  # the audit keeps nothing
    assert audit["driver"]["version"] == first_report["lab01"]["driver"]["version"]
    assert [len(audit["gpus"]), status] == [2, 0]
    assert sorted(env["prefix"] for env in reported) == sorted(prefix for _, prefix in found)


# The LabHost fact fixtures (tests/pyinfra) against what the script really prints on a lab host.
LAB_HOST_FIXTURES = Path(__file__).parent / "pyinfra" / "facts" / "facts.pyinfra_facts.LabHost"
# Which lab host plays each fixture's host: a GPU host with a deployed conda env, the host
# without a GPU or conda, the host whose driver is not loaded.
FIXTURE_HOSTS = {"gpu": "lab01", "cpu": "lab07", "driver": "lab08"}


def section_shapes(lines: list[str]) -> list[tuple[str, tuple[bool, int]]]:
    """Each section's marker, whether it holds text, and how many blank lines end it (the script
    prints one after a file and after nvidia-smi's output; what is inside varies by host)."""
    sections: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("@@labtorch "):
            sections.append((line.split(" ")[1], []))
        elif sections:
            sections[-1][1].append(line)
    shapes = []
    for marker, body in sections:
        text = [line for line in body if line.strip()]
        trailing = len(body) - len("\n".join(body).rstrip().splitlines()) if text else len(body)
        shapes.append((marker, (bool(text), trailing)))
    return shapes


@pytest.mark.parametrize("fixture", sorted(p.name for p in LAB_HOST_FIXTURES.glob("*.yaml")))
def test_lab_host_fixtures_have_the_shape_of_the_real_output(lab_dir, first_report, fixture):
    """The fixture's command (pyinfra-testing checks it is what LabHost sends), run on the lab
    host that plays its host: the same sections in the same order, and each section that holds
    something in both has the same pattern of lines, the blank line after each file and after
    nvidia-smi's output included (the parser tolerates either; the fixture must not)."""
    data = yaml.safe_load((LAB_HOST_FIXTURES / fixture).read_text())
    host = FIXTURE_HOSTS[fixture.split("_")[0]]
    done = ssh(lab_dir, host, data["command"])
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    real = section_shapes(done.stdout.decode().splitlines())
    wanted = section_shapes(data["output"].splitlines())
    assert [marker for marker, _ in wanted] == [marker for marker, _ in real]
    compared = []
    for (marker, shape), (_, real_shape) in zip(wanted, real, strict=True):
        if shape[0] and real_shape[0]:  # both hold text: the same blank lines after it
            assert shape == real_shape, f"{fixture}: section {marker}"
            compared.append(marker)
    assert compared, "no section to compare"
