"""The harness's own services on the host cluster (harness/profiles/host.py), installed from the
kind templates with images made on this machine, checked through the seams the suites use:

* MLflow answers at the row's version, gives runs s3:// artifact URIs, and lists from inside the
  cluster (its own boto3 to the minio Service) an artifact the harness wrote through its port-forward;
* Prometheus runs the rendered scrape config and discovers a model server Pod through the API
  server with the template's RBAC: the target is up, with the isvc and revision labels;
* what the S3 Service serves says it is the stand-in (the image's label names why).
"""
from __future__ import annotations

import json
import time

import boto3
import requests
from kubernetes import client as k8s

from harness.cluster.render import BUCKETS
from tests.kube import wait_for

BUSYBOX = "dev.local/seamcheck/busybox:1.35.0"


def _api(host, path: str, **body):
    url = f"{host.tracking_uri}/api/2.0/mlflow/{path}"
    response = requests.post(url, json=body, timeout=30) if body else requests.get(url, timeout=30)
    assert response.ok, f"{url}: HTTP {response.status_code} {response.text[:300]}"
    return response.json()


def test_mlflow_runs_the_rows_version_and_reads_artifacts_from_the_s3_store(host) -> None:
    version = requests.get(f"{host.tracking_uri}/version", timeout=30)
    assert version.ok and version.text.strip() == host.row.mlflow, version.text
    name = f"seamcheck-host-{int(time.time() * 1000)}"
    experiment = _api(host, "experiments/create", name=name)["experiment_id"]
    run = _api(host, "runs/create", experiment_id=experiment, start_time=int(time.time() * 1000))["run"]["info"]
    assert run["artifact_uri"].startswith(f"s3://{BUCKETS['artifacts']}/"), run["artifact_uri"]
    bucket, _, prefix = run["artifact_uri"][len("s3://"):].partition("/")
    env = host.client_env()
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/model/MLmodel", Body=b"flavors: {}\n")
    # MLflow lists it with its own S3 client, from its Pod, through the minio Service: the in-cluster seam.
    listed = _api(host, f"artifacts/list?run_id={run['run_id']}&path=model")
    assert [f["path"] for f in listed.get("files", [])] == ["model/MLmodel"], listed
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} >= set(BUCKETS.values())  # the buckets Job ran


def test_prometheus_discovers_a_model_server_pod_and_scrapes_it_with_its_labels(host) -> None:
    core = k8s.CoreV1Api(host.api)
    ns = host.spec.serving_namespace
    labels = {"serving.kserve.io/inferenceservice": "evidence", "serving.knative.dev/revision": "evidence-00001"}
    script = ("mkdir -p /www && echo 'seamcheck_evidence_total 1' > /www/metrics && "
              "exec /bin/busybox httpd -f -p 8082 -h /www")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evidence-model-server", "labels": labels},
           "spec": {"automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0, "containers": [{
               # what the model-servers job keeps: container kserve-container declaring port 8080; it scrapes :8082
               "name": "kserve-container", "image": BUSYBOX, "imagePullPolicy": "Never",
               "command": ["/bin/busybox", "sh", "-c", script], "ports": [{"containerPort": 8080}]}]}}
    core.create_namespaced_pod(ns, pod)
    try:
        config = requests.get(f"{host.prometheus_url}/api/v1/status/config", timeout=30).json()["data"]["yaml"]
        assert "job_name: knative-queue-proxy" in config and "job_name: model-servers" in config

        def up() -> list[dict] | None:
            query = 'up{job="model-servers",isvc="evidence"}'
            result = requests.get(f"{host.prometheus_url}/api/v1/query", params={"query": query},
                                  timeout=30).json()["data"]["result"]
            return result if result and result[0]["value"][1] == "1" else None

        (sample,) = wait_for("Prometheus scraping the model server pod", up, deadline_s=120, interval_s=1)
        assert sample["metric"]["revision"] == "evidence-00001" and sample["metric"]["namespace"] == ns
        print(json.dumps(sample))
    finally:
        core.delete_namespaced_pod("evidence-model-server", ns, grace_period_seconds=0)


def test_the_s3_service_is_served_by_the_stand_in_and_says_so(host) -> None:
    image = host.service_images["s3"]
    assert image.fake and "MinIO" in image.spec.fake
    deployment = k8s.AppsV1Api(host.api).read_namespaced_deployment("minio", host.spec.system_namespace)
    assert deployment.spec.template.spec.containers[0].image == image.ref
    assert requests.get(f"{host.client_env()['AWS_ENDPOINT_URL']}/moto-api/", timeout=30).ok
