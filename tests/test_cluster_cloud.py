"""The cloud profile's view of an existing cluster, against the fake API server (no cluster here):
what it finds decides what it refuses, what --install-stack installs, where KFP lives, and how
InferenceServices are reached; chaos is refused unless a namespace is listed and labelled."""
from __future__ import annotations

import socket

import pytest

from harness.cluster.errors import ChaosRefused, ClusterError
from harness.cluster.guard import ChaosGuard
from harness.errors import ProfileError
from harness.matrix import load_matrix
from harness.profiles.cloud import CloudProfile, preflight
from harness.settings import StackConfig
from tests.fake_apiserver import FakeApiServer
from tests.test_cluster_api import deployment, namespace


def _cluster(fake: FakeApiServer, *, kserve: bool = True, kfp_namespace: str = "kubeflow") -> None:
    if kserve:
        fake.put(deployment("kserve-controller-manager", "kserve", image="kserve/kserve-controller:v0.14.1",
                            container="manager"))
    fake.put(deployment("controller", "knative-serving", labels={"app.kubernetes.io/version": "1.13.1"}))
    fake.put(deployment("3scale-kourier-gateway", "kourier-system"))
    fake.put(deployment("ml-pipeline", kfp_namespace, image="gcr.io/ml-pipeline/api-server:2.3.0",
                        container="ml-pipeline-api-server"))


def _profile(fake: FakeApiServer, **config) -> CloudProfile:
    profile = CloudProfile(StackConfig(profile="cloud", **config), load_matrix().row(None))
    profile.api = fake.api_client()
    return profile


def test_a_cluster_without_kserve_is_refused_unless_installing() -> None:
    with FakeApiServer() as fake:
        _cluster(fake, kserve=False, kfp_namespace="pipelines")
        profile = _profile(fake)
        with pytest.raises(ClusterError, match="lacks kserve; install them or pass --install-stack"):
            profile._after_connect()
        installing = _profile(fake, install_stack=True)
        installing._after_connect()
        assert installing._components() == ["cert-manager", "kserve", "seamcheck"]
        assert installing.kfp_namespace == "pipelines" and installing.spec.kfp_namespace == "pipelines"
        assert installing._namespaces(installing._components()) == ["model-serving", "seamcheck-system"]
        found = {m["component"]: m["found"] for m in installing.mismatches}
        assert found == {"kserve": "not installed", "cert_manager": "not installed"}
        profile.teardown()
        installing.teardown()


def test_an_installed_stack_is_only_discovered_and_reported() -> None:
    said: list[str] = []
    with FakeApiServer(git_version="v1.31.0") as fake:
        _cluster(fake)
        profile = _profile(fake)
        profile.say = said.append
        profile._after_connect()
        assert profile._components() == ["seamcheck"]  # the harness's own services only
        assert profile.cluster_versions["discovered"]["kserve"] == "0.14.1"
        assert any("kubernetes: row kfp2.3-mlflow2.17-kserve0.14 expects 1.28 or 1.29 or 1.30, the cluster has 1.31"
                   in line for line in said), said
        assert profile.versions()["mismatches"][0]["component"] == "kubernetes"
        profile.teardown()


def _gateway(fake: FakeApiServer, address: str, port: int) -> None:
    fake.put(namespace("kourier-system"))
    fake.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kourier", "namespace": "kourier-system"},
              "spec": {"type": "LoadBalancer", "ports": [{"name": "http2", "port": port}]},
              "status": {"loadBalancer": {"ingress": [{"ip": address}]}}})


