"""The image preflight and the KFP image overlay: images listed from manifests the way the install
renders them, replacements applied by real kustomize (kubectl kustomize), and each image asked of
a real OCI registry (the distribution registry, built from the Go module proxy)."""
from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest
import requests
import yaml

from harness.cluster.errors import ClusterError
from harness.cluster.images import (
    ImageRef,
    RegistryClient,
    check_images,
    kfp_overlay,
    referenced_images,
    replaced,
)
from harness.matrix import load_matrix
from harness.procs import ManagedProcess
from tests.go_tools import REGISTRY, go_tool

ARGOEXEC = "gcr.io/ml-pipeline/argoexec:v3.4.17-license-compliance"
CONTROLLER = "gcr.io/ml-pipeline/workflow-controller:v3.4.17-license-compliance"
DRIVER = "gcr.io/ml-pipeline/kfp-driver@sha256:" + "d" * 64

# The shape of KFP 2.3.0's rendered env/platform-agnostic where images live (written here, not copied):
# the workflow-controller passes Argo's executor image as an argument, the API server runs v2 tasks
# with a driver compiled into it, a CRD's schema mentions "image" as a property name only.
BASE = textwrap.dedent(f"""\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: workflow-controller, namespace: kubeflow}}
    spec:
      selector: {{matchLabels: {{app: workflow-controller}}}}
      template:
        metadata: {{labels: {{app: workflow-controller}}}}
        spec:
          containers:
          - name: workflow-controller
            image: {CONTROLLER}
            args: [--configmap, workflow-controller-configmap, --executor-image, {ARGOEXEC}]
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: ml-pipeline, namespace: kubeflow}}
    spec:
      selector: {{matchLabels: {{app: ml-pipeline}}}}
      template:
        metadata: {{labels: {{app: ml-pipeline}}}}
        spec:
          initContainers:
          - {{name: wait, image: "busybox:1.36"}}
          containers:
          - name: ml-pipeline-api-server
            image: gcr.io/ml-pipeline/api-server:2.3.0
            env: [{{name: LOG_LEVEL, value: info}}]
    ---
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {{name: workflows.argoproj.io}}
    spec:
      versions:
      - name: v1alpha1
        schema: {{openAPIV3Schema: {{properties: {{image: {{type: string}}}}}}}}
    """)


@pytest.mark.parametrize(("image", "registry", "repository", "reference"), [
    ("busybox:1.36", "docker.io", "library/busybox", "1.36"),
    ("minio/minio:RELEASE.2019-08-14T20-37-41Z", "docker.io", "minio/minio", "RELEASE.2019-08-14T20-37-41Z"),
    ("quay.io/argoproj/argoexec:v3.4.17", "quay.io", "argoproj/argoexec", "v3.4.17"),
    (DRIVER, "gcr.io", "ml-pipeline/kfp-driver", "sha256:" + "d" * 64),
    ("localhost:5000/team/model", "localhost:5000", "team/model", "latest"),
])
def test_image_references_split_as_a_registry_sees_them(image, registry, repository, reference) -> None:
    assert ImageRef.parse(image) == ImageRef(registry, repository, reference)


def test_the_images_a_manifest_names_include_the_executor_argument_and_not_a_schema() -> None:
    assert referenced_images(BASE) == [CONTROLLER, ARGOEXEC, "busybox:1.36", "gcr.io/ml-pipeline/api-server:2.3.0"]
    assert replaced([CONTROLLER, ARGOEXEC], {ARGOEXEC: "quay.io/argoproj/argoexec:v3.4.17"}) == [
        CONTROLLER, "quay.io/argoproj/argoexec:v3.4.17"]


def _kustomize(path: Path) -> list[dict]:
    done = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed")
