"""The correctness probes: the disagreement SPRT (harness/judges/probes.py) and its error bounds,
the row comparison, the sequential judge's use of it, and the probes' plumbing end to end through
the real HAProxy router's tagged routes (harness/canary/probes.py), the routes built from the
status the emulation's reconcile functions write."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests

from harness.binaries import MissingBinary
from harness.canary.probes import (
    Answer,
    ProbeRouteMissing,
    ProbeRunner,
    compare_answers,
    probe_routes,
    read_answer,
)
from harness.judges.base import Decision, JudgeConfig, ProbeTally, Reading, RevisionReading
from harness.judges.probes import ProbeTest, rows_to_decide
from harness.judges.sequential import SequentialJudge
from harness.judges.sprt import wald_log_bounds
from harness.local.haproxy import HAProxyRouter, find_haproxy, start_router, tag_backend_name
from harness.local.reconcile import ksvc_traffic, predictor_route, resolve_traffic, with_tag_urls
from harness.pipeline.dataset import frame_digest, holdout_labels, holdout_rows
from harness.ports import LOOPBACK, free_port
from harness.procs import ProcessRegistry

CFG = JudgeConfig()


def tally(rows: int, disagreements: int, *, rounds: int | None = None, failed: int = 0, last_ok: bool = True,
          output: str = "label") -> ProbeTally:
    return ProbeTally(rounds=rounds if rounds is not None else max(1, rows // 20), failed=failed, rows=rows,
                      disagreements=disagreements, last_ok=last_ok, output=output)


# -- the held-out labels ---------------------------------------------------------------------------
def test_labels_come_with_the_holdout_rows_and_leave_them_unchanged() -> None:
    before = frame_digest(holdout_rows(50))
    labels = holdout_labels(50)
    assert frame_digest(holdout_rows(50)) == before and len(labels) == 50
    assert labels.tolist() == holdout_labels(50).tolist()  # deterministic
    assert set(labels.unique()) == {0, 1} and 0.3 < holdout_labels(2000).mean() < 0.7  # balanced, as training


# -- comparing answers ------------------------------------------------------------------------------
def test_labels_are_compared_exactly_and_scored_against_the_held_out_labels() -> None:
    row = compare_answers(Answer("INT64", (1, 0, 1, 1)), Answer("INT64", (1, 1, 1, 0)), tolerance=0.05,
                          labels=[1, 1, 1, 1])
    assert (row.rows, row.disagreements, row.output) == (4, 2, "label")
    assert (row.canary_correct, row.stable_correct) == (3, 3)


def test_numbers_disagree_beyond_the_tolerance_only() -> None:
    row = compare_answers(Answer("FP64", (0.52, 0.10, 0.9, math.nan)), Answer("FP64", (0.50, 0.20, 0.9, 0.3)),
                          tolerance=0.05, labels=[1, 0, 1, 0])
    assert (row.disagreements, row.output) == (2, "value")  # 0.1 apart, and a NaN
    assert row.max_abs_diff == pytest.approx(0.1)
    assert row.canary_correct is None  # a NaN is no probability: no accuracy for the canary
    assert row.stable_correct == 4  # 0.5 -> 1, 0.2 -> 0, 0.9 -> 1, 0.3 -> 0: each on its label's side
    regression = compare_answers(Answer("FP32", (10.0, 12.5)), Answer("FP32", (10.04, 11.0)), tolerance=0.05)
    assert regression.disagreements == 1 and regression.stable_correct is None


def test_an_answer_of_another_type_or_length_disagrees_on_every_row() -> None:
    row = compare_answers(Answer("FP64", (0.9, 0.1)), Answer("INT64", (1, 0)), tolerance=0.05)
    assert (row.rows, row.disagreements) == (2, 2) and "FP64" in row.note and "INT64" in row.note


def test_an_answer_without_one_value_per_row_cannot_be_read() -> None:
    good = {"outputs": [{"name": "output-1", "datatype": "INT64", "shape": [2, 1], "data": [1, 0]}]}
    assert read_answer(good, 2) == Answer("INT64", (1, 0))
    for body, why in (({"outputs": []}, "no outputs"), ({"error": "x"}, "no outputs"),
                      ({"outputs": [{"name": "o", "data": "1,0"}]}, "no data list"),
                      (good, "holds 2 values for 3 rows")):
        with pytest.raises(ValueError, match=why):
            read_answer(body, 3 if why.startswith("holds") else 2)


# -- the test statistic -----------------------------------------------------------------------------
def test_a_canary_answering_like_the_stable_is_accepted_after_walds_rows_and_never_rolled_back() -> None:
    log_b, _log_a = wald_log_bounds(CFG.alpha, CFG.beta)
    need = math.ceil(log_b / math.log((1 - CFG.probe_disagreement_bad) / (1 - CFG.probe_disagreement_ok)))
    assert rows_to_decide(CFG, 0.0) == pytest.approx(need, abs=1)
    test = ProbeTest(CFG)
    test.update(tally(need - 1, 0))
    assert not test.rejects and test.holds_promotion().startswith("correctness not yet shown")
    test.update(tally(need, 0))
    assert test.holds_promotion() is None
    test.update(tally(100_000, 0))
    assert not test.rejects and test.llr < 0  # agreeing rows only ever lower the statistic


def test_flipped_labels_are_rolled_back_within_walds_rows() -> None:
    # 10 % flipped: E[LLR] per row = 0.1 ln 5 + 0.9 ln(0.95 / 0.99), about 23 rows to reach ln A
    assert 20 < rows_to_decide(CFG, 0.10) < 26
    test = ProbeTest(CFG)
    test.update(tally(40, 4))
    assert test.rejects and "4 of 40 held-out rows" in test.line()


def test_the_probe_sprt_keeps_the_error_rate_sprts_bounds() -> None:
    """Monte Carlo, looking after every 20-row round as the judge does: at the accepted rate
    (H0) rolled back at most alpha / (1 - beta) of the time, at the unacceptable rate (H1) accepted
    at most about beta of the time (Wald's bounds; the overshoot of a 20-row look only lowers both)."""
    rng = np.random.default_rng(20261202)
    runs, rounds, batch = 2000, 150, 20
    log_b, log_a = wald_log_bounds(CFG.alpha, CFG.beta)
    d0, d1 = CFG.probe_disagreement_ok, CFG.probe_disagreement_bad
    step_yes, step_no = math.log(d1 / d0), math.log((1 - d1) / (1 - d0))

    def decisions(rate: float) -> tuple[int, int]:
        flips = rng.binomial(batch, rate, size=(runs, rounds)).cumsum(axis=1)
        rows = batch * np.arange(1, rounds + 1)
        llr = flips * step_yes + (rows - flips) * step_no
        first_reject = np.where((llr >= log_a).any(axis=1), (llr >= log_a).argmax(axis=1), rounds)
        first_accept = np.where((llr <= log_b).any(axis=1), (llr <= log_b).argmax(axis=1), rounds)
        return int((first_reject < first_accept).sum()), int((first_accept < first_reject).sum())

    rolled_h0, _accepted_h0 = decisions(d0)
    _rolled_h1, accepted_h1 = decisions(d1)
    # the bounds plus three binomial standard deviations of 2000 runs
    assert rolled_h0 / runs <= CFG.alpha / (1 - CFG.beta) + 3 * math.sqrt(0.05 * 0.95 / runs), rolled_h0
    assert accepted_h1 / runs <= CFG.beta / (1 - CFG.alpha) + 3 * math.sqrt(0.1 * 0.9 / runs), accepted_h1


def test_missing_or_failed_probes_never_let_the_canary_through() -> None:
    test = ProbeTest(dataclasses.replace(CFG, require_probes=True))
    assert "none reported yet" in test.holds_promotion()
    test.update(ProbeTally(rounds=0, failed=0, rows=0, disagreements=0, last_ok=False, last_error="no route"))
    assert "no correctness probe round sent yet: no route" == test.holds_promotion()
    test.update(tally(200, 0, rounds=10, failed=1, last_ok=False))
    assert test.holds_promotion().startswith("the latest correctness probe round failed")
    test.update(tally(200, 0, rounds=10, failed=2))
    assert test.holds_promotion().startswith("2 of 10 correctness probe rounds failed")
    test.update(tally(200, 0, rounds=10, failed=1))
    assert test.holds_promotion() is None
    test.update(None)  # a reading without a tally, once the judgement probed
    assert "carried no correctness probe tally" in test.holds_promotion()
    assert ProbeTest(CFG).holds_promotion() is None  # no probes run, none required: not a gate


# -- the sequential judge ---------------------------------------------------------------------------
def _clean(t: float, n: float, probes: ProbeTally | None, ok: bool = True) -> Reading:
    """A healthy reading at an 80 % split: no 5xx anywhere, p99 low, no slow requests."""
    canary = RevisionReading(requests=n, errors=0.0, p99_s=0.05, window_requests=168, window_errors=0.0, slow=0.0)
    stable = RevisionReading(requests=n / 4, errors=0.0, p99_s=0.05, window_requests=42, window_errors=0.0, slow=0.0)
    if not ok:
        empty = RevisionReading(None, None, None, None, None)
        return Reading(t_s=t, canary=empty, stable=empty, source_ok=False, source_error="refused", probes=probes)
    return Reading(t_s=t, canary=canary, stable=stable, source_ok=True, probes=probes)


def test_the_sequential_judge_promotes_only_with_the_probes_accepted() -> None:
    judge = SequentialJudge(CFG)
    plenty = 20_000.0  # far more clean requests than promotion needs
    assert judge.observe(_clean(3, plenty, tally(20, 0))).decision is Decision.CONTINUE
    verdict = judge.observe(_clean(6, plenty, tally(80, 0)))
    assert verdict.decision is Decision.PROMOTE, verdict.reasons
    assert any(r.startswith("correctness: answers as the stable's") for r in verdict.reasons)
    judge.reset()
    assert judge.observe(_clean(3, plenty, tally(80, 0, last_ok=False))).decision is Decision.CONTINUE
    assert judge.observe(_clean(6, plenty, None)).decision is Decision.CONTINUE  # the tally went missing
    final = judge.finish(None)
    assert final.decision is Decision.INCONCLUSIVE and "carried no correctness probe tally" in final.reasons[0]
    # no probes in the judgement at all: judged on errors and latency alone, as before
    assert SequentialJudge(CFG).observe(_clean(3, plenty, None)).decision is Decision.PROMOTE


def test_the_sequential_judge_rolls_back_wrong_answers_even_without_prometheus() -> None:
    judge = SequentialJudge(CFG)
    verdict = judge.observe(_clean(3, 5000.0, tally(40, 4), ok=False))
    assert verdict.decision is Decision.ROLLBACK
    assert verdict.reasons[0].startswith("canary answers differ from the stable's on held-out rows: 4 of 40")
    assert verdict.details["llr_probes"] >= verdict.details["log_rollback_bound"]


# -- the plumbing, through the real router -----------------------------------------------------------
class _Model(BaseHTTPRequestHandler):
    """A V2 model server answering each row's label: the stable the true rule's sign of the first
    feature, the canary the same with every row flipped where ``flip`` says (a stand-in for two
    MLServer revisions; the router in front of it is the real one)."""

    def log_message(self, *_args: object) -> None:
        pass

    def _answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def do_GET(self) -> None:  # the router's health check
        self._answer(200, {})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        first = request["inputs"][0]["data"]
        labels = [int(v > 40.0) for v in first]  # user_age > 40: any fixed rule will do
        if self.server.flip:  # type: ignore[attr-defined]
            labels = [1 - y if i % 2 == 0 else y for i, y in enumerate(labels)]  # half the rows
        self._answer(200, {"model_name": "svc", "outputs": [{"name": "output-1", "datatype": "INT64",
                                                              "shape": [len(labels), 1], "data": labels}]})


@pytest.fixture
def models() -> Iterator[dict[str, int]]:
    servers = {}
    for role, flip in (("stable", False), ("canary", True)):
        server = ThreadingHTTPServer((LOOPBACK, 0), _Model)
        server.flip = flip  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[role] = server
    yield {role: s.server_address[1] for role, s in servers.items()}
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[HAProxyRouter]:
    try:
        find_haproxy()
    except MissingBinary as exc:
        pytest.skip(str(exc))
    registry = ProcessRegistry()
    try:
        yield start_router(registry, tmp_path, free_port(), free_port())
    finally:
        registry.stop_all()


def _wait_answering(routes) -> None:
    """Until the router's health checks have each tag's server up."""
    deadline = time.monotonic() + 10
    for route in routes:
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(route.url.rsplit("/", 1)[0] + "/ready", headers=route.headers, timeout=2).ok:
                    break
            assert time.monotonic() < deadline, f"the {route.role} route ({route.host}) never answered"
            time.sleep(0.1)


def _status(traffic: list[dict]) -> dict:
    return {"status": {"components": {"predictor": {"traffic": traffic}}}}


def test_probes_reach_each_revision_by_its_tag_and_count_what_differs(router: HAProxyRouter, models) -> None:
    """The status as the emulation writes it (KServe's tags, Knative's urls) gives the probes their
    routes; through the router each reaches its own revision (named by the served-by header), and
    the canary's flipped half of the rows is what the tally counts."""
    stable, canary = "svc-predictor-00001", "svc-predictor-00002"
    traffic = with_tag_urls(resolve_traffic(ksvc_traffic(80, stable, tag_routing=True), canary),
                            predictor_route("svc"), "ns", "example.com")
    backend = router.ensure_backend("ns", "svc", tags=("latest", "prev"))
    router.set_servers(backend, {f"{stable}-r0": (LOOPBACK, models["stable"], 50),
                                 f"{canary}-r0": (LOOPBACK, models["canary"], 200)})
    for target in traffic:
        port = models["canary" if target["revisionName"] == canary else "stable"]
        tagged = tag_backend_name("ns", "svc", target["tag"])
        router.set_servers(tagged, {f"{target['revisionName']}-r0": (LOOPBACK, port, 250)})
        router.route_host(target["url"].removeprefix("http://"), tagged)
    stack = SimpleNamespace(inference_base_url=lambda _service: router.url)  # the local profile's answer
    routes = probe_routes(stack, "svc", _status(traffic), canary=canary, stable=stable)
    assert routes["canary"].headers == {"Host": "latest-svc-predictor.ns.example.com"}
    _wait_answering(routes.values())
    runner = ProbeRunner(routes, rows=holdout_rows(200), labels=holdout_labels(200).tolist(), batch=20,
                         interval_s=0.05, run_for_s=30, tolerance=0.05)
    deadline = time.monotonic() + 20
    runner.start()
    try:
        while runner.tally().failed == 0:  # every row is probed once: 10 rounds, then one finds none left
            assert time.monotonic() < deadline, f"the probes sent only {runner.tally()}"
            time.sleep(0.05)
    finally:
        runner.stop()
    result, cost = runner.tally(), runner.cost()
    assert (result.rounds, result.failed, result.rows, result.output) == (11, 1, 200, "label"), (result, cost)
    assert "held-out rows are used up" in result.last_error and not result.last_ok
    assert result.disagreements == 100  # the canary flips every other row
    assert cost["canary"]["served_by"] == {canary: cost["canary"]["requests"]}
    assert cost["stable"]["served_by"] == {stable: cost["stable"]["requests"]}
    assert runner.revision_counts()[canary]["requests"] == cost["canary"]["requests"]


def test_probes_without_a_tagged_route_say_why_and_send_nothing() -> None:
    plain = with_tag_urls(resolve_traffic(ksvc_traffic(80, "r1"), "r2"), "svc-predictor", "ns", "example.com")
    stack = SimpleNamespace(inference_base_url=lambda _service: "http://127.0.0.1:9")
    with pytest.raises(ProbeRouteMissing, match="enable-tag-routing"):
        probe_routes(stack, "svc", _status(plain), canary="r2", stable="r1")
    tagged = with_tag_urls(resolve_traffic(ksvc_traffic(80, "r1", tag_routing=True), "r2"), "svc-predictor", "ns",
                           "example.com")
    with pytest.raises(ProbeRouteMissing, match="names revision r2, not the canary r3"):
        probe_routes(stack, "svc", _status(tagged), canary="r3", stable="r1")
    runner = ProbeRunner(None, rows=holdout_rows(20), labels=None, batch=20, interval_s=1, run_for_s=5,
                         tolerance=0.05, unavailable="probe_route=latest: no tag").start()
    runner.stop()
    assert runner.tally() == ProbeTally(rounds=0, failed=0, rows=0, disagreements=0, last_ok=False,
                                        last_error="probe_route=latest: no tag")
    test = ProbeTest(CFG)
    test.update(runner.tally())
    assert test.holds_promotion() == "no correctness probe round sent yet: probe_route=latest: no tag"
