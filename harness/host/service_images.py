"""Images of the harness's Python services for the host cluster (the ``[services.*]`` tables of
harness/host/images.toml): MLflow from the matrix row's tracking role environment, the S3 store's
stand-in from an environment of its own. (Prometheus is a static binary built here: harness/host/images.py.)

Each is one uncompressed layer (harness/host/rootfs.py) in an OCI archive under
``<host cache>/images/service-<name>-<hash16>.tar``, keyed by what decides its content: the table,
the environment's folder (its name is the hash of its Python and pins) and marker, BusyBox, and this
machine's loader cache (/etc/ld.so.cache changes whenever a library is installed or upgraded). A
cached archive is found in well under a second; a cold one takes about ten seconds per 500 MB.
"""
from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.envs import RoleEnv, ensure_env, ensure_role_env
from harness.host import cache as hcache
from harness.host.images import (
    IMAGES_FILE,
    ImageError,
    ImageSpec,
    image_config,
    static_base_files,
    write_archive,
)
from harness.host.rootfs import write_layer
from harness.matrix import Role, Row

__all__ = ["ServiceImage", "ServiceSpec", "load_services", "service_images"]

_KEYS = {"upstream", "upstream_note", "local", "env", "entrypoint", "cmd", "user", "source", "fake"}
#: What an interpreter's prefix holds that a service never imports (the test suite alone is 123 MB).
_PREFIX_SKIP = ("include", "share", "lib/pkgconfig", "lib/python{v}/test", "lib/python{v}/site-packages",
                "lib/python{v}/config-{v}-x86_64-linux-gnu", "lib/python{v}/idlelib", "lib/python{v}/tkinter",
                "lib/python{v}/turtledemo", "lib/python{v}/ensurepip")
_BUSYBOX = Path("/bin/busybox")
_LOADER_CACHE = Path("/etc/ld.so.cache")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    upstream: str
    local: str
    source: str
    env: Mapping[str, Any]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    fake: str = ""
    upstream_note: str = ""


@dataclass(frozen=True)
class ServiceImage:
    spec: ServiceSpec
    ref: str  # the local name it is imported under
    archive: Path
    env: RoleEnv

    @property
    def fake(self) -> bool:
        return bool(self.spec.fake)


def load_services(path: Path = IMAGES_FILE) -> dict[str, ServiceSpec]:
    raw = tomllib.loads(path.read_text()).get("services")
    if not isinstance(raw, dict) or not raw:
        raise ImageError(f"{path}: no [services.<name>] tables")
    out = {}
    for name, table in raw.items():
        unknown = set(table) - _KEYS
        if unknown:
            raise ImageError(f"{path}: [services.{name}] unknown key(s) {sorted(unknown)}; allowed {sorted(_KEYS)}")
        for key in ("upstream", "local", "source"):
            if not isinstance(table.get(key), str) or not table[key]:
                raise ImageError(f"{path}: [services.{name}] needs {key} = \"...\"")
        env = table.get("env", {})
        if set(env) not in ({"role"}, {"pins"}):
            raise ImageError(f"{path}: [services.{name}] needs env = {{ role = \"<matrix role>\" }} or "
                             f"{{ pins = [\"name==version\", ...] }}, not {env!r}")
        if ":" in table["local"].rsplit("/", 1)[-1]:
            raise ImageError(f"{path}: [services.{name}] local={table['local']!r}: leave the tag off (the "
                             "environment's folder name is the tag)")
        out[name] = ServiceSpec(
            name=name, upstream=table["upstream"], local=table["local"], source=table["source"], env=env,
            entrypoint=tuple(table.get("entrypoint", ())),
            cmd=tuple(table.get("cmd", ())), user=table.get("user", ""), fake=table.get("fake", ""),
            upstream_note=table.get("upstream_note", ""))
    return out


def _pyvenv(env: RoleEnv) -> dict[str, str]:
    lines = (env.path / "pyvenv.cfg").read_text().splitlines()
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in lines) if v}


