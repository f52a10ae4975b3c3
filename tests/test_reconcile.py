"""The KServe emulation's pure core (harness/local/reconcile.py) against tables taken from the
upstream tests of the code it ports. Each table names its source (repository, file, test, tag)."""
from __future__ import annotations

import pytest

from harness.local.reconcile import (
    HPA,
    KPA,
    KsvcGenerations,
    RevisionView,
    autoscaler_class,
    conditions,
    ksvc_traffic,
    min_scale,
    per_revision,
    predictor_route,
    propagate_rollout,
    resolve_traffic,
    scale_plan,
    tag_url,
    with_tag_urls,
)


# kserve/kserve v0.14.1, pkg/controller/v1beta1/inferenceservice/controller_test.go,
# "When doing canary out with inference service" / "Should have traffic split between two
# revisions": the Knative Service's spec.traffic at each step of a canary rollout.
@pytest.mark.parametrize(("canary", "rolled", "expected"), [
    (None, "", [{"latestRevision": True, "percent": 100}]),  # first rollout
    (20, "revision-v1", [{"latestRevision": True, "percent": 20},
                         {"revisionName": "revision-v1", "latestRevision": False, "percent": 80, "tag": "prev"}]),
    (None, "revision-v1", [{"latestRevision": True, "percent": 100}]),  # "rollout canary": percent removed
    (100, "revision-v1", [{"latestRevision": True, "percent": 100}]),  # no prev target at 100%
    (0, "revision-v1", [{"latestRevision": True, "percent": 0},
                        {"revisionName": "revision-v1", "latestRevision": False, "percent": 100, "tag": "prev"}]),
], ids=["first-rollout", "canary-20", "promote", "canary-100", "rollback-0"])
def test_ksvc_traffic_as_kserves_controller_test(canary, rolled, expected) -> None:
    assert ksvc_traffic(canary, rolled) == expected


def test_tag_routing_tags_the_latest_target() -> None:
    assert ksvc_traffic(20, "r1", tag_routing=True)[0] == {"latestRevision": True, "percent": 20, "tag": "latest"}
    assert ksvc_traffic(None, "", tag_routing=True) == [{"latestRevision": True, "percent": 100, "tag": "latest"}]


# knative/serving knative-v1.15.2 (KServe 0.14.1's knative.dev/serving v0.42.2), pkg/reconciler/route/
# traffic/traffic_test.go, TestRoundTripping: route "test-route" in namespace "test", default templates.
@pytest.mark.parametrize(("tag", "url"), [("beta", "http://beta-test-route.test.example.com"),
                                          ("alpha", "http://alpha-test-route.test.example.com")])
def test_a_tagged_target_gets_knatives_url(tag: str, url: str) -> None:
    assert tag_url(tag, "test-route", "test", "example.com") == url


def test_kserves_tags_get_urls_on_the_predictors_route_and_untagged_targets_none() -> None:
    assert predictor_route("rc") == "rc-predictor"  # kserve v0.14.1 pkg/constants PredictorServiceName
    traffic = resolve_traffic(ksvc_traffic(80, "rc-predictor-00001", tag_routing=True), "rc-predictor-00002")
    tagged = with_tag_urls(traffic, predictor_route("rc"), "model-serving", "example.com")
    assert [(t["revisionName"], t["percent"], t.get("url")) for t in tagged] == [
        ("rc-predictor-00002", 80, "http://latest-rc-predictor.model-serving.example.com"),
        ("rc-predictor-00001", 20, "http://prev-rc-predictor.model-serving.example.com")]
    # without the annotation KServe still tags the rolled-out revision prev (ksvc_reconciler.go)
    plain = with_tag_urls(resolve_traffic(ksvc_traffic(80, "r1"), "r2"), "rc-predictor", "ns", "example.com")
    assert "url" not in plain[0] and plain[1]["url"] == "http://prev-rc-predictor.ns.example.com"


