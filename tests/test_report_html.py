"""The run's HTML page and trend page, made without a stack: one file with nothing to fetch, every
suite's section, failures first with their evidence, the timelines' plots; the history a run
appends and the trend drawn from two runs; a failed check's evidence in pytest's own report (the
terminal and JUnit); the run's last line names the page."""
from __future__ import annotations

import json
import re
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.report.history import append_run, recent_runs
from harness.report.html import render_index, write_index
from harness.report.timeline import activity_category, load_bins
from harness.report.trend import flaky_checks, write_trend
from tests.report_sample import canary_sample, summary_sample


def test_the_page_is_one_file_with_nothing_to_fetch(tmp_path: Path) -> None:
    data = summary_sample(tmp_path)
    html = render_index(data, tmp_path)
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page references something online"
    assert not re.search(r"url\((?!#)", html), "CSS or SVG that fetches (only the page's own #ids)"
    for section in ("overview", "versions", "suite-conformance", "suite-canary", "suite-chaos", "suite-matrix",
                    "tests", "timings", "artifacts"):
        assert f'id="{section}"' in html, section
    assert html.count("<svg") == 3  # two canary timelines and a chaos timeline, inline


def test_failures_first_with_their_evidence_open(tmp_path: Path) -> None:
    html = render_index(summary_sample(tmp_path), tmp_path)
    conformance = html[html.index('id="suite-conformance"'):html.index('id="suite-canary"')]
    failed, passed = conformance.index("storage-uri-holds-mlmodel"), conformance.index("predictions-match")
    assert failed < passed
    assert re.search(r'<details class="check failed" id="check-conformance-storage-uri-holds-mlmodel" open>', html)
    assert "storageUri s3://x/run has no MLmodel" in html and "&#34;listing&#34;" in html  # evidence, escaped JSON
    assert 'href="#check-conformance-storage-uri-holds-mlmodel"' in html  # linked from the overview


def test_tables_are_coloured_and_timelines_marked(tmp_path: Path) -> None:
    html = render_index(summary_sample(tmp_path), tmp_path)
    assert html.count('class="grade-right"') >= 4  # the judge table: every judged cell graded
    for label in ("compatible", "incompatible", "cannot-build", "accepted"):
        assert f'class="cell-{label}"' in html
    assert 'class="alert-firing"' in html and "SeamcheckServingErrorRate" in html
    assert "sequential: rollback at 12 s" in html  # the decision's line in the canary plot's legend
    assert "ln A (roll back)" in html and "kill-one-replica" in html  # the SPRT's bound; the fault's marker


def test_canary_timelines_list_the_alerts_active_meanwhile(tmp_path: Path) -> None:
    """As the chaos timelines do: a strip on the plot and a table under it; the healthy scenario
    says none was active."""
    html = render_index(summary_sample(tmp_path), tmp_path)
    errors = html[html.index('id="canary-errors-10pct"'):html.index('id="canary-healthy"')]
    healthy = html[html.index('id="canary-healthy"'):html.index('id="suite-chaos"')]
    assert errors.count('class="alert-firing"') == 1 and errors.count('class="alert-pending"') == 1, errors[-3000:]
    assert "SeamcheckCanaryErrorAboveStable" in errors and "revision=rc-canary-predictor-00002" in errors
    assert "alert SeamcheckCanaryErrorAboveStable (firing)" in errors  # the strip's legend, in the plot
    assert "No dashboard alert for <code>rc-canary</code> was active" in healthy
    assert "alert-firing" not in healthy


def test_chaos_timeline_reads_the_journal_and_the_event_log(tmp_path: Path) -> None:
    timeline = summary_sample(tmp_path)["timelines"][-1]
    assert timeline["kind"] == "chaos" and timeline["seconds"] == 50.0
    (load,) = timeline["loads"]
    assert load["requests"] == 1200 and load["outcomes"]["5xx"] > 400 and load["outcomes"]["conn"] > 0
    assert sum(b["ok"] + b["5xx"] + b["conn"] + b["other"] for b in load["bins"]) == 1200
    kinds = {a["name"]: a["category"] for a in timeline["activities"]}
    assert kinds == {"pipeline-service-answers": "probe", "deploy-canary": "rollout", "start-load": "load",
                     "kill-one-replica": "fault", "roll-back": "rollout", "restore-artifact-store": "lift",
                     "delete-service": "rollback"}
    assert timeline["alerts"][0]["from"] == 16.0 and timeline["alerts"][0]["to"] == 33.0
    assert activity_category("stop_component", "method") == "fault"
    assert load_bins([], 0.0) == []