def _interpreter_prefix(env: RoleEnv) -> tuple[Path, str]:
    """The prefix of the interpreter a venv was made from (pyvenv.cfg's ``home`` is its bin/) and
    its major.minor version."""
    cfg = _pyvenv(env)
    if "home" not in cfg or "version_info" not in cfg:
        raise ImageError(f"{env.path}/pyvenv.cfg names no home or version_info; rebuild the environment")
    return Path(cfg["home"]).parent, ".".join(cfg["version_info"].split(".")[:2])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build(spec: ServiceSpec, env: RoleEnv, ref: str, out: Path) -> Path:
    prefix, version = _interpreter_prefix(env)
    if not _BUSYBOX.is_file():
        raise ImageError(f"{_BUSYBOX} is missing (the image's /bin/sh): apt-get install -y busybox-static")
    extra: list[tuple[str, bytes | None, int]] = list(static_base_files())
    extra.append(("bin/busybox", _BUSYBOX.read_bytes(), 0o755))
    layer_file = out.with_name(out.name + ".layer")
    layer = write_layer(layer_file, trees=[env.path, prefix], exclude=[prefix / p.format(v=version) for p in _PREFIX_SKIP],
                        extra=extra, links=[("bin/sh", "busybox")])
    image = ImageSpec(name=spec.name, upstream=spec.upstream, local=ref, base="env", files=(),
                      entrypoint=tuple(e if "/" in e else str(env.bin(e)) for e in spec.entrypoint),
                      cmd=spec.cmd, user=spec.user, source=spec.source)
    path = f"{env.path}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    config = image_config(image, env=[f"PATH={path}", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1"])
    config["Labels"]["dev.seamcheck.libraries"] = " ".join(layer.libraries)
    if spec.fake:
        config["Labels"]["dev.seamcheck.fake"] = spec.fake
    try:
        return write_archive(out, local=ref, config=config, layer=layer_file,
                             media_type="application/vnd.oci.image.layer.v1.tar", diff_id=layer.diff_id,
                             created_by=f"seamcheck harness/host/service_images.py ({spec.name})")
    finally:
        layer_file.unlink(missing_ok=True)


def service_images(row: Row, names: list[str] | None = None, *, env_cache: Path | None = None,
                   root: Path | None = None, progress: Callable[[str], None] | None = None) -> dict[str, ServiceImage]:
    """The services' images for ``row`` (built once, then found in the cache)."""
    say = progress or (lambda _m: None)
    specs = load_services()
    chosen = names or list(specs)
    unknown = [n for n in chosen if n not in specs]
    if unknown:
        raise ImageError(f"unknown service image(s) {unknown}; known: {', '.join(specs)} (see {IMAGES_FILE})")
    out = {}
    for name in chosen:
        spec = specs[name]
        if "role" in spec.env:
            env = ensure_env(row, spec.env["role"], cache=env_cache, progress=say)
        else:
            env = ensure_role_env(Role(name=f"image-{name}", pins=tuple(spec.env["pins"])), row="host-images",
                                  cache=env_cache, progress=say)
        ref = f"{spec.local}:{env.path.name}"
        inputs: dict[str, Any] = {"service": repr(spec), "ref": ref, "env": str(env.path),
                                  "marker": (env.path / "seamcheck-env.json").read_text(),
                                  "prefix": str(_interpreter_prefix(env)[0]),
                                  "loader_cache": _sha256(_LOADER_CACHE) if _LOADER_CACHE.is_file() else "",
                                  "busybox": _sha256(_BUSYBOX) if _BUSYBOX.is_file() else ""}
        archive = (root or hcache.cache_root()) / "images" / f"service-{name}-{hcache.input_key(inputs)}.tar"
        if not archive.is_file():
            say(f"host: writing the {name} image {ref} (a role environment and this machine's libraries) ...")
            _build(spec, env, ref, archive)
            say(f"host: {name} image written ({archive.stat().st_size / 2**20:.0f} MiB, {archive})")
        out[name] = ServiceImage(spec, ref, archive, env)
    return out


def _main() -> int:  # pragma: no cover - the by-hand entry point
    import sys

    from harness.matrix import load_matrix

    matrix = load_matrix()
    row = matrix.row(os.environ.get("SEAMCHECK_ROW"))
    for name, image in service_images(row, sys.argv[1:] or None, progress=print).items():
        print(f"{name:12} {image.ref:64} {image.archive}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
