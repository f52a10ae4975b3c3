"""seamcheck's pytest plugin (the ``pytest11`` entry point).

- options: declared from the one table in harness/options.py and resolved once, at configure
  time, into the frozen ``RunSettings`` under ``SETTINGS_KEY`` (harness/settings.py); a bad
  input stops the session there with one ``ERROR: seamcheck: ...`` line;
- hooks: the hook specifications users implement (harness/hookspecs.py) and seamcheck's own
  implementations of them (the built-in profiles and judges);
- fixtures: the stack, pipeline and chaos fixtures ship with the plugin (harness/fixtures/), so
  an installed seamcheck gives a user every fixture the suites use;
- the run's report: collected where pytest-xdist delivers results (``pytest_runtest_logreport``;
  seam checks travel in ``user_properties``), written by the controller to reports/<run-id>/;
- SIGTERM is handled like Ctrl-C, so fixtures always tear down; the run ledger's reaper covers
  what no handler can (SIGKILL).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import hookspecs
from harness.errors import SeamcheckError
from harness.fixtures.alerts import alert_log  # noqa: F401 (a fixture)
from harness.fixtures.chaos import chaos_context, chaos_control, journal_dir, side_by_side  # noqa: F401
from harness.fixtures.pipeline import compiled_pipeline, dataset_path, deployment, pipeline_run  # noqa: F401
from harness.fixtures.stack import role_envs, stack  # noqa: F401 (fixtures)
from harness.ledger import ledger
from harness.options import GROUPS, OPTIONS
from harness.fixtures.timelines import TimelineCapture
from harness.report.collector import LastLines, ReportCollector, WorkerExport
from harness.report.recorder import CheckRecorder, failed_check_sections
from harness.report.summary import RunReport
from harness.settings import REPORT_KEY, SETTINGS_KEY, RunSettings, StackConfig
from harness.terminal import heartbeat, progress_printer, terminal_printer

__all__ = ["MARKERS", "REPORT_KEY", "SETTINGS_KEY"]

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
#: The suites a seam check's id starts with (from the test's marks); other tests' checks: "harness".
SUITES = ("conformance", "canary", "chaos", "matrix")



# ------------------------------------------------------------------------------ hooks and options
def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    for group_name, title in GROUPS.items():
        group = parser.getgroup(f"seamcheck-{group_name}", f"seamcheck ({title})")
        for opt in (o for o in OPTIONS if o.group == group_name):
            text = f"{opt.help} [env {opt.env}" + ("=yes|no]" if opt.switch else "]")
            if opt.switch:
                group.addoption(opt.flag, dest=opt.dest, action="store_true", default=None, help=text)
            else:
                group.addoption(opt.flag, dest=opt.dest, default=None, choices=opt.choices or None, help=text)


def pytest_seamcheck_profiles(config: pytest.Config) -> dict[str, type[Any]]:
    from harness.profiles import builtin_profiles

    return builtin_profiles()


def pytest_seamcheck_judges(config: pytest.Config) -> dict[str, Callable[[Any], Any]]:
    from harness.judges.external import BUILTIN_JUDGES

    return dict(BUILTIN_JUDGES)


def _merged(results: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for result in reversed(results):  # pluggy calls the last registered first: later plugins win
        merged.update(result or {})
    return merged


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    profiles = _merged(config.hook.pytest_seamcheck_profiles(config=config))
    judges = _merged(config.hook.pytest_seamcheck_judges(config=config))
    from harness.judges.base import JudgeConfig
    from harness.judges.external import load_judge

    def check_judge(spec: str) -> Any:
        return judges[spec](JudgeConfig()) if spec in judges else load_judge(spec, JudgeConfig())

    try:
        settings = RunSettings.resolve(config.getoption, os.environ, profiles=profiles, judge_factories=judges,
                                       judge_loader=check_judge)
    except SeamcheckError as exc:
        raise pytest.UsageError(f"seamcheck: {exc}") from None
    worker = getattr(config, "workerinput", None)
    if worker is not None and worker.get("seamcheck_run_id"):  # one report folder for the whole run
        settings = dataclasses.replace(settings, run_id=worker["seamcheck_run_id"])
    config.stash[SETTINGS_KEY] = settings
    directory = settings.reports_dir / settings.run_id
    _configure_ledger(config, settings.ledger_dir, settings.run_id, directory)
    report = RunReport(run_id=settings.run_id, directory=directory, profile=settings.profile)
    report.versions = settings.row.versions()
    config.stash[REPORT_KEY] = report
    config.pluginmanager.register(TimelineCapture(report), "seamcheck-timelines")
    if worker is not None:  # xdist workers: their part travels to the controller, which writes it
        config.pluginmanager.register(WorkerExport(report), "seamcheck-report-export")
        return
    collector = ReportCollector(report, settings)
    config.pluginmanager.register(collector, "seamcheck-report")
    config.pluginmanager.register(LastLines(collector), "seamcheck-report-lines")
    if not config.option.xmlpath:
        config.option.xmlpath = str(directory / "junit.xml")
    # SIGTERM (CI cancelling, `kill`) becomes KeyboardInterrupt, so pytest unwinds and every
    # fixture's teardown stops its processes, as it does for Ctrl-C.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def _configure_ledger(config: pytest.Config, directory: Path | None, run_id: str, report_dir: Path) -> None:
    """This process's ledger: it opens (and starts the reaper) with the first resource recorded."""
    def capture_off() -> Any:
        capman = config.pluginmanager.get_plugin("capturemanager")
        # The reaper then inherits the terminal's stderr, not pytest's capture file.
        return capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()

    ledger.configure(directory, run_id=run_id, say=terminal_printer(config), around_spawn=capture_off,
                     report_dir=report_dir)