def test_the_kfp_overlay_pulls_every_replaced_image_from_its_replacement(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "all.yaml").write_text(BASE)
    (base / "kustomization.yaml").write_text("resources: [all.yaml]\n")
    replacements = {CONTROLLER: "quay.io/argoproj/workflow-controller:v3.4.17",
                    ARGOEXEC: "quay.io/argoproj/argoexec:v3.4.17",
                    DRIVER: "ghcr.io/kubeflow/kfp-driver:2.3.0"}
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(kfp_overlay("../base", replacements, hidden_images=[DRIVER]))
    docs = {d["metadata"]["name"]: d for d in _kustomize(overlay)}
    controller = docs["workflow-controller"]["spec"]["template"]["spec"]["containers"][0]
    assert controller["image"] == "quay.io/argoproj/workflow-controller:v3.4.17"
    assert controller["args"][3] == "quay.io/argoproj/argoexec:v3.4.17"
    api = docs["ml-pipeline"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "V2_DRIVER_IMAGE", "value": "ghcr.io/kubeflow/kfp-driver:2.3.0"} in api["env"]
    assert api["image"] == "gcr.io/ml-pipeline/api-server:2.3.0"  # not replaced: left as it is
    assert set(referenced_images(yaml.safe_dump_all(docs.values()))) == {
        "quay.io/argoproj/workflow-controller:v3.4.17", "quay.io/argoproj/argoexec:v3.4.17", "busybox:1.36",
        "gcr.io/ml-pipeline/api-server:2.3.0"}
    assert kfp_overlay("../base", {}, hidden_images=[]) is None  # nothing replaced: the remote as it is


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed")
def test_a_different_executor_layout_fails_the_overlay_instead_of_replacing_the_wrong_argument(tmp_path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "all.yaml").write_text(BASE.replace("--configmap, workflow-controller-configmap, ", ""))
    (base / "kustomization.yaml").write_text("resources: [all.yaml]\n")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(kfp_overlay("../base", {ARGOEXEC: "quay.io/argoproj/argoexec:v3"}))
    done = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "test" in done.stderr.lower(), done.stderr


def test_the_default_rows_replacements_are_argos_and_minios_own_images() -> None:
    row = load_matrix().row(None)
    assert row.image_replacements[ARGOEXEC] == "quay.io/argoproj/argoexec:v3.4.17"
    assert all(ImageRef.parse(v).reference for v in row.image_replacements.values())
    assert {ImageRef.parse(h).repository for h in row.hidden_images} == {"ml-pipeline/kfp-driver",
                                                                          "ml-pipeline/kfp-launcher"}


def test_missing_images_are_named_in_one_line_with_where_the_replacement_goes() -> None:
    gone = {"gcr.io/ml-pipeline/frontend:2.3.0": "manifest unknown"}
    with pytest.raises(ClusterError) as refused:
        check_images(["busybox:1.36", "gcr.io/ml-pipeline/frontend:2.3.0"], problem=gone.get, row="r1")
    assert str(refused.value).startswith("1 of the 2 images the install would pull cannot be pulled: "
                                         "gcr.io/ml-pipeline/frontend:2.3.0 (manifest unknown); give each a "
                                         'replacement in harness/matrix.toml under [rows."r1".image_replacements]')
    check_images(["busybox:1.36"], problem=gone.get, row="r1")


# ------------------------------------------------------------------ a real registry
@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    """The distribution registry (what Docker Hub, GHCR and quay serve the API of), built once into
    the user's cache from the Go module proxy, serving plain HTTP on a free loopback port."""
    binary = go_tool(*REGISTRY)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path_factory.mktemp("registry")
    config = root / "config.yml"
    config.write_text(f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
                      f"http: {{addr: 127.0.0.1:{port}}}\nlog: {{level: error}}\n")
    proc = ManagedProcess("registry", [str(binary), "serve", str(config)], root / "registry.log").start()
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/v2/", deadline_s=30)
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


def _push(registry: str, repository: str, tag: str) -> None:
    """One image through the distribution API's own push flow: its blobs, then the manifest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    start = requests.post(f"http://{registry}/v2/{repository}/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    location = location if location.startswith("http") else f"http://{registry}{location}"
    put = requests.put(location, params={"digest": digest}, data=config, timeout=10,
                       headers={"Content-Type": "application/octet-stream"})
    assert put.status_code == 201, put.text
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest,
                           "size": len(config)}, "layers": []}
    done = requests.put(f"http://{registry}/v2/{repository}/manifests/{tag}", data=json.dumps(manifest), timeout=10,
                        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert done.status_code == 201, done.text


def test_the_registry_client_finds_a_pushed_image_and_names_a_missing_one(registry: str) -> None:
    _push(registry, "argoproj/argoexec", "v3.4.17")
    client = RegistryClient(scheme="http", timeout_s=10)
    assert client.problem(f"{registry}/argoproj/argoexec:v3.4.17") is None
    assert client.problem(f"{registry}/argoproj/argoexec:v3.4.17-license-compliance") == "manifest unknown"
    assert client.problem(f"{registry}/ml-pipeline/frontend:2.3.0") == "manifest unknown"
    with pytest.raises(ClusterError, match=r"1 of the 2 images .*ml-pipeline/frontend:2.3.0 \(manifest unknown\)"):
        check_images([f"{registry}/argoproj/argoexec:v3.4.17", f"{registry}/ml-pipeline/frontend:2.3.0"],
                     problem=client.problem, row="r1")
    with socket.socket() as s:  # a port nothing listens on: a registry that does not answer
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    assert client.problem(f"{dead}/x/y:1").startswith(f"registry {dead} did not answer")
