"""The install plan run for real against a FAKE `kubectl` (a script that records what it was asked to
apply: the release manifests are on GitHub, which this machine cannot reach) and a real kube-apiserver
(tests/host_fixtures.py ``kube_api``) holding what the applied manifests would have produced, as their
controllers would report it. Checks the order, the server-side applies of the row's URLs, the retry of
a webhook that is not serving yet, the KServe settings written through the API, the progress lines,
and that a step that cannot finish stops the install naming itself."""
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from harness.cluster.commands import Kubectl
from harness.cluster.errors import ClusterError, WaitTimeout
from harness.cluster.install import Deadline, install_plan, run_plan
from harness.cluster.render import S3Credentials, render_manifests
from harness.cluster.spec import cluster_spec
from harness.matrix import load_matrix
from tests.host_fixtures import Kube
from tests.kube import get, put
from tests.test_cluster_api import deployment

FAKE_KUBECTL = """#!/usr/bin/env bash
# A FAKE kubectl: records its arguments (and stdin for `-f -`), fails once where asked.
log="{log}"
printf '%s\\n' "$*" >> "$log"
if [[ "$*" == *" -f -"* ]]; then cat > "{log}.stdin.$(wc -l < "$log")"; fi
if [[ "$*" == *"{fail_once}"* && ! -f "{log}.failed" ]]; then
  touch "{log}.failed"
  echo 'Error from server (InternalError): Internal error occurred: failed calling webhook "x": connection refused' >&2
  exit 1
fi
exit 0
"""


def _fake_kubectl(tmp_path: Path, fail_once: str = "never-matches") -> tuple[Path, Path]:
    log = tmp_path / "kubectl.log"
    script = tmp_path / "kubectl"
    script.write_text(FAKE_KUBECTL.format(log=log, fail_once=fail_once))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def _installed_cluster(kube: Kube) -> None:
    """What the manifests would have created, available (no controller runs here: the test writes
    what each would report)."""
    for ns, names in {"cert-manager": ["cert-manager", "cert-manager-cainjector", "cert-manager-webhook"],
                      "knative-serving": ["activator", "autoscaler", "controller", "webhook", "autoscaler-hpa",
                                          "net-kourier-controller"],
                      "kourier-system": ["3scale-kourier-gateway"], "kserve": ["kserve-controller-manager"],
                      "kubeflow": ["ml-pipeline", "minio", "mysql", "workflow-controller"],
                      "seamcheck-system": ["minio", "mlflow", "prometheus"]}.items():
        kube.scratch.namespace(ns)
        for name in names:
            put(kube.api, deployment(name, ns))
    for crd in ("services", "configurations", "revisions", "routes"):
        _crd(kube, f"{crd}.serving.knative.dev")
    # as KFP 2.3.0's manifests carry it (third-party/application/cluster-scoped/application-crd.yaml):
    # kube-apiserver refuses a CRD in a *.k8s.io group without the approval annotation
    _crd(kube, "applications.app.k8s.io",
         annotations={"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/application/pull/2"})
    put(kube.api, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "minio-buckets",
                                                                         "namespace": "seamcheck-system"},
                   "spec": {"template": {"spec": {"restartPolicy": "Never",
                                                  "containers": [{"name": "mc", "image": "x:1"}]}}},
                   "status": {"succeeded": 1, "startTime": "2026-12-01T00:00:00Z",
                              "completionTime": "2026-12-01T00:00:10Z",
                              "conditions": [{"type": "Complete", "status": "True"}]}})
    put(kube.api, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inferenceservice-config",
                                                                        "namespace": "kserve"},
                   "data": {"ingress": json.dumps({"ingressGateway": "knative-serving/knative-ingress-gateway"})}})


def _crd(kube: Kube, name: str, annotations: dict[str, str] | None = None) -> None:
    """A CRD of that name (the API server establishes it itself)."""
    plural, group = name.split(".", 1)
    kube.scratch.add({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                      "metadata": {"name": name, "annotations": annotations or {}},
                      "spec": {"group": group, "names": {"plural": plural, "kind": plural.title().rstrip("s")},
                               "scope": "Namespaced",
                               "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                                   "openAPIV3Schema": {"type": "object",
                                                       "x-kubernetes-preserve-unknown-fields": True}}}]}})


