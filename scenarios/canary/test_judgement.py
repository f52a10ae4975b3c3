"""Canary judgement under real Locust load, for every shipped judge (and a user's, with --judge).

Each scenario deploys a real canary revision (a registered MLflow model, faulty or not) at
CANARY_PERCENT of the traffic, drives Locust through the router, and feeds the same Prometheus
readings to every judge. The rollout follows the acting judge (the sequential one); every judge is
graded on its own decision. After every rollback: 100% of traffic on stable, and a load window
afterwards with zero 5xx. The judge-conformance table goes into the run's report.

Scenarios alternate between two services: while one scenario is judged on one, the next
scenario's model is made and its canary revision comes up on the other, so a scenario's wall
time is mostly its judgement.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.canary import RevisionQueries, observe_and_judge
from harness.faults.models import FaultSpec, log_faulty_model
from harness.judges.base import Decision, JudgeConfig
from harness.judges.external import load_judge
from harness.load import start_load
from harness.pipeline.dataset import holdout_rows
from harness.traffic.rollout import CanaryState, promote, rollback, split_of, start_canary

pytestmark = [pytest.mark.canary, pytest.mark.stack]

CANARY_PERCENT = 50
TARGET_RPS = 70.0  # total, through the router: a clean canary at 50% needs ~1100 requests to promote
USERS = 10
INTERVAL_S = 3.0
OBSERVATION_S = 45.0  # the seed's 15 min / 60 s, scaled to 15 checks of 3 s
POST_ROLLBACK_S = 3.0  # ~200 requests at 70 req/s, all of which must avoid a 5xx
FIRST_REQUEST_DEADLINE_S = 30.0  # Locust's start (imports, parquet) until its first request is logged
ACTING_JUDGE = "sequential"

# The seed's thresholds, its timings scaled for CI; both judges read the same 3 s windows.
CONFIG = JudgeConfig(observation_s=OBSERVATION_S, interval_s=INTERVAL_S)

NOT_PROMOTE = {Decision.ROLLBACK, Decision.INCONCLUSIVE}


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: FaultSpec | None  # None: a healthy new model version
    expect: frozenset  # right decisions
    rps: float = TARGET_RPS
    during: str = ""  # "" | "stop-prometheus" | "kill-canary"
    # judge -> why that judge is known to get this scenario wrong (strict xfail)
    known_wrong: dict = field(default_factory=dict)
    nightly: bool = False  # marked slow: `pytest -m canary` runs it, CI (not slow) does not


def _marks(scenario: Scenario) -> list:
    return [pytest.mark.slow] if scenario.nightly else []


# Each scenario costs about a minute of judgement; CI (under 25 minutes on two cores) runs the
# promotion, the error rollback and the dead canary (the seed's blind spot); the latency, traffic
# and Prometheus scenarios run nightly and in every `pytest -m canary`. errors-10pct is judged in
# seconds, so it goes last: the canary after it would not have finished deploying.
SCENARIOS = [
    Scenario("healthy", None, frozenset({Decision.PROMOTE})),
    Scenario("tail-latency", FaultSpec.tail_latency(0.05, 1.0), frozenset({Decision.ROLLBACK}), nightly=True),
    Scenario("too-little-traffic", None, frozenset({Decision.INCONCLUSIVE}), rps=1.0, nightly=True,
             known_wrong={"seed": "the seed keeps insufficient-traffic checks in the denominator, so a canary "
                                  "nobody measured is rolled back instead of reported inconclusive"}),
    Scenario("prometheus-stopped", None, frozenset(NOT_PROMOTE), during="stop-prometheus", nightly=True),
    Scenario("canary-killed", None, frozenset({Decision.ROLLBACK}), during="kill-canary",
             known_wrong={"seed": "the seed reads a query with no data as 0 and pools revisions: a dead canary "
                                  "looks healthy"}),
    Scenario("errors-10pct", FaultSpec.error(0.10), frozenset({Decision.ROLLBACK})),
]


@dataclass
class Outcome:
    scenario: Scenario
    canary: str
    stable: str
    verdicts: dict[str, Any]
    decided_at: dict[str, float]
    action: str
    split_after: dict[str, int]
    post_window: dict[str, Any]
    load_totals: dict[str, Any]
    readings: list[dict]
    phases_s: dict[str, float] = field(default_factory=dict)  # where the scenario's wall time went


class ScenarioRunner:
    def __init__(self, stack, services: list[str], make_copy: Callable[[str], str], train_version: str,
                 judges: dict[str, str], workdir: Path, plan: list[Scenario]) -> None:
        self.stack, self.services, self.make_copy = stack, services, make_copy
        self.train_version, self.judge_specs, self.workdir = train_version, judges, workdir
        self.plan = plan or list(SCENARIOS)  # the scenarios this session runs, in order
        self.outcomes: dict[str, Outcome] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canary-model")
        self._deploy_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canary-deploy")
        self._prepared: dict[str, Future] = {}
        self._deploys: dict[str, Future] = {}
        self._lock = threading.Lock()
        rows = holdout_rows(200)
        self.rows_path = workdir / "rows.parquet"
        rows.to_parquet(self.rows_path)

    def _storage_uri(self, scenario: Scenario) -> str:
        if scenario.fault is None:
            return self.make_copy(f"canary-{scenario.name}")
        info = log_faulty_model(self.stack.envs["pipeline"].python, scenario.fault,
                                base_model_uri=f"models:/recommendation-classifier/{self.train_version}",
                                registered_model_name=f"rc-canary-{scenario.name}",
                                tracking_uri=self.stack.tracking_uri, env=self.stack.client_env())
        return info.artifact_uri

    def _prepare(self, scenario: Scenario) -> Future:
        """The canary's model, made in the background (one at a time): logging a faulty model is an
        MLflow subprocess of several seconds, which the next scenario need not wait for."""
        with self._lock:
            if scenario.name not in self._prepared:
                self._prepared[scenario.name] = self._pool.submit(self._storage_uri, scenario)
            return self._prepared[scenario.name]

    def service_for(self, scenario: Scenario) -> str:
        order = self.plan if scenario in self.plan else SCENARIOS
        return self.services[order.index(scenario) % len(self.services)]

    def _following(self, scenario: Scenario) -> Scenario | None:
        if scenario not in self.plan:
            return None
        at = self.plan.index(scenario) + 1
        return self.plan[at] if at < len(self.plan) else None

    def _deploy(self, scenario: Scenario) -> tuple[CanaryState, float]:
        storage_uri = self._prepare(scenario).result(timeout=self.stack.config.isvc_deadline_s)
        started = time.monotonic()
        state = start_canary(self.stack.isvc, self.service_for(scenario), storage_uri, CANARY_PERCENT,
                             deadline_s=self.stack.config.isvc_deadline_s)
        return state, time.monotonic() - started

    def _deploy_ahead(self, scenario: Scenario) -> Future:
        """The scenario's canary revision at CANARY_PERCENT on its service, in the background (one
        at a time): started while the scenario before it, on the other service, is judged."""
        with self._lock:
            if scenario.name not in self._deploys:
                self._deploys[scenario.name] = self._deploy_pool.submit(self._deploy, scenario)
            return self._deploys[scenario.name]

    def close(self) -> None:
        self._deploy_pool.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run(self, scenario: Scenario) -> Outcome:
        if scenario.name in self.outcomes:
            return self.outcomes[scenario.name]
        stack, client = self.stack, self.stack.isvc
        deadline = stack.config.isvc_deadline_s
        phases: dict[str, float] = {}
        clock = time.monotonic()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.monotonic()
            phases[name] = round(now - clock, 1)
            clock = now

        service = self.service_for(scenario)
        deploying = self._deploy_ahead(scenario)  # already under way unless this is the first
        following = self._following(scenario)
        if following is not None:
            self._prepare(following)  # its model, while this scenario runs
        users = USERS if scenario.rps >= USERS else 1
        # Locust starts (a few seconds of imports) while the canary revision comes up, if it is not
        # up yet; until the split is set its requests go to the stable, which no judge counts.
        load = start_load(stack.inference_base_url(service), service, self.rows_path, users=users,
                          spawn_rate=users, duration_s=OBSERVATION_S + deadline + 60, target_rps=scenario.rps,
                          out_dir=self.workdir / scenario.name)
        stop_event = threading.Event()
        fault_thread = None
        try:
            state, deploy_s = deploying.result(timeout=2 * deadline)
            lap("deploy-wait")
            phases["deploy-took"] = round(deploy_s, 1)
            if following is not None and self.service_for(following) != service:
                self._deploy_ahead(following)  # on the other service, during this judgement
            load.wait_for_first_request(FIRST_REQUEST_DEADLINE_S)
            lap("first-request")
            judges = {name: load_judge(spec, CONFIG) for name, spec in self.judge_specs.items()}
            if scenario.during:
                fault_thread = threading.Thread(target=self._fault, args=(scenario.during, service, state.canary, stop_event),
                                                daemon=True)
                fault_thread.start()
            judgement = observe_and_judge(
                judges, prometheus_url=stack.prometheus_url, dialect=stack.metric_dialect,
                canary=RevisionQueries(service, state.canary), stable=RevisionQueries(service, state.stable),
                interval_s=INTERVAL_S, deadline_s=OBSERVATION_S)
        except BaseException:
            load.kill()
            raise
        finally:
            stop_event.set()
            if fault_thread is not None:
                fault_thread.join(timeout=30)
            if scenario.during == "stop-prometheus":
                stack.fault_restore_prometheus()
        lap("judgement")
        acting = judgement.records[ACTING_JUDGE].verdict
        if acting is not None and acting.decision is Decision.PROMOTE:
            isvc, action = promote(client, service, state, deadline_s=deadline), "promote"
        else:  # rollback, inconclusive, or no verdict: never promote on missing evidence
            isvc, action = rollback(client, service, state, deadline_s=deadline), "rollback"
        lap(action)
        settled = time.time() + 1.0  # the router's weights follow the status within a reconcile
        time.sleep(1.0 + POST_ROLLBACK_S)
        result = load.stop()
        lap("post-window")
        post = result.since(settled)
        outcome = Outcome(
            scenario=scenario, canary=state.canary, stable=state.stable,
            verdicts={n: r.verdict.to_dict() for n, r in judgement.records.items()},
            decided_at={n: round(r.decided_at_s or 0.0, 1) for n, r in judgement.records.items()},
            action=action, split_after=split_of(isvc),
            post_window={"requests": post.requests, "failures_5xx": post.failures_5xx,
                         "failures_other": post.failures_other,
                         "served_by": {k: v.requests for k, v in result.by_served_by.items()}},
            load_totals=result.totals.as_dict(),
            readings=[{"t_s": round(r.t_s, 1), "source_ok": r.source_ok, "canary": r.canary.to_dict(),
                       "stable": r.stable.to_dict()} for r in judgement.readings],
            phases_s=phases)
        self.outcomes[scenario.name] = outcome
        return outcome

    def _fault(self, kind: str, service: str, canary: str, stop: threading.Event) -> None:
        if stop.wait(9.0):  # let the judges see the canary serve first
            return
        if kind == "stop-prometheus":
            self.stack.fault_stop_prometheus()
            return
        while not stop.is_set():  # crash loop: every time the replica comes back, it dies again
            self.stack.fault_kill_revision(service, canary)
            stop.wait(0.5)


@pytest.fixture(scope="module")
def judge_specs(pytestconfig) -> dict[str, str]:
    specs = {"seed": "seed", "sequential": "sequential"}
    user = pytestconfig.getoption("seamcheck_judge", default=None)
    if user:
        specs["user"] = user
    return specs


@pytest.fixture(scope="module")
def runner(request, stack, canary_services, model_copies, pipeline_run, judge_specs, tmp_path_factory, run_report):
    train = pipeline_run.task("train-model")
    version = str(int(float(train["parameters"].get("registered_model_version")
                            or train["artifacts"]["model_output"]["metadata"]["registered_model_version"])))
    runner = ScenarioRunner(stack, canary_services["judgement"], model_copies, version, judge_specs,
                            tmp_path_factory.mktemp("canary"), plan=_session_plan(request))
    try:
        yield runner
    finally:
        runner.close()
        for name in canary_services["judgement"]:  # this module's; the split test has its own
            stack.isvc.delete(name)
    if run_report is not None and runner.outcomes:
        run_report.add_artifact("judge-conformance.md", conformance_table(runner.outcomes))


def _session_plan(request) -> list[Scenario]:
    """The scenarios this session's selected tests use, in the order they run (what to prepare
    ahead: never a canary for a scenario no test asks for)."""
    plan: list[Scenario] = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if item.module is not request.module:
            continue
        scenario = callspec.params.get("scenario") if callspec is not None else None
        if scenario is None and item.originalname == "test_healthy_canary_is_promoted":
            scenario = SCENARIOS[0]
        if scenario is not None and scenario not in plan:
            plan.append(scenario)
    return plan


def conformance_table(outcomes: dict[str, Outcome]) -> str:
    lines = ["# Judge conformance", "",
             (f"Canary at {CANARY_PERCENT}% of ~{TARGET_RPS:.0f} req/s (Locust), checks every {INTERVAL_S:.0f} s, "
             f"deadline {OBSERVATION_S:.0f} s; the rollout followed the `{ACTING_JUDGE}` judge."), "",
             "| scenario | judge | decision | time to decision (s) | right? | first reason |", "|---|---|---|---|---|---|"]
    for name, outcome in outcomes.items():
        for judge, verdict in outcome.verdicts.items():
            right = Decision(verdict["decision"]) in outcome.scenario.expect
            lines.append(f"| {name} | {judge} | {verdict['decision']} | {outcome.decided_at[judge]} | "
                         f"{'right' if right else 'WRONG'} | {(verdict['reasons'] or [''])[0][:160]} |")
    lines += ["", ("Wall time per scenario, seconds (deploy-wait: waiting for the canary revision, ready at its "
                  "percent, which came up on the other service while the scenario before was judged; "
                  "deploy-took: how long that took; first-request: Locust's start):"), ""]
    for name, outcome in outcomes.items():
        lines.append(f"- {name}: " + ", ".join(f"{k} {v:g}" for k, v in outcome.phases_s.items()))
    return "\n".join(lines) + "\n"


def _judge_cases():
    for scenario in SCENARIOS:
        for judge in ("seed", "sequential"):
            marks = _marks(scenario)
            if judge in scenario.known_wrong:
                marks.append(pytest.mark.xfail(strict=True, reason=scenario.known_wrong[judge]))
            yield pytest.param(scenario, judge, id=f"{scenario.name}-{judge}", marks=marks)


@pytest.mark.parametrize(("scenario", "judge"), list(_judge_cases()))
def test_judge_decides_right(runner, scenario: Scenario, judge: str, seam) -> None:
    outcome = runner.run(scenario)
    verdict = outcome.verdicts[judge]
    with seam.check(f"judge:{judge}:{scenario.name}",
                    f"the {judge} judge decides {'/'.join(sorted(d.value for d in scenario.expect))}",
                    known_wrong=scenario.known_wrong.get(judge, "")) as ev:
        ev.update(decision=verdict["decision"], seconds_to_decision=outcome.decided_at[judge],
                  reasons=verdict["reasons"][:3], canary=outcome.canary, stable=outcome.stable,
                  load=outcome.load_totals, readings_tail=outcome.readings[-3:])
        assert Decision(verdict["decision"]) in scenario.expect, verdict["reasons"][:2]


@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name, marks=_marks(s))
                                      for s in SCENARIOS if s.name != "healthy"])
def test_rollback_restores_stable(runner, scenario: Scenario, seam) -> None:
    outcome = runner.run(scenario)
    with seam.check(f"rollback:{scenario.name}", "after the rollback: 100% of traffic on stable and a load "
                                                 "window with zero 5xx") as ev:
        ev.update(action=outcome.action, split_after=outcome.split_after, post_window=outcome.post_window)
        assert outcome.action == "rollback"
        assert outcome.split_after.get(outcome.stable) == 100, outcome.split_after
        assert outcome.post_window["requests"] > 0, "no load measured after the rollback"
        assert outcome.post_window["failures_5xx"] == 0, outcome.post_window


def test_healthy_canary_is_promoted(runner, seam) -> None:
    outcome = runner.run(SCENARIOS[0])
    with seam.check("promote:healthy", "the acting judge promotes a healthy canary: 100% on it") as ev:
        ev.update(action=outcome.action, split_after=outcome.split_after, post_window=outcome.post_window)
        assert outcome.action == "promote"
        assert outcome.split_after == {outcome.canary: 100}
        assert outcome.post_window["failures_5xx"] == 0
