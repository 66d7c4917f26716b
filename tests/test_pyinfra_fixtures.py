"""pyinfra-testing fixtures: every operation's commands and no-op paths, every fact's parse."""

from pathlib import Path

from pyinfra_testing.facts import make_fact_tests
from pyinfra_testing.operations import make_operation_tests
from pyinfra_testing.util import FakeState

HERE = Path(__file__).parent / "pyinfra"
# The fixtures pin what operations do when pyinfra executes them; checks.verify probes only then
# (tests/test_dry_run.py covers the other side).
FakeState.is_executing = True

for kind, make in (("operations", make_operation_tests), ("facts", make_fact_tests)):
    for folder in sorted(p for p in (HERE / kind).iterdir() if p.is_dir()):
        locals()[f"Test_{folder.name.replace('.', '_')}"] = make("labtorch", folder.name, folder)
