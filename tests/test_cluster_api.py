"""The cluster profiles' API logic against a real kube-apiserver (v1.30.14, envtest's shape: etcd and
the API server alone, tests/host_fixtures.py ``kube_api``): the API semantics the harness relies on
first, then create-or-patch with 404 and 409, waits with deadlines, traffic, rollback by storageUri
swap, the NetworkPolicy fault, the GPU node status patch, the chaos guard, scaling and pod deletion,
waits on deployments/CRDs/jobs, and discovery of an existing cluster's versions.

No controller runs next to that API server: where one is needed a test plays it, writing status
through the status subresource as it would (``FakeKServe`` plays KServe's; a node's kubelet is played
by writing its status). InferenceServices are validated by KServe v0.14.1's own CRD. What the
harness's client sent is recorded on the client side (tests/kube.py ``Recorder``). The checks that
need a scheduler and kubelets (placement, a real cordon verdict, the kubelet listing a patched
extended resource) run on the whole host cluster: tests/test_host_evidence.py."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.cluster.commands import Kubectl
from harness.cluster.discover import compare, discover
from harness.cluster.errors import ChaosRefused, ClusterError, WaitTimeout
from harness.cluster.faults import CUT_POLICY_NAME, ClusterFaults
from harness.cluster.gpu import GPU_TAINT, advertise_fake_gpu, gpu_pool_problems, unschedulable_when_cordoned
from harness.cluster.guard import ChaosGuard
from harness.cluster.spec import cluster_spec
from harness.cluster.waits import wait_crds_established, wait_deployments_available, wait_job_complete
from harness.matrix import load_matrix
from harness.serving.isvc import IsvcClient, IsvcFailed, IsvcWaitTimeout
from harness.serving.rollout import (
    StaleStorageUri,
    promote,
    rollback,
    split_of,
    start_canary,
    swap_storage_uri,
)
from tests.host_fixtures import Kube
from tests.kube import Scratch, get, put, wait_for

NS = "model-serving"
GROUP = ("serving.kserve.io", "v1beta1", NS, "inferenceservices")
ALLOWED = {"seamcheck.io/chaos": "allowed"}


@pytest.fixture
def cluster(kube: Kube) -> Kube:
    """The namespaces every test here uses (three labelled for chaos, one not)."""
    for name, labels in ((NS, ALLOWED), ("kubeflow", ALLOWED), ("seamcheck-system", {}), ("prod", ALLOWED)):
        kube.scratch.namespace(name, labels)
    return kube


@pytest.fixture
def api(cluster: Kube) -> k8s.ApiClient:
    return cluster.api


def namespace(name: str, labels: dict[str, str] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def isvc(name: str, uri: str, canary: int | None = None) -> dict:
    predictor: dict[str, Any] = {"minReplicas": 1, "model": {"modelFormat": {"name": "mlflow"}, "protocolVersion": "v2",
                                                             "storageUri": uri}}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": NS, "labels": {"mlflow-run-id": "r1"}},
            "spec": {"predictor": predictor}}


def pod(name: str, ns: str, *, labels: dict | None = None, node: str | None = None, phase: str = "Running",
        containers: tuple[str, ...] = ("main",), resources: dict | None = None, tolerations: list | None = None,
        annotations: dict | None = None, ip: str | None = None) -> dict:
    """A Pod as its kubelet reports it (the status is written through /status: the test plays the kubelet)."""
    spec: dict[str, Any] = {"tolerations": tolerations or [],
                            "containers": [{"name": c, "image": "python:3.11-slim", "resources": resources or {}}
                                           for c in containers]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}, "annotations": annotations or {}},
            "spec": spec, "status": {"phase": phase, **({"podIP": ip, "podIPs": [{"ip": ip}]} if ip else {})}}


def node(name: str, *, labels: dict | None = None, taints: list | None = None, gpus: int = 0,
         unschedulable: bool = False) -> dict:
    resources = {"cpu": "4", "memory": "16Gi", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"capacity": dict(resources), "allocatable": dict(resources)}}


def deployment(name: str, ns: str, *, replicas: int = 1, ready: int | None = None, image: str = "x:1",
               labels: dict | None = None, container: str = "main", annotations: dict | None = None) -> dict:
    """A Deployment as its controller reports it (status written through /status)."""
    ready = replicas if ready is None else ready
    available = "True" if ready >= replicas else "False"
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}, "annotations": annotations or {}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": container, "image": image}]}}},
            "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": ready,
                       "availableReplicas": ready, "readyReplicas": ready,
                       "conditions": [{"type": "Available", "status": available, "reason": "MinimumReplicas",
                                       "message": "m"}]}}


# ------------------------------------------------------------------------------ the API's own semantics
def test_the_api_semantics_the_harness_relies_on(api: k8s.ApiClient, kserve_crd) -> None:
    """What the harness's writes assume of kube-apiserver (the fake this file used to run on had to
    emulate each; here the real server answers)."""
    custom = k8s.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(*GROUP, isvc("a", "s3://b/m/model"))
    assert created["metadata"]["generation"] == 1 and "status" not in created
    with pytest.raises(ApiException) as dup:
        custom.create_namespaced_custom_object(*GROUP, isvc("a", "s3://b/m/model"))
    assert dup.value.status == 409 and '"reason":"AlreadyExists"' in dup.value.body.replace(" ", "")
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object(*GROUP, "nope")
    assert missing.value.status == 404 and 'inferenceservices.serving.kserve.io \\"nope\\" not found' in missing.value.body
    rv = created["metadata"]["resourceVersion"]
    same = custom.patch_namespaced_custom_object(*GROUP, "a", {"metadata": {"labels": {"mlflow-run-id": "r1"}}})
    assert same["metadata"]["resourceVersion"] == rv  # a no-op patch keeps the resourceVersion
    changed = custom.patch_namespaced_custom_object(*GROUP, "a", {"spec": {"predictor": {"minReplicas": 2}},
                                                                  "status": {"observedGeneration": 7}})
    assert changed["metadata"]["generation"] == 2 and "status" not in changed  # main resource ignores status
    with pytest.raises(ApiException) as stale:
        custom.patch_namespaced_custom_object(*GROUP, "a", {"metadata": {"resourceVersion": rv},
                                                            "spec": {"predictor": {"minReplicas": 3}}})
    assert stale.value.status == 409 and "the object has been modified" in stale.value.body
    status = custom.patch_namespaced_custom_object_status(*GROUP, "a", {"status": {"observedGeneration": 2},
                                                                        "spec": {"predictor": {"minReplicas": 9}}})
    assert status["status"] == {"observedGeneration": 2} and status["spec"]["predictor"]["minReplicas"] == 2
    assert status["metadata"]["generation"] == 2  # status writes do not count as spec changes
    with pytest.raises(ApiException) as failed_test:
        custom.patch_namespaced_custom_object(*GROUP, "a", [{"op": "test", "path": "/spec/predictor/minReplicas",
                                                             "value": 7}],
                                              _content_type="application/json-patch+json")
    assert failed_test.value.status == 422
    with pytest.raises(ApiException) as smp:
        custom.patch_namespaced_custom_object(*GROUP, "a", {"spec": {}},
                                              _content_type="application/strategic-merge-patch+json")
    assert smp.value.status == 415
    with pytest.raises(ApiException) as merge_list:  # a JSON patch sent as a merge patch is rejected
        custom.patch_namespaced_custom_object(*GROUP, "a", [{"op": "remove", "path": "/spec"}],
                                              _content_type="application/merge-patch+json")
    assert merge_list.value.status in (400, 422)
    core = k8s.CoreV1Api(api)
    put(api, pod("p1", NS, labels={"app": "x", "tier": "a"}))
    put(api, pod("p2", NS, labels={"app": "y"}, node="n1"))
    assert [p.metadata.name for p in core.list_namespaced_pod(NS, label_selector="app in (x,z),tier").items] == ["p1"]
    assert [p.metadata.name for p in core.list_namespaced_pod(NS, field_selector="spec.nodeName=n1").items] == ["p2"]
    assert [p.metadata.name for p in core.list_namespaced_pod(NS, label_selector="app!=x").items] == ["p2"]
    with pytest.raises(ApiException) as no_ns:
        core.create_namespaced_pod("ghost", pod("p3", "ghost"))
    assert no_ns.value.status == 404


# ------------------------------------------------------------------------------ a KServe stand-in
class FakeKServe:
    """A FAKE KServe controller (no KServe runs next to this API server): a new revision when the
    predictor's template changes (canaryTrafficPercent is traffic, not template), ready after
    ``delay_s``, traffic as KServe's ksvc reconciler builds it, ModelLoadFailed for a storageUri that
    does not end in /model. It watches by polling and writes status through /status."""

    def __init__(self, api: k8s.ApiClient, delay_s: float = 0.2) -> None:
        self.custom, self.delay_s = k8s.CustomObjectsApi(api), delay_s
        self.generations: dict[str, int] = {}
        self.templates: dict[str, list] = {}  # name -> [template, revision number]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            try:
                items = self.custom.list_namespaced_custom_object(*GROUP)["items"]
            except ApiException:
                continue
            for obj in items:
                name, generation = obj["metadata"]["name"], obj["metadata"]["generation"]
                if self.generations.get(name) != generation:
                    self.generations[name] = generation
                    threading.Timer(self.delay_s, self.reconcile, args=(name, generation)).start()

    def reconcile(self, name: str, generation: int) -> None:
        if self._stop.is_set():
            return
        try:
            obj = self.custom.get_namespaced_custom_object(*GROUP, name)
        except ApiException:
            return
        if obj["metadata"]["generation"] != generation:
            return
        status = obj.get("status") or {}
        comp = dict((status.get("components") or {}).get("predictor") or {})
        predictor = obj["spec"]["predictor"]
        template = {k: v for k, v in predictor.items() if k != "canaryTrafficPercent"}
        known = self.templates.get(name)
        if known is None or known[0] != template:
            self.templates[name] = known = [template, (known[1] + 1) if known else 1]
        revision = f"{name}-predictor-{known[1]:05d}"
        if not predictor["model"]["storageUri"].endswith("/model"):
            status.update(observedGeneration=generation, conditions=[
                {"type": "Ready", "status": "False", "reason": "RevisionFailed"},
                {"type": "PredictorReady", "status": "False", "reason": "RevisionFailed", "message": "exit 0"}],
                modelStatus={"transitionStatus": "BlockedByFailedLoad",
                             "lastFailureInfo": {"reason": "ModelLoadFailed", "exitCode": 0, "message": ""}})
            self._write(obj, status)
            return
        rolled = comp.get("latestRolledoutRevision")
        percent = predictor.get("canaryTrafficPercent")
        if percent is not None and rolled and rolled != revision:
            traffic = [{"revisionName": revision, "percent": percent, "latestRevision": True}]
            if percent < 100:
                traffic.append({"revisionName": rolled, "percent": 100 - percent, "tag": "prev",
                                "latestRevision": False})
        else:
            traffic = [{"revisionName": revision, "percent": 100, "latestRevision": True}]
        if traffic[0]["percent"] == 100 and rolled != revision:
            comp["previousRolledoutRevision"], comp["latestRolledoutRevision"] = rolled, revision
        comp.update(latestCreatedRevision=revision, latestReadyRevision=revision, traffic=traffic,
                    url=f"http://{name}-predictor.{NS}.example.com")
        status.update(observedGeneration=generation, components={"predictor": comp},
                      conditions=[{"type": "Ready", "status": "True"}, {"type": "PredictorReady", "status": "True"}])
        status.pop("modelStatus", None)
        self._write(obj, status)

    def _write(self, obj: dict, status: dict) -> None:
        # The whole status replaced (PUT /status): a field KServe drops (modelStatus) goes.
        try:
            self.custom.replace_namespaced_custom_object_status(*GROUP, obj["metadata"]["name"],
                                                                {**obj, "status": status})
        except ApiException as exc:
            if exc.status == 409:  # changed meanwhile: the watch sees the new generation
                self.generations.pop(obj["metadata"]["name"], None)
            elif exc.status != 404:
                raise


@pytest.fixture
def fake_kserve(api: k8s.ApiClient, kserve_crd) -> Iterator[type]:
    made: list[FakeKServe] = []

    def start(delay_s: float = 0.2) -> FakeKServe:
        made.append(FakeKServe(api, delay_s))
        return made[-1]

    yield start
    for controller in made:
        controller.close()


# ------------------------------------------------------------------------------ InferenceServices
def test_create_or_patch_creates_on_404_then_patches(api: k8s.ApiClient, cluster: Kube, kserve_crd) -> None:
    client = IsvcClient(api, NS)
    verb, obj = client.create_or_patch(isvc("svc", "s3://b/1/model"))
    assert verb == "created" and obj["metadata"]["generation"] == 1
    calls = cluster.calls(contains="/inferenceservices")
    assert [c["method"] for c in calls] == ["PATCH", "POST"]
    # The client sends the body as JSON on POST; kube-apiserver reads it so.
    assert calls[0]["content_type"] == "application/merge-patch+json" and calls[1]["content_type"] in ("",
                                                                                                      "application/json")
    verb, obj = client.create_or_patch(isvc("svc", "s3://b/2/model"))
    assert verb == "patched" and obj["spec"]["predictor"]["model"]["storageUri"] == "s3://b/2/model"
    assert obj["metadata"]["generation"] == 2


def test_create_or_patch_patches_when_someone_else_created_it_first(api: k8s.ApiClient, cluster: Kube,
                                                                    kserve_crd) -> None:
    """PATCH 404, another writer creates it, our POST gets 409 AlreadyExists: we patch theirs."""
    other = k8s.CustomObjectsApi(cluster.server.client())
    first_post = []

    def other_writer(method: str, path: str) -> None:
        if method == "POST" and path.endswith("/inferenceservices") and not first_post:
            first_post.append(True)
            other.create_namespaced_custom_object(*GROUP, isvc("race", "s3://b/theirs/model"))

    cluster.recorder.before = other_writer
    verb, obj = IsvcClient(api, NS).create_or_patch(isvc("race", "s3://b/ours/model"))
    assert verb == "patched" and obj["spec"]["predictor"]["model"]["storageUri"] == "s3://b/ours/model"
    assert [c["method"] for c in cluster.calls(contains="/inferenceservices")] == ["PATCH", "POST", "PATCH"]


def test_wait_ready_sees_the_controller_and_reads_traffic(api: k8s.ApiClient, fake_kserve) -> None:
    fake_kserve(delay_s=0.3)
    client = IsvcClient(api, NS)
    client.create_or_patch(isvc("svc", "s3://b/1/model", canary=20))
    ready = client.wait_ready("svc", deadline_s=10)
    assert split_of(ready) == {"svc-predictor-00001": 100}  # a first rollout takes 100% whatever the canary says
    state = start_canary(client, "svc", "s3://b/2/model", 20, deadline_s=10)
    assert (state.canary, state.stable) == ("svc-predictor-00002", "svc-predictor-00001")
    assert split_of(state.isvc) == {"svc-predictor-00002": 20, "svc-predictor-00001": 80}
    # canaryTrafficPercent 0: no new revision, the rolled-out one takes everything back
    assert split_of(rollback(client, "svc", state, deadline_s=10)) == {"svc-predictor-00002": 0,
                                                                      "svc-predictor-00001": 100}


def test_wait_ready_gives_up_at_its_deadline_naming_what_it_waited_for(api: k8s.ApiClient, kserve_crd) -> None:
    client = IsvcClient(api, NS)
    client.create_or_patch(isvc("stuck", "s3://b/1/model"))  # no controller: never Ready
    started = time.monotonic()
    with pytest.raises(IsvcWaitTimeout) as exc:
        client.wait_ready("stuck", deadline_s=1.0)
    assert 1.0 <= time.monotonic() - started < 5
    assert "gave up after 1s waiting for condition Ready=True" in str(exc.value)
    assert "conditions: none yet" in str(exc.value)


def test_a_failed_revision_stops_the_wait_with_kserves_reason(api: k8s.ApiClient, fake_kserve) -> None:
    fake_kserve(delay_s=0.1)
    client = IsvcClient(api, NS)
    client.create_or_patch(isvc("broken", "s3://b/1"))
    with pytest.raises(IsvcFailed) as exc:
        client.wait_ready("broken", deadline_s=30)
    assert "ModelLoadFailed" in str(exc.value)


def test_rollback_by_storage_uri_swap(api: k8s.ApiClient, cluster: Kube, fake_kserve) -> None:
    fake_kserve(delay_s=0.1)
    client = IsvcClient(api, NS)
    client.create_or_patch(isvc("svc", "s3://b/good/model"))
    client.wait_ready("svc", deadline_s=10)
    start_canary(client, "svc", "s3://b/bad/model", 30, deadline_s=10)
    cluster.recorder.clear()
    rolled = swap_storage_uri(client, "svc", expected_current="s3://b/bad/model", new_uri="s3://b/good/model",
                              deadline_s=10)
    assert rolled["spec"]["predictor"]["model"]["storageUri"] == "s3://b/good/model"
    assert "canaryTrafficPercent" not in rolled["spec"]["predictor"]
    assert split_of(rolled) == {"svc-predictor-00003": 100}
    patch = cluster.calls("PATCH", "/inferenceservices/svc")[0]
    assert patch["content_type"] == "application/json-patch+json" and '"op": "test"' in patch["body"]
    before = client.get("svc")
    with pytest.raises(StaleStorageUri):
        swap_storage_uri(client, "svc", expected_current="s3://b/bad/model", new_uri="s3://b/other/model",
                         deadline_s=5)
    assert client.get("svc")["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_promote_after_canary(api: k8s.ApiClient, fake_kserve) -> None:
    fake_kserve(delay_s=0.05)
    client = IsvcClient(api, NS)
    client.create_or_patch(isvc("svc", "s3://b/1/model"))
    client.wait_ready("svc", deadline_s=10)
    state = start_canary(client, "svc", "s3://b/2/model", 10, deadline_s=10)
    # Removing canaryTrafficPercent is a merge patch with null: the field must really go.
    promoted = promote(client, "svc", state, deadline_s=10)
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert split_of(promoted) == {"svc-predictor-00002": 100}
    assert promoted["status"]["components"]["predictor"]["previousRolledoutRevision"] == "svc-predictor-00001"


# ------------------------------------------------------------------------------ chaos guard + faults
def test_the_chaos_guard_needs_the_flag_and_the_label(api: k8s.ApiClient) -> None:
    guard = ChaosGuard.of(api, ["kubeflow", "seamcheck-system", "absent"], cluster="context prod-eu")
    guard.check("kubeflow", "x")  # listed and labelled
    with pytest.raises(ChaosRefused, match="not listed in --chaos-namespaces"):
        guard.check("prod", "delete pods")  # labelled, not listed
    with pytest.raises(ChaosRefused, match=r"lacks the label seamcheck.io/chaos=allowed \(found None\)"):
        guard.check("seamcheck-system", "delete pods")  # listed, not labelled
    with pytest.raises(ChaosRefused, match="does not exist"):
        guard.check("absent", "delete pods")
    with pytest.raises(ChaosRefused, match="on context prod-eu"):
        guard.check("prod", "x")
    with pytest.raises(ChaosRefused, match=r"listed: none"):
        ChaosGuard.of(api, []).check("kubeflow", "x")  # the cloud default: nothing is allowed


def test_network_policy_cuts_the_pipeline_namespace_from_mlflow_and_is_removed(api: k8s.ApiClient,
                                                                                cluster: Kube) -> None:
    put(api, pod("mlflow-abc", "seamcheck-system", labels={"app.kubernetes.io/name": "mlflow"}, ip="10.244.1.7"))
    put(api, pod("minio-abc", "seamcheck-system", labels={"app.kubernetes.io/name": "minio"}, ip="10.244.1.8"))
    faults = ClusterFaults(api, ChaosGuard.of(api, ["kubeflow"]))
    policy = faults.cut_pipeline_from_mlflow("kubeflow", "seamcheck-system", {"app.kubernetes.io/name": "mlflow"})
    # The test reads through a client of its own: the recorded one counts only what the harness sent.
    reader = cluster.server.client()
    stored = get(reader, "networking.k8s.io/v1", "NetworkPolicy", CUT_POLICY_NAME, "kubeflow")
    assert stored is not None and stored["spec"] == policy["spec"]
    spec = stored["spec"]
    assert spec["podSelector"] == {} and spec["policyTypes"] == ["Egress"]
    peers = [peer for rule in spec["egress"] for peer in rule["to"]]
    assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.1.7/32"]}} in peers  # MLflow's pod IP only
    beside = next(p for p in peers if "podSelector" in p)
    assert beside["podSelector"]["matchExpressions"] == [{"key": "app.kubernetes.io/name", "operator": "NotIn",
                                                          "values": ["mlflow"]}]
    faults.cut_pipeline_from_mlflow("kubeflow", "seamcheck-system", {"app.kubernetes.io/name": "mlflow"})  # 409 path
    assert [c["method"] for c in cluster.calls(contains="/networkpolicies")] == ["POST", "POST", "PUT"]
    assert faults.restore_pipeline_to_mlflow("kubeflow") is True
    assert get(reader, "networking.k8s.io/v1", "NetworkPolicy", CUT_POLICY_NAME, "kubeflow") is None
    assert faults.restore_pipeline_to_mlflow("kubeflow") is False and faults.policies == []


def test_lasting_faults_record_their_kubectl_undo_before_they_apply(api: k8s.ApiClient, tmp_path) -> None:
    """The reaper lifts a cut or restores a scale that a killed session left: the undo is in the
    ledger before the fault is applied, and released when the fault is lifted."""
    from harness.ledger.ledger import Ledger, activated
    from harness.ledger.records import read_state

    record = Ledger(tmp_path / "ledgers", "faults-test")
    kubectl = Kubectl("kubectl", tmp_path / "kubeconfig").argv
    put(api, deployment("prometheus", NS, replicas=2))
    faults = ClusterFaults(api, ChaosGuard.of(api, ["kubeflow", NS]), kubectl=kubectl)
    with activated(record):
        faults.cut_pipeline_from_mlflow("kubeflow", "seamcheck-system", {"app.kubernetes.io/name": "mlflow"})
        faults.scale(NS, "prometheus", 0)
        faults.scale(NS, "prometheus", 1)  # still not the original: the undo keeps the original count
        pending = {tuple(e.what["argv"][3:]) for e in read_state(record.path).pending(("command",))}
        assert pending == {("delete", "networkpolicy", "-n", "kubeflow", CUT_POLICY_NAME, "--ignore-not-found"),
                           ("scale", "deployment", "prometheus", "-n", NS, "--replicas=2")}, pending
        assert all(e.what["argv"][:3] == ["kubectl", "--kubeconfig", str(tmp_path / "kubeconfig")]
                   for e in read_state(record.path).pending(("command",)))
        faults.restore_pipeline_to_mlflow("kubeflow")
        faults.scale(NS, "prometheus", 2)
        assert read_state(record.path).pending(("command",)) == []
    record.close()


def test_faults_are_refused_before_anything_changes(api: k8s.ApiClient, cluster: Kube) -> None:
    put(api, pod("victim", "prod", labels={"app": "x"}))
    put(api, deployment("web", "prod"))
    faults = ClusterFaults(api, ChaosGuard.of(api, ["kubeflow"]))  # prod is labelled but not listed
    cluster.recorder.clear()
    for attempt in (lambda: faults.cut_pipeline_from_mlflow("prod", "seamcheck-system", {"app": "mlflow"}),
                    lambda: faults.delete_pods("prod", "app=x"),
                    lambda: faults.scale("prod", "web", 0)):
        with pytest.raises(ChaosRefused):
            attempt()
    assert all(c["method"] == "GET" for c in cluster.recorder.requests), cluster.recorder.requests
    assert get(api, "v1", "Pod", "victim", "prod") is not None
    assert get(api, "apps/v1", "Deployment", "web", "prod")["spec"]["replicas"] == 1


def test_pod_deletion_and_scaling_in_an_allowed_namespace(api: k8s.ApiClient, cluster: Kube) -> None:
    for i in range(2):
        put(api, pod(f"rev-{i}", NS, labels={"serving.knative.dev/revision": "svc-predictor-00001"}))
    put(api, pod("other", NS, labels={"serving.knative.dev/revision": "svc-predictor-00002"}))
    put(api, deployment("prometheus", NS, replicas=1))
    faults = ClusterFaults(api, ChaosGuard.of(api, [NS]))
    deleted = faults.delete_pods(NS, "serving.knative.dev/revision=svc-predictor-00001", grace_period_s=0)
    assert deleted == ["rev-0", "rev-1"] and get(api, "v1", "Pod", "other", NS) is not None
    assert {c["query"].get("gracePeriodSeconds") for c in cluster.calls("DELETE", "/pods/")} == {"0"}
    assert get(api, "v1", "Pod", "rev-0", NS) is None  # grace 0: gone at once
    with pytest.raises(ValueError, match="label selector is required"):
        faults.delete_pods(NS, "")
    assert faults.scale(NS, "prometheus", 0) == 1
    assert get(api, "apps/v1", "Deployment", "prometheus", NS)["spec"]["replicas"] == 0
    assert cluster.calls("PATCH", "/deployments/prometheus/scale")


# ------------------------------------------------------------------------------ GPU (the API's part)
def test_advertising_without_a_kubelet_times_out_naming_allocatable(api: k8s.ApiClient, cluster: Kube) -> None:
    cluster.scratch.add(node("lonely"))
    with pytest.raises(WaitTimeout, match="to list 1 nvidia.com/gpu as allocatable"):
        advertise_fake_gpu(api, "lonely", deadline_s=0.5, interval_s=0.1)
    patch = cluster.calls("PATCH", "/nodes/lonely/status")
    assert len(patch) == 1 and patch[0]["content_type"] == "application/json-patch+json"
    assert '"path": "/status/capacity/nvidia.com~1gpu"' in patch[0]["body"]
    stored = get(api, "v1", "Node", "lonely")
    assert stored["status"]["capacity"]["nvidia.com/gpu"] == "1"  # capacity patched; allocatable is the kubelet's


def test_gpu_pool_problems_name_the_missing_label_and_taint(api: k8s.ApiClient, cluster: Kube) -> None:
    cluster.scratch.add(node("plain"))
    problems = gpu_pool_problems(k8s.CoreV1Api(api).read_node("plain"))
    assert problems == ["label nvidia.com/gpu.present=true missing",
                        f"taint nvidia.com/gpu=present:{GPU_TAINT['effect']} missing"]


def test_cordon_check_restores_the_node_even_when_the_wait_times_out(api: k8s.ApiClient, cluster: Kube) -> None:
    cluster.scratch.add(node("gpu-worker", gpus=1))
    put(api, pod("train-pod", "kubeflow", node="gpu-worker"))
    template = k8s.CoreV1Api(api).read_namespaced_pod("train-pod", "kubeflow")
    with pytest.raises(WaitTimeout, match="scheduler's verdict"):  # no scheduler runs here
        unschedulable_when_cordoned(api, "gpu-worker", template, "kubeflow", deadline_s=0.5, interval_s=0.1)
    assert not get(api, "v1", "Node", "gpu-worker")["spec"].get("unschedulable")
    probes = [p.metadata.name for p in k8s.CoreV1Api(api).list_namespaced_pod("kubeflow").items
              if p.metadata.name.startswith("seamcheck-gpu")]
    assert probes == []  # the probe pod is gone
    node_patches = [c["body"] for c in cluster.calls("PATCH", "/nodes/gpu-worker")]
    assert node_patches == ['{"spec": {"unschedulable": true}}', '{"spec": {"unschedulable": false}}']


# ------------------------------------------------------------------------------ waits
def test_wait_deployments_available(api: k8s.ApiClient) -> None:
    put(api, deployment("activator", "kubeflow"))
    put(api, deployment("webhook", "kubeflow", replicas=1, ready=0))
    with pytest.raises(WaitTimeout) as exc:
        wait_deployments_available(api, "kubeflow", deadline_s=0.5, interval_s=0.1)
    assert "deployments in kubeflow to be available" in str(exc.value)
    assert "webhook: 0/1 available, Available=False (MinimumReplicas: m)" in str(exc.value)
    threading.Timer(0.3, lambda: put(api, deployment("webhook", "kubeflow"))).start()
    assert wait_deployments_available(api, "kubeflow", deadline_s=10, interval_s=0.1) == ["activator", "webhook"]
    with pytest.raises(WaitTimeout, match="controller: not created yet"):
        wait_deployments_available(api, "kubeflow", names=["controller"], deadline_s=0.3, interval_s=0.1)


def _crd(group: str, plural: str, kind: str) -> dict:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "names": {"plural": plural, "kind": kind}, "scope": "Namespaced",
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


def test_wait_crds_and_jobs(api: k8s.ApiClient, cluster: Kube) -> None:
    # A CRD whose kind another CRD of its group already has is never established (NamesAccepted=False).
    cluster.scratch.add(_crd("app.seamcheck.dev", "applications", "Application"))
    cluster.scratch.add(_crd("app.seamcheck.dev", "applicationz", "Application"))
    wait_crds_established(api, ["applications.app.seamcheck.dev"], deadline_s=10, interval_s=0.1)
    with pytest.raises(WaitTimeout, match="applicationz.app.seamcheck.dev: Established=False"):
        wait_crds_established(api, ["applicationz.app.seamcheck.dev"], deadline_s=1, interval_s=0.1)
    with pytest.raises(WaitTimeout, match="widgets.app.seamcheck.dev: not created yet"):
        wait_crds_established(api, ["widgets.app.seamcheck.dev"], deadline_s=0.3, interval_s=0.1)
    threading.Timer(0.3, lambda: cluster.scratch.add(_crd("app.seamcheck.dev", "widgets", "Widget"))).start()
    wait_crds_established(api, ["widgets.app.seamcheck.dev"], deadline_s=10, interval_s=0.1)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "minio-buckets", "namespace": "kubeflow"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "mc", "image": "x:1"}]}}},
           "status": {"failed": 3, "startTime": "2026-12-01T00:00:00Z",
                      "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                      "message": "too many retries"}]}}
    put(api, job)
    with pytest.raises(ClusterError, match="failed: BackoffLimitExceeded: too many retries"):
        wait_job_complete(api, "kubeflow", "minio-buckets", deadline_s=5, interval_s=0.1)


# ------------------------------------------------------------------------------ discovery
def test_discovery_reports_every_difference_from_the_row(api: k8s.ApiClient) -> None:
    for ns in ("kserve", "knative-serving", "kourier-system", "cert-manager", "ml-platform"):
        put(api, namespace(ns))
    put(api, deployment("kserve-controller-manager", "kserve", image="kserve/kserve-controller:v0.13.1",
                        container="manager"))
    put(api, deployment("controller", "knative-serving", labels={"app.kubernetes.io/version": "1.13.1"}))
    put(api, deployment("3scale-kourier-gateway", "kourier-system"))
    put(api, deployment("ml-pipeline", "kubeflow", image="gcr.io/ml-pipeline/api-server:2.3.0",
                        container="ml-pipeline-api-server"))
    put(api, deployment("cert-manager", "cert-manager", image="quay.io/jetstack/cert-manager-controller:v1.15.1",
                        container="cert-manager-controller"))
    put(api, deployment("mlflow", "seamcheck-system", labels={"app.kubernetes.io/name": "mlflow"},
                        annotations={"seamcheck.io/mlflow-version": "2.17.2"}))  # the harness's own: not reported
    put(api, deployment("tracking", "ml-platform", labels={"app.kubernetes.io/name": "mlflow"},
                        image="ghcr.io/mlflow/mlflow:v2.16.0"))
    try:
        found = discover(api)
        assert found.versions == {"kubernetes": "1.30", "kserve": "0.13.1", "knative_serving": "1.13.1",
                                  "network_layer": "kourier", "kfp_backend": "2.3.0", "cert_manager": "1.15.1",
                                  "mlflow": "2.16.0"}
        row = load_matrix().row(None)
        mismatches = compare(cluster_spec(row, "cloud"), row.kubernetes, found)
        assert mismatches == [{"component": "kserve", "expected": "0.14.1", "found": "0.13.1",
                               "where": "kserve/kserve-controller-manager"},
                              {"component": "mlflow", "expected": "2.17.2", "found": "2.16.0",
                               "where": "ml-platform/tracking"}]
    finally:
        leftover = Scratch(api)
        leftover.namespaces = ["kserve", "knative-serving", "kourier-system", "cert-manager", "ml-platform"]
        leftover.cleanup()


def test_discovery_of_a_cluster_without_the_stack_outside_the_rows_range(api: k8s.ApiClient) -> None:
    """The real server is 1.30: the row's range is narrowed (1.28, 1.29) instead of the server made older."""
    row = load_matrix().row(None)
    gone = discover(api)
    misses = {m["component"]: m["found"] for m in compare(cluster_spec(row, "cloud"), ("1.28", "1.29"), gone)}
    assert misses == {"kubernetes": "1.30", "kserve": "not installed", "knative_serving": "not installed",
                      "kfp_backend": "not installed", "cert_manager": "not installed"}


