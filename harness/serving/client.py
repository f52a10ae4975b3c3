"""InferenceService client for every profile: the official `kubernetes` client's
CustomObjectsApi against whatever API server the profile gives (a cluster's, or the local
emulation's), with the seed's create-or-patch, and waits that have deadlines and say what they
were waiting for when they give up (with the object's last conditions).
"""
from __future__ import annotations

import time
from collections.abc import Callable

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

__all__ = ["IsvcClient", "IsvcFailed", "IsvcWaitTimeout", "condition", "failed_revision", "predictor_status", "summarize"]

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


class IsvcWaitTimeout(TimeoutError):
    pass


def condition(isvc: dict, ctype: str) -> dict | None:
    for cond in (isvc.get("status") or {}).get("conditions", []):
        if cond.get("type") == ctype:
            return cond
    return None


def predictor_status(isvc: dict) -> dict:
    return ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}


def summarize(isvc: dict) -> str:
    conds = ", ".join(f"{c['type']}={c['status']}" + (f" ({c.get('reason')}: {c.get('message', '')[:300]})"
                                                      if c["status"] != "True" and c.get("reason") else "")
                      for c in (isvc.get("status") or {}).get("conditions", []))
    traffic = predictor_status(isvc).get("traffic")
    return f"conditions: {conds or 'none yet'}; traffic: {traffic}"


class IsvcClient:
    def __init__(self, api_client: k8s.ApiClient, namespace: str) -> None:
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace

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

    def wait_ready(self, name: str, *, deadline_s: float, generation: int | None = None) -> dict:
        def ready(isvc: dict) -> bool:
            cond = condition(isvc, "Ready")
            observed = (isvc.get("status") or {}).get("observedGeneration")
            want = generation or isvc["metadata"].get("generation")
            return bool(cond and cond["status"] == "True" and observed == want)

        return self.wait_for(name, ready, what="condition Ready=True", deadline_s=deadline_s,
                             give_up=failed_revision)


class IsvcFailed(RuntimeError):
    def __init__(self, name: str, reason: str, isvc: dict) -> None:
        self.isvc = isvc
        super().__init__(f"InferenceService {name} failed: {reason}")


def failed_revision(isvc: dict) -> str | None:
    """A terminal failure of the latest revision, with KServe's own message, else None."""
    model_status = (isvc.get("status") or {}).get("modelStatus") or {}
    if model_status.get("transitionStatus") in ("BlockedByFailedLoad", "InvalidSpec"):
        info = model_status.get("lastFailureInfo") or {}
        ready = condition(isvc, "PredictorReady") or {}
        return (f"{info.get('reason')} (exit code {info.get('exitCode')}): {info.get('message') or '(no message)'}"
                f"; PredictorReady: {ready.get('reason', '')}: {ready.get('message', '')}")
    return None
