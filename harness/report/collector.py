"""The run's report, collected where pytest-xdist delivers results: one plugin object on the
controller (as pytest's junitxml does with LogXML), and on each worker one that exports what only
the worker knows (timings, versions, artifacts written into the shared report folder).

Per test: the call's outcome (or a setup that did not pass); at its teardown, the seam checks and
matrix cells the test recorded in its ``user_properties``, which pytest copies into every report
and xdist sends to the controller.
"""
from __future__ import annotations

from typing import Any

import pytest

from harness.report.recorder import CHECK_PROPERTY, CheckRecord
from harness.report.summary import MATRIX_CELL_PROPERTY, RunReport

__all__ = ["ReportCollector", "WorkerExport"]


class ReportCollector:
    def __init__(self, report: RunReport, settings: Any) -> None:
        self.report = report
        self.settings = settings

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        run = self.report
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

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        report = self.report
        if not report.tests and not report.checks:
            return  # nothing of seamcheck's ran (e.g. --help, or only unit tests with -p no:...)
        if report.matrix_cells:
            exitstatus = self._matrix_gate(session, int(exitstatus))
        report.write(int(exitstatus))

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
            terminalreporter.write_sep("-", f"seamcheck report: {report.directory}/summary.md")


class WorkerExport:
    """On an xdist worker: its part of the report goes to the controller in ``workeroutput``."""

    def __init__(self, report: RunReport) -> None:
        self.report = report

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        session.config.workeroutput["seamcheck"] = self.report.export()  # type: ignore[attr-defined]
