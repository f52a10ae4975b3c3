"""The cloud profile's view of an existing cluster, against the fake API server (no cluster here):
what it finds decides what it refuses, what --install-stack installs, where KFP lives, and how
InferenceServices are reached; chaos is refused unless a namespace is listed and labelled."""
from __future__ import annotations

import pytest

from harness.cluster.errors import ChaosRefused, ClusterError
from harness.cluster.guard import ChaosGuard
from harness.matrix import load_matrix
from harness.profiles.cloud import CloudProfile
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


def test_inference_goes_through_the_gateways_load_balancer_when_it_has_one() -> None:
    with FakeApiServer() as fake:
        fake.put(namespace("kourier-system"))
        fake.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kourier", "namespace": "kourier-system"},
                  "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                  "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}})
        profile = _profile(fake)
        assert profile._ingress_url() == "http://203.0.113.7:80"
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
