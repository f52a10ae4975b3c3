"""The install plan run for real against stand-ins: a fake `kubectl` (a script that records what it
was asked to apply) and the fake API server (tests/fake_apiserver.py) holding what the applied
manifests would have produced. Checks the order, the server-side applies of the row's URLs, the
retry of a webhook that is not serving yet, the KServe settings written through the API, the
progress lines, and that a step that cannot finish stops the install naming itself."""
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
from tests.fake_apiserver import FakeApiServer
from tests.test_cluster_api import deployment, namespace

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


def _installed_cluster(fake: FakeApiServer) -> None:
    """What the manifests would have created, available (the fake has no controllers)."""
    for ns, names in {"cert-manager": ["cert-manager", "cert-manager-cainjector", "cert-manager-webhook"],
                      "knative-serving": ["activator", "autoscaler", "controller", "webhook", "autoscaler-hpa",
                                          "net-kourier-controller"],
                      "kourier-system": ["3scale-kourier-gateway"], "kserve": ["kserve-controller-manager"],
                      "kubeflow": ["ml-pipeline", "minio", "mysql", "workflow-controller"],
                      "seamcheck-system": ["minio", "mlflow", "prometheus"]}.items():
        fake.put(namespace(ns))
        for name in names:
            fake.put(deployment(name, ns))
    for crd in ("services", "configurations", "revisions", "routes"):
        _crd(fake, f"{crd}.serving.knative.dev")
    _crd(fake, "applications.app.k8s.io")
    fake.put({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "minio-buckets",
                                                                    "namespace": "seamcheck-system"},
              "spec": {"template": {"spec": {"containers": []}}}, "status": {"succeeded": 1}})
    fake.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inferenceservice-config",
                                                                   "namespace": "kserve"},
              "data": {"ingress": json.dumps({"ingressGateway": "knative-serving/knative-ingress-gateway"})}})


def _crd(fake: FakeApiServer, name: str) -> None:
    plural, group = name.split(".", 1)
    fake.put({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name},
              "spec": {"group": group, "names": {"plural": plural, "kind": plural.title()}, "scope": "Namespaced",
                       "versions": []},
              "status": {"conditions": [{"type": "Established", "status": "True"}]}})


def test_the_install_plan_runs_in_order_with_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.cluster.install as install

    monkeypatch.setattr(install, "RETRY_INTERVAL_S", 0.05)  # the webhook retry, quick
    spec = cluster_spec(load_matrix().row(None), "kind")
    manifests = render_manifests(spec, S3Credentials("a", "b"), knative_owned=True)
    kubectl_bin, log = _fake_kubectl(tmp_path, fail_once="kserve-cluster-resources.yaml")
    kubeconfig = tmp_path / "kubeconfig"
    with FakeApiServer() as fake:
        _installed_cluster(fake)
        steps = install_plan(spec, Kubectl(str(kubectl_bin), kubeconfig), fake.api_client(), manifests)
        lines: list[str] = []
        timings = run_plan(steps, lines.append)
        ingress = json.loads(fake.get("v1", "ConfigMap", "inferenceservice-config", "kserve")["data"]["ingress"])
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


def test_a_step_that_cannot_finish_names_itself(tmp_path: Path) -> None:
    spec = cluster_spec(load_matrix().row(None), "cloud")
    manifests = render_manifests(spec, S3Credentials("a", "b"), knative_owned=False)
    kubectl_bin, _log = _fake_kubectl(tmp_path)
    with FakeApiServer() as fake:
        fake.put(namespace("cert-manager"))
        fake.put(deployment("cert-manager", "cert-manager"))
        fake.put(deployment("cert-manager-webhook", "cert-manager", ready=0))
        steps = install_plan(spec, Kubectl(str(kubectl_bin)), fake.api_client(), manifests,
                             components=["cert-manager"])
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