def _sigterm_to_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, on the controller: every worker writes into the controller's report folder."""
    node.workerinput["seamcheck_run_id"] = node.config.stash[SETTINGS_KEY].run_id


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = config.stash.get(SETTINGS_KEY, None)
    return settings.header() if settings is not None else None


def pytest_unconfigure(config: pytest.Config) -> None:
    ledger.reset()  # after every fixture's teardown: whatever is still listed was leaked


def pytest_collection_finish(session: pytest.Session) -> None:
    """Check what the selected tests' stack needs before any process starts."""
    config = session.config
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None or config.option.collectonly or hasattr(config, "workerinput"):
        return
    for item in session.items:  # a suite the profile cannot run skips with its one-line reason
        reasons = [r for s in SUITES if item.get_closest_marker(s) is not None
                   if (r := settings.profile_class().suite_skip_reason(s))]
        if reasons:
            item.add_marker(pytest.mark.skip(reason=f"{settings.profile}: {reasons[0]}"))
    if not any("stack" in getattr(item, "fixturenames", ()) and item.get_closest_marker("skip") is None
               for item in session.items):
        return
    if settings.rows is not None and len(settings.rows) > 1 and any(
            "stack" in getattr(item, "fixturenames", ()) for item in session.items):
        names = ", ".join(r.name for r in settings.rows)
        raise pytest.UsageError(f"seamcheck: --matrix-row names {len(settings.rows)} rows ({names}), but the selected "
                                "stack tests run on one row; name one row, or select only the matrix suite (-m matrix)")
    # A dead run's leftovers first (its reaper was killed too): they may hold the ports checked next.
    ledger.active().sweep_dead_runs()
    try:
        settings.profile_class().preflight(settings.stack, settings.row)
        suites = frozenset(s for item in session.items for s in SUITES if item.get_closest_marker(s) is not None)
        settings.profile_class().check_capacity(settings.stack, settings.row, suites)
    except SeamcheckError as exc:  # every preflight failure is a usage problem with a fix in its text
        raise pytest.UsageError(f"seamcheck: {exc}") from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    """Long setups (the stack, the pipeline, the canary services) say they are still running."""
    with _beating(item, "setup"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    with _beating(item, "call"):
        return (yield)


def _beating(item: pytest.Item, phase: str) -> Any:
    if hasattr(item.config, "workerinput"):  # an xdist worker's lines never reach the terminal
        return contextlib.nullcontext()
    return heartbeat(progress_printer(item.config), f"{item.nodeid} ({phase})")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed seam check's message and evidence in pytest's own report of the test: the
    terminal's failure section and JUnit's <failure> both print the longrepr's sections (and
    xdist ships them to the controller)."""
    report = yield
    if report.failed and hasattr(report.longrepr, "addsection"):
        for title, text in failed_check_sections(item.user_properties):
            report.longrepr.addsection(title, text)
    return report


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
def seam(request: pytest.FixtureRequest) -> CheckRecorder:
    """Record named seam checks with evidence into the run's report."""
    suite = next((s for s in SUITES if request.node.get_closest_marker(s) is not None), "harness")
    return CheckRecorder(request.node.nodeid, suite, request.node.user_properties)


@pytest.fixture(scope="session")
def run_report(pytestconfig: pytest.Config) -> RunReport:
    """This process's part of the report (artifacts, timings); the controller merges the workers'."""
    return pytestconfig.stash[REPORT_KEY]


@pytest.fixture(scope="session")
def run_settings(pytestconfig: pytest.Config) -> RunSettings:
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def stack_config(run_settings: RunSettings) -> StackConfig:
    return run_settings.stack


# ------------------------------------------------------------------------------ the report
# harness/report/collector.py: registered in pytest_configure, on the controller only.
