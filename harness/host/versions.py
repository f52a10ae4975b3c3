"""The host profile's versions: the ``[host]`` table of harness/matrix.toml, loaded and checked.

harness/matrix.py reads only ``rows``; this module owns ``[host]`` so the row validation stays as
it is. The table names the Kubernetes version the host cluster runs (chosen from the matrix row's
range by what the Go module proxy serves) and one ``[host.components.<name>]`` table per built
component with its upstream ``version``, a ``why``, and where the release scripts stamp them, the
tag's ``commit`` and ``date``. A malformed table fails with a message that names the key and the fix.
"""
from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.matrix import DEFAULT_MATRIX_PATH, MatrixError, load_matrix

__all__ = ["ComponentVersion", "HostVersionError", "HostVersions", "load_host_versions"]

_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_COMPONENT_KEYS = {"version", "why", "commit", "date"}
_HOST_KEYS = {"row", "kubernetes", "why", "components", "next"}


class HostVersionError(MatrixError):
    """The ``[host]`` table of the matrix file is missing or malformed."""


@dataclass(frozen=True)
class ComponentVersion:
    name: str
    version: str  # without the leading "v"
    why: str
    commit: str = ""  # the upstream tag's commit (40 hex), where release builds stamp it
    date: str = ""  # the tag's commit time (RFC 3339, UTC), where release builds stamp a date

    @property
    def tag(self) -> str:
        return f"v{self.version}"


@dataclass(frozen=True)
class HostVersions:
    path: Path
    row: str
    kubernetes: str
    why: str
    components: Mapping[str, ComponentVersion]
    next: Mapping[str, str] = field(default_factory=dict)

    def component(self, name: str) -> ComponentVersion:
        if name not in self.components:
            raise HostVersionError(f"{self.path}: no [host.components.{name}] table; known: "
                                   f"{', '.join(sorted(self.components))} (add the table with version and why)")
        return self.components[name]


def load_host_versions(path: Path | str = DEFAULT_MATRIX_PATH) -> HostVersions:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise HostVersionError(f"matrix file {path} does not exist (pass the path of harness/matrix.toml)") from None
    except tomllib.TOMLDecodeError as exc:
        raise HostVersionError(f"matrix file {path} is not valid TOML: {exc}") from None
    raw = data.get("host")
    if not isinstance(raw, dict):
        raise HostVersionError(f"{path}: no [host] table (add one: row, kubernetes, why, [host.components.*])")
    unknown = set(raw) - _HOST_KEYS
    if unknown:
        raise HostVersionError(f"{path}: [host] has unknown key(s) {sorted(unknown)}; allowed: {sorted(_HOST_KEYS)}")
    for key in ("row", "kubernetes", "why"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise HostVersionError(f"{path}: [host] {key} must be a non-empty string")
    kube = raw["kubernetes"]
    if not _VERSION.match(kube):
        raise HostVersionError(f"{path}: [host] kubernetes={kube!r} is not a version; write it like \"1.30.14\"")
    row = load_matrix(path).row(raw["row"])  # an unknown row raises MatrixError naming the known ones
    minor = ".".join(kube.split(".")[:2])
    if minor not in row.kubernetes and not _above(minor, row.kubernetes):
        raise HostVersionError(
            f"{path}: [host] kubernetes={kube} is outside row {row.name!r}'s range {list(row.kubernetes)}; "
            "use the row's version when the proxy serves it, else the oldest served release above the range")
    comps = raw.get("components")
    if not isinstance(comps, dict) or not comps:
        raise HostVersionError(f"{path}: no [host.components.<name>] tables (one per built component)")
    components = {name: _component(path, name, c) for name, c in comps.items()}
    for name in ("kubernetes", "kubelet"):
        if name in components and components[name].version != kube:
            raise HostVersionError(f"{path}: [host.components.{name}] version={components[name].version} but "
                                   f"[host] kubernetes={kube}; they must be the same release")
    nxt = raw.get("next", {})
    if not isinstance(nxt, dict) or not all(isinstance(v, str) for v in nxt.values()):
        raise HostVersionError(f"{path}: [host.next] must be a table of strings (versions and a why)")
    return HostVersions(path=path, row=row.name, kubernetes=kube, why=raw["why"].strip(),
                        components=components, next=dict(nxt))


def _above(minor: str, kube_range: tuple[str, ...]) -> bool:
    def num(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))
    return num(minor) > max(num(v) for v in kube_range)


def _component(path: Path, name: str, raw: Any) -> ComponentVersion:
    where = f"{path}: [host.components.{name}]"
    if not isinstance(raw, dict):
        raise HostVersionError(f"{where} must be a table with version and why")
    unknown = set(raw) - _COMPONENT_KEYS
    if unknown:
        raise HostVersionError(f"{where} has unknown key(s) {sorted(unknown)}; allowed: {sorted(_COMPONENT_KEYS)}")
    version = raw.get("version")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise HostVersionError(f"{where} version={version!r} is not a version; write it without a v, like \"1.7.18\"")
    why = raw.get("why")
    if not isinstance(why, str) or not why.strip():
        raise HostVersionError(f"{where} needs a non-empty why (why this version)")
    commit, date = raw.get("commit", ""), raw.get("date", "")
    if commit and (not isinstance(commit, str) or not _COMMIT.match(commit)):
        raise HostVersionError(f"{where} commit={commit!r} must be the tag's full 40-hex commit")
    if date and (not isinstance(date, str) or not _DATE.match(date)):
        raise HostVersionError(f"{where} date={date!r} must look like \"2025-06-18T19:07:32Z\"")
    return ComponentVersion(name=name, version=version, why=" ".join(why.split()), commit=commit, date=date)
