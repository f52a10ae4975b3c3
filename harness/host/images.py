"""Container images written locally from the built binaries: one OCI image-layout archive per image
in harness/host/images.toml, ready for ``ctr -n k8s.io images import``.

An archive is a tar of an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/``) with
one gzip layer. The index names the image twice: ``io.containerd.image.name`` (the full local name,
which ``ctr images import`` uses as is) and ``org.opencontainers.image.ref.name`` (its tag, as the
OCI spec says). Everything is reproducible: entries sorted, owner 0:0, mtime 0, gzip without a
timestamp, so the same binaries give the same digests. Archives are cached under
``<cache>/images/<name>-<hash16>.tar``, keyed by the spec and the binaries' sha256.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
import sys
import tarfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.host import cache as hcache

__all__ = ["IMAGES_FILE", "ImageSpec", "debian_file", "file_key", "image_config", "load_images", "local_name",
           "static_base_files", "write_archive", "write_image", "write_images"]

IMAGES_FILE = Path(__file__).with_name("images.toml")
_CAPS = {"net_bind_service": 10, "net_admin": 12, "net_raw": 13}
_SPEC_KEYS = {"upstream", "local", "base", "files", "entrypoint", "cmd", "user", "ports", "source", "env"}


class ImageError(ValueError):
    """images.toml is malformed, or an image's binary is missing."""


@dataclass(frozen=True)
class ImageSpec:
    name: str
    upstream: str
    local: str
    base: str
    files: tuple[Mapping[str, Any], ...]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    source: str = ""

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f["component"] for f in self.files if "component" in f))

    @property
    def debian_files(self) -> tuple[Mapping[str, Any], ...]:
        """The files taken from an installed Debian package ({host, package, path})."""
        return tuple(f for f in self.files if "host" in f)


def file_key(f: Mapping[str, Any]) -> str:
    """How a file of an image is named in ``binaries``: "component/binary" or "host:/path"."""
    return f"host:{f['host']}" if "host" in f else f"{f['component']}/{f['binary']}"