class _RecordedForwards:
    """Stands in for kubectl port-forward, which needs a real API server's pods/portforward stream."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str, str, int]] = []

    def add(self, key: str, namespace: str, target: str, remote_port: int):
        self.added.append((key, namespace, target, remote_port))
        return type("Forward", (), {"url": "http://127.0.0.1:40001"})()


def test_inference_goes_through_the_gateways_load_balancer_when_it_answers() -> None:
    with socket.socket() as listener, FakeApiServer() as fake:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        _gateway(fake, "127.0.0.1", port)
        profile = _profile(fake)
        profile.forwards = _RecordedForwards()
        assert profile._ingress_url() == f"http://127.0.0.1:{port}"
        assert profile.forwards.added == []
        profile.forwards = None
        profile.teardown()


def test_an_unreachable_load_balancer_falls_back_to_a_port_forward() -> None:
    with socket.socket() as closed, FakeApiServer() as fake:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: a connect is refused
        port = closed.getsockname()[1]
        _gateway(fake, "127.0.0.1", port)
        said: list[str] = []
        profile = _profile(fake)
        profile.say = said.append
        profile.forwards = _RecordedForwards()
        assert profile._ingress_url() == "http://127.0.0.1:40001"
        assert profile.forwards.added == [("ingress", "kourier-system", "svc/kourier", port)]
        assert any(f"publishes 127.0.0.1:{port}, which does not accept a connection" in line for line in said), said
        profile.forwards = None
        profile.teardown()


def test_chaos_on_cloud_needs_the_flag_and_the_label() -> None:
    with FakeApiServer() as fake:
        fake.put(namespace("team-a", {"seamcheck.io/chaos": "allowed"}))
        fake.put(namespace("team-b"))
        profile = _profile(fake)
        assert list(profile._chaos_namespaces()) == []
        with pytest.raises(ChaosRefused, match="listed: none"):
            ChaosGuard.of(profile.api, profile._chaos_namespaces()).check("team-a", "delete pods")
        listed = _profile(fake, chaos_namespaces=("team-a", "team-b"))
        guard = ChaosGuard.of(listed.api, listed._chaos_namespaces())
        guard.check("team-a", "delete pods")
        with pytest.raises(ChaosRefused, match="lacks the label"):
            guard.check("team-b", "delete pods")
        profile.teardown()
        listed.teardown()


_RBAC_REFUSAL = ('deployments.apps is forbidden: User "system:serviceaccount:team-a:ci" cannot list resource '
                 '"deployments" in API group "apps" at the cluster scope')


def _kubeconfig(tmp_path, fake: FakeApiServer):
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{fake.url}"}}}}]
users: [{{name: ci, user: {{token: not-checked}}}}]
contexts: [{{name: team-a, context: {{cluster: fake, user: ci}}}}]
current-context: team-a
""")
    return path


def test_namespace_scoped_rights_are_refused_in_one_line_at_session_start(tmp_path) -> None:
    with FakeApiServer() as fake:
        fake.forbid("GET", r"/apis/apps/v1/deployments", _RBAC_REFUSAL)
        config = StackConfig(profile="cloud", kubeconfig=_kubeconfig(tmp_path, fake))
        with pytest.raises(ProfileError) as refused:
            preflight(config, load_matrix().row(None))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("context 'team-a' may not list deployments across the cluster (HTTP 403: "
                              'deployments.apps is forbidden: User "system:serviceaccount:team-a:ci"')
    assert "`kubectl auth can-i list deployments -A` must say yes" in message


def _kfp_healthz(multi_user: bool):
    def answer(method: str, path: str):
        assert (method, path) == ("GET", "apis/v2beta1/healthz")
        return 200, {"commit_sha": "a" * 8, "tag_name": "2.3.0", "multi_user": multi_user}
    return answer


def test_multi_user_kfp_is_refused_in_one_line_at_session_start(tmp_path) -> None:
    with FakeApiServer() as fake:
        _cluster(fake, kfp_namespace="kubeflow")
        fake.serve_proxy("kubeflow", "ml-pipeline:8888", _kfp_healthz(multi_user=True))
        config = StackConfig(profile="cloud", kubeconfig=_kubeconfig(tmp_path, fake))
        with pytest.raises(ProfileError, match=r"^KFP in namespace kubeflow on context 'team-a' runs in multi-user "
                                               r"mode \(its /apis/v2beta1/healthz says multi_user: true\)"):
            preflight(config, load_matrix().row(None))


