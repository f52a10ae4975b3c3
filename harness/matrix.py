"""The version matrix (harness/matrix.toml): loading and eager validation.

Validation is eager and specific (Hypothesis-style): a malformed file fails at collection time
with a message that names the row, the key and what to write instead.
"""
from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

__all__ = [
    "DEFAULT_MATRIX_PATH",
    "MATRIX_CHECKS",
    "OPTIONAL_ROLES",
    "ROLES",
    "UPGRADE_CHECKS",
    "Matrix",
    "MatrixError",
    "Role",
    "Row",
    "load_matrix",
]

DEFAULT_MATRIX_PATH = Path(__file__).with_name("matrix.toml")

#: Every row must define these roles (see the comment at the top of matrix.toml).
ROLES = ("tracking", "pipeline", "serving", "storage", "runner")
#: Roles a row may add. `skew`: a training environment whose scikit-learn is newer than the
#: serving runtime's, for the matrix suite's library-skew probe (harness/matrixcheck).
OPTIONAL_ROLES = ("skew",)

#: The matrix suite's checks of one row, and of one upgrade step (older row -> newer row), with what
#: each establishes: the one registry the lab dispatches on, the suite parametrizes from and the
#: report's table shows. `accept` keys in the file name one of these, optionally with `/<facet>`.
MATRIX_CHECKS: dict[str, str] = {
    "env-build": "the row's role environments build (uv) or the row is cannot-build with uv's own line",
    "tracking-client": "the row's client and server: run, params, metrics, log + register, alias, stages",
    "v2-predictions": "the row's models, with and without a signature, served by the row's runtime: V2 "
                      "predictions (with and without content_type) equal the pipeline env's own",
    "library-skew": "training vs serving scikit-learn: the row's skew, and a newer pickle probe, with the "
                    "runtime's own words",
    "storage-uri": "artifact_uri + /model holds MLmodel after KServe's storage initializer; the version's "
                   "download URI does too",
    "kfp-compile": "the row's kfp compiles the pipeline and keeps accelerator, resources and parameters",
    "signature-claim": "the seed's claim that MLflow >= 2.16 refuses unsigned models, tried on the row",
}
UPGRADE_CHECKS: dict[str, str] = {
    "old-model-in-new-runtime": "a model registered under the older row served by the newer row's runtime",
    "new-model-in-old-runtime": "a model registered under the newer row served by the older row's runtime",
    "new-client-reads-old-registry": "the newer row's MLflow client reads the older row's registry",
}

_ROW_KEYS = {"kind", "description", "python", "kfp_backend", "mlflow", "kserve", "kubernetes",
             "roles", "kind_node_images", "cluster", "why", "upgrade_from", "accept", "image_replacements",
             "hidden_images"}
_ACCEPT_KEY = re.compile(r"^(?P<check>[a-z0-9-]+)(/(?P<facet>[A-Za-z0-9_+.:-]+))?$")
_ROLE_KEYS = {"pins", "why", "image", "exclude_newer"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EXACT_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!*-]+$")


class MatrixError(ConfigError):
    """The matrix file is malformed, or a row that does not exist was asked for."""


@dataclass(frozen=True)
class Role:
    name: str
    pins: tuple[str, ...]
    why: str = ""
    image: str = ""
    exclude_newer: str = ""

    def pin_version(self, package: str) -> str:
        """The exact version this role pins ``package`` at (pins are ``name==version``)."""
        for pin in self.pins:
            name, _, version = pin.partition("==")
            if name.split("[")[0].lower() == package.lower():
                return version
        raise MatrixError(f"role {self.name!r} pins no {package}; add {package}==<version> to its pins")


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
    #: The row this one upgrades from (matrix suite: upgrade checks for that pair). Candidate rows
    #: default to the file's default_row; seed rows have none unless the file says so.
    upgrade_from: str = ""
    #: Known incompatibilities the matrix gate accepts: "<check>[/<facet>]" -> why.
    accept: Mapping[str, str] = field(default_factory=dict)
    #: An image the row's upstream manifests name -> where a cluster install pulls it from instead.
    image_replacements: Mapping[str, str] = field(default_factory=dict)
    #: Images the manifests do not name but the components pull (compiled into a binary).
    hidden_images: tuple[str, ...] = ()

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

    def select(self, names: str | list[str] | tuple[str, ...] | None) -> list[Row]:
        """Rows named by a comma list (or a list); None or "all" selects every row, in file order."""
        if names is None or names == "all" or names == ["all"]:
            return list(self.rows.values())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        wanted = [n for n in names if n]
        if not wanted:
            raise MatrixError("no matrix row named (pass --matrix-row NAME[,NAME...] or `all`)")
        return [self.row(n) for n in dict.fromkeys(wanted)]

    def upgrade_pairs(self, rows: list[Row] | None = None) -> list[tuple[Row, Row]]:
        """(older, newer) for every row with an upgrade_from, both ends among `rows` (default all)."""
        chosen = {r.name for r in (rows if rows is not None else self.rows.values())}
        return [(self.rows[r.upgrade_from], r) for r in self.rows.values()
                if r.upgrade_from and r.name in chosen and r.upgrade_from in chosen]

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
    rows = {name: _resolve_upgrade_from(path, rows, default, row) for name, row in rows.items()}
    _check_upgrade_cycles(path, rows)
    return Matrix(path=path, default_row=default, rows=rows)


