"""seamcheck's pytest plugin (registered by the `pytest11` entry point): options that also read
environment variables, markers, eager validation of what was asked for, the run's report and
JUnit XML under reports/<run-id>/, and SIGTERM handled like Ctrl-C so fixtures always tear down.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.config import PORT_OPTIONS, PROFILES, StackConfig
from harness.ledger import ledger
from harness.matrix import DEFAULT_MATRIX_PATH, MatrixError, load_matrix
from harness.report.checks import CheckRecord, CheckRecorder
from harness.report.summary import RunReport, new_run_id

__all__ = ["MATRIX_GATE_KEY", "MATRIX_KEY", "MATRIX_ROWS_KEY", "REPORT_KEY", "STACK_CONFIG_KEY"]

STACK_CONFIG_KEY = pytest.StashKey[StackConfig]()
REPORT_KEY = pytest.StashKey[RunReport]()
MATRIX_KEY = pytest.StashKey[Any]()
#: The rows --matrix-row named (a comma list, or `all`), or None when it was not given.
MATRIX_ROWS_KEY = pytest.StashKey[Any]()
#: --matrix-gate: fail the run on any matrix incompatibility the matrix file does not accept.
MATRIX_GATE_KEY = pytest.StashKey[bool]()

MARKERS = {
    "conformance": "the seams of train -> register -> serve, end to end on the chosen profile",
    "canary": "canary judgement under Locust load (promote / rollback / inconclusive)",
    "chaos": "documented failure scenarios, as Chaos Toolkit experiments",
    "matrix": "pre-upgrade version-matrix validation across rows of harness/matrix.toml",
    "gpu": "needs a GPU (the training step's accelerator request really satisfied)",
    "slow": "slow: nightly target rather than every CI run",
    "stack": "needs the stack of the chosen profile (started once per session)",
    "chaos_side_by_side": ("chaos_side_by_side(key, experiment, variables): the test reads the journal of "
                           "that experiment run, which runs beside the session's other marked runs"),
    "canary_scenario": ("canary_scenario(scenario): the test reads that canary scenario's outcome; the session "
                        "plays the scenarios its selected tests name, in the order they run"),
    "chaos_alone": ("chaos_alone(why): the experiment stops a component every run shares (or checks the whole "
                    "stack's fault state): it runs only when no side-by-side run is in flight"),
}

# option dest -> (flag, env var, default, help)
_OPTIONS: list[tuple[str, str, str, Any, str]] = [
    ("seamcheck_profile", "--profile", "SEAMCHECK_PROFILE", "local", f"how the stack is stood up: {', '.join(PROFILES)}"),
    ("seamcheck_matrix_row", "--matrix-row", "SEAMCHECK_MATRIX_ROW", None,
     "matrix row (default: the file's default_row); the matrix suite takes a comma list or `all`"),
    ("seamcheck_matrix_file", "--matrix-file", "SEAMCHECK_MATRIX_FILE", str(DEFAULT_MATRIX_PATH), "the version matrix file"),
    ("seamcheck_reports_dir", "--reports-dir", "SEAMCHECK_REPORTS_DIR", "reports", "where reports/<run-id>/ go"),
    ("seamcheck_artifact_store", "--artifact-store", "SEAMCHECK_ARTIFACT_STORE", "s3", "local profile: s3 (moto server) or files"),
    ("seamcheck_env_cache", "--env-cache", "SEAMCHECK_ENV_CACHE", None, "where role environments are cached (default ~/.cache/seamcheck/envs)"),
    ("seamcheck_namespace", "--namespace", "SEAMCHECK_NAMESPACE", "model-serving", "serving namespace"),
    ("seamcheck_ledger_dir", "--ledger-dir", "SEAMCHECK_LEDGER_DIR", None,
     "where the run's ledger lives, for its reaper and for later runs (default /run/seamcheck as root)"),
]
# Cluster profiles: (dest, flag, env var, help). Values are read by _cluster_config below.
_CLUSTER_OPTIONS = [
    ("seamcheck_kubeconfig", "--kubeconfig", "SEAMCHECK_KUBECONFIG", "cloud: kubeconfig of an existing cluster"),
    ("seamcheck_kube_context", "--context", "SEAMCHECK_KUBE_CONTEXT", "cloud: context in that kubeconfig"),
    ("seamcheck_kind_bin", "--kind-bin", "SEAMCHECK_KIND_BIN", "kind: the kind binary (>= v0.24)"),
    ("seamcheck_chaos_namespaces", "--chaos-namespaces", "SEAMCHECK_CHAOS_NAMESPACES",
     "clusters: comma list of namespaces chaos may act in (each must also carry the label "
     "seamcheck.io/chaos=allowed)"),
]
_CLUSTER_FLAGS = [
    ("seamcheck_keep_cluster", "--keep-cluster", "SEAMCHECK_KEEP_CLUSTER", "kind: keep the cluster it created"),
    ("seamcheck_install_stack", "--install-stack", "SEAMCHECK_INSTALL_STACK",
     "cloud: install the row's components the cluster lacks instead of only discovering them"),
]
_PORTS = PORT_OPTIONS


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("seamcheck", "seamcheck: KFP + MLflow + KServe conformance")
    for dest, flag, env, default, help_text in _OPTIONS:
        group.addoption(flag, dest=dest, default=None, help=f"{help_text} [env {env}; default {default}]")
    group.addoption("--judge", dest="seamcheck_judge", default=os.environ.get("SEAMCHECK_JUDGE"),
                    help="also grade your canary judge: module:callable, path/file.py:callable or cmd:<command> "
                         "[env SEAMCHECK_JUDGE]")
    group.addoption("--matrix-gate", dest="seamcheck_matrix_gate", action="store_true", default=None,
                    help="matrix suite: exit non-zero when a check finds an incompatibility (or a row cannot be "
                         "built) that the matrix file's accept tables do not list [env SEAMCHECK_MATRIX_GATE=1]")
    group.addoption("--keep-stack", dest="seamcheck_keep_stack", action="store_true", default=None,
                    help="keep the stack's state folder after the session [env SEAMCHECK_KEEP_STACK=1]")
    for component, (flag, env) in _PORTS.items():
        group.addoption(flag, dest=f"seamcheck_port_{component}", default=None, type=int,
                        help=f"fixed loopback port for {component} (0: a free one) [env {env}]")
    # Cluster profiles (kind, kind-gpu, cloud); docs/profiles.md.
    for dest, flag, env, help_text in _CLUSTER_OPTIONS:
        group.addoption(flag, dest=dest, default=None, help=f"{help_text} [env {env}]")
    for dest, flag, env, help_text in _CLUSTER_FLAGS:
        group.addoption(flag, dest=dest, action="store_true", default=None, help=f"{help_text} [env {env}=1]")


def _value(config: pytest.Config, dest: str, env: str, default: Any) -> Any:
    value = config.getoption(dest)
    if value is None:
        value = os.environ.get(env) or default
    return value


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    values = {dest: _value(config, dest, env, default) for dest, _f, env, default, _h in _OPTIONS}
    profile = values["seamcheck_profile"]
    if profile not in PROFILES:
        raise pytest.UsageError(f"seamcheck: unknown profile {profile!r}; choose one of {', '.join(PROFILES)} "
                                "(--profile or SEAMCHECK_PROFILE)")
    store = values["seamcheck_artifact_store"]
    if store not in ("s3", "files"):
        raise pytest.UsageError(f"seamcheck: --artifact-store must be s3 or files, not {store!r}")
    try:
        matrix = load_matrix(values["seamcheck_matrix_file"])
        asked = values["seamcheck_matrix_row"]
        selected = matrix.select(asked) if asked else None
        # The stack suites run one row: the first named (or the default when `all` or none).
        row = matrix.row(selected[0].name if selected and asked != "all" else None)
    except MatrixError as exc:
        raise pytest.UsageError(f"seamcheck: {exc}") from None
    config.stash[MATRIX_ROWS_KEY] = [r.name for r in selected] if selected is not None else None
    config.stash[MATRIX_GATE_KEY] = bool(config.getoption("seamcheck_matrix_gate")) or \
        os.environ.get("SEAMCHECK_MATRIX_GATE", "").lower() in ("1", "true", "yes")
    ports: dict[str, int] = {}
    for component, (_flag, env) in _PORTS.items():
        raw = config.getoption(f"seamcheck_port_{component}")
        if raw is None and os.environ.get(env):
            try:
                raw = int(os.environ[env])
            except ValueError:
                raise pytest.UsageError(f"seamcheck: {env}={os.environ[env]!r} is not a port number") from None
        if raw:
            ports[component] = int(raw)
    keep = config.getoption("seamcheck_keep_stack") or os.environ.get("SEAMCHECK_KEEP_STACK", "") in ("1", "true", "yes")
    reports = Path(values["seamcheck_reports_dir"])
    stack_config = StackConfig(
        profile=profile, matrix_row=row.name, matrix_file=Path(values["seamcheck_matrix_file"]),
        reports_dir=reports, keep_stack=bool(keep), namespace=values["seamcheck_namespace"],
        artifact_store=store, ports=ports,
        env_cache=Path(values["seamcheck_env_cache"]) if values["seamcheck_env_cache"] else None,
        **_cluster_config(config))
    config.stash[STACK_CONFIG_KEY] = stack_config
    config.stash[MATRIX_KEY] = matrix
    run_id = os.environ.get("SEAMCHECK_RUN_ID") or new_run_id()
    _configure_ledger(config, values["seamcheck_ledger_dir"], run_id, reports / run_id)
    if hasattr(config, "workerinput"):  # xdist workers: the controller writes the report
        return
    report = RunReport(run_id=run_id, directory=reports / run_id, profile=profile)
    report.versions = row.versions()
    config.stash[REPORT_KEY] = report
    if not config.option.xmlpath:
        config.option.xmlpath = str(report.directory / "junit.xml")
    # SIGTERM (CI cancelling, `kill`) becomes KeyboardInterrupt, so pytest unwinds and every
    # fixture's teardown stops its processes, as it does for Ctrl-C.
    if _is_main_thread():
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def terminal_printer(config: pytest.Config) -> Callable[[str], None]:
    """Lines that reach the terminal even while pytest captures output (from any thread)."""
    lock = threading.Lock()

    def say(message: str) -> None:
        capman = config.pluginmanager.get_plugin("capturemanager")
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        with lock:
            if capman is not None and reporter is not None:
                with capman.global_and_fixture_disabled():
                    reporter.ensure_newline()
                    reporter.write_line(message)
            else:
                print(message, file=sys.stderr, flush=True)

    return say


def _configure_ledger(config: pytest.Config, directory: str | None, run_id: str, report_dir: Path) -> None:
    """This process's ledger: it opens (and starts the reaper) with the first resource recorded."""
    def capture_off() -> Any:
        capman = config.pluginmanager.get_plugin("capturemanager")
        # The reaper then inherits the terminal's stderr, not pytest's capture file.
        return capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()

    ledger.configure(Path(directory) if directory else None, run_id=run_id, say=terminal_printer(config),
                     around_spawn=capture_off, report_dir=report_dir)


