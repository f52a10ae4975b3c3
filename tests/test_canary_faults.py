"""A canary scenario's fault, on a cluster, against a real kube-apiserver (tests/host_fixtures.py
``kube_api``): the chaos guard is asked when the session plans, a fault that fails or never acts
voids the scenario, and restoring seamcheck's own Prometheus is never refused."""
from __future__ import annotations

import threading

import pytest

from harness.canary.plan import CanaryScenario, During, ScenarioPlan
from harness.canary.scenarios import FaultLog, ScenarioRunner, refused_scenarios
from harness.cluster.errors import ChaosRefused
from harness.cluster.faults import ClusterFaults
from harness.cluster.guard import ChaosGuard
from harness.judges.base import Decision
from harness.matrix import load_matrix
from harness.profiles.cloud import CloudProfile
from harness.settings import StackConfig
from tests.host_fixtures import Kube
from tests.kube import get, put
from tests.test_cluster_api import deployment, namespace

ALLOWED = {"seamcheck.io/chaos": "allowed"}
KILL = CanaryScenario("canary-killed", None, frozenset({Decision.ROLLBACK}), during=During.KILL_CANARY)
STOP = CanaryScenario("prometheus-stopped", None, frozenset({Decision.INCONCLUSIVE}), during=During.STOP_PROMETHEUS)
HEALTHY = CanaryScenario("healthy", None, frozenset({Decision.PROMOTE}))


def _cloud(kube: Kube, chaos_namespaces: tuple[str, ...]) -> CloudProfile:
    profile = CloudProfile(StackConfig(profile="cloud", chaos_namespaces=chaos_namespaces), load_matrix().row(None))
    profile.api = kube.api
    profile.guard = ChaosGuard.of(profile.api, profile._chaos_namespaces(), cluster="context ci")
    profile.faults = ClusterFaults(profile.api, profile.guard)
    return profile


def test_scenarios_whose_fault_the_guard_refuses_are_known_at_plan_time(kube: Kube) -> None:
    kube.scratch.namespace("model-serving", ALLOWED)
    kube.scratch.namespace("seamcheck-system")  # listed below, but never labelled
    profile = _cloud(kube, ("model-serving", "seamcheck-system"))
    refused = refused_scenarios(profile, [HEALTHY, KILL, STOP])
    assert list(refused) == ["prometheus-stopped"]
    assert "scale seamcheck's Prometheus to 0 in namespace 'seamcheck-system' on context ci: it lacks the " \
           "label seamcheck.io/chaos=allowed" in refused["prometheus-stopped"]
    unlisting = _cloud(kube, ())
    unlisted = refused_scenarios(unlisting, [KILL])
    assert "delete the canary revision's pods in namespace 'model-serving'" in unlisted["canary-killed"]
    assert "not listed in --chaos-namespaces (listed: none)" in unlisted["canary-killed"]
    profile.teardown()
    unlisting.teardown()


def test_a_refused_scenario_is_skipped_with_the_reason_before_anything_is_deployed(tmp_path,
                                                                                    kube: Kube) -> None:
    kube.scratch.namespace("model-serving")
    profile = _cloud(kube, ("model-serving",))
    runner = ScenarioRunner(profile, ScenarioPlan((), ("svc",)), make_copy=lambda tag: tag, train_version="1",
                            judges={}, workdir=tmp_path, refused=refused_scenarios(profile, [KILL]))
    writes = len(kube.calls("POST")) + len(kube.calls("PATCH"))
    with pytest.raises(pytest.skip.Exception, match="canary scenario canary-killed: its fault kill-canary is "
                                                    "refused: refused to delete the canary revision's pods"):
        runner.run(KILL)
    with pytest.raises(pytest.skip.Exception, match="prometheus-stopped"):  # unplanned: asked when played
        runner.run(STOP)
    assert len(kube.calls("POST")) + len(kube.calls("PATCH")) == writes
    runner.close()
    profile.teardown()


def test_a_fault_that_fails_in_its_thread_voids_the_scenario() -> None:
    log = FaultLog(During.KILL_CANARY)

    def refusing(kind, service, canary, stop, acted):
        raise ChaosRefused("refused to delete pods in namespace 'model-serving': it lacks the label")

    thread = threading.Thread(target=log.run, args=(refusing, "svc", "svc-00002", threading.Event()))
    thread.start()
    thread.join(timeout=10)
    assert log.void_reason() == ("its fault kill-canary failed: ChaosRefused: refused to delete pods in namespace "
                                 "'model-serving': it lacks the label")


def test_a_fault_that_never_acted_voids_the_scenario_and_one_that_acted_does_not() -> None:
    idle = FaultLog(During.STOP_PROMETHEUS)
    idle.run(lambda kind, stop, acted: None, threading.Event())
    assert "its fault stop-prometheus never acted" in (idle.void_reason() or "")
    acting = FaultLog(During.STOP_PROMETHEUS)
    acting.run(lambda kind, stop, acted: acted("Prometheus stopped"), threading.Event())
    assert acting.void_reason() is None and acting.acts[0][1] == "Prometheus stopped"


def test_restoring_seamchecks_prometheus_is_never_refused(kube: Kube) -> None:
    kube.scratch.namespace("seamcheck-system", ALLOWED)
    put(kube.api, deployment("prometheus", "seamcheck-system"))
    profile = _cloud(kube, ("seamcheck-system",))
    profile.faults.scale("seamcheck-system", "prometheus", 0)
    put(kube.api, namespace("seamcheck-system"))  # the label removed mid-session: chaos is refused from now on
    with pytest.raises(ChaosRefused):
        profile.faults.scale("seamcheck-system", "prometheus", 0)
    assert profile.faults.restore_scale("seamcheck-system", "prometheus") is True
    assert get(kube.api, "apps/v1", "Deployment", "prometheus", "seamcheck-system")["spec"]["replicas"] == 1
    assert profile.faults.restore_scale("seamcheck-system", "prometheus") is False  # nothing left to undo
    profile.teardown()
