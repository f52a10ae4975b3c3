"""The pure core of the KServe emulation: what KServe's and Knative's reconcilers compute from an
InferenceService and its revisions, as functions of plain data (no processes, no clock, no
locks), each ported from the upstream code named beside it and unit-tested with tables taken from
that upstream's own tests (tests/test_reconcile.py).

- ``ksvc_traffic``: the Knative Service's spec traffic KServe writes (canary split or 100% latest);
- ``resolve_traffic``: Knative's route status: ``latestRevision`` targets name the latest READY revision;
- ``tag_url`` and ``with_tag_urls``: the URL Knative's route gives each tagged target (KServe tags
  ``latest`` and ``prev``), which KServe copies into the component's status traffic;
- ``propagate_rollout``: KServe's rolled-out bookkeeping (latest / previous rolled-out revision);
- ``KsvcGenerations``: the Knative Service's generation, which KServe copies into the
  InferenceService's ``status.observedGeneration``;
- ``autoscaler_class``, ``min_scale`` and ``scale_plan``: the revision's autoscaler class as KServe
  sets it, Knative's scale bounds (min-scale only for reachable revisions; never zero under HPA)
  and what the emulation starts and scales to zero;
- ``conditions``: the Ready condition set KServe propagates from the Knative Service.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


__all__ = ["CLASS_ANNOTATION", "HPA", "KPA", "TAG_ROUTING_ANNOTATION", "Condition", "KsvcGenerations",
           "RevisionView", "ScalePlan", "autoscaler_class", "conditions", "ksvc_traffic", "min_scale", "per_revision",
           "predictor_route", "propagate_rollout", "resolve_traffic", "scale_plan", "tag_url", "with_tag_urls"]

#: KServe v0.14.1 pkg/constants/constants.go EnableRoutingTagAnnotationKey.
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"

Condition = tuple[str, str, str]  # (status, reason, message)
_TRUE: Condition = ("True", "", "")


# ------------------------------------------------------------------------------ traffic
def ksvc_traffic(canary_percent: int | None, rolled_out: str, *, tag_routing: bool = False) -> list[dict[str, Any]]:
    """The Knative Service's ``spec.traffic`` for an InferenceService component.

    KServe v0.14.1 ``createKnativeService`` (reconcilers/knative/ksvc_reconciler.go): with
    ``canaryTrafficPercent`` P and a rolled-out revision, [latest P%, the rolled-out revision
    100-P% tagged ``prev``] (no second target at P = 100); otherwise (no canary, or nothing rolled
    out yet: the first rollout) 100% to the latest revision. ``serving.kserve.io/enable-tag-routing``
    tags the latest target ``latest``."""
    if canary_percent is not None and rolled_out:
        latest: dict[str, Any] = {"latestRevision": True, "percent": canary_percent}
        if tag_routing:
            latest["tag"] = "latest"
        targets = [latest]
        if canary_percent < 100:
            targets.append({"revisionName": rolled_out, "latestRevision": False, "percent": 100 - canary_percent,
                            "tag": "prev"})
        return targets
    latest = {"latestRevision": True, "percent": 100}
    if tag_routing:
        latest["tag"] = "latest"
    return [latest]


def resolve_traffic(spec: Iterable[Mapping[str, Any]], latest_ready: str | None) -> list[dict[str, Any]]:
    """The route's ``status.traffic``: a ``latestRevision`` target names the latest READY revision
    (Knative routes a broken new revision no traffic); with none ready, the route has no traffic."""
    if latest_ready is None:
        return []
    resolved = []
    for target in spec:
        out = dict(target)
        if out.get("latestRevision"):
            out["revisionName"] = latest_ready
        resolved.append({"latestRevision": bool(out.get("latestRevision")), "percent": int(out["percent"]),
                         "revisionName": out["revisionName"], **({"tag": out["tag"]} if out.get("tag") else {})})
    return resolved


def predictor_route(isvc: str) -> str:
    """The predictor's Knative Service (and so its route): KServe v0.14.1 PredictorServiceName
    (pkg/constants/constants.go), ``<isvc>-predictor``, used by components/predictor.go unless a
    pre-0.9 ``<isvc>-predictor-default`` service already exists (never, here)."""
    return f"{isvc}-predictor"


def tag_url(tag: str, route: str, namespace: str, domain: str, *, scheme: str = "http") -> str:
    """A tagged traffic target's URL as Knative v1.15 (knative.dev/serving v0.42, KServe 0.14.1's
    go.mod) computes it: ``computeURL`` (pkg/reconciler/route/traffic/traffic.go) names the host with
    the tag template, then the domain template (pkg/reconciler/route/domains/domains.go); with
    config-network's defaults, ``{{.Tag}}-{{.Name}}`` and ``{{.Name}}.{{.Namespace}}.{{.Domain}}``:
    ``http://<tag>-<route>.<namespace>.<domain>``."""
    return f"{scheme}://{tag}-{route}.{namespace}.{domain}"


