"""The cloud profile's view of an existing cluster, against a real kube-apiserver (tests/host_fixtures.py
``kube_api``): what it finds decides what it refuses, what --install-stack installs, where KFP lives,
and how InferenceServices are reached; chaos is refused unless a namespace is listed and labelled;
a ServiceAccount whose Role is namespaced is refused by the real RBAC authorizer; KFP's mode is read
through the API server's real service proxy (to a FAKE KFP API: no KFP runs here)."""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from harness.cluster.errors import ChaosRefused, ClusterError
from harness.cluster.guard import ChaosGuard
from harness.errors import ProfileError
from harness.matrix import load_matrix
from harness.profiles.cloud import CloudProfile, preflight
from harness.settings import StackConfig
from tests.host_fixtures import Kube, KubeApi
from tests.kube import get, put
from tests.test_cluster_api import deployment, pod


@pytest.fixture(autouse=True)
def kubectl_on_path(kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cloud profile drives kubectl from PATH: the host build's, the server's own version."""
    kubectl = Path(kube_api.cluster.bin("kubernetes", "kubectl"))
    monkeypatch.setenv("PATH", f"{kubectl.parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _cluster(kube: Kube, *, kserve: bool = True, kfp_namespace: str = "kubeflow") -> None:
    api = kube.api
    for ns in ("kserve", "knative-serving", "kourier-system", kfp_namespace):
        kube.scratch.namespace(ns)
    if kserve:
        put(api, deployment("kserve-controller-manager", "kserve", image="kserve/kserve-controller:v0.14.1",
                            container="manager"))
    put(api, deployment("controller", "knative-serving", labels={"app.kubernetes.io/version": "1.13.1"}))
    put(api, deployment("3scale-kourier-gateway", "kourier-system"))
    put(api, deployment("ml-pipeline", kfp_namespace, image="gcr.io/ml-pipeline/api-server:2.3.0",
                        container="ml-pipeline-api-server"))


_MADE: list[CloudProfile] = []


@pytest.fixture(autouse=True)
def _torn_down() -> Iterator[None]:
    """Every profile a test makes is torn down after it, even when the test ends in a refusal: a
    profile's state folder must not outlive its test."""
    yield
    while _MADE:
        _MADE.pop().teardown()


def _profile(api: k8s.ApiClient, **config) -> CloudProfile:
    profile = CloudProfile(StackConfig(profile="cloud", **config), load_matrix().row(None))
    profile.api = api
    _MADE.append(profile)
    return profile


def test_a_cluster_without_kserve_is_refused_unless_installing(kube: Kube) -> None:
    _cluster(kube, kserve=False, kfp_namespace="pipelines")
    profile = _profile(kube.api)
    with pytest.raises(ClusterError, match="lacks kserve; install them or pass --install-stack"):
        profile._after_connect()
    installing = _profile(kube.api, install_stack=True)
    installing._after_connect()
    assert installing._components() == ["cert-manager", "kserve", "seamcheck"]
    assert installing.kfp_namespace == "pipelines" and installing.spec.kfp_namespace == "pipelines"
    assert installing._namespaces(installing._components()) == ["model-serving", "seamcheck-system"]
    found = {m["component"]: m["found"] for m in installing.mismatches}
    assert found == {"kserve": "not installed", "cert_manager": "not installed"}
    profile.teardown()
    installing.teardown()


def test_an_installed_stack_is_only_discovered_and_reported(kube: Kube) -> None:
    said: list[str] = []
    _cluster(kube)
    profile = _profile(kube.api)
    # The server is 1.30, in the row's range: a row that stops at 1.29 sees it as too new.
    profile.row = dataclasses.replace(profile.row, kubernetes=("1.28", "1.29"))
    profile.say = said.append
    profile._after_connect()
    assert profile._components() == ["seamcheck"]  # the harness's own services only
    assert profile.cluster_versions["discovered"]["kserve"] == "0.14.1"
    assert any("kubernetes: row kfp2.3-mlflow2.17-kserve0.14 expects 1.28 or 1.29, the cluster has 1.30"
               in line for line in said), said
    assert profile.versions()["mismatches"][0]["component"] == "kubernetes"
    profile.teardown()


def _gateway(kube: Kube, address: str, port: int) -> None:
    kube.scratch.namespace("kourier-system")
    put(kube.api, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kourier", "namespace": "kourier-system"},
                   "spec": {"type": "LoadBalancer", "ports": [{"name": "http2", "port": port}]},
                   # what a cloud's load balancer controller writes (none runs here: the test plays it)
                   "status": {"loadBalancer": {"ingress": [{"ip": address}]}}})