def test_a_route_names_the_latest_ready_revision_and_routes_nothing_without_one() -> None:
    spec = ksvc_traffic(20, "revision-v1")
    assert resolve_traffic(spec, "revision-v2") == [
        {"latestRevision": True, "percent": 20, "revisionName": "revision-v2"},
        {"latestRevision": False, "percent": 80, "revisionName": "revision-v1", "tag": "prev"}]
    assert resolve_traffic(spec, None) == []


# kserve/kserve v0.14.1, pkg/apis/serving/v1beta1/inference_service_status_test.go TestPropagateStatus
# ("Status with Traffic Routing for Latest Revision", "... for Rolledout Revision"), and the
# controller test above (v2 at 100% makes v2 rolled out and v1 previous).
@pytest.mark.parametrize(("traffic", "latest_ready", "latest_created", "rolled", "previous", "expected"), [
    ([{"revisionName": "test-predictor-default-0001", "percent": 100, "latestRevision": True}],
     "test-predictor-default-0001", "", "", "", ("test-predictor-default-0001", "")),
    ([{"revisionName": "test-predictor-default-0001", "percent": 90, "latestRevision": True}],
     "test-predictor-default-0001", "test-predictor-default-0001", "test-predictor-default-0001", "",
     ("test-predictor-default-0001", "")),
    ([{"revisionName": "revision-v2", "percent": 100, "latestRevision": True}], "revision-v2", "revision-v2",
     "revision-v1", "", ("revision-v2", "revision-v1")),
    ([{"revisionName": "revision-v2", "percent": 20, "latestRevision": True},
      {"revisionName": "revision-v1", "percent": 80, "latestRevision": False}], "revision-v2", "revision-v2",
     "revision-v1", "", ("revision-v1", "")),  # a canary at 20%: nothing rolled out yet
    # The code's own comment: rolled out at 100%, then rolled back (a split over the same revision).
    ([{"revisionName": "revision-v2", "percent": 0, "latestRevision": True},
      {"revisionName": "revision-v2", "percent": 100, "latestRevision": False}], "revision-v2", "revision-v2",
     "revision-v2", "revision-v1", ("revision-v1", "revision-v1")),
], ids=["latest-revision", "rolledout-revision", "promoted", "canary-in-flight", "rolled-back"])
def test_propagate_rollout_as_kserves_status_tests(traffic, latest_ready, latest_created, rolled, previous,
                                                   expected) -> None:
    assert propagate_rollout(traffic, latest_ready=latest_ready, latest_created=latest_created, rolled_out=rolled,
                             previous=previous) == expected


def test_per_revision_sums_a_revision_split_with_itself() -> None:
    traffic = resolve_traffic(ksvc_traffic(20, "r1"), "r1")
    assert per_revision(traffic) == {"r1": 100}


def test_the_knative_service_generation_moves_on_with_kserves_own_traffic_rewrite() -> None:
    """The review's case: created with canaryTrafficPercent 20, the first revision at 100%; once it
    is rolled out KServe rewrites the traffic into [latest 20, prev = the same 80]: the Knative
    Service (and so the InferenceService's observedGeneration) is at 2 while the
    InferenceService's own generation is still 1."""
    gens = KsvcGenerations()
    template = {"model": {"storageUri": "s3://b/1/model"}}
    assert gens.observe(template, ksvc_traffic(20, "")) == 1
    assert gens.observe(template, ksvc_traffic(20, "")) == 1  # unchanged spec: no new generation
    assert gens.observe(template, ksvc_traffic(20, "p-00001")) == 2


# knative/serving knative-v1.13.1, pkg/apis/autoscaling/v1alpha1/pa_lifecycle_test.go TestScaleBounds
# ("reachable": min 1 kept; "unreachable": min 1 -> 0; "min-scale set but unreachable": 2 -> 0).
@pytest.mark.parametrize(("min_replicas", "reachable", "expected"), [(1, True, 1), (1, False, 0), (2, False, 0),
                                                                     (0, True, 0)],
                         ids=["reachable", "unreachable", "min-scale-set-but-unreachable", "absent"])