def _static_elf(data: bytes) -> bool:
    """An x86-64 ELF program without a PT_INTERP program header (no dynamic loader)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:  # ELF, 64-bit
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))  # 3: PT_INTERP


def debian_file(f: Mapping[str, Any]) -> Path:
    """A statically linked program of an installed Debian package, checked (a dynamic one would
    find no libraries in an image without a base)."""
    path = Path(f["host"])
    if not path.is_file():
        raise ImageError(f"{path} is missing: apt-get install -y {f['package']}")
    if not _static_elf(path.read_bytes()):
        raise ImageError(f"{path} is not a static ELF program; install Debian's static build (apt-get install -y "
                         f"{f['package']})")
    return path


def load_images(path: Path = IMAGES_FILE) -> dict[str, ImageSpec]:
    raw = tomllib.loads(path.read_text()).get("images")
    if not isinstance(raw, dict) or not raw:
        raise ImageError(f"{path}: no [images.<name>] tables")
    out = {}
    for name, spec in raw.items():
        unknown = set(spec) - _SPEC_KEYS
        if unknown:
            raise ImageError(f"{path}: [images.{name}] unknown key(s) {sorted(unknown)}; allowed {sorted(_SPEC_KEYS)}")
        for key in ("upstream", "local", "base"):
            if not isinstance(spec.get(key), str) or not spec[key]:
                raise ImageError(f"{path}: [images.{name}] needs {key} = \"...\"")
        if spec["base"] not in ("scratch", "static"):
            raise ImageError(f"{path}: [images.{name}] base={spec['base']!r}; write \"scratch\" or \"static\"")
        if ":" not in spec["local"].rsplit("/", 1)[-1] or spec["local"].endswith(":latest"):
            raise ImageError(f"{path}: [images.{name}] local={spec['local']!r} needs a tag other than latest "
                             "(a `latest` image is pulled on every start: imagePullPolicy Always)")
        files = spec.get("files")
        if not isinstance(files, list) or not files or not all(
                {"component", "binary", "path"} <= set(f) or {"host", "package", "path"} <= set(f) for f in files):
            raise ImageError(f"{path}: [images.{name}] files must list {{component, binary, path}} tables (a built "
                             "binary) or {host, package, path} tables (a static program of a Debian package)")
        for f in files:
            for cap in f.get("capabilities", []):
                if cap not in _CAPS:
                    raise ImageError(f"{path}: [images.{name}] capability {cap!r} unknown; known {sorted(_CAPS)}")
        out[name] = ImageSpec(
            name=name, upstream=spec["upstream"], local=spec["local"], base=spec["base"], files=tuple(files),
            entrypoint=tuple(spec.get("entrypoint", ())), cmd=tuple(spec.get("cmd", ())), user=spec.get("user", ""),
            ports=tuple(spec.get("ports", ())), source=spec.get("source", ""),
            **({"env": tuple(spec["env"])} if "env" in spec else {}))
    return out


def local_name(upstream: str, path: Path = IMAGES_FILE) -> str:
    """The local image that stands for ``upstream`` (e.g. in a manifest), or an error naming the table."""
    for spec in load_images(path).values():
        if spec.upstream == upstream:
            return spec.local
    raise ImageError(f"no local image for {upstream!r} in {path}: add an [images.<name>] table for it")


def _capability_xattr(caps: list[str]) -> str:
    # struct vfs_cap_data, revision 2 (linux/capability.h): magic_etc with the effective bit, then
    # (permitted, inheritable) for the low and high 32 capabilities, little-endian: `setcap X=+ep`.
    bits = 0
    for cap in caps:
        bits |= 1 << _CAPS[cap]
    raw = struct.pack("<IIIII", 0x02000000 | 0x1, bits & 0xFFFFFFFF, 0, bits >> 32, 0)
    return raw.decode("utf-8", "surrogateescape")


def static_base_files() -> list[tuple[str, bytes | None, int]]:
    """(path, content or None for a folder, mode): what distroless/static gives a static binary."""
    passwd = ("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
              "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
    group = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
    return [("etc", None, 0o755), ("etc/passwd", passwd.encode(), 0o644), ("etc/group", group.encode(), 0o644),
            ("etc/nsswitch.conf", b"hosts: files dns\n", 0o644), ("home", None, 0o755),
            ("home/nonroot", None, 0o700), ("root", None, 0o700), ("tmp", None, 0o1777)]


def _layer(spec: ImageSpec, binaries: Mapping[str, Path]) -> bytes:
    entries: list[tuple[str, bytes | None, int, dict[str, str], tuple[int, int]]] = []
    if spec.base == "static":
        for path, data, mode in static_base_files():
            owner = (65532, 65532) if path == "home/nonroot" else (0, 0)
            entries.append((path, data, mode, {}, owner))
    for f in spec.files:
        rel = f["path"].lstrip("/")
        parts = rel.split("/")[:-1]
        for i in range(len(parts)):
            folder = "/".join(parts[: i + 1])
            if not any(e[0] == folder for e in entries):
                entries.append((folder, None, 0o755, {}, (0, 0)))
        pax = {"SCHILY.xattr.security.capability": _capability_xattr(f["capabilities"])} if f.get("capabilities") else {}
        entries.append((rel, binaries[file_key(f)].read_bytes(), 0o755, pax, (0, 0)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data, mode, pax, (uid, gid) in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, 0
            info.uname = info.gname = ""
            if pax:
                info.pax_headers = pax
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def image_config(spec: ImageSpec, *, env: Sequence[str] | None = None) -> dict[str, Any]:
    """The OCI config's ``config`` object of ``spec`` (entrypoint, cmd, user, ports, env, labels)."""
    config: dict[str, Any] = {"Env": list(env if env is not None else spec.env)}
    if spec.entrypoint:
        config["Entrypoint"] = list(spec.entrypoint)
    if spec.cmd:
        config["Cmd"] = list(spec.cmd)
    if spec.user:
        config["User"] = spec.user
    if spec.ports:
        config["ExposedPorts"] = {p: {} for p in spec.ports}
    config["Labels"] = {"dev.seamcheck.upstream": spec.upstream, "dev.seamcheck.source": spec.source}
    return config


