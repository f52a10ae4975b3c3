"""InferenceService client and accessors for every profile: the official `kubernetes` client's
CustomObjectsApi against whatever API server the profile gives (a cluster's, or the local
emulation's), with the seed's create-or-patch, waits that have deadlines and say what they were
waiting for when they give up (with the object's last conditions), and typed accessors for the
shape of the object (`storage_uri_of`, `with_storage_uri`, `service_from_template`,
`predictor_status`), so no caller spells the dict paths itself.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.errors import StackError

__all__ = ["IsvcClient", "IsvcFailed", "IsvcWaitTimeout", "condition", "failed_revision", "is_ready", "predictor_status",
           "revision_template", "service_from_template", "storage_uri_of", "summarize", "with_storage_uri"]

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


class IsvcWaitTimeout(StackError, TimeoutError):
    pass


def condition(isvc: dict, ctype: str) -> dict | None:
    for cond in (isvc.get("status") or {}).get("conditions", []):
        if cond.get("type") == ctype:
            return cond
    return None


def predictor_status(isvc: dict) -> dict:
    return ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}


def storage_uri_of(isvc: dict) -> str:
    """The predictor's model storageUri ("" when the spec has none)."""
    return str((((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("storageUri") or "")


def revision_template(isvc: dict) -> dict:
    """What makes a new revision when it changes: the predictor without its traffic setting."""
    predictor = copy.deepcopy((isvc.get("spec") or {}).get("predictor") or {})
    predictor.pop("canaryTrafficPercent", None)
    return predictor


def with_storage_uri(isvc: dict, uri: str) -> dict:
    """A copy of the manifest whose predictor loads ``uri``."""
    out = copy.deepcopy(isvc)
    out.setdefault("spec", {}).setdefault("predictor", {}).setdefault("model", {})["storageUri"] = uri
    return out


def service_from_template(template: dict, name: str, storage_uri: str, *, min_replicas: int | None = 1,
                          canary_percent: int | None = None, labels: dict[str, str] | None = None) -> dict:
    """A new InferenceService manifest with the deployed one's spec (runtime, resources,
    annotations), another name and model, ``min_replicas`` per revision (None: the template's)
    and no canary unless asked; labels are the template's unless given."""
    manifest = {
        "apiVersion": template["apiVersion"], "kind": template["kind"],
        "metadata": {"name": name, "namespace": template["metadata"]["namespace"],
                     "labels": dict(template["metadata"].get("labels") or {}) if labels is None else dict(labels),
                     "annotations": dict(template["metadata"].get("annotations") or {})},
        "spec": copy.deepcopy(template["spec"]),
    }
    manifest = with_storage_uri(manifest, storage_uri)
    predictor = manifest["spec"]["predictor"]
    if min_replicas is not None:
        predictor["minReplicas"] = min_replicas
    predictor.pop("canaryTrafficPercent", None)
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return manifest


def summarize(isvc: dict) -> str:
    conds = ", ".join(f"{c['type']}={c['status']}" + (f" ({c.get('reason')}: {c.get('message', '')[:300]})"
                                                      if c["status"] != "True" and c.get("reason") else "")
                      for c in (isvc.get("status") or {}).get("conditions", []))
    traffic = predictor_status(isvc).get("traffic")
    return f"conditions: {conds or 'none yet'}; traffic: {traffic}"


class IsvcClient:
    def __init__(self, api_client: k8s.ApiClient, namespace: str, *,
                 on_write: Callable[[str], None] | None = None) -> None:
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.on_write = on_write  # called with the name before every create_or_patch: who cleans it up

    def get(self, name: str) -> dict:
        return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def create_or_patch(self, manifest: dict) -> tuple[str, dict]:
        """The seed's deploy logic: PATCH, and CREATE on 404. Returns ("patched"|"created", object)."""
        name = manifest["metadata"]["name"]
        if self.on_write is not None:
            self.on_write(name)
        try:
            return "patched", self.api.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, manifest)
        except ApiException as exc:
            if exc.status != 404:
                raise
        try:
            return "created", self.api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, manifest)
        except ApiException as exc:
            if exc.status == 409:  # created by someone else between our PATCH and POST: patch it
                return "patched", self.api.patch_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, name, manifest)
            raise

    def patch(self, name: str, body: dict | list) -> dict:
        return self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, body)

    def delete(self, name: str) -> None:
        try:
            self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def wait_for(self, name: str, predicate: Callable[[dict], bool], *, what: str, deadline_s: float,
                 interval_s: float = 0.5, give_up: Callable[[dict], str | None] | None = None) -> dict:
        """Poll until predicate(isvc) holds. `give_up` returns a reason to stop early (a terminal
        failure such as a failed revision), so a broken deploy fails with its own message."""
        end = time.monotonic() + deadline_s
        last: dict = {}
        while True:
            try:
                last = self.get(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                last = {}
            if last and predicate(last):
                return last
            if last and give_up is not None:
                reason = give_up(last)
                if reason:
                    raise IsvcFailed(name, reason, last)
            if time.monotonic() >= end:
                raise IsvcWaitTimeout(f"InferenceService {self.namespace}/{name}: gave up after {deadline_s:.0f}s "
                                      f"waiting for {what}; {summarize(last) if last else 'object not found'}")
            time.sleep(interval_s)

    def wait_ready(self, name: str, *, deadline_s: float, newer_than: str | None = None,
                   split: dict[str, int] | None = None) -> dict:
        """Until the service is ready (see ``is_ready``); ``newer_than``: the latest ready revision
        the caller saw before its write (the new one must replace it); ``split``: the traffic
        (revision -> percent) the write asked for."""
        what = "condition Ready=True with the latest created revision ready" + (
            f" (newer than {newer_than})" if newer_than else "") + (f" and traffic {split}" if split else "")
        return self.wait_for(name, lambda isvc: is_ready(isvc, newer_than=newer_than, split=split), what=what,
                             deadline_s=deadline_s, give_up=failed_revision)

    def latest_ready_revision(self, name: str) -> str | None:
        """The service's latest ready revision now (None when it does not exist or has none)."""
        try:
            return predictor_status(self.get(name)).get("latestReadyRevision")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


class IsvcFailed(StackError):
    def __init__(self, name: str, reason: str, isvc: dict) -> None:
        self.isvc = isvc
        super().__init__(f"InferenceService {name} failed: {reason}")


def is_ready(isvc: dict, *, newer_than: str | None = None, split: dict[str, int] | None = None) -> bool:
    """Ready the way KServe's own e2e tests and `kubectl wait` users decide it, not by generation.

    KServe 0.14 writes the *Knative Service's* observed generation into the InferenceService's
    ``status.observedGeneration`` (``PropagateStatus``, inference_service_status.go at v0.14.1),
    and rewrites the Knative Service's traffic on its own (the canary split once the first
    revision is rolled out), so that number never has to match the InferenceService's
    ``metadata.generation``. What holds instead: Ready=True, the latest created revision is the
    latest ready one (the newest template is serving, not an older one), it is not the revision
    the caller saw before its write, and the traffic is what the caller asked for."""
    cond = condition(isvc, "Ready")
    comp = predictor_status(isvc)
    latest_ready = comp.get("latestReadyRevision")
    if not (cond and cond["status"] == "True" and latest_ready and comp.get("latestCreatedRevision") == latest_ready):
        return False
    if newer_than is not None and latest_ready == newer_than:
        return False
    if split is not None:
        shares: dict[str, int] = {}
        for target in comp.get("traffic") or []:
            shares[target["revisionName"]] = shares.get(target["revisionName"], 0) + int(target.get("percent") or 0)
        if {k: v for k, v in shares.items() if v} != {k: v for k, v in split.items() if v}:
            return False
    return True


def failed_revision(isvc: dict) -> str | None:
    """A terminal failure of the latest revision, with KServe's own message, else None."""
    model_status = (isvc.get("status") or {}).get("modelStatus") or {}
    if model_status.get("transitionStatus") in ("BlockedByFailedLoad", "InvalidSpec"):
        info = model_status.get("lastFailureInfo") or {}
        ready = condition(isvc, "PredictorReady") or {}
        return (f"{info.get('reason')} (exit code {info.get('exitCode')}): {info.get('message') or '(no message)'}"
                f"; PredictorReady: {ready.get('reason', '')}: {ready.get('message', '')}")
    return None