def pytest_unconfigure(config: pytest.Config) -> None:
    ledger.reset()  # after every fixture's teardown: whatever is still listed was leaked


def _cluster_config(config: pytest.Config) -> dict[str, Any]:
    """StackConfig fields of the cluster profiles, from options or their environment variables."""
    opts = {dest: _value(config, dest, env, None) for dest, _f, env, _h in _CLUSTER_OPTIONS}
    flags = {dest: bool(config.getoption(dest)) or os.environ.get(env, "").lower() in ("1", "true", "yes")
             for dest, _f, env, _h in _CLUSTER_FLAGS}
    chaos = tuple(ns.strip() for ns in (opts["seamcheck_chaos_namespaces"] or "").split(",") if ns.strip())
    return {
        "kubeconfig": Path(opts["seamcheck_kubeconfig"]).expanduser() if opts["seamcheck_kubeconfig"] else None,
        "kube_context": opts["seamcheck_kube_context"] or None,
        "kind_bin": opts["seamcheck_kind_bin"] or None,
        "chaos_namespaces": chaos,
        "keep_cluster": flags["seamcheck_keep_cluster"],
        "install_stack": flags["seamcheck_install_stack"],
    }


def _is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _sigterm_to_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Check what the selected tests' stack needs before any process starts."""
    config = session.config
    if STACK_CONFIG_KEY not in config.stash or session.config.option.collectonly:
        return
    if not any("stack" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    named = config.stash.get(MATRIX_ROWS_KEY, None)
    if named is not None and len(named) > 1:
        raise pytest.UsageError(f"seamcheck: --matrix-row names {len(named)} rows ({', '.join(named)}), but the "
                                "selected stack tests run on one row; name one row, or select only the matrix "
                                "suite (-m matrix)")
    stack_config = config.stash[STACK_CONFIG_KEY]
    from harness.profiles import preflight

    # A dead run's leftovers first (its reaper was killed too): they may hold the ports checked next.
    ledger.active().sweep_dead_runs()
    try:
        preflight(stack_config)
    except Exception as exc:  # every preflight failure is a usage problem with a fix in its text
        raise pytest.UsageError(f"seamcheck: {exc}") from None


@pytest.fixture
def seam(request: pytest.FixtureRequest) -> CheckRecorder:
    """Record named seam checks with evidence into the run's report."""
    report = request.config.stash.get(REPORT_KEY, None)
    sink: list[CheckRecord] = report.checks if report is not None else []
    return CheckRecorder(request.node.nodeid, sink)


@pytest.fixture(scope="session")
def run_report(pytestconfig: pytest.Config) -> RunReport | None:
    return pytestconfig.stash.get(REPORT_KEY, None)


@pytest.fixture(scope="session")
def stack_config(pytestconfig: pytest.Config) -> StackConfig:
    return pytestconfig.stash[STACK_CONFIG_KEY]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    rep = yield
    report = item.config.stash.get(REPORT_KEY, None)
    if report is None:
        return rep
    if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
        outcome = rep.outcome
        if hasattr(rep, "wasxfail"):
            outcome = "xfailed" if rep.skipped else "xpassed"
        elif rep.when == "setup" and rep.failed:
            outcome = "error"
        report.tests.append({"nodeid": item.nodeid, "outcome": outcome, "seconds": round(rep.duration, 3),
                             "message": str(rep.longrepr)[-2000:] if rep.failed else ""})
    return rep


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = session.config.stash.get(REPORT_KEY, None)
    if report is None:
        return
    if not report.tests and not report.checks:
        return  # nothing of seamcheck's ran (e.g. --help, or only unit tests with -p no:...)
    if report.matrix_cells:
        exitstatus = _matrix_gate(session, report, int(exitstatus))
    report.write(int(exitstatus))


def _matrix_gate(session: pytest.Session, report: RunReport, exitstatus: int) -> int:
    """The matrix table (matrix.md / matrix.json) and, with --matrix-gate, the exit status CI gates on:
    1 when a cell is incompatible or cannot-build and the matrix file does not accept it."""
    from harness.matrixcheck.gate import apply_gate
    from harness.report.matrix import write_matrix_report

    config = session.config
    matrix = config.stash[MATRIX_KEY]
    failures = apply_gate(report.matrix_cells, matrix)
    gate_on = config.stash.get(MATRIX_GATE_KEY, False)
    write_matrix_report(report, report.matrix_cells, matrix, failures=failures, gate_enabled=gate_on)
    if gate_on and failures and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = exitstatus = pytest.ExitCode.TESTS_FAILED
    return exitstatus


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    report = config.stash.get(REPORT_KEY, None)
    if report is not None and report.matrix:
        gate = report.matrix.get("gate", {})
        lines = gate.get("failures", [])
        state = ("on" if gate.get("enabled") else "off (pass --matrix-gate to fail on these)")
        terminalreporter.write_sep("-", f"seamcheck matrix: {len(report.matrix_cells)} cells, "
                                        f"{len(lines)} not accepted; gate {state}")
        for line in lines:
            terminalreporter.write_line(f"  {line}")
        terminalreporter.write_line(f"  table: {report.directory}/matrix.md (and matrix.json)")
    if report is not None and (report.tests or report.checks):
        terminalreporter.write_sep("-", f"seamcheck report: {report.directory}/summary.md")