def with_tag_urls(traffic: Iterable[Mapping[str, Any]], route: str, namespace: str, domain: str
                  ) -> list[dict[str, Any]]:
    """The route status' traffic with ``url`` on each tagged target (``targetToStatus``: once per
    tag, untagged targets get none); KServe's PropagateStatus copies the list as it is."""
    return [{**t, "url": tag_url(t["tag"], route, namespace, domain)} if t.get("tag") else dict(t) for t in traffic]


def per_revision(traffic: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Percent per revision (a revision may appear twice: KServe splits a lone rolled-out revision
    with itself, [latest 20%, prev = the same revision 80%])."""
    shares: dict[str, int] = {}
    for target in traffic:
        shares[target["revisionName"]] = shares.get(target["revisionName"], 0) + int(target.get("percent") or 0)
    return shares


def propagate_rollout(traffic: Iterable[Mapping[str, Any]], *, latest_ready: str | None, latest_created: str,
                      rolled_out: str, previous: str) -> tuple[str, str]:
    """(latestRolledoutRevision, previousRolledoutRevision) after a status propagation.

    KServe v0.14.1 ``InferenceServiceStatus.PropagateStatus``
    (pkg/apis/serving/v1beta1/inference_service_status.go): the latest ready revision becomes the
    rolled-out one once a latest target gives it 100% (the old one becomes previous); when the
    latest ready revision is already the rolled-out one, is the latest created one, gets less
    than 100% on its latest target but 100% in all (a split with itself), the rollout is rolled
    back to the previous revision."""
    targets = list(traffic)
    shares = per_revision(targets)
    for target in targets:
        if target["revisionName"] != latest_ready or not target.get("latestRevision"):
            continue
        if rolled_out != latest_ready:
            if int(target["percent"]) == 100:
                previous, rolled_out = rolled_out, latest_ready
        elif (latest_ready == latest_created and int(target["percent"]) < 100
              and shares.get(target["revisionName"]) == 100 and previous):
            rolled_out = previous
    return rolled_out, previous


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class KsvcGenerations:
    """The Knative Service's ``metadata.generation``: it moves on at every change of its spec (the
    revision template or the traffic), which KServe makes on its own, e.g. rewriting the traffic
    into a canary split once the first revision is rolled out. KServe copies its observed
    generation into the InferenceService's ``status.observedGeneration``
    (``ss.ObservedGeneration = serviceStatus.ObservedGeneration``, inference_service_status.go
    at v0.14.1), so that number is NOT the InferenceService's own generation."""

    generation: int = 0
    _last: str = field(default="", repr=False)

    def observe(self, template: Any, traffic: list[dict[str, Any]]) -> int:
        digest = _digest({"template": template, "traffic": traffic})
        if digest != self._last:
            self._last = digest
            self.generation += 1
        return self.generation


# ------------------------------------------------------------------------------ scaling
KPA, HPA = "kpa.autoscaling.knative.dev", "hpa.autoscaling.knative.dev"
CLASS_ANNOTATION = "autoscaling.knative.dev/class"


def autoscaler_class(annotations: Mapping[str, str]) -> str:
    """The revision's Knative autoscaler class in KServe's Serverless mode: the InferenceService's
    ``autoscaling.knative.dev/class`` when it sets one, else KPA (KServe v0.14.1
    pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go, "User can pass
    down scaling class annotation to overwrite the default scaling KPA"). KServe's own
    ``serving.kserve.io/autoscalerClass`` (the seed's ``hpa``) is read only by the RawDeployment
    reconciler (reconcilers/autoscaler/autoscaler_reconciler.go, from raw_kube_reconciler.go) and
    changes nothing here."""
    return HPA if annotations.get(CLASS_ANNOTATION) == HPA else KPA