def test_history_and_trend_across_runs(tmp_path: Path) -> None:
    history = tmp_path / "history.sqlite"
    first = summary_sample(tmp_path / "a", run_id="20261201T000000Z-aaaaaa", failing=True)
    second = summary_sample(tmp_path / "b", run_id="20261202T000000Z-bbbbbb", failing=False)
    second["started"] = "2026-12-02T02:00:00+00:00"
    second["timelines"][0] = canary_sample(decide_at=9.0)
    for data in (first, second, second):  # the same run id twice is one record
        append_run(history, data, f"{data['run_id']}/index.html")
    runs = recent_runs(history, 30)
    assert [r.run_id for r in runs] == [first["run_id"], second["run_id"]]
    assert runs[0].checks["conformance:storage-uri-holds-mlmodel"][0] == "failed"
    assert runs[1].decisions[("errors-10pct", "sequential")] == ("rollback", 9.0, True)
    assert runs[1].suites["chaos"] == 480.0
    assert [f["name"] for f in flaky_checks(runs)] == ["conformance:storage-uri-holds-mlmodel"]
    page = write_trend(tmp_path, history).read_text()
    assert page.count("<svg") == 2 and 'href="20261202T000000Z-bbbbbb/index.html"' in page
    assert "conformance:storage-uri-holds-mlmodel" in page[page.index('id="flaky"'):page.index('id="grid"')]
    assert recent_runs(tmp_path / "none.sqlite", 5) == []


SUITE = textwrap.dedent('''
    import pytest

    pytestmark = pytest.mark.conformance

    def test_fails(seam):
        with seam.check("storage-uri-holds-mlmodel", "the model is where the URI says") as ev:
            ev["listing"] = ["conda.yaml", "python_env.yaml"]
            assert "MLmodel" in ev["listing"], "no MLmodel under the storageUri"

    def test_passes(seam):
        with seam.check("predictions-match", "same answers") as ev:
            ev["rows"] = 50
''')


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_a_failed_checks_evidence_is_in_pytests_report_and_the_last_line_names_the_page(
        pytester: pytest.Pytester, monkeypatch, workers: list[str]) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    pytester.makepyfile(test_suite=SUITE)
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess("--reports-dir", str(reports), "-p", "no:cacheprovider", *workers)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    out = result.stdout.str()
    assert "seamcheck evidence: conformance:storage-uri-holds-mlmodel (failed)" in out
    assert '"python_env.yaml"' in out
    (run,) = [p for p in reports.iterdir() if p.is_dir()]
    assert out.rstrip().splitlines()[-1] == f"seamcheck report: {run / 'index.html'}"
    failure = ET.parse(run / "junit.xml").getroot().find(".//testcase[@name='test_fails']/failure")
    assert failure is not None and "python_env.yaml" in (failure.text or "")
    assert (run / "index.html").exists() and (reports / "trend.html").exists()
    assert len(recent_runs(reports / "history.sqlite", 5)) == 1
    data = json.loads((run / "summary.json").read_text())
    assert "conformance" in data["suites"]


def test_the_page_is_made_again_from_summary_json(tmp_path: Path) -> None:
    from harness.report.html import main

    data = summary_sample(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps(data))
    assert main([str(tmp_path / "summary.json")]) == 0
    assert (tmp_path / "index.html").read_text() == render_index(data, tmp_path)
    assert write_index(tmp_path, data).name == "index.html"


def test_a_long_phase_says_it_is_still_running() -> None:
    import time

    from harness.terminal import heartbeat

    lines: list[str] = []
    with heartbeat(lines.append, "scenarios/x.py::test_y (call)", every_s=0.2):
        time.sleep(0.7)
    assert len(lines) >= 2 and lines[0].startswith("scenarios/x.py::test_y (call): still running after ")
    count = len(lines)
    time.sleep(0.3)
    assert len(lines) == count  # silent once the phase ended


