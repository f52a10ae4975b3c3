"""The version matrix (harness/matrix.toml): loading and eager validation.

Validation is eager and specific (Hypothesis-style): a malformed file fails at collection time
with a message that names the row, the key and what to write instead.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "DEFAULT_MATRIX_PATH",
    "ROLES",
    "MatrixError",
    "Matrix",
    "Role",
    "Row",
    "load_matrix",
]

DEFAULT_MATRIX_PATH = Path(__file__).with_name("matrix.toml")

#: Every row must define these roles (see the comment at the top of matrix.toml).
ROLES = ("tracking", "pipeline", "serving", "storage", "runner")

_ROW_KEYS = {"kind", "description", "python", "kfp_backend", "mlflow", "kserve", "kubernetes",
             "roles", "kind_node_images", "cluster", "why"}
_ROLE_KEYS = {"pins", "why", "image", "exclude_newer"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EXACT_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!*-]+$")


class MatrixError(ValueError):
    """The matrix file is malformed, or a row that does not exist was asked for."""


@dataclass(frozen=True)
class Role:
    name: str
    pins: tuple[str, ...]
    why: str = ""
    image: str = ""
    exclude_newer: str = ""


@dataclass(frozen=True)
class Row:
    name: str
    kind: str
    description: str
    python: str
    kfp_backend: str
    mlflow: str
    kserve: str
    kubernetes: tuple[str, ...]
    roles: Mapping[str, Role]
    kind_node_images: Mapping[str, str] = field(default_factory=dict)
    cluster: Mapping[str, str] = field(default_factory=dict)
    why: str = ""

    def role(self, name: str) -> Role:
        return self.roles[name]

    def versions(self) -> dict[str, Any]:
        """The row's headline versions, as they appear in reports."""
        return {
            "row": self.name,
            "kfp_backend": self.kfp_backend,
            "mlflow": self.mlflow,
            "kserve": self.kserve,
            "kubernetes": list(self.kubernetes),
            "python": self.python,
            "roles": {name: list(role.pins) for name, role in self.roles.items()},
        }


@dataclass(frozen=True)
class Matrix:
    path: Path
    default_row: str
    rows: Mapping[str, Row]

    def row(self, name: str | None) -> Row:
        wanted = name or self.default_row
        if wanted not in self.rows:
            known = ", ".join(sorted(self.rows))
            raise MatrixError(
                f"unknown matrix row {wanted!r} in {self.path}; known rows: {known} "
                "(pass one of them to --matrix-row / SEAMCHECK_MATRIX_ROW, or add the row to the file)"
            )
        return self.rows[wanted]


def load_matrix(path: Path | str = DEFAULT_MATRIX_PATH) -> Matrix:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise MatrixError(f"matrix file {path} does not exist (set --matrix-file to an existing file)") from None
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(f"matrix file {path} is not valid TOML: {exc}") from None
    if data.get("schema") != 1:
        raise MatrixError(f"{path}: expected `schema = 1` at the top, found {data.get('schema')!r}")
    raw_rows = data.get("rows")
    if not isinstance(raw_rows, dict) or not raw_rows:
        raise MatrixError(f"{path}: no [rows.\"<name>\"] tables found")
    rows = {name: _parse_row(path, name, raw) for name, raw in raw_rows.items()}
    default = data.get("default_row")
    if default not in rows:
        raise MatrixError(f"{path}: default_row = {default!r} names no row; known rows: {', '.join(rows)}")
    return Matrix(path=path, default_row=default, rows=rows)


def _parse_row(path: Path, name: str, raw: Any) -> Row:
    where = f"{path}: row {name!r}"
    if not isinstance(raw, dict):
        raise MatrixError(f"{where} must be a table")
    unknown = set(raw) - _ROW_KEYS
    if unknown:
        raise MatrixError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_ROW_KEYS)}")
    for key in ("kind", "description", "python", "kfp_backend", "mlflow", "kserve"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise MatrixError(f"{where}: `{key}` must be a non-empty string")
    if raw["kind"] not in ("seed", "candidate"):
        raise MatrixError(f"{where}: kind must be \"seed\" or \"candidate\", not {raw['kind']!r}")
    kube = raw.get("kubernetes")
    if not isinstance(kube, list) or not kube or not all(isinstance(v, str) for v in kube):
        raise MatrixError(f"{where}: `kubernetes` must be a list of versions like [\"1.28\", \"1.29\"]")
    raw_roles = raw.get("roles")
    if not isinstance(raw_roles, dict):
        raise MatrixError(f"{where}: missing [rows.\"{name}\".roles.<role>] tables")
    missing = [r for r in ROLES if r not in raw_roles]
    if missing:
        raise MatrixError(f"{where}: missing role(s) {missing}; every row needs {list(ROLES)}")
    extra = set(raw_roles) - set(ROLES)
    if extra:
        raise MatrixError(f"{where}: unknown role(s) {sorted(extra)}; roles are {list(ROLES)}")
    roles = {r: _parse_role(where, r, raw_roles[r]) for r in ROLES}
    images = raw.get("kind_node_images", {})
    if not isinstance(images, dict) or not all(isinstance(v, str) for v in images.values()):
        raise MatrixError(f"{where}: kind_node_images must map a Kubernetes version to an image")
    cluster = raw.get("cluster", {})
    if not isinstance(cluster, dict):
        raise MatrixError(f"{where}: cluster must be a table of component versions")
    return Row(
        name=name,
        kind=raw["kind"],
        description=raw["description"],
        python=raw["python"],
        kfp_backend=raw["kfp_backend"],
        mlflow=raw["mlflow"],
        kserve=raw["kserve"],
        kubernetes=tuple(kube),
        roles=roles,
        kind_node_images=dict(images),
        cluster={k: str(v) for k, v in cluster.items()},
        why=str(raw.get("why", "")),
    )


def _parse_role(where: str, role: str, raw: Any) -> Role:
    if not isinstance(raw, dict):
        raise MatrixError(f"{where}: role {role!r} must be a table with `pins = [...]`")
    unknown = set(raw) - _ROLE_KEYS
    if unknown:
        raise MatrixError(f"{where}: role {role!r} has unknown key(s) {sorted(unknown)}")
    pins = raw.get("pins")
    if not isinstance(pins, list) or not pins:
        raise MatrixError(f"{where}: role {role!r} needs a non-empty `pins` list")
    for pin in pins:
        if not isinstance(pin, str) or not _EXACT_PIN.match(pin.strip()):
            raise MatrixError(
                f"{where}: role {role!r} pin {pin!r} is not an exact pin; write it as name==version "
                "(for example \"mlflow==2.17.2\")"
            )
    exclude_newer = raw.get("exclude_newer", "")
    if exclude_newer and (not isinstance(exclude_newer, str) or not _DATE.match(exclude_newer)):
        raise MatrixError(f"{where}: role {role!r} exclude_newer must be a date like \"2024-03-15\", "
                          f"not {exclude_newer!r}")
    return Role(name=role, pins=tuple(p.strip() for p in pins), why=str(raw.get("why", "")),
                image=str(raw.get("image", "")), exclude_newer=exclude_newer)