def test_the_server_this_runs_on_is_the_host_builds_kube_apiserver(cluster: Kube) -> None:
    assert cluster.server.git_version() == "v1.30.14"
    assert wait_for("the API server's own namespaces", lambda: {n.metadata.name for n in k8s.CoreV1Api(
        cluster.api).list_namespace().items} >= {"default", "kube-system"})


# ------------------------------------------------------------------------------ the cut's proof
MLFLOW_SELECTOR = {"app.kubernetes.io/name": "mlflow"}


def test_a_cut_the_probe_pod_gets_through_is_an_error_naming_the_cni(api: k8s.ApiClient) -> None:
    """The probe is injected here (no kubelet runs pods next to this API server); the probe pod's
    own life cycle is tested below."""
    put(api, pod("mlflow-0", "seamcheck-system", labels=MLFLOW_SELECTOR, ip="10.244.1.7"))
    asked: list[tuple] = []

    def gets_through(namespace, addresses, port):
        asked.append((namespace, addresses, port))
        return True

    said: list[str] = []
    faults = ClusterFaults(api, ChaosGuard.of(api, ["kubeflow"]), said.append, path_probe=gets_through)
    with pytest.raises(ClusterError, match=r"did not cut: a probe pod in kubeflow still reached MLflow "
                                           r"\(10\.244\.1\.7:5000\); the cluster's CNI does not enforce NetworkPolicy"):
        faults.cut_pipeline_from_mlflow("kubeflow", "seamcheck-system", MLFLOW_SELECTOR)
    assert asked == [("kubeflow", ["10.244.1.7"], 5000)]
    assert get(api, "networking.k8s.io/v1", "NetworkPolicy", CUT_POLICY_NAME, "kubeflow") is None  # lifted again
    proven = ClusterFaults(api, ChaosGuard.of(api, ["kubeflow"]), said.append, path_probe=lambda *_: False)
    proven.cut_pipeline_from_mlflow("kubeflow", "seamcheck-system", MLFLOW_SELECTOR)
    assert "fault proven: a probe pod in kubeflow cannot reach MLflow while the cut is on" in said
    proven.cleanup()
    assert get(api, "networking.k8s.io/v1", "NetworkPolicy", CUT_POLICY_NAME, "kubeflow") is None


