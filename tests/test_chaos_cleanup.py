"""After a chaos session passes, fails or is interrupted, nothing of its faults remains: no
network namespace, no veth link, no host iptables change, no forwarder or stack process.

Each case runs a real inner session with the suite's own `chaos_control` fixture (its context
replaced by a light one: these faults need the stack, not a trained model) that cuts the
pipeline's path to MLflow and then passes, fails, or hangs until it gets SIGINT."""
from __future__ import annotations

import json
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from harness.local.netns import netns_available
from tests.inner import inner_env, interrupt_inner, run_inner, write_test
from tests.test_teardown import _wait_gone

pytestmark = pytest.mark.stack

BODY = textwrap.dedent('''
    import json, os, time
    from pathlib import Path

    import pytest

    from harness.chaos.control import ChaosContext

    pytest_plugins = ["harness.fixtures.stack", "harness.fixtures.chaos"]


    @pytest.fixture(scope="session")
    def chaos_context(tmp_path_factory):
        return ChaosContext(base_storage_uri="", model_name="", model_version="", template={},
                            dataset_path="", rows_path=Path("unused"))


    def test_cut(chaos_control):
        cut = chaos_control.call("cut_pipeline_to_mlflow", mode="DROP")
        Path(os.environ["CUT_RECORD"]).write_text(json.dumps(cut))
        ENDING
''')
ENDINGS = {"passes": "assert cut['rules']", "fails": "assert cut['rules'] == ['not this']",
           "interrupted": "time.sleep(600)"}


def _host_rules() -> str:
    return "\n".join(subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=20,
                                    check=False).stdout.splitlines()[1:-1])  # minus the timestamp lines


def _netns_leftovers(cut: dict) -> list[str]:
    found = []
    if cut["namespace"] in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20,
                                          check=False).stdout:
        found.append(f"network namespace {cut['namespace']}")
    if subprocess.run(["ip", "link", "show", cut["host_link"]], capture_output=True, timeout=20,
                      check=False).returncode == 0:
        found.append(f"veth link {cut['host_link']}")
    return found


# CI keeps the failing and the interrupted session; the passing one runs nightly (slow).
@pytest.mark.parametrize("ending", [pytest.param(e, marks=[pytest.mark.slow] if e == "passes" else [])
                                    for e in ENDINGS])
def test_chaos_leaves_nothing(tmp_path: Path, ending: str) -> None:
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    write_test(tmp_path, BODY.replace("ENDING", ENDINGS[ending]))
    record, manifest_path = tmp_path / "cut.json", tmp_path / "stack.json"
    env = inner_env({"SEAMCHECK_STACK_MANIFEST": str(manifest_path), "CUT_RECORD": str(record)})
    host_before = _host_rules()
    if ending != "interrupted":
        result = run_inner(tmp_path, env=env)
        assert result.returncode == (0 if ending == "passes" else 1), result.stdout[-3000:] + result.stderr[-2000:]
        output = result.stdout
    else:
        returncode, output = interrupt_inner(tmp_path, env, record, signal.SIGINT)
        assert returncode in (pytest.ExitCode.INTERRUPTED, 1, 2), output[-3000:]
    cut = json.loads(record.read_text())
    assert "-j DROP" in cut["rule"], cut  # the fault really was in place
    assert _netns_leftovers(cut) == [], output[-3000:]
    assert _host_rules() == host_before, "the host's iptables rules changed"
    assert _wait_gone(json.loads(manifest_path.read_text())) == [], output[-3000:]
