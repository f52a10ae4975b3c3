"""The run's report, collected where pytest-xdist delivers results: one plugin object on the
controller (as pytest's junitxml does with LogXML), and on each worker one that exports what only
the worker knows (timings, versions, artifacts written into the shared report folder).

Per test: the call's outcome (or a setup that did not pass); at its teardown, the seam checks and
matrix cells the test recorded in its ``user_properties``, which pytest copies into every report
and xdist sends to the controller.
"""
from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from harness.report.history import append_run
from harness.report.html import INDEX_FILE, write_index
from harness.report.recorder import CHECK_PROPERTY, CheckRecord
from harness.report.summary import MATRIX_CELL_PROPERTY, RunReport
from harness.report.trend import write_trend

__all__ = ["SUITES", "LastLines", "ReportCollector", "WorkerExport"]

#: The suites a test belongs to (by its marks; pytest copies mark names into the report's keywords).
SUITES = ("conformance", "canary", "chaos", "matrix")


class ReportCollector:
    def __init__(self, report: RunReport, settings: Any) -> None:
        self.report = report
        self.settings = settings
        self.pages: list[str] = []  # the lines that name the pages written (LastLines prints them)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        run = self.report
        suite = next((s for s in SUITES if s in report.keywords), None)
        if suite is not None:  # setup, call and teardown: a session fixture's start counts for its suite
            run.suites[suite] = run.suites.get(suite, 0.0) + report.duration
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            outcome = report.outcome
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "xpassed"
            elif report.when == "setup" and report.failed:
                outcome = "error"
            run.tests.append({"nodeid": report.nodeid, "outcome": outcome, "seconds": round(report.duration, 3),
                              "message": str(report.longrepr)[-2000:] if report.failed else ""})
        if report.when == "teardown":
            for key, value in report.user_properties:
                if key == CHECK_PROPERTY:
                    run.checks.append(CheckRecord.from_dict(value))
                elif key == MATRIX_CELL_PROPERTY:
                    run.add_cell_dict(value)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """pytest-xdist: a worker's timings, versions and artifacts."""
        exported = (getattr(node, "workeroutput", None) or {}).get("seamcheck")
        if exported:
            self.report.merge(exported)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        report = self.report
        if not report.tests and not report.checks:
            return  # nothing of seamcheck's ran (e.g. --help, or only unit tests with -p no:...)
        if report.matrix_cells:
            exitstatus = self._matrix_gate(session, int(exitstatus))
        report.write(int(exitstatus))
        self.pages = self._pages(int(exitstatus))

    def _pages(self, exitstatus: int) -> list[str]:
        """index.html, the history's new record and trend.html; a page that cannot be made is
        named on the terminal with its error (summary.json and summary.md are written already)."""
        report, settings = self.report, self.settings
        data = report.as_dict(exitstatus)
        try:
            page = f"seamcheck report: {write_index(report.directory, data)}"
        except Exception as exc:  # noqa: BLE001 - the run's outcome must not depend on a plot
            page = (f"seamcheck report: {INDEX_FILE} not written ({type(exc).__name__}: {exc}); "
                    f"summary: {report.directory}/summary.md")
        try:
            append_run(settings.history, data, f"{report.run_id}/{INDEX_FILE}")
            trend = (f"seamcheck trend: {write_trend(settings.reports_dir, settings.history)} "
                     f"(history {settings.history})")
        except Exception as exc:  # noqa: BLE001 - a history file CI restored broken must not fail the run
            trend = f"seamcheck trend: not updated ({type(exc).__name__}: {exc}); check --history={settings.history}"
        return [trend, page]  # the run's page last: the line a reader of the terminal sees first

    def _matrix_gate(self, session: pytest.Session, exitstatus: int) -> int:
        """The matrix table (matrix.md / matrix.json) and, with --matrix-gate, the exit status CI
        gates on: 1 when a cell is incompatible or cannot-build and the matrix file does not accept it."""
        from harness.matrixcheck.gate import apply_gate
        from harness.report.matrix_table import write_matrix_report

        report, settings = self.report, self.settings
        failures = apply_gate(report.matrix_cells, settings.matrix)
        write_matrix_report(report, report.matrix_cells, settings.matrix, failures=failures,
                            gate_enabled=settings.matrix_gate)
        if settings.matrix_gate and failures and exitstatus in (pytest.ExitCode.OK,
                                                                pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = exitstatus = pytest.ExitCode.TESTS_FAILED
        return exitstatus

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        report = self.report
        if report.matrix:
            gate = report.matrix.get("gate", {})
            lines = gate.get("failures", [])
            state = "on" if gate.get("enabled") else "off (pass --matrix-gate to fail on these)"
            terminalreporter.write_sep("-", f"seamcheck matrix: {len(report.matrix_cells)} cells, "
                                            f"{len(lines)} not accepted; gate {state}")
            for line in lines:
                terminalreporter.write_line(f"  {line}")
            terminalreporter.write_line(f"  table: {report.directory}/matrix.md (and matrix.json)")
        if report.tests or report.checks:
            terminalreporter.write_sep("-", f"seamcheck report: {report.directory}/ (index.html, summary.md, "
                                            "summary.json, junit.xml)")


class LastLines:
    """The run's last lines name its pages: a wrapper outside the terminal reporter's own
    (whose summary line would come after anything written in an ordinary hook)."""

    def __init__(self, collector: ReportCollector) -> None:
        self.collector = collector

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
        result = yield
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            for line in self.collector.pages:
                reporter.write_line(line)
        return result


class WorkerExport:
    """On an xdist worker: its part of the report goes to the controller in ``workeroutput``."""

    def __init__(self, report: RunReport) -> None:
        self.report = report

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        session.config.workeroutput["seamcheck"] = self.report.export()  # type: ignore[attr-defined]