def test_single_user_kfp_and_cluster_wide_reads_pass_the_preflight(tmp_path) -> None:
    with FakeApiServer() as fake:
        _cluster(fake, kfp_namespace="kubeflow")
        fake.serve_proxy("kubeflow", "ml-pipeline:8888", _kfp_healthz(multi_user=False))
        preflight(StackConfig(profile="cloud", kubeconfig=_kubeconfig(tmp_path, fake)), load_matrix().row(None))
        assert fake.calls("GET", "/services/ml-pipeline:8888/proxy/apis/v2beta1/healthz")


def test_the_session_ends_with_the_refusal_as_its_one_error_line(tmp_path) -> None:
    """Through pytest itself: the refusal is the session's single `ERROR: seamcheck:` line."""
    import subprocess
    import sys
    with FakeApiServer() as fake:
        fake.forbid("GET", r"/apis/apps/v1/deployments", _RBAC_REFUSAL)
        kubeconfig = _kubeconfig(tmp_path, fake)
        done = subprocess.run([sys.executable, "-m", "pytest", "--profile=cloud",
                               f"--kubeconfig={kubeconfig}", "-q", "scenarios/conformance"],
                              capture_output=True, text=True, timeout=120)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("ERROR:")]
    assert done.returncode != 0
    assert len(errors) == 1 and errors[0].startswith("ERROR: seamcheck: context 'team-a' may not list deployments"), \
        done.stdout + done.stderr


def _second_run_profile(fake: FakeApiServer, **config) -> CloudProfile:
    from harness.cluster.commands import Kubectl
    from harness.serving.isvc import IsvcClient

    fake.put(namespace("model-serving"))
    profile = _profile(fake, **config)
    profile.kubectl = Kubectl(context="team-a")
    profile._isvc = IsvcClient(profile.api, profile.namespace, on_write=profile._own_service)
    return profile


def test_the_services_a_run_made_are_deleted_at_teardown_and_listed_for_the_reaper_first(tmp_path) -> None:
    from harness.ledger.ledger import Ledger, activated
    from harness.ledger.records import read_state
    from tests.test_cluster_api import isvc

    record = Ledger(tmp_path / "ledgers", "second-run")
    with FakeApiServer() as fake, activated(record):
        profile = _second_run_profile(fake)
        profile.isvc.create_or_patch(isvc("rc-canary", "s3://models/v1"))
        profile._own_service("recommendation-classifier")  # what run_pipeline does for its deploy step
        pending = [e.what["argv"] for e in read_state(record.path).pending(("command",))]
        # listed before the service was made: a killed session's reaper deletes it too
        assert pending == [["kubectl", "--context", "team-a", "delete", "inferenceservice", name, "-n",
                            "model-serving", "--ignore-not-found", "--wait=false"]
                           for name in ("rc-canary", "recommendation-classifier")]
        profile.teardown()
        assert fake.get("serving.kserve.io/v1beta1", "InferenceService", "rc-canary", "model-serving") is None
        assert read_state(record.path).pending(("command",)) == []
    record.close()


def test_keep_stack_keeps_the_services_and_tells_the_reaper_so(tmp_path) -> None:
    from harness.ledger.ledger import Ledger, activated
    from harness.ledger.records import read_state
    from tests.test_cluster_api import isvc

    record = Ledger(tmp_path / "ledgers", "kept-run")
    with FakeApiServer() as fake, activated(record):
        profile = _second_run_profile(fake, keep_stack=True)
        profile.isvc.create_or_patch(isvc("rc-canary", "s3://models/v1"))
        profile.teardown()
        assert fake.get("serving.kserve.io/v1beta1", "InferenceService", "rc-canary", "model-serving") is not None
        assert read_state(record.path).pending(("command",)) == []
    record.close()
