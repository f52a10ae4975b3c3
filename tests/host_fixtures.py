"""Fixtures for the tests that run on real Kubernetes (harness/host/): one per session each.

* ``kube_api``: etcd and kube-apiserver alone (envtest's shape: the API with no controller, no
  scheduler, no kubelet), for tests of the harness's API logic; the tests play any controller they
  need. About 10 s to start.
* ``host_profile``: the `host` profile's whole cluster (two nodes, kube-proxy, CoreDNS, the
  NetworkPolicy controller, the fake GPU), for tests that need pods. Under ``--profile host`` it is
  the session's own stack; otherwise this fixture starts a HostProfile itself. About 40 s.
* ``host``: ``host_profile`` with the harness's namespaces made (labelled for chaos, as kind's install
  labels them) for the session and removed at its end; tests remove what they put in them.
* ``kube``: for one test, a client of ``kube_api`` that records what it sends (tests/kube.py
  ``Recorder``) and a ``Scratch`` that removes the namespaces and objects the test made;
  ``kserve_crd``: KServe v0.14.1's own InferenceService CRD (from its module), installed once.

Both skip, with the reason and the command that fixes it, where the machine cannot run them (not
root, a tool or a built component missing).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from harness.errors import SeamcheckError
from harness.settings import SETTINGS_KEY
from tests.kube import Recorder, Scratch

__all__ = ["Kube", "KubeApi", "host", "host_profile", "kserve_crd", "kube", "kube_api", "running_pod"]


@dataclass
class KubeApi:
    """A running kube-apiserver: ``client()`` is a kubernetes ApiClient with the admin's certificate."""

    cluster: object  # harness.host.cluster.HostCluster (api_only)

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    @property
    def server(self) -> str:
        return self.cluster.server

    @property
    def host_ip(self) -> str:
        """This machine's end of the link to the API server's namespace: an address a Service's
        Endpoints may name (kube-apiserver refuses to proxy to loopback)."""
        return self.cluster.netns.host_ip

    def client(self) -> k8s.ApiClient:
        return k8s_config.new_client_from_config(config_file=str(self.kubeconfig))

    def git_version(self) -> str:
        return k8s.VersionApi(self.client()).get_code().git_version


def _unavailable(components: tuple[str, ...]) -> str | None:
    from harness.host import build as hbuild
    from harness.host.netns import netns_unavailable
    from harness.host.recipes import recipes
    from harness.host.versions import load_host_versions

    reason = netns_unavailable()
    if reason:
        return reason
    known = recipes(load_host_versions())
    missing = [c for c in components if hbuild.find(known[c]) is None]
    if missing:
        return f"not in the host build cache: {missing} (python -m harness.host.build {' '.join(missing)})"
    return None


@pytest.fixture(scope="session")
def kube_api() -> Iterator[KubeApi]:
    from harness.host.cluster import API_COMPONENTS, HostCluster

    reason = _unavailable(API_COMPONENTS)
    if reason:
        pytest.skip(f"no kube-apiserver here: {reason}")
    cluster = HostCluster(api_only=True, node="seamcheck-envtest").start()
    try:
        yield KubeApi(cluster)
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def host_profile(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> Iterator[object]:
    settings = pytestconfig.stash[SETTINGS_KEY]
    if settings.profile == "host":
        yield request.getfixturevalue("stack")  # the session's own, started once
        return
    from harness.profiles.host import HostProfile
    from harness.terminal import progress_printer

    try:
        HostProfile.preflight(settings.stack, settings.row)
    except SeamcheckError as exc:
        pytest.skip(f"no host cluster here: {exc}")
    profile = HostProfile(settings.stack, settings.row, progress=progress_printer(pytestconfig))
    try:
        profile.start()
        yield profile
    finally:
        profile.teardown()


@pytest.fixture(scope="session")
def kserve_crd(kube_api: KubeApi) -> dict:
    from harness.host.crds import KSERVE_INFERENCESERVICE, install_crd, upstream_crd

    return install_crd(kube_api.client(), upstream_crd(*KSERVE_INFERENCESERVICE))


@dataclass
class Kube:
    api: k8s.ApiClient
    recorder: Recorder
    scratch: Scratch
    server: KubeApi

    def calls(self, method: str | None = None, contains: str = "") -> list[dict]:
        return self.recorder.calls(method, contains)


@pytest.fixture
def kube(kube_api: KubeApi) -> Iterator[Kube]:
    api = kube_api.client()
    scratch = Scratch(kube_api.client(), custom=(("serving.kserve.io/v1beta1", "InferenceService"),))
    try:
        yield Kube(api, Recorder(api), scratch, kube_api)
    finally:
        scratch.cleanup()


@pytest.fixture(scope="session")
def host(host_profile) -> Iterator[object]:
    from kubernetes.client.exceptions import ApiException

    from harness.cluster.spec import CHAOS_ALLOWED, CHAOS_LABEL
    from tests.kube import wait_for

    core = k8s.CoreV1Api(host_profile.api)
    made = []
    for ns in host_profile.spec.harness_namespaces:
        try:
            core.create_namespace({"metadata": {"name": ns, "labels": {CHAOS_LABEL: CHAOS_ALLOWED}}})
            made.append(ns)
        except ApiException as exc:
            if exc.status != 409:
                raise
        wait_for(f"the default ServiceAccount of {ns}", lambda ns=ns: core.list_namespaced_service_account(
            ns, field_selector="metadata.name=default").items, deadline_s=60)
    yield host_profile
    for ns in made:
        core.delete_namespace(ns)


def running_pod(api: k8s.ApiClient, namespace: str, name: str, *, deadline_s: float = 120,
                phases: tuple[str, ...] = ("Running",)) -> k8s.V1Pod:
    """The pod once its kubelet reports one of ``phases`` (and, when Running, an IP)."""
    from tests.kube import wait_for

    core = k8s.CoreV1Api(api)

    def seen() -> k8s.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.status.phase in phases and (pod.status.phase != "Running" or pod.status.pod_ip):
            return pod
        return None

    return wait_for(f"pod {namespace}/{name} {'/'.join(phases)}", seen, deadline_s=deadline_s, interval_s=0.5)