class _RecordedForwards:
    """Stands in for kubectl port-forward (the subject here is the choice, not the forward)."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str, str, int]] = []

    def add(self, key: str, namespace: str, target: str, remote_port: int):
        self.added.append((key, namespace, target, remote_port))
        return type("Forward", (), {"url": "http://127.0.0.1:40001"})()


def test_inference_goes_through_the_gateways_load_balancer_when_it_answers(kube: Kube) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        _gateway(kube, "127.0.0.1", port)
        profile = _profile(kube.api)
        profile.forwards = _RecordedForwards()
        assert profile._ingress_url() == f"http://127.0.0.1:{port}"
        assert profile.forwards.added == []
        profile.forwards = None
        profile.teardown()


def test_an_unreachable_load_balancer_falls_back_to_a_port_forward(kube: Kube) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: a connect is refused
        port = closed.getsockname()[1]
        _gateway(kube, "127.0.0.1", port)
        said: list[str] = []
        profile = _profile(kube.api)
        profile.say = said.append
        profile.forwards = _RecordedForwards()
        assert profile._ingress_url() == "http://127.0.0.1:40001"
        assert profile.forwards.added == [("ingress", "kourier-system", "svc/kourier", port)]
        assert any(f"publishes 127.0.0.1:{port}, which does not accept a connection" in line for line in said), said
        profile.forwards = None
        profile.teardown()


def test_chaos_on_cloud_needs_the_flag_and_the_label(kube: Kube) -> None:
    kube.scratch.namespace("team-a", {"seamcheck.io/chaos": "allowed"})
    kube.scratch.namespace("team-b")
    profile = _profile(kube.api)
    assert list(profile._chaos_namespaces()) == []
    with pytest.raises(ChaosRefused, match="listed: none"):
        ChaosGuard.of(profile.api, profile._chaos_namespaces()).check("team-a", "delete pods")
    listed = _profile(kube.api, chaos_namespaces=("team-a", "team-b"))
    guard = ChaosGuard.of(listed.api, listed._chaos_namespaces())
    guard.check("team-a", "delete pods")
    with pytest.raises(ChaosRefused, match="lacks the label"):
        guard.check("team-b", "delete pods")
    profile.teardown()
    listed.teardown()


_RBAC_REFUSAL = ('deployments.apps is forbidden: User "system:serviceaccount:team-a:ci" cannot list resource '
                 '"deployments" in API group "apps" at the cluster scope')


def _kubeconfig(tmp_path: Path, kube: Kube, user: dict) -> Path:
    ca = base64.b64encode(kube.server.cluster.pki.ca_crt.read_bytes()).decode()
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "team-a",
        "clusters": [{"name": "host", "cluster": {"server": kube.server.server, "certificate-authority-data": ca}}],
        "users": [{"name": "ci", "user": user}], "contexts": [{"name": "team-a", "context": {"cluster": "host", "user": "ci"}}]}))
    return path


def _admin_user(kube: Kube) -> dict:
    pki = kube.server.cluster.pki.dir
    return {"client-certificate-data": base64.b64encode((pki / "admin.crt").read_bytes()).decode(),
            "client-key-data": base64.b64encode((pki / "admin.key").read_bytes()).decode()}


def _namespaced_service_account(kube: Kube) -> dict:
    """team-a's ServiceAccount `ci`, whose Role may read only team-a (real RBAC decides the 403)."""
    kube.scratch.namespace("team-a")
    core, rbac = k8s.CoreV1Api(kube.api), k8s.RbacAuthorizationV1Api(kube.api)
    core.create_namespaced_service_account("team-a", {"metadata": {"name": "ci"}})
    rbac.create_namespaced_role("team-a", {"metadata": {"name": "reader"}, "rules": [
        {"apiGroups": ["", "apps"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]})
    rbac.create_namespaced_role_binding("team-a", {
        "metadata": {"name": "ci-reads"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                        "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "team-a"}]})
    token = core.create_namespaced_service_account_token("ci", "team-a", {"spec": {"expirationSeconds": 3600}})
    return {"token": token.status.token}


def test_namespace_scoped_rights_are_refused_in_one_line_at_session_start(tmp_path, kube: Kube) -> None:
    config = StackConfig(profile="cloud", kubeconfig=_kubeconfig(tmp_path, kube, _namespaced_service_account(kube)))
    with pytest.raises(ProfileError) as refused:
        preflight(config, load_matrix().row(None))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("context 'team-a' may not list deployments across the cluster (HTTP 403: "
                              'deployments.apps is forbidden: User "system:serviceaccount:team-a:ci"')
    assert _RBAC_REFUSAL in message
    assert "`kubectl auth can-i list deployments -A` must say yes" in message


class FakeKfpHealth:
    """A FAKE KFP API server (no KFP runs here) answering /apis/v2beta1/healthz, on this machine's end
    of the API server's link (kube-apiserver refuses to proxy to loopback): a Service without a
    selector, a Pod standing for KFP's api-server pod at that address, and Endpoints naming that Pod
    point the API server's real service proxy at it. The proxy takes only an endpoint address whose
    targetRef is a Pod of the Service's namespace listing that IP in its status.podIPs (isValidAddress,
    pkg/registry/core/service/storage/storage.go, Kubernetes v1.30); a bare address answers 503 "no
    endpoints available", which kfp_mode reads as undecided."""

    def __init__(self, kube: Kube, namespace: str, *, multi_user: bool) -> None:
        self.seen: list[tuple[str, str]] = []
        answer = {"commit_sha": "a" * 8, "tag_name": "2.3.0", "multi_user": multi_user}
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                seen.append(("GET", self.path))
                data = json.dumps(answer).encode()
                self.send_response(200 if self.path == "/apis/v2beta1/healthz" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer((kube.server.host_ip, 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        port = self.httpd.server_address[1]
        ip = kube.server.host_ip
        core = k8s.CoreV1Api(kube.api)
        # the pod as its kubelet reports it (no kubelet here: the test writes its status)
        put(kube.api, pod("ml-pipeline-fake", namespace, ip=ip))
        core.create_namespaced_service(namespace, {"metadata": {"name": "ml-pipeline"}, "spec": {
            "ports": [{"name": "http", "port": 8888, "targetPort": port}]}})
        # as the endpoints controller writes them for a ready pod
        core.create_namespaced_endpoints(namespace, {"metadata": {"name": "ml-pipeline"}, "subsets": [
            {"addresses": [{"ip": ip, "targetRef": {"kind": "Pod", "namespace": namespace,
                                                    "name": "ml-pipeline-fake"}}],
             "ports": [{"name": "http", "port": port}]}]})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def kfp_health(kube: Kube) -> Iterator:
    made: list[FakeKfpHealth] = []

    def start(namespace: str, *, multi_user: bool) -> FakeKfpHealth:
        made.append(FakeKfpHealth(kube, namespace, multi_user=multi_user))
        return made[-1]

    yield start
    for server in made:
        server.close()


def test_multi_user_kfp_is_refused_in_one_line_at_session_start(tmp_path, kube: Kube, kfp_health) -> None:
    _cluster(kube, kfp_namespace="kubeflow")
    kfp_health("kubeflow", multi_user=True)
    config = StackConfig(profile="cloud", kubeconfig=_kubeconfig(tmp_path, kube, _admin_user(kube)))
    with pytest.raises(ProfileError, match=r"^KFP in namespace kubeflow on context 'team-a' runs in multi-user "
                                           r"mode \(its /apis/v2beta1/healthz says multi_user: true\)"):
        preflight(config, load_matrix().row(None))


def test_single_user_kfp_and_cluster_wide_reads_pass_the_preflight(tmp_path, kube: Kube, kfp_health) -> None:
    _cluster(kube, kfp_namespace="kubeflow")
    backend = kfp_health("kubeflow", multi_user=False)
    preflight(StackConfig(profile="cloud", kubeconfig=_kubeconfig(tmp_path, kube, _admin_user(kube))),
              load_matrix().row(None))
    assert ("GET", "/apis/v2beta1/healthz") in backend.seen  # through the API server's service proxy


def test_the_session_ends_with_the_refusal_as_its_one_error_line(tmp_path, kube: Kube) -> None:
    """Through pytest itself: the refusal is the session's single `ERROR: seamcheck:` line."""
    import subprocess
    import sys

    kubeconfig = _kubeconfig(tmp_path, kube, _namespaced_service_account(kube))
    done = subprocess.run([sys.executable, "-m", "pytest", "--profile=cloud",
                           f"--kubeconfig={kubeconfig}", "-q", "scenarios/conformance"],
                          capture_output=True, text=True, timeout=120)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("ERROR:")]
    assert done.returncode != 0
    assert len(errors) == 1 and errors[0].startswith("ERROR: seamcheck: context 'team-a' may not list deployments"), \
        done.stdout + done.stderr


def _second_run_profile(kube: Kube, **config) -> CloudProfile:
    from harness.cluster.commands import Kubectl
    from harness.serving.isvc import IsvcClient

    kube.scratch.namespace("model-serving")
    profile = _profile(kube.api, **config)
    profile.kubectl = Kubectl(context="team-a")
    profile._isvc = IsvcClient(profile.api, profile.namespace, on_write=profile._own_service)
    return profile


def test_the_services_a_run_made_are_deleted_at_teardown_and_listed_for_the_reaper_first(
        tmp_path, kube: Kube, kserve_crd) -> None:
    from harness.ledger.ledger import Ledger, activated
    from harness.ledger.records import read_state
    from tests.test_cluster_api import isvc

    record = Ledger(tmp_path / "ledgers", "second-run")
    with activated(record):
        profile = _second_run_profile(kube)
        profile.isvc.create_or_patch(isvc("rc-canary", "s3://models/v1"))
        profile._own_service("recommendation-classifier")  # what run_pipeline does for its deploy step
        pending = [e.what["argv"] for e in read_state(record.path).pending(("command",))]
        # listed before the service was made: a killed session's reaper deletes it too
        assert pending == [["kubectl", "--context", "team-a", "delete", "inferenceservice", name, "-n",
                            "model-serving", "--ignore-not-found", "--wait=false"]
                           for name in ("rc-canary", "recommendation-classifier")]
        profile.teardown()
        assert get(kube.api, "serving.kserve.io/v1beta1", "InferenceService", "rc-canary", "model-serving") is None
        assert read_state(record.path).pending(("command",)) == []
    record.close()


def test_keep_stack_keeps_the_services_and_tells_the_reaper_so(tmp_path, kube: Kube, kserve_crd) -> None:
    from harness.ledger.ledger import Ledger, activated
    from harness.ledger.records import read_state
    from tests.test_cluster_api import isvc

    record = Ledger(tmp_path / "ledgers", "kept-run")
    with activated(record):
        profile = _second_run_profile(kube, keep_stack=True)
        profile.isvc.create_or_patch(isvc("rc-canary", "s3://models/v1"))
        profile.teardown()
        assert get(kube.api, "serving.kserve.io/v1beta1", "InferenceService", "rc-canary", "model-serving") is not None
        assert read_state(record.path).pending(("command",)) == []
    record.close()
    # What --keep-stack kept is the user's to remove: here, the test's.
    import shutil

    assert profile.state.is_dir(), profile.state
    shutil.rmtree(profile.state)