def test_the_install_plan_runs_in_order_with_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      kube: Kube) -> None:
    from harness.cluster import install

    monkeypatch.setattr(install, "RETRY_INTERVAL_S", 0.05)  # the webhook retry, quick
    spec = cluster_spec(load_matrix().row(None), "kind")
    manifests = render_manifests(spec, S3Credentials("a", "b"), knative_owned=True)
    kubectl_bin, log = _fake_kubectl(tmp_path, fail_once="kserve-cluster-resources.yaml")
    kubeconfig = tmp_path / "kubeconfig"
    _installed_cluster(kube)
    steps = install_plan(spec, Kubectl(str(kubectl_bin), kubeconfig), kube.api, manifests)
    lines: list[str] = []
    timings = run_plan(steps, lines.append)
    ingress = json.loads(get(kube.api, "v1", "ConfigMap", "inferenceservice-config", "kserve")["data"]["ingress"])
    assert ingress == {"ingressGateway": "knative-serving/knative-ingress-gateway", "disableIstioVirtualHost": True}
    assert list(timings) == [s.name for s in steps] and len(steps) == 10
    assert lines[0] == "install 1/10: namespaces (deadline 60s) ..."
    assert lines[-1].startswith("install 10/10: seamcheck services: MinIO, MLflow 2.17.2, Prometheus done in")
    calls = log.read_text().splitlines()
    assert all(c.startswith(f"--kubeconfig {kubeconfig} apply ") for c in calls), calls
    applied = [c.split(" apply ", 1)[1] for c in calls]
    urls = spec.urls()
    expected = [
        "--server-side --force-conflicts --field-manager=seamcheck -f -",  # namespaces
        f"--server-side --force-conflicts -f {urls['cert-manager']}",
        f"--server-side --force-conflicts -f {urls['knative-crds']}",
        f"--server-side --force-conflicts -f {urls['knative-core']}",
        f"--server-side --force-conflicts -f {urls['knative-hpa']}",
        f"--server-side --force-conflicts -f {urls['net-kourier']}",
        "--server-side --force-conflicts --field-manager=seamcheck -f -",  # Knative settings
        f"--server-side --force-conflicts -f {urls['kserve']}",
        f"--server-side --force-conflicts -f {urls['kserve-cluster-resources']}",  # webhook not ready: failed
        f"--server-side --force-conflicts -f {urls['kserve-cluster-resources']}",  # retried
        f"-k {urls['kfp-cluster-scoped']}",
        f"-k {urls['kfp-platform-agnostic']}",
    ] + ["--server-side --force-conflicts --field-manager=seamcheck -f -"] * 5  # the harness's services
    assert applied == expected
    stdin = {int(p.name.rsplit(".", 1)[1]): p.read_text() for p in tmp_path.glob("kubectl.log.stdin.*")}
    assert stdin[1] == manifests.text("00-namespaces") and stdin[7] == manifests.text("45-knative-config")
    assert [stdin[n] for n in (13, 14, 15, 16, 17)] == [manifests.text(s) for s in (
        "10-minio", "20-mlflow", "30-prometheus", "40-serving-access", "50-kfp-access")]


def test_a_step_that_cannot_finish_names_itself(tmp_path: Path, kube: Kube) -> None:
    spec = cluster_spec(load_matrix().row(None), "cloud")
    manifests = render_manifests(spec, S3Credentials("a", "b"), knative_owned=False)
    kubectl_bin, _log = _fake_kubectl(tmp_path)
    kube.scratch.namespace("cert-manager")
    put(kube.api, deployment("cert-manager", "cert-manager"))
    put(kube.api, deployment("cert-manager-webhook", "cert-manager", ready=0))
    steps = install_plan(spec, Kubectl(str(kubectl_bin)), kube.api, manifests, components=["cert-manager"])
    steps[0].deadline_s = 1
    with pytest.raises(WaitTimeout) as exc:
        run_plan(steps)
    message = str(exc.value)
    assert message.startswith("install step 1/1 'cert-manager v1.15.1': gave up after")
    assert "cert-manager-cainjector: not created yet" in message and "cert-manager-webhook: 0/1 available" in message


def test_kubectl_failures_carry_the_command_and_its_output(tmp_path: Path) -> None:
    script = tmp_path / "kubectl"
    script.write_text("#!/usr/bin/env bash\necho 'error: unable to recognize \"x\": no matches for kind' >&2\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(ClusterError) as exc:
        Kubectl(str(script), context="prod").apply_url("https://example.invalid/x.yaml", what="applying x",
                                                       timeout=10)
    assert "applying x: `" in str(exc.value) and "--context prod apply --server-side" in str(exc.value)
    assert "no matches for kind" in str(exc.value)
    slow = tmp_path / "slow"
    slow.write_text("#!/usr/bin/env bash\nsleep 30\n")
    slow.chmod(0o755)
    with pytest.raises(ClusterError, match=r"applying y: no result after 1s"):
        Kubectl(str(slow)).apply_url("u", what="applying y", timeout=1)
    with pytest.raises(WaitTimeout, match="used up its 0s deadline"):
        Deadline(0, "z").left()
