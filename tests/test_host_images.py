"""Locally written images: reproducible OCI archives named so nothing pulls them, and (as root, with
containerd, runc and the images' binaries in the host build cache) imported and run by our own
containerd."""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from harness.host import build as hbuild
from harness.host.images import ImageError, file_key, load_images, local_name, write_image, write_images
from harness.host.recipes import recipes
from harness.host.versions import load_host_versions


def _fake_binaries(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for spec in load_images().values():
        for f in spec.files:
            key = file_key(f)
            path = tmp_path / "bin" / key.replace(":", "_").lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"#!fake {key}\n".encode())
            out[key] = path
    return out


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_table_maps_every_upstream_image_to_a_local_tagged_name() -> None:
    specs = load_images()
    assert {"pause", "coredns", "kube-network-policies"} <= set(specs)
    for spec in specs.values():
        assert spec.local.startswith("dev.local/seamcheck/") and not spec.local.endswith(":latest")
        assert local_name(spec.upstream) == spec.local
    assert local_name("registry.k8s.io/pause:3.9") == "dev.local/seamcheck/pause:3.9"
    with pytest.raises(ImageError, match="no local image for 'nginx:1'"):
        local_name("nginx:1")


def test_archive_is_reproducible_and_names_the_image(tmp_path: Path) -> None:
    binaries = _fake_binaries(tmp_path)
    spec = load_images()["coredns"]
    a = write_image(spec, binaries, tmp_path / "a.tar")
    b = write_image(spec, binaries, tmp_path / "b.tar")
    assert a.read_bytes() == b.read_bytes()
    files = _members(a)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    desc = index["manifests"][0]
    assert desc["annotations"]["io.containerd.image.name"] == "dev.local/seamcheck/coredns:v1.11.3"
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "v1.11.3"
    manifest = json.loads(files["blobs/sha256/" + desc["digest"].split(":")[1]])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["config"]["Entrypoint"] == ["/coredns"] and config["config"]["User"] == "nonroot:nonroot"
    layer = files["blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1]]
    import gzip
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {"coredns", "etc/passwd", "tmp"} <= set(members)
    assert members["tmp"].mode == 0o1777
    # setcap cap_net_bind_service=+ep: vfs_cap_data v2, effective bit, permitted bit 10.
    cap = members["coredns"].pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape")
    assert cap == bytes([1, 0, 0, 2, 0, 4, 0, 0]) + bytes(12)


def test_missing_binary_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="python -m harness.host.build pause"):
        write_image(load_images()["pause"], {}, tmp_path / "x.tar")


def _need_cached(*components: str) -> None:
    known = recipes(load_host_versions())
    missing = [c for c in components if hbuild.find(known[c]) is None]
    if missing:
        pytest.skip(f"not in the host build cache: {missing} (cold build: python -m harness.host.build "
                    f"{' '.join(missing)})")


@pytest.mark.skipif(os.geteuid() != 0, reason="containerd and runc need root (mounts, namespaces, cgroups)")
def test_containerd_imports_and_runs_the_local_images() -> None:
    _need_cached("containerd", "runc", "pause", "coredns")
    from harness.host.containerd import LocalContainerd

    names = ["pause", "coredns", "busybox"]
    archives = write_images(names)
    known = recipes(load_host_versions())
    ctd = LocalContainerd(bin_dir=hbuild.find(known["containerd"]).dir,
                          runc=hbuild.find(known["runc"]).binary("runc")).start()
    try:
        for archive in archives.values():
            ctd.import_image(archive)
        listed = ctd.ctr("images", "ls", "-q").stdout.split()
        assert {load_images()[n].local for n in names} <= set(listed)
        out = ctd.run("dev.local/seamcheck/busybox:1.35.0", "/bin/busybox", "echo", "from busybox")
        assert "from busybox" in out.stdout, out.stdout + out.stderr
        out = ctd.run("dev.local/seamcheck/coredns:v1.11.3", "/coredns", "-version")
        assert "CoreDNS-1.11.3" in out.stdout, out.stdout + out.stderr
        out = ctd.run("dev.local/seamcheck/pause:3.9", "/pause", "-v")
        assert "pause.c v3.9-v1.30.14" in out.stdout + out.stderr
    finally:
        folder = ctd.folder
        ctd.stop()
    assert folder is not None and not folder.exists()
