"""Every option of seamcheck in one table: its flag, its environment variable (derived from the
flag, so the two cannot drift), its default, the parser that validates it and its help.

The plugin declares the pytest options from this table and resolves them once at configure time
(harness/settings.py); the README's options table is rendered from it (a test keeps the two the
same). A value comes from the command line, else from the environment variable, else the
default; a bad one is a ``ConfigError`` naming ``name=value`` and the remedy.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.matrix import DEFAULT_MATRIX_PATH

__all__ = ["GROUPS", "OPTIONS", "PORT_COMPONENTS", "Option", "option", "options_markdown", "parse_bool",
           "parse_namespaces", "parse_port", "parse_requests", "port_flag"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


# ------------------------------------------------------------------------------ parsers
def parse_bool(raw: str, name: str) -> bool:
    """on/yes/true/1 are true and off/no/false/0 false, in any case; anything else is an error
    (SEAMCHECK_KEEP_STACK=True silently meaning "no" is the mistake this prevents)."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a yes/no value; use one of {', '.join(sorted(_TRUE | _FALSE))}")


def parse_port(raw: str, name: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a port number; give 1-65535 (or 0 for a free one)") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}={raw!r} is out of range; give 1-65535 (or 0 for a free one)")
    return port


def parse_namespace(raw: str, name: str) -> str:
    if not _DNS_LABEL.match(raw):
        raise ConfigError(f"{name}={raw!r} is not a Kubernetes namespace name; use lower-case letters, digits and "
                          "'-' (at most 63, starting and ending with a letter or digit)")
    return raw


def parse_requests(raw: str, name: str) -> dict[str, str]:
    """cpu=250m,memory=1Gi: a pod's resource requests, each a Kubernetes quantity."""
    from kubernetes.utils import parse_quantity

    requests: dict[str, str] = {}
    for part in (p.strip() for p in raw.split(",")):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("cpu", "memory") or not value.strip():
            raise ConfigError(f"{name}={raw!r}: {part!r} is not cpu=<quantity> or memory=<quantity>; write e.g. "
                              "cpu=250m,memory=1Gi")
        try:
            parse_quantity(value.strip())
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: {value.strip()!r} is not a Kubernetes quantity (250m, 1, 1Gi, "
                              "512Mi)") from None
        requests[key.strip()] = value.strip()
    return requests


def parse_namespaces(raw: str, name: str) -> tuple[str, ...]:
    """A comma list of namespace names (spaces allowed around the commas); empty entries are an error."""
    parts = [p.strip() for p in raw.split(",")]
    if any(not p for p in parts):
        raise ConfigError(f"{name}={raw!r} has an empty entry; give namespaces separated by single commas "
                          "(for example kubeflow,model-serving)")
    return tuple(parse_namespace(p, name) for p in parts)


def parse_path(raw: str, name: str) -> Path:
    if not raw.strip():
        raise ConfigError(f"{name}={raw!r} is empty; give a path")
    return Path(raw).expanduser()


def parse_text(raw: str, name: str) -> str:
    if not raw.strip():
        raise ConfigError(f"{name}={raw!r} is empty; give a value or leave the option out")
    return raw


# ------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Option:
    flag: str
    default: Any
    help: str
    parse: Callable[[str, str], Any] = parse_text
    switch: bool = False  # a flag without a value; its environment variable takes a yes/no value
    choices: tuple[str, ...] = ()
    group: str = "run"

    @property
    def dest(self) -> str:
        return "seamcheck_" + self.flag[2:].replace("-", "_")

    @property
    def env(self) -> str:
        return "SEAMCHECK_" + self.flag[2:].replace("-", "_").upper()

    def resolve(self, cli_value: Any, environ: dict[str, str] | os._Environ[str] = os.environ) -> Any:
        """The command line's value, else the environment variable's, else the default."""
        if cli_value is not None:
            if self.switch:
                return bool(cli_value)
            return self._checked(str(cli_value), self.flag)
        raw = environ.get(self.env)
        if raw is None or raw == "":
            return self.default
        if self.switch:
            return parse_bool(raw, self.env)
        return self._checked(raw, self.env)

    def _checked(self, raw: str, name: str) -> Any:
        if self.choices and raw not in self.choices:
            raise ConfigError(f"{name}={raw!r} is not one of {', '.join(self.choices)}")
        return self.parse(raw, name)


def port_flag(component: str) -> str:
    """The option that fixes a local component's port (``mlflow`` -> ``--mlflow-port``)."""
    return f"--{component.replace('_', '-')}-port"


#: Local components whose loopback port a user may fix (option --<component>-port).
PORT_COMPONENTS = ("mlflow", "s3", "prometheus", "proxy", "proxy_metrics", "kube_api")

GROUPS = {"run": "every run", "local": "the local profile", "cluster": "cluster profiles (kind, kind-gpu, cloud, host)",
          "harness": "the harness's own tests"}