def _resolve_upgrade_from(path: Path, rows: Mapping[str, Row], default: str, row: Row) -> Row:
    where = f"{path}: row {row.name!r}"
    wanted = row.upgrade_from
    if not wanted and row.kind == "candidate" and row.name != default:
        wanted = default
    if wanted and wanted not in rows:
        raise MatrixError(f"{where}: upgrade_from = {wanted!r} names no row; known rows: {', '.join(rows)}")
    if wanted == row.name:
        raise MatrixError(f"{where}: upgrade_from names the row itself; name the row it upgrades from")
    return replace(row, upgrade_from=wanted)


def _check_upgrade_cycles(path: Path, rows: Mapping[str, Row]) -> None:
    for start in rows.values():
        seen, cur = [start.name], start
        while cur.upgrade_from:
            cur = rows[cur.upgrade_from]
            if cur.name in seen:
                raise MatrixError(f"{path}: upgrade_from forms a cycle: {' -> '.join([*seen, cur.name])}")
            seen.append(cur.name)


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
    extra = set(raw_roles) - set(ROLES) - set(OPTIONAL_ROLES)
    if extra:
        raise MatrixError(f"{where}: unknown role(s) {sorted(extra)}; roles are {list(ROLES)} "
                          f"(optional: {list(OPTIONAL_ROLES)})")
    roles = {r: _parse_role(where, r, raw_roles[r]) for r in (*ROLES, *OPTIONAL_ROLES) if r in raw_roles}
    upgrade_from = raw.get("upgrade_from", "")
    if not isinstance(upgrade_from, str):
        raise MatrixError(f"{where}: upgrade_from must be the name of another row (a string)")
    accept = _parse_accept(where, raw.get("accept", {}))
    images = raw.get("kind_node_images", {})
    if not isinstance(images, dict) or not all(isinstance(v, str) for v in images.values()):
        raise MatrixError(f"{where}: kind_node_images must map a Kubernetes version to an image")
    cluster = raw.get("cluster", {})
    if not isinstance(cluster, dict):
        raise MatrixError(f"{where}: cluster must be a table of component versions")
    replacements = raw.get("image_replacements", {})
    if not isinstance(replacements, dict) or not all(isinstance(v, str) and v for v in replacements.values()):
        raise MatrixError(f"{where}: image_replacements must map an image to the image to pull instead "
                          '("gcr.io/ml-pipeline/argoexec:v3.4.17-license-compliance" = "quay.io/argoproj/argoexec:v3.4.17")')
    hidden = raw.get("hidden_images", [])
    if not isinstance(hidden, list) or not all(isinstance(v, str) and v for v in hidden):
        raise MatrixError(f"{where}: hidden_images must be a list of image references")
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
        upgrade_from=upgrade_from,
        accept=accept,
        image_replacements=dict(replacements),
        hidden_images=tuple(hidden),
    )


def _parse_accept(where: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise MatrixError(f"{where}: accept must be a table of \"<check>[/<facet>]\" = \"why\"")
    known = (*MATRIX_CHECKS, *UPGRADE_CHECKS)
    for key, why in raw.items():
        m = _ACCEPT_KEY.match(key)
        if not m or m.group("check") not in known:
            raise MatrixError(f"{where}: accept key {key!r} names no matrix check; write \"<check>\" or "
                              f"\"<check>/<facet>\" with <check> one of {', '.join(known)}")
        if not isinstance(why, str) or not why.strip():
            raise MatrixError(f"{where}: accept {key!r} needs a non-empty why (a string saying why it is accepted)")
    return dict(raw)


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