def test_the_cut_follows_mlflows_pod_when_it_moves(api: k8s.ApiClient) -> None:
    put(api, pod("mlflow-0", "seamcheck-system", labels=MLFLOW_SELECTOR, ip="10.244.1.7"))
    faults = ClusterFaults(api, ChaosGuard.of(api, ["kubeflow"]))
    faults.cut_pipeline_from_mlflow("kubeflow", "seamcheck-system", MLFLOW_SELECTOR)
    assert faults.refresh_cuts() == []
    put(api, pod("mlflow-0", "seamcheck-system", labels=MLFLOW_SELECTOR, ip="10.244.2.9"))  # its new address
    assert faults.refresh_cuts() == ["kubeflow"]
    policy = get(api, "networking.k8s.io/v1", "NetworkPolicy", CUT_POLICY_NAME, "kubeflow")
    blocks = policy["spec"]["egress"][2]["to"]
    assert blocks[0]["ipBlock"] == {"cidr": "0.0.0.0/0", "except": ["10.244.2.9/32"]}
    faults.restore_pipeline_to_mlflow("kubeflow")
    assert faults.refresh_cuts() == []  # nothing cut: nothing re-read


def test_the_probe_pod_reports_what_its_connect_saw(api: k8s.ApiClient) -> None:
    """The probe's script run here with the real interpreter (a listening and a closed port), and
    the pod's life cycle against the real API server: created with the script's arguments, read
    until it finished (the test plays the kubelet, writing the phase through /status), deleted.
    Its log comes from a kubelet, so here the verdict line carries none."""
    import socket
    import subprocess
    import sys

    from harness.cluster.path_probe import PROBE_SCRIPT, pod_path_probe

    with socket.socket() as listener, socket.socket() as closed:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        closed.bind(("127.0.0.1", 0))
        run = [sys.executable, "-c", PROBE_SCRIPT]
        reached = subprocess.run([*run, str(listener.getsockname()[1]), "127.0.0.1"], capture_output=True, text=True,
                                 timeout=30)
        refused = subprocess.run([*run, str(closed.getsockname()[1]), "127.0.0.1"], capture_output=True, text=True,
                                 timeout=30)
    assert reached.returncode == 0 and "reached 127.0.0.1" in reached.stdout
    assert refused.returncode == 1 and "no path to 127.0.0.1" in refused.stdout

    core = k8s.CoreV1Api(api)
    seen: list[dict] = []
    stop = threading.Event()

    def kubelet() -> None:  # the pod's run, as its kubelet would report it
        while not stop.is_set():
            for item in core.list_namespaced_pod("kubeflow").items:
                if item.metadata.name.startswith("seamcheck-path-probe-") and item.status.phase != "Failed":
                    seen.append(api.sanitize_for_serialization(item))
                    core.patch_namespaced_pod_status(item.metadata.name, "kubeflow", {"status": {"phase": "Failed"}})
            stop.wait(0.05)

    thread = threading.Thread(target=kubelet, daemon=True)
    thread.start()
    said: list[str] = []
    try:
        probe = pod_path_probe(api, "python:3.11-slim", interval_s=0.05, deadline_s=30, say=said.append)
        assert probe("kubeflow", ["10.244.1.7"], 5000) is False
    finally:
        stop.set()
        thread.join(timeout=10)
    assert seen and seen[0]["spec"]["containers"][0]["command"][-2:] == ["5000", "10.244.1.7"]
    assert wait_for("the probe pod deleted", lambda: not [p for p in core.list_namespaced_pod("kubeflow").items
                                                          if p.metadata.name.startswith("seamcheck-path-probe-")])
    assert said and said[-1].startswith("path probe kubeflow/seamcheck-path-probe-") and ": Failed:" in said[-1]