def test_min_scale_as_knatives_scale_bounds(min_replicas: int, reachable: bool, expected: int) -> None:
    assert min_scale(min_replicas, reachable=reachable) == expected


# The same bounds under the HPA class: MakeHPA sets minReplicas only when the bound is > 0, and an
# HPA's unset minReplicas is 1 (knative/serving pkg/reconciler/autoscaling/hpa/resources/hpa.go).
@pytest.mark.parametrize(("min_replicas", "reachable", "expected"), [(2, True, 2), (1, False, 1), (0, True, 1)],
                         ids=["reachable", "unreachable-keeps-one", "absent-keeps-one"])
def test_min_scale_under_the_hpa_class_never_reaches_zero(min_replicas: int, reachable: bool, expected: int) -> None:
    assert min_scale(min_replicas, reachable=reachable, autoscaler=HPA) == expected


def test_kserve_serverless_mode_ignores_its_own_autoscaler_class_annotation() -> None:
    """The seed's `serving.kserve.io/autoscalerClass: hpa` leaves a Serverless predictor on KPA;
    only Knative's own key changes the class (KServe v0.14.1 ksvc_reconciler.go)."""
    assert autoscaler_class({"serving.kserve.io/autoscalerClass": "hpa"}) == KPA
    assert autoscaler_class({"autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"}) == HPA
    plan = scale_plan([_rev("old", min_replicas=2, autoscaler=HPA), _rev("old-kpa", min_replicas=2)], {},
                      grace_s=30.0)
    assert plan.scale_to_zero == ["old-kpa"]


def _rev(name: str, **kw) -> RevisionView:
    base = {"ready": True, "has_replicas": True, "starting": False, "scaled_to_zero": False,
            "cold_start_failed": False, "min_replicas": 1, "idle_s": 100.0}
    return RevisionView(name, **{**base, **kw})


def test_scale_plan() -> None:
    plan = scale_plan([
        _rev("unrouted", min_replicas=1),  # no traffic names it: goes to zero whatever minReplicas
        _rev("rolled-back", min_replicas=1),  # named at 0%: reachable, keeps min-scale 1
        _rev("rolled-back-min0", min_replicas=0),  # named at 0% with minReplicas 0: may go
        _rev("fresh", min_replicas=0, idle_s=5.0),  # inside the grace period
        _rev("cold", has_replicas=False, scaled_to_zero=True),  # traffic again: cold start
        _rev("cold-failed", has_replicas=False, scaled_to_zero=True, cold_start_failed=True),
    ], {"rolled-back": 0, "rolled-back-min0": 0, "fresh": 0, "cold": 50, "cold-failed": 50}, grace_s=30.0)
    assert plan.scale_to_zero == ["unrouted", "rolled-back-min0"]
    assert plan.cold_start == ["cold"]
    assert plan.touched == ["cold", "cold-failed"]
    assert "unrouted" in plan.retry_cold_start and "cold" not in plan.retry_cold_start


def test_conditions() -> None:
    ok = conditions(("True", "", ""), [{"revisionName": "r1", "percent": 100}], routed_serving=True, first_routed="r1")
    assert ok["Ready"] == ("True", "", "") and ok["IngressReady"][0] == "True"
    dark = conditions(("True", "", ""), [{"revisionName": "r1", "percent": 100}], routed_serving=False,
                      first_routed="r1")
    assert dark["PredictorRouteReady"] == ("False", "RevisionMissing", 'Revision "r1" has no ready pods')
    assert dark["Ready"] == dark["PredictorReady"] == dark["PredictorRouteReady"]
    failed = ("False", "RevisionFailed", 'Revision "r2" failed with message: x.')
    broken = conditions(failed, [], routed_serving=False, first_routed=None)
    assert broken["PredictorConfigurationReady"] == failed and broken["PredictorReady"] == failed
    assert broken["Ready"] == ("False", "PredictorRouteReady not ready", "")  # IngressReady comes first