def min_scale(min_replicas: int, *, reachable: bool, autoscaler: str = KPA) -> int:
    """Knative v1.13 ``PodAutoscaler.ScaleBounds`` (pkg/apis/autoscaling/v1alpha1/pa_lifecycle.go):
    min-scale holds only while the revision is reachable (a route names it); an unreachable one
    may go to zero whatever its min-scale. Under the HPA class the floor is one pod: ``MakeHPA``
    (pkg/reconciler/autoscaling/hpa/resources/hpa.go) leaves the HPA's minReplicas unset when the
    bound is 0, and Kubernetes defaults it to 1, so an HPA-class revision never goes to zero."""
    bound = min_replicas if reachable else 0
    return max(bound, 1) if autoscaler == HPA else bound


@dataclass(frozen=True)
class RevisionView:
    """What the scale decision reads of a revision."""

    name: str
    ready: bool  # the revision reached Ready once
    has_replicas: bool
    starting: bool
    scaled_to_zero: bool
    cold_start_failed: bool
    min_replicas: int
    idle_s: float  # seconds since traffic last named it
    autoscaler: str = KPA  # the revision's Knative autoscaler class (autoscaler_class)


@dataclass(frozen=True)
class ScalePlan:
    cold_start: list[str]  # scaled to zero, named by traffic again: start from zero
    scale_to_zero: list[str]  # idle past the grace period and allowed to go to zero
    retry_cold_start: list[str]  # traffic left it: a later cold start may be tried again
    touched: list[str]  # traffic names it now (its idle clock restarts)


def scale_plan(revisions: Iterable[RevisionView], shares: Mapping[str, int], *, grace_s: float) -> ScalePlan:
    """Which revisions cold-start, which go to zero, for the traffic ``shares`` now."""
    cold, zero, retry, touched = [], [], [], []
    for rev in revisions:
        share = shares.get(rev.name, 0)
        if share > 0:
            touched.append(rev.name)
            if rev.scaled_to_zero and not rev.starting and rev.ready and not rev.cold_start_failed:
                cold.append(rev.name)
            continue
        retry.append(rev.name)
        reachable = rev.name in shares  # named at 0% (a rolled-back canary) is still routed
        if (rev.ready and rev.has_replicas and not rev.starting
                and min_scale(rev.min_replicas, reachable=reachable, autoscaler=rev.autoscaler) == 0
                and rev.idle_s > grace_s):
            zero.append(rev.name)
    return ScalePlan(cold, zero, retry, touched)


# ------------------------------------------------------------------------------ conditions
def conditions(configuration: Condition, traffic: list[dict[str, Any]], *, routed_serving: bool,
               first_routed: str | None) -> dict[str, Condition]:
    """The InferenceService's conditions from the Knative Service's (KServe v0.14.1
    ``PropagateStatus`` copies Ready, RoutesReady and ConfigurationsReady into PredictorReady,
    PredictorRouteReady and PredictorConfigurationReady; the top-level Ready needs PredictorReady
    and IngressReady). ``routed_serving``: every revision with traffic has a ready (or starting)
    pod; else the route says which revision has none."""
    if not traffic:
        route: Condition = ("False", "RevisionMissing", "Configuration has no ready revision to route to")
    elif not routed_serving:
        route = ("False", "RevisionMissing", f'Revision "{first_routed}" has no ready pods')
    else:
        route = _TRUE
    ksvc = _TRUE if configuration[0] == "True" and route[0] == "True" else (
        configuration if configuration[0] != "True" else route)
    out = {
        "PredictorReady": ksvc,
        "PredictorRouteReady": route,
        "PredictorConfigurationReady": configuration,
        "RoutesReady": _TRUE if route[0] == "True" else ("False", "PredictorRouteReady not ready", ""),
        "LatestDeploymentReady": _TRUE if configuration[0] == "True" else
        ("False", "PredictorConfigurationReady not ready", ""),
        "IngressReady": _TRUE if traffic else ("False", "PredictorRouteReady not ready", ""),
    }
    if out["PredictorReady"][0] == "True" and out["IngressReady"][0] == "True":
        out["Ready"] = _TRUE
    else:
        # The first failing one in the status's (alphabetical) order, as the status lists them.
        out["Ready"] = next(out[t] for t in sorted(("PredictorReady", "IngressReady")) if out[t][0] != "True")
    return out