def write_archive(out: Path, *, local: str, config: Mapping[str, Any], layer: bytes | Path, media_type: str,
                  diff_id: str, created_by: str) -> Path:
    """An OCI image-layout archive of one layer (bytes, or a file too big for memory) at ``out``,
    written atomically, named ``local`` for ``ctr images import``."""
    blobs: dict[str, bytes | Path] = {}

    def blob(data: bytes | Path) -> dict[str, Any]:
        if isinstance(data, Path):
            sha, size = hashlib.sha256(), 0
            with data.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    sha.update(chunk)
                    size += len(chunk)
            digest = "sha256:" + sha.hexdigest()
        else:
            digest, size = "sha256:" + hashlib.sha256(data).hexdigest(), len(data)
        blobs[digest] = data
        return {"digest": digest, "size": size}

    layer_desc = {"mediaType": media_type, **blob(layer)}
    image = {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z", "config": dict(config),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": created_by}],
    }
    cfg = {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(_json(image))}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cfg,
                "layers": [layer_desc]}
    man = blob(_json(manifest))
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **man,
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": local,
                        "org.opencontainers.image.ref.name": local.rsplit(":", 1)[1]}}]}
    files: dict[str, bytes | Path] = {"oci-layout": _json({"imageLayoutVersion": "1.0.0"}), "index.json": _json(index),
                                      **{f"blobs/sha256/{d.split(':', 1)[1]}": data for d, data in blobs.items()}}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o644, 0
            data = files[name]
            if isinstance(data, Path):
                info.size = data.stat().st_size
                with data.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)
    return out


def write_image(spec: ImageSpec, binaries: Mapping[str, Path], out: Path) -> Path:
    """Write ``spec``'s OCI archive to ``out`` (atomically); ``binaries`` maps "component/binary" -> file."""
    missing = [k for k in (file_key(f) for f in spec.files) if k not in binaries]
    if missing:
        raise ImageError(f"image {spec.name}: no binary for {missing}; build it: python -m harness.host.build "
                         f"{' '.join(k.split('/')[0] for k in missing)}")
    layer_tar = _layer(spec, binaries)
    return write_archive(out, local=spec.local, config=image_config(spec), layer=gzip.compress(layer_tar, 9, mtime=0),
                         media_type="application/vnd.oci.image.layer.v1.tar+gzip",
                         diff_id="sha256:" + hashlib.sha256(layer_tar).hexdigest(),
                         created_by=f"seamcheck harness/host/images.py ({spec.name})")


def write_images(names: list[str] | None = None, *, root: Path | None = None) -> dict[str, Path]:
    """Build (or find) the images' components, then write (or find) each image's archive."""
    from harness.host.build import ensure_all  # the build tool imports nothing from here

    specs = load_images()
    chosen = names or list(specs)
    unknown = [n for n in chosen if n not in specs]
    if unknown:
        raise ImageError(f"unknown image(s) {unknown}; images: {', '.join(specs)} (see {IMAGES_FILE})")
    built = ensure_all(sorted({c for n in chosen for c in specs[n].components}), root=root)
    out = {}
    for name in chosen:
        spec = specs[name]
        binaries = {file_key(f): built[f["component"]].binary(f["binary"]) for f in spec.files if "component" in f}
        digests = {k: built[k.split("/")[0]].record["binaries"][k.split("/")[1]]["sha256"] for k in binaries}
        for f in spec.debian_files:
            binaries[file_key(f)] = debian_file(f)
            digests[file_key(f)] = hashlib.sha256(binaries[file_key(f)].read_bytes()).hexdigest()
        key = hcache.input_key({"image": spec.name, "spec": repr(spec), "binaries": digests})
        path = (root or hcache.cache_root()) / "images" / f"{name}-{key}.tar"
        out[name] = path if path.is_file() else write_image(spec, binaries, path)
    return out


if __name__ == "__main__":
    from harness.ledger import ledger

    try:
        for image, archive in write_images(sys.argv[1:] or None).items():
            print(f"{image:24} {load_images()[image].local:48} {archive}")
    finally:
        ledger.reset()