OPTIONS: tuple[Option, ...] = (
    Option("--profile", "local", "how the stack is stood up (local, kind, kind-gpu, cloud, host, or one a plugin "
                                 "registers with pytest_seamcheck_profiles)"),
    Option("--matrix-row", None, "matrix row (default: the file's default_row); the matrix suite takes a comma "
                                 "list or `all`"),
    Option("--matrix-file", DEFAULT_MATRIX_PATH, "the version matrix file", parse=parse_path),
    Option("--reports-dir", Path("reports"), "where reports/<run-id>/ go", parse=parse_path),
    Option("--run-id", None, "the report folder's name (default: the start time and a random suffix)"),
    Option("--history", None, "the run history (SQLite) each run appends to and reports/trend.html is drawn from "
                              "(default <reports-dir>/history.sqlite; CI restores and saves it)", parse=parse_path),
    Option("--judge", None, "also grade your canary judge: a registered name, module:callable, "
                            "path/file.py:callable or cmd:<command>"),
    Option("--matrix-gate", False, "matrix suite: exit non-zero on an incompatibility (or a row that cannot be "
                                   "built) that the matrix file's accept tables do not list", switch=True),
    Option("--keep-stack", False, "keep the stack's state folder after the session", switch=True),
    Option("--namespace", "model-serving", "the serving namespace", parse=parse_namespace),
    Option("--env-cache", None, "where role environments are cached (default ~/.cache/seamcheck/envs)",
           parse=parse_path),
    Option("--ledger-dir", None, "where the run's ledger lives, for its reaper and later runs (default "
                                 "/run/seamcheck as root, else the user's runtime folder)", parse=parse_path),
    Option("--artifact-store", "s3", "the local artifact store: s3 (moto's S3-compatible server) or files",
           choices=("s3", "files"), group="local"),
    *(Option(port_flag(c), 0, f"fixed loopback port for {c.replace('_', ' ')} (0: a free one)",
             parse=parse_port, group="local") for c in PORT_COMPONENTS),
    Option("--kubeconfig", None, "cloud: the kubeconfig of an existing cluster", parse=parse_path, group="cluster"),
    Option("--kube-context", None, "cloud: the context in that kubeconfig", group="cluster"),
    Option("--kind-bin", None, "kind: the kind binary (>= v0.24; default `kind` on PATH)", group="cluster"),
    Option("--kind-image", None, "kind: the node image (default: the row's for its newest Kubernetes)",
           group="cluster"),
    Option("--kind-cluster", "seamcheck", "kind: the cluster's name", parse=parse_namespace, group="cluster"),
    Option("--chaos-namespaces", (), "clusters: comma list of namespaces chaos may act in (each must also carry "
                                     "the label seamcheck.io/chaos=allowed)", parse=parse_namespaces,
           group="cluster"),
    Option("--keep-cluster", False, "clusters: keep the cluster the run created (kind, host)", switch=True, group="cluster"),
    Option("--predictor-requests", None, "clusters: the predictors' resource requests, e.g. cpu=250m,memory=1Gi "
                                         "(default: kind cpu=250m,memory=1Gi, cloud the seed's cpu=1,memory=2Gi)",
           parse=parse_requests, group="cluster"),
    Option("--train-requests", None, "clusters: the train task's CPU and memory as submitted, e.g. cpu=2,memory=8Gi, "
                                     "to fit the node pool it lands on (default: kind cpu=1,memory=2Gi, cloud the "
                                     "pipeline's cpu=4,memory=16Gi)", parse=parse_requests, group="cluster"),
    Option("--install-stack", False, "cloud: install the row's components the cluster lacks instead of only "
                                     "discovering them", switch=True, group="cluster"),
    Option("--stack-manifest", None, "write where the stack lives (state folder, process ids) to this file, for "
                                     "the harness's leak tests", parse=parse_path, group="harness"),
)

_BY_FLAG = {o.flag: o for o in OPTIONS}


def option(flag: str) -> Option:
    return _BY_FLAG[flag]


def _default_text(opt: Option) -> str:
    if opt.switch:
        return "off"
    if opt.default in (None, (), ""):
        return "-"
    if isinstance(opt.default, Path):
        return f"`{opt.default.name if opt.default.is_absolute() else opt.default}`"
    return f"`{opt.default}`"


def options_markdown(options: Sequence[Option] = OPTIONS) -> str:
    """The README's options table (a test checks the README holds exactly this)."""
    lines = ["| option | environment variable | default | what |", "|---|---|---|---|"]
    for group, title in GROUPS.items():
        for opt in (o for o in options if o.group == group):
            what = opt.help + (f" ({title})" if group != "run" and not opt.help.startswith(("cloud:", "kind:",
                                                                                              "clusters:")) else "")
            lines.append(f"| `{opt.flag}` | `{opt.env}` | {_default_text(opt)} | {what} |")
    return "\n".join(lines)
