"""Readiness decided the way KServe's own e2e tests and `kubectl wait` users decide it (Ready, the
latest created revision ready, the expected traffic), never by comparing generations: KServe 0.14
copies the Knative Service's observed generation into the InferenceService's status
(`PropagateStatus`, pkg/apis/serving/v1beta1/inference_service_status.go at v0.14.1), and rewrites
the Knative Service's traffic itself, so the two generations drift apart.

The status sequences below are shaped exactly as KServe 0.14.1 writes them (conditions, component
traffic as the route resolves it, observedGeneration from the Knative Service)."""
from __future__ import annotations

import pytest

from harness.serving.isvc import is_ready


def _isvc(generation: int, observed: int | None, *, ready: str | None, created: str = "", latest_ready: str = "",
          traffic: list[tuple[str, int, bool]] = ()) -> dict:
    status: dict = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    comp = {k: v for k, v in (("latestCreatedRevision", created), ("latestReadyRevision", latest_ready)) if v}
    if traffic:
        comp["traffic"] = [{"revisionName": rev, "percent": pct, "latestRevision": latest} for rev, pct, latest in traffic]
    if comp:
        status["components"] = {"predictor": comp}
    return {"metadata": {"generation": generation}, "status": status}


def _old_rule(isvc: dict) -> bool:
    """What seamcheck decided before: Ready=True and observedGeneration == metadata.generation."""
    cond = next((c for c in isvc["status"].get("conditions", []) if c["type"] == "Ready"), None)
    return bool(cond and cond["status"] == "True" and isvc["status"].get("observedGeneration")
                == isvc["metadata"]["generation"])


# The pipeline's first deploy: created with canaryTrafficPercent 20. The first revision takes 100%
# (nothing rolled out yet), is recorded as rolled out, and on the next reconcile KServe rewrites the
# Knative Service's traffic to [latest 20%, prev = the same revision 80%]: the Knative Service is
# at generation 2, the InferenceService still at 1, from about a second after readiness on.
FIRST_DEPLOY = [
    _isvc(1, None, ready=None),
    _isvc(1, 1, ready="Unknown", created="p-00001"),
    _isvc(1, 1, ready="True", created="p-00001", latest_ready="p-00001", traffic=[("p-00001", 100, True)]),
    _isvc(1, 2, ready="True", created="p-00001", latest_ready="p-00001",
          traffic=[("p-00001", 20, True), ("p-00001", 80, False)]),
]

# A re-deploy of that service (a second cloud run, a kept kind cluster): the PATCH moves the
# InferenceService to generation 2; for a moment the status is still the old revision's; then the
# new revision comes up at 20% beside the rolled-out one. The Knative Service is at 3.
REDEPLOY = [
    _isvc(2, 2, ready="True", created="p-00001", latest_ready="p-00001",
          traffic=[("p-00001", 20, True), ("p-00001", 80, False)]),
    _isvc(2, 3, ready="Unknown", created="p-00002", latest_ready="p-00001",
          traffic=[("p-00001", 20, True), ("p-00001", 80, False)]),
    _isvc(2, 3, ready="True", created="p-00002", latest_ready="p-00002",
          traffic=[("p-00002", 20, True), ("p-00001", 80, False)]),
]


def test_the_first_deploy_is_ready_in_kserves_final_status() -> None:
    assert [is_ready(s) for s in FIRST_DEPLOY] == [False, False, True, True]
    assert _old_rule(FIRST_DEPLOY[-1]) is False, "the old rule misses the status KServe settles in"


def test_a_redeploy_is_ready_only_once_the_new_revision_serves() -> None:
    assert [is_ready(s, newer_than="p-00001") for s in REDEPLOY] == [False, False, True]
    assert not any(_old_rule(s) for s in REDEPLOY[1:]), "the old rule never sees this re-deploy ready"
    assert is_ready(REDEPLOY[0]) is True  # without newer_than the stale status would count: callers pass it


def test_the_expected_traffic_is_part_of_ready() -> None:
    final = REDEPLOY[-1]
    assert is_ready(final, split={"p-00002": 20, "p-00001": 80})
    assert not is_ready(final, split={"p-00002": 100})


@pytest.mark.parametrize("state", [
    _isvc(1, 1, ready="True", created="p-00002", latest_ready="p-00001", traffic=[("p-00001", 100, True)]),
    _isvc(1, 1, ready="False", created="p-00001", latest_ready="p-00001", traffic=[("p-00001", 100, True)]),
    _isvc(1, 1, ready="True", created="p-00001"),
], ids=["newest-template-not-ready", "ready-false", "no-ready-revision"])
def test_not_ready(state: dict) -> None:
    assert not is_ready(state)


def test_the_scrape_interval_and_the_windows_are_one_setting_with_a_checked_relation() -> None:
    from harness.canary.scenarios import INTERVAL_S
    from harness.cluster.render import SCRAPE_INTERVAL as CLUSTER_SCRAPE
    from harness.errors import ConfigError
    from harness.local.services.prometheus import SCRAPE_INTERVAL as LOCAL_SCRAPE
    from harness.metrics.cadence import CADENCE, Cadence

    assert LOCAL_SCRAPE == CLUSTER_SCRAPE == CADENCE.scrape == "1s" and INTERVAL_S == CADENCE.window_s
    assert INTERVAL_S >= 2 * CADENCE.scrape_s
    with pytest.raises(ConfigError, match=r"window_s=3\.0 is shorter than two scrapes \(scrape_s=2\.0\)"):
        Cadence(scrape_s=2.0, window_s=3.0)  # the cluster's 2 s scrapes against 3 s windows, before
    assert Cadence(scrape_s=0.5, window_s=1.0).scrape == "500ms"