def test_a_canary_outcome_becomes_a_timeline_with_the_sequential_judges_path() -> None:
    """A real sequential judge on a canary failing 2.5% of requests, its outcome taken from a
    fixture's value at teardown as the canary suite's is; the judge's decisions do not change."""
    from types import SimpleNamespace

    from harness.canary.scenarios import CanaryScenario, ScenarioOutcome
    from harness.fixtures.timelines import TimelineCapture
    from harness.judges.base import Decision, JudgeConfig, Reading, RevisionReading
    from harness.judges.sequential import SequentialJudge
    from harness.report.summary import RunReport

    judge = SequentialJudge(JudgeConfig(observation_s=45, interval_s=3))
    verdict = None
    for i in range(1, 16):
        canary = RevisionReading(40.0 * i, 1.0 * i, 0.04, 40.0, 1.0, 0.0)
        stable = RevisionReading(40.0 * i, 0.0, 0.03, 40.0, 0.0, 0.0)
        verdict = judge.observe(Reading(t_s=3.0 * i, canary=canary, stable=stable, source_ok=True))
        if verdict.final:
            break
    assert verdict is not None and verdict.decision is Decision.ROLLBACK
    assert len(judge._snapshots) >= 3  # several readings: a path, not a point
    scenario = CanaryScenario("errors-10pct", None, frozenset({Decision.ROLLBACK}))
    outcome = ScenarioOutcome(scenario=scenario, service="rc", canary="rc-2", stable="rc-1",
                              verdicts={"sequential": verdict}, decided_at={"sequential": verdict.at_s},
                              action="rollback", split_after={"rc-1": 100}, post_window={}, load_totals={},
                              readings=[{"t_s": 3.0, "canary": {}, "stable": {}}])
    report = RunReport("r", Path("."), "local")
    runner = SimpleNamespace(outcomes={"errors-10pct": outcome})
    capture = TimelineCapture(report)
    # The runner's type is checked: a namespace is not a ScenarioRunner, so nothing is taken ...
    capture.pytest_fixture_post_finalizer(SimpleNamespace(cached_result=(SimpleNamespace(runner=runner), 0, None)),
                                          None)
    assert report.timelines == []
    from harness.fixtures.timelines import canary_timeline

    timeline = canary_timeline("errors-10pct", outcome)
    path = timeline["sequential"]["path"]
    assert [p["t_s"] for p in path] == [3.0 * (i + 1) for i in range(len(path))]
    # 2.5 % errors against a clean stable: the absolute test (above error_threshold) decides first,
    # and its path is the one that reaches ln A at the decision, from below.
    assert "above" in verdict.reasons[0], verdict.reasons
    bound = timeline["sequential"]["rollback_bound"]
    assert path[-1]["llr_absolute"] >= bound > path[-2]["llr_absolute"] > path[0]["llr_absolute"]
    assert all(p["llr_rollback"] < bound for p in path)  # the relative test had not decided
    assert timeline["judges"]["sequential"] == {"decision": "rollback", "at_s": verdict.at_s, "right": True,
                                                "known_wrong": "", "reasons": verdict.reasons[:2]}
    from harness.canary.scenarios import CANARY_PERCENT

    assert timeline["fault"] is None and timeline["split_percent"] == CANARY_PERCENT == 80
    assert timeline["alerts"] == [] and timeline["judged_from"] is None  # no judgement on the epoch clock


def test_a_canary_timeline_lists_its_services_alerts_on_the_readings_clock() -> None:
    """The alert log's intervals for the scenario's service that overlap its judgement (or the
    rules' lag after it), in seconds after the judgement's start; another service's alerts and
    those outside the window are left to their own timelines."""
    from harness.canary.alerts import ALERT_LAG_S
    from harness.canary.scenarios import CanaryScenario, ScenarioOutcome
    from harness.fixtures.timelines import canary_timeline
    from harness.judges.base import Decision

    t0 = 1_796_000_000.0
    outcome = ScenarioOutcome(scenario=CanaryScenario("errors-10pct", None, frozenset({Decision.ROLLBACK})),
                              service="rc", canary="rc-2", stable="rc-1", verdicts={}, decided_at={},
                              action="rollback", split_after={"rc-1": 100}, post_window={}, load_totals={},
                              readings=[], judged_from=t0, judged_to=t0 + 75.0, canary_traffic_from=t0 - 2.0)

    def alert(name: str, isvc: str, start: float, end: float | None, state: str = "firing") -> dict:
        return {"alertname": name, "state": state, "labels": {"isvc": isvc, "alertname": name}, "from": start,
                "to": end, "active_at": "", "value": "1"}

    log = [alert("SeamcheckServingErrorRate", "rc", t0 - 60, t0 - 40),  # an earlier scenario's: left out
           alert("SeamcheckCanaryErrorAboveStable", "rc", t0 + 6.04, t0 + 80.0),
           alert("SeamcheckCanaryErrorAboveStable", "rc", t0 + 3.0, t0 + 5.0, "pending"),
           alert("SeamcheckServingErrorRate", "rc-beside", t0 + 10, None),  # another service's
           alert("SeamcheckServingLatencyP99", "rc", t0 + 75 + ALERT_LAG_S - 1, None)]  # in the lag: kept
    listed = canary_timeline("errors-10pct", outcome, alerts=log)["alerts"]
    assert [(a["alertname"], a["state"], a["from"], a["to"]) for a in listed] == [
        ("SeamcheckCanaryErrorAboveStable", "pending", 3.0, 5.0),
        ("SeamcheckCanaryErrorAboveStable", "firing", 6.0, 80.0),
        ("SeamcheckServingLatencyP99", "firing", 75 + ALERT_LAG_S - 1, None)]
