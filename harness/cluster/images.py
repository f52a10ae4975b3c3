"""Every image an install would pull, checked against its registry before anything is applied.

Old tags disappear upstream: several ``gcr.io/ml-pipeline`` images that KFP 2.3.0's manifests name
are gone (kubeflow/pipelines #12422: ``argoexec``, ``application-crd-controller``; #11600:
``frontend``, ``visualization-server``), and a node that cannot pull one leaves its pod in
ImagePullBackOff until the install's wait gives up. So the images are listed from the rendered
manifests (every ``image`` of a pod template, the Argo executor that KFP passes as an argument,
and the row's ``hidden_images``: KFP's driver and launcher, compiled into its API server), a row's
``image_replacements`` applied, and each one asked of its registry (the OCI distribution API: a
HEAD of the manifest, with the registry's anonymous bearer token when it asks for one; Docker Hub
does not count HEADs against its pull limit). A missing image is one line naming it and where a
replacement goes.

The KFP install applies the replacements itself (``kfp_overlay``: a kustomization over the remote
manifests with an ``images:`` entry per replaced container image, a patch for the executor
argument, and the API server's V2_DRIVER_IMAGE / V2_LAUNCHER_IMAGE for the hidden ones).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
import yaml

from harness.cluster.errors import ClusterError

__all__ = ["ImageRef", "RegistryClient", "check_images", "kfp_overlay", "referenced_images", "replaced"]

#: Container arguments that name an image (KFP's workflow-controller passes Argo's executor so).
IMAGE_ARGS = ("--executor-image",)
#: The KFP API server's environment variables for its compiled-in images (argocompiler/container.go)
HIDDEN_IMAGE_ENV = {"kfp-driver": "V2_DRIVER_IMAGE", "kfp-launcher": "V2_LAUNCHER_IMAGE"}
_MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"))


@dataclass(frozen=True)
class ImageRef:
    """An image reference split as a registry sees it (Docker's normalisation: a first path part
    without a dot or colon is a Docker Hub namespace; a single name is under library/)."""

    registry: str
    repository: str
    reference: str  # a tag or a digest

    @classmethod
    def parse(cls, image: str) -> ImageRef:
        name, reference = image, "latest"
        if "@" in image:
            name, reference = image.split("@", 1)
        else:
            slash = image.rfind("/")
            colon = image.rfind(":")
            if colon > slash:
                name, reference = image[:colon], image[colon + 1:]
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
        else:
            registry, repository = "docker.io", name
        if registry == "docker.io" and "/" not in repository:
            repository = f"library/{repository}"
        return cls(registry, repository, reference)

    @property
    def api_host(self) -> str:
        return "registry-1.docker.io" if self.registry == "docker.io" else self.registry


def _walk_images(node: Any, found: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                found.append(value)
            elif key == "args" and isinstance(value, list):
                for flag, arg in zip(value, value[1:]):
                    if flag in IMAGE_ARGS and isinstance(arg, str):
                        found.append(arg)
                for arg in value:
                    if isinstance(arg, str) and arg.split("=", 1)[0] in IMAGE_ARGS and "=" in arg:
                        found.append(arg.split("=", 1)[1])
            else:
                _walk_images(value, found)
    elif isinstance(node, list):
        for item in node:
            _walk_images(item, found)


def referenced_images(manifest_text: str) -> list[str]:
    """The images a multi-document manifest names, in order of first appearance."""
    found: list[str] = []
    for doc in yaml.safe_load_all(manifest_text):
        if isinstance(doc, dict) and doc.get("kind") not in ("CustomResourceDefinition",):
            _walk_images(doc, found)
    return list(dict.fromkeys(found))


def replaced(images: Iterable[str], replacements: Mapping[str, str]) -> list[str]:
    return list(dict.fromkeys(replacements.get(image, image) for image in images))


class RegistryClient:
    """HEAD a manifest through the OCI distribution API, anonymously (a bearer token when asked)."""

    def __init__(self, *, timeout_s: float = 20.0, scheme: str = "https",
                 session: requests.Session | None = None) -> None:
        self.timeout_s, self.scheme = timeout_s, scheme
        self.session = session or requests.Session()

    def problem(self, image: str) -> str | None:
        """None when the registry has the image; else why not, in a few words."""
        ref = ImageRef.parse(image)
        url = f"{self.scheme}://{ref.api_host}/v2/{ref.repository}/manifests/{ref.reference}"
        headers = {"Accept": _MANIFEST_TYPES}
        try:
            resp = self.session.head(url, headers=headers, timeout=self.timeout_s)
            if resp.status_code == 401:
                token = self._token(resp.headers.get("WWW-Authenticate", ""), ref)
                if token:
                    resp = self.session.head(url, headers={**headers, "Authorization": f"Bearer {token}"},
                                             timeout=self.timeout_s)
        except requests.RequestException as exc:
            return f"registry {ref.api_host} did not answer ({type(exc).__name__})"
        if resp.status_code == 200:
            return None
        if resp.status_code == 404:
            return "manifest unknown"
        return f"HTTP {resp.status_code} from {ref.api_host}"

    def _token(self, challenge: str, ref: ImageRef) -> str | None:
        if not challenge.lower().startswith("bearer "):
            return None
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            return None
        params.setdefault("scope", f"repository:{ref.repository}:pull")
        try:
            body = self.session.get(realm, params=params, timeout=self.timeout_s).json()
        except (requests.RequestException, ValueError):
            return None
        return body.get("token") or body.get("access_token")


def check_images(images: Iterable[str], *, problem: Callable[[str], str | None], row: str,
                 parallel: int = 8) -> None:
    """Raise ClusterError naming every image its registry does not have (or does not answer for)."""
    wanted = list(dict.fromkeys(images))
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="image-check") as pool:
        problems = dict(zip(wanted, pool.map(problem, wanted)))
    missing = [f"{image} ({why})" for image, why in problems.items() if why]
    if missing:
        raise ClusterError(
            f"{len(missing)} of the {len(wanted)} images the install would pull cannot be pulled: {', '.join(missing)}; "
            f"give each a replacement in harness/matrix.toml under [rows.\"{row}\".image_replacements] "
            '("<image>" = "<where to pull it from instead>", e.g. Argo\'s own quay.io/argoproj images for '
            "KFP's gcr.io/ml-pipeline copies), or pre-load them onto the nodes")


def _split_name(image: str) -> tuple[str, dict[str, str]]:
    """An image as a kustomize `images:` entry's new fields (newName plus newTag or digest)."""
    ref_at = image.rfind("@")
    if ref_at > 0:
        return image[:ref_at], {"digest": image[ref_at + 1:]}
    slash, colon = image.rfind("/"), image.rfind(":")
    if colon > slash:
        return image[:colon], {"newTag": image[colon + 1:]}
    return image, {}


def kfp_overlay(remote: str, replacements: Mapping[str, str], *, hidden_images: Iterable[str] = ()) -> str | None:
    """A kustomization.yaml over the remote KFP manifests that pulls the replaced images from their
    replacements, or None when nothing of KFP is replaced (the remote is applied as it is)."""
    if not replacements:
        return None
    hidden = set(hidden_images)
    entries, patches = [], []
    for original, replacement in sorted(replacements.items()):
        if original in hidden or "/argoexec" in original:
            continue  # not a container's image: the patches below replace them
        # kustomize's images transformer matches the name (any tag) and sets the new name and tag
        new_name, new_fields = _split_name(replacement)
        entries.append({"name": _split_name(original)[0], "newName": new_name, **(new_fields or {"newTag": "latest"})})
    for original, replacement in sorted(replacements.items()):
        if "/argoexec" not in original:
            continue
        # KFP 2.3.0's workflow-controller runs `--configmap workflow-controller-configmap --executor-image
        # <image>` (third-party/argo/base/workflow-controller-deployment-patch.yaml); the test op makes
        # a different layout fail the apply instead of replacing the wrong argument.
        patches.append({"target": {"kind": "Deployment", "name": "workflow-controller"},
                        "patch": yaml.safe_dump([{"op": "test", "path": "/spec/template/spec/containers/0/args/3",
                                                  "value": original},
                                                 {"op": "replace", "path": "/spec/template/spec/containers/0/args/3",
                                                  "value": replacement}])})
    env = [{"name": HIDDEN_IMAGE_ENV[key], "value": replacements[image]} for image in hidden_images
           if image in replacements for key in HIDDEN_IMAGE_ENV if f"/{key}@" in image or f"/{key}:" in image]
    if env:
        patches.append({"target": {"kind": "Deployment", "name": "ml-pipeline"},
                        "patch": yaml.safe_dump([{"op": "add", "path": "/spec/template/spec/containers/0/env/-",
                                                  "value": e} for e in env])})
    kustomization: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                     "resources": [remote]}
    if entries:
        kustomization["images"] = entries
    if patches:
        kustomization["patches"] = patches
    return ("# Written by seamcheck from the row's image_replacements (harness/matrix.toml).\n"
            + yaml.safe_dump(kustomization, sort_keys=False))
