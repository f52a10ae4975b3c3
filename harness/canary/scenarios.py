"""Canary scenarios under real Locust load, and the runner that plays them against a stack.

A scenario deploys a real canary revision (a registered MLflow model, faulty or not) at
CANARY_PERCENT of a service's traffic, drives Locust through the router, feeds the same Prometheus
readings (and the router's own counts, and the correctness probes' tally: the same labelled
held-out rows sent to both revisions through their tagged routes, probes.py) to every judge, acts
on the acting judge's decision (promote, or roll back: never promote on missing evidence) and
measures a load window afterwards.

The runner executes a ``ScenarioPlan`` (plan.py: which service each scenario runs on, what is made
and deployed ahead of it, what waits for what) with its pools: models are made one at a time,
canaries deployed one at a time (two cold starts at once on two cores slow every judgement), the
beside scenarios judged in a pool of their own, and the dialect counts read in the background.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.canary.observe import RevisionQueries, observe_and_judge, read_revision
from harness.canary.plan import CanaryScenario, During, ScenarioPlan
from harness.canary.probes import ProbeRouteMissing, ProbeRunner, probe_routes
from harness.errors import StackError
from harness.faults.models import log_faulty_model
from harness.judges.base import Decision, Judge, JudgeConfig, Verdict
from harness.judges.external import BUILTIN_JUDGES, GuardedJudge, load_judge
from harness.load import LoadResult, start_load
from harness.local.haproxy import revision_of
from harness.metrics.cadence import CADENCE
from harness.pipeline.dataset import holdout_labels, holdout_rows
from harness.pipeline.params import MODEL_NAME
from harness.profiles.base import Profile
from harness.serving.isvc import storage_uri_of
from harness.serving.rollout import CanaryState, promote, rollback, split_of, start_canary, swap_storage_uri

__all__ = ["ACTING_JUDGE", "CANARY_PERCENT", "CONFIG", "INTERVAL_S", "OBSERVATION_S", "PROBE_BATCH", "PROBE_INTERVAL_S",
           "TARGET_RPS", "CanaryScenario", "ScenarioOutcome", "ScenarioRunner", "ScenarioVoid", "conformance_table",
           "judge_makers", "planned_scenarios", "refused_scenarios"]

# docs/judges.md, "The canary suite's settings": a healthy canary needs ~3500 of its own requests to
# be promoted in 9 runs of 10, so at 70 req/s only 80 % of the traffic for 75 s reaches that (93 %
# promoted in simulation, every 5x canary rolled back); 50 % for 45 s promoted 57.6 %.
CANARY_PERCENT = 80
TARGET_RPS = 70.0  # total, through the router
USERS = 10
INTERVAL_S = CADENCE.window_s  # every judge reads the same windows, >= 2 scrapes long
OBSERVATION_S = 75.0  # the deadline: 25 checks of 3 s
# Correctness probes: PROBE_BATCH held-out rows to each revision every PROBE_INTERVAL_S (2 requests
# a second beside the load's 70). A canary answering like the stable is accepted after ~55 rows, one
# flipping 20 % of its labels rolled back after ~10 (harness.judges.probes.rows_to_decide): both
# inside the first three rounds, so the probes never set the time to decision.
PROBE_BATCH = 20
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 10.0  # per probe request
POST_ROLLBACK_S = 3.0  # ~200 requests at 70 req/s, all of which must avoid a 5xx
FIRST_REQUEST_DEADLINE_S = 30.0  # Locust's start (imports, parquet) until its first request is logged
SCRAPE_SETTLE_S = 2.5 * CADENCE.scrape_s  # two scrapes after the load stopped: its last requests are in
ACTING_JUDGE = "sequential"
# A scenario's fault starts this long into its judgement: the canary is seen serving first (one
# 3 s window), and the fault lands before any judge could decide on the healthy start: at 80 % of
# 70 req/s the sequential judge promoted a still-healthy canary at 9.2 s, just before a kill at 9 s
# took effect (2026-12-02).
FAULT_AFTER_S = 4.0

# The seed's thresholds, its timings scaled for CI; every judge reads the same 3 s windows.
CONFIG = JudgeConfig(observation_s=OBSERVATION_S, interval_s=INTERVAL_S)


def judge_makers(specs: Mapping[str, str], factories: Mapping[str, Callable[[JudgeConfig], Judge]]
                 ) -> dict[str, Callable[[], Judge]]:
    """A fresh judge per scenario for each graded judge (name -> spec): a name a plugin registered
    (pytest_seamcheck_judges) through its factory, guarded like a user's judge (its failures never
    promote); any other spec through load_judge (built-ins, module:callable, cmd:...)."""
    makers: dict[str, Callable[[], Judge]] = {}
    for name, spec in specs.items():
        if spec in factories and spec not in BUILTIN_JUDGES:
            makers[name] = lambda f=factories[spec], s=spec: GuardedJudge(f(CONFIG), s)
        else:
            makers[name] = lambda s=spec: load_judge(s, CONFIG)
    return makers


def planned_scenarios(items: list) -> list[CanaryScenario]:
    """The scenarios the session's selected tests name (``canary_scenario(scenario)`` marks), in the
    order the tests run: what the runner prepares ahead, and never a canary no test asks for."""
    plan: list[CanaryScenario] = []
    for item in items:
        for marker in item.iter_markers("canary_scenario"):
            scenario = marker.args[0]
            if scenario not in plan:
                plan.append(scenario)
    return plan


def refused_scenarios(stack: Profile, scenarios: list[CanaryScenario]) -> dict[str, str]:
    """name -> why, for each scenario whose fault the stack would refuse (a cluster's chaos guard):
    asked when the session plans, so a refused scenario is never deployed, played or judged."""
    refused = {}
    for scenario in scenarios:
        why = stack.fault_refusal(scenario.during.value) if scenario.during else None
        if why:
            refused[scenario.name] = why
    return refused


class ScenarioVoid(StackError):
    """The scenario's fault failed or never acted: a verdict on it would be a verdict without it."""


@dataclass
class ScenarioOutcome:
    scenario: CanaryScenario
    service: str
    canary: str
    stable: str
    verdicts: dict[str, Verdict]  # judge -> its verdict, typed all the way to the test
    decided_at: dict[str, float]
    action: str
    split_after: dict[str, int]
    post_window: dict[str, Any]
    load_totals: dict[str, Any]
    readings: list[dict]
    phases_s: dict[str, float] = field(default_factory=dict)  # where the scenario's wall time went
    probes: dict[str, Any] = field(default_factory=dict)  # the probes' final tally and cost ({} without probes)
    # the dialect's queries over the whole load beside Locust's own counts, per revision: counted in
    # the background (they wait for Prometheus' last scrapes), off the next scenario's path
    counting: Future | None = None
    # The judgement on the epoch clock (the readings' t_s count from judged_from), and the first
    # request the canary answered (the router's served-by header; None where no router names it):
    # what the dashboard's alerts are compared with (scenarios/canary/test_dashboard_alerts.py).
    judged_from: float | None = None
    judged_to: float | None = None
    canary_traffic_from: float | None = None

    @property
    def metric_counts(self) -> dict[str, Any]:
        return self.counting.result(timeout=120) if self.counting is not None else {}


class ScenarioRunner:
    """Plays the session's plan: ``main`` services (two: scenarios alternate), ``beside`` (one, or
    None when the plan has no beside scenario). Call `start` once the services are up; `run`
    returns a scenario's outcome (playing it, or waiting for it when it runs beside); `close`
    stops whatever still runs."""

    def __init__(self, stack: Profile, plan: ScenarioPlan, *, make_copy: Callable[[str], str], train_version: str,
                 judges: Mapping[str, Callable[[], Judge]], workdir: Path,
                 refused: Mapping[str, str] | None = None, alert_log: Any = None) -> None:
        self.stack, self.plan, self.make_copy = stack, plan, make_copy
        # The session's AlertLog (harness/metrics/alertlog.py), polling since before the first
        # judgement: the report's canary timelines list the alerts active meanwhile. None: none.
        self.alert_log = alert_log
        self.refused = dict(refused or {})  # scenario name -> why its fault is refused (it is skipped)
        self.train_version, self.judges, self.workdir = train_version, judges, workdir
        self.outcomes: dict[str, ScenarioOutcome] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canary-model")
        self._deploy_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canary-deploy")
        self._beside_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canary-beside")
        self._count_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canary-counts")
        self._prepared: dict[str, Future] = {}
        self._deploys: dict[str, Future] = {}
        self._beside_runs: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.rows_path = workdir / "rows.parquet"
        holdout_rows(200).to_parquet(self.rows_path)
        # Every row is probed once per scenario: enough for rounds until the deadline and past it.
        probe_rows = PROBE_BATCH * (math.ceil((OBSERVATION_S + 30) / PROBE_INTERVAL_S) + 1)
        self.probe_rows, self.probe_labels = holdout_rows(probe_rows), holdout_labels(probe_rows).tolist()

    # -- preparation, ahead of the scenarios ------------------------------------------------
    def _model_uri(self, fault: Any, tag: str) -> str:
        if fault is None:
            return self.make_copy(tag)
        info = log_faulty_model(self.stack.envs["pipeline"].python, fault,
                                base_model_uri=f"models:/{MODEL_NAME}/{self.train_version}",
                                registered_model_name=f"rc-{tag}", tracking_uri=self.stack.tracking_uri,
                                env=self.stack.client_env())
        return info.artifact_uri

    def _storage_uri(self, scenario: CanaryScenario) -> tuple[str, str | None]:
        """(the canary's storageUri, its baseline's or None)."""
        baseline = (self._model_uri(scenario.baseline, f"baseline-{scenario.name}")
                    if scenario.baseline is not None else None)
        return self._model_uri(scenario.fault, f"canary-{scenario.name}"), baseline

    def _prepare(self, scenario: CanaryScenario) -> Future:
        """The canary's model, made in the background (one at a time): logging a faulty model is an
        MLflow subprocess of several seconds, which the next scenario need not wait for."""
        with self._lock:
            if scenario.name not in self._prepared:
                self._prepared[scenario.name] = self._pool.submit(self._storage_uri, scenario)
            return self._prepared[scenario.name]

    def service_for(self, scenario: CanaryScenario) -> str:
        return self.plan.service_for(scenario)

    def _deploy(self, scenario: CanaryScenario) -> tuple[CanaryState, float]:
        storage_uri, baseline = self._prepare(scenario).result(timeout=self.stack.config.isvc_deadline_s)
        started = time.monotonic()
        client, service, deadline = self.stack.isvc, self.service_for(scenario), self.stack.config.isvc_deadline_s
        if baseline is not None:  # the stable the canary is compared with, rolled out in full first
            swap_storage_uri(client, service, expected_current=storage_uri_of(client.get(service)), new_uri=baseline,
                             deadline_s=deadline)
        state = start_canary(client, service, storage_uri, CANARY_PERCENT, deadline_s=deadline)
        return state, time.monotonic() - started

    def _deploy_ahead(self, scenario: CanaryScenario) -> Future:
        """The scenario's canary revision at CANARY_PERCENT on its service, in the background (one
        at a time: two cold starts at once on two cores slow every judgement's latency)."""
        with self._lock:
            if scenario.name not in self._deploys:
                self._deploys[scenario.name] = self._deploy_pool.submit(self._deploy, scenario)
            return self._deploys[scenario.name]

    def start(self) -> None:
        """Deploy what the plan deploys at once, and start the beside scenarios (each waits for its
        canary): the session's other tests run meanwhile."""
        for scenario in self.plan.deploy_at_start():
            self._deploy_ahead(scenario)
        for scenario in self.plan.beside:
            self._play_beside(scenario)

    def _play_beside(self, scenario: CanaryScenario) -> Future:
        """The beside scenario played in the background (once), its canary deployed ahead."""
        self._deploy_ahead(scenario)  # takes the lock itself: not under it
        with self._lock:
            if scenario.name not in self._beside_runs:
                self._beside_runs[scenario.name] = self._beside_pool.submit(self._play, scenario)
            return self._beside_runs[scenario.name]

    def close(self) -> None:
        """Stop a beside scenario still observing (its load is killed) and wait for the pools."""
        self._stop.set()
        self._deploy_pool.shutdown(wait=False, cancel_futures=True)  # a beside run waiting on one ends
        wait_for(list(self._beside_runs.values()), timeout=OBSERVATION_S + 60)
        # A deploy still under way is not waited for: the stack's teardown, next, ends its wait.
        for pool in (self._beside_pool, self._deploy_pool, self._pool, self._count_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    # -- playing a scenario ---------------------------------------------------------------------
    def run(self, scenario: CanaryScenario) -> ScenarioOutcome:
        if scenario.name in self.outcomes:
            return self.outcomes[scenario.name]
        refused = self.refused.get(scenario.name) or refused_scenarios(self.stack, [scenario]).get(scenario.name)
        if refused:  # the runner serves pytest tests only: the test is skipped, with the guard's reason
            pytest.skip(f"canary scenario {scenario.name}: its fault {scenario.during.value} is refused: {refused}")
        if scenario.beside:  # started by `start` when planned; played beside now otherwise
            running = self._play_beside(scenario)
            return running.result(timeout=2 * self.stack.config.isvc_deadline_s + OBSERVATION_S + 120)
        if self.plan.waits_for_beside(scenario):  # no beside judgement may read a stopped Prometheus
            wait_for(list(self._beside_runs.values()), timeout=2 * self.stack.config.isvc_deadline_s + OBSERVATION_S)
        return self._play(scenario)

    def _probes(self, scenario: CanaryScenario, service: str, state: CanaryState) -> ProbeRunner | None:
        """The scenario's correctness probes, started (None: it runs none). Routes the status does
        not give leave a runner that sends nothing and says why: the judgement then cannot promote."""
        if not scenario.probes:
            return None
        routes, why = None, ""
        try:
            routes = probe_routes(self.stack, service, self.stack.isvc.get(service), canary=state.canary,
                                  stable=state.stable)
        except ProbeRouteMissing as exc:
            why = str(exc)
        return ProbeRunner(routes, rows=self.probe_rows, labels=self.probe_labels, batch=PROBE_BATCH,
                           interval_s=PROBE_INTERVAL_S, run_for_s=OBSERVATION_S + 30, tolerance=CONFIG.probe_tolerance,
                           timeout_s=PROBE_TIMEOUT_S, slow_s=CONFIG.p99_threshold_s, unavailable=why).start()

    def _play(self, scenario: CanaryScenario) -> ScenarioOutcome:
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
        deploying = self._deploy_ahead(scenario)  # already under way unless nothing started it
        following = self.plan.following(scenario)
        if following is not None:
            self._prepare(following)  # its model, while this scenario runs
        users = USERS if scenario.rps >= USERS else 1
        # Locust starts (a few seconds of imports) while the canary revision comes up, if it is not
        # up yet; until the split is set its requests go to the stable, which no judge counts.
        load = start_load(stack.inference_base_url(service), service, self.rows_path, users=users,
                          spawn_rate=users, duration_s=OBSERVATION_S + deadline + 60, target_rps=scenario.rps,
                          out_dir=self.workdir / scenario.name)
        stop_fault = threading.Event()
        fault_thread = None
        prober: ProbeRunner | None = None
        fault = FaultLog(scenario.during)
        try:
            state, deploy_s = deploying.result(timeout=2 * deadline)
            lap("deploy-wait")
            phases["deploy-took"] = round(deploy_s, 1)
            ahead = self.plan.deploy_during(scenario)
            if ahead is not None:
                self._deploy_ahead(ahead)  # on the other service, during this judgement
            load.wait_for_first_request(FIRST_REQUEST_DEADLINE_S)
            lap("first-request")
            judges = {name: make() for name, make in self.judges.items()}
            prober = self._probes(scenario, service, state)
            if scenario.during:
                fault_thread = threading.Thread(target=fault.run, args=(self._fault, service, state.canary,
                                                                        stop_fault), daemon=True)
                fault_thread.start()
            judgement = observe_and_judge(
                judges, prometheus_url=stack.prometheus_url, dialect=stack.metric_dialect,
                canary=RevisionQueries(service, state.canary), stable=RevisionQueries(service, state.stable),
                interval_s=INTERVAL_S, deadline_s=OBSERVATION_S, stop=self._stop,
                latency_limit_s=CONFIG.p99_threshold_s, router_counts=stack.router_counts(service),
                probes=prober.tally if prober is not None else None)
        except BaseException:
            load.kill()
            raise
        finally:
            if prober is not None:
                prober.stop(timeout_s=PROBE_TIMEOUT_S + 5)
            stop_fault.set()
            if fault_thread is not None:
                fault_thread.join(timeout=30)
            if scenario.during is During.STOP_PROMETHEUS:
                stack.fault_restore_prometheus()
        lap("judgement")
        if scenario.during and fault.void_reason():
            load.kill()
            rollback(client, service, state, deadline_s=deadline)  # the service back to its stable
            raise ScenarioVoid(f"canary scenario {scenario.name}: {fault.void_reason()}; no verdict is taken")
        acting = judgement.records[ACTING_JUDGE].verdict
        try:
            if acting is not None and acting.decision is Decision.PROMOTE:
                isvc, action = promote(client, service, state, deadline_s=deadline), "promote"
            else:  # rollback, inconclusive, or no verdict: never promote on missing evidence
                isvc, action = rollback(client, service, state, deadline_s=deadline), "rollback"
            lap(action)
            settled = time.time() + 1.0  # the router's weights follow the status within a reconcile
            time.sleep(1.0 + POST_ROLLBACK_S)
        except BaseException:
            load.kill()
            raise
        result = load.stop()
        lap("post-window")
        probe_counts = prober.revision_counts() if prober is not None else {}
        counting = self._count_pool.submit(self._metric_counts, service, (state.canary, state.stable), result,
                                           probe_counts)
        post = result.since(settled)
        canary_first = min((e.t for e in result.events if e.served_by and revision_of(e.served_by) == state.canary),
                           default=None)
        outcome = ScenarioOutcome(
            scenario=scenario, service=service, canary=state.canary, stable=state.stable,
            verdicts={n: r.verdict for n, r in judgement.records.items() if r.verdict is not None},
            decided_at={n: round(r.decided_at_s or 0.0, 1) for n, r in judgement.records.items()},
            action=action, split_after=split_of(isvc),
            post_window={"requests": post.requests, "failures_5xx": post.failures_5xx,
                         "failures_other": post.failures_other,
                         "served_by": {k: v.requests for k, v in result.by_served_by.items()}},
            load_totals=result.totals.as_dict(),
            readings=[{"t_s": round(r.t_s, 1), "source_ok": r.source_ok, "canary": r.canary.to_dict(),
                       "stable": r.stable.to_dict(), **({"routed": r.to_dict()["routed"]} if r.routed else {})}
                      for r in judgement.readings],
            phases_s=phases, counting=counting, judged_from=judgement.started_at,
            judged_to=judgement.started_at + judgement.seconds, canary_traffic_from=canary_first,
            probes={"tally": prober.tally().to_dict(), "cost": prober.cost()} if prober is not None else {})
        self.outcomes[scenario.name] = outcome
        return outcome

    def _metric_counts(self, service: str, revisions: tuple[str, ...], result: LoadResult,
                       probe_counts: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
        """The dialect's requests, 5xx and slow-request queries, over a window holding the whole
        load and nothing of the service's earlier traffic, beside what Locust itself recorded per
        revision (the router's served-by header) and what the correctness probes sent each one
        (their own requests, counted by the same metrics): what the judges read, checked against
        the load."""
        time.sleep(SCRAPE_SETTLE_S)
        limit_s = CONFIG.p99_threshold_s
        window_s = math.ceil(time.time() - result.t0 + 3)  # from Locust's start, 3 s before its first request
        counted: dict[str, Any] = {"window": f"{window_s}s", "latency_limit_s": limit_s, "revisions": {}}
        for revision in revisions:
            events = [e for e in result.events if e.served_by and revision_of(e.served_by) == revision]
            # the judges' own reader, its since-start counts over the whole load
            read = read_revision(self.stack.prometheus_url, self.stack.metric_dialect,
                                 RevisionQueries(service, revision), elapsed_s=window_s, window_s=INTERVAL_S,
                                 latency_limit_s=limit_s)
            prom = {"requests": read.requests, "errors": read.errors, "slow": read.slow}
            errors, slow = [e for e in events if e.is_5xx], [e for e in events if e.ms > limit_s * 1000]
            counted["revisions"][revision] = {
                "prometheus": prom,
                "probes": dict(probe_counts.get(revision) or {"requests": 0, "errors": 0, "slow": 0}),
                "locust": {"requests": len(events), "errors": len(errors), "slow": len(slow),
                           # the most answers in one second: increase() extrapolates (or misses) up to
                           # about one scrape interval of traffic at each end of a series in its window
                           "peak_per_s": _peak_per_second(events), "errors_peak_per_s": _peak_per_second(errors),
                           "slow_peak_per_s": _peak_per_second(slow)}}
        return counted

    def _fault(self, kind: During, service: str, canary: str, stop: threading.Event, acted: Callable[[str], None]
               ) -> None:
        if stop.wait(FAULT_AFTER_S):  # let the judges see the canary serve first
            return
        if kind is During.STOP_PROMETHEUS:
            self.stack.fault_stop_prometheus()
            acted("Prometheus stopped")
            return
        while not stop.is_set():  # crash loop: every time the replica comes back, it dies again
            killed = self.stack.fault_kill_revision(service, canary)
            if killed:
                acted(f"killed {killed}")
            stop.wait(0.5)


class FaultLog:
    """What a scenario's fault did, from its own thread: the acts, or the error that ended it.

    The fault runs beside the judgement; an exception there (a refusal, an API error) would die
    with the thread and leave the scenario judged as if it were healthy. Recorded here instead,
    and a scenario whose fault failed, or never acted, is void."""

    def __init__(self, kind: During) -> None:
        self.kind = kind
        self.acts: list[tuple[float, str]] = []
        self.error: BaseException | None = None
        self._t0 = time.monotonic()

    def run(self, fault: Callable[..., None], *args: Any) -> None:
        try:
            fault(self.kind, *args, self._acted)
        except BaseException as exc:  # noqa: BLE001 - kept for the scenario, which is then void
            self.error = exc

    def _acted(self, what: str) -> None:
        self.acts.append((round(time.monotonic() - self._t0, 1), what))

    def void_reason(self) -> str | None:
        if self.error is not None:
            return f"its fault {self.kind.value} failed: {type(self.error).__name__}: {self.error}"
        if not self.acts:
            return (f"its fault {self.kind.value} never acted (the judgement ended before the fault's start, "
                    f"{FAULT_AFTER_S:g} s in, or it found nothing to act on)")
        return None


def _peak_per_second(events: list) -> int:
    per_second: dict[int, int] = {}
    for event in events:
        per_second[int(event.end)] = per_second.get(int(event.end), 0) + 1
    return max(per_second.values(), default=0)


def conformance_table(outcomes: dict[str, ScenarioOutcome]) -> str:
    lines = ["# Judge conformance", "",
             (f"Canary at {CANARY_PERCENT}% of ~{TARGET_RPS:.0f} req/s (Locust), checks every {INTERVAL_S:.0f} s, "
              f"deadline {OBSERVATION_S:.0f} s; correctness probes: {PROBE_BATCH} held-out rows to each revision "
              f"every {PROBE_INTERVAL_S:g} s through its tagged route; the rollout followed the `{ACTING_JUDGE}` "
              "judge, every other judge is graded only."), "",
             "| scenario | judge | decision | time to decision (s) | right? | first reason |", "|---|---|---|---|---|---|"]
    for name, outcome in outcomes.items():
        for judge, verdict in outcome.verdicts.items():
            right = verdict.decision in outcome.scenario.expect
            lines.append(f"| {name} | {judge} | {verdict.decision.value} | {outcome.decided_at[judge]} | "
                         f"{'right' if right else 'WRONG'} | {(verdict.reasons or [''])[0][:160]} |")
    lines += ["", ("Wall time per scenario, seconds (deploy-wait: waiting for the canary revision, ready at its "
                  "percent, which came up while the scenario before was judged or the split test ran; "
                  "deploy-took: how long that took; first-request: Locust's start). On its service:"), ""]
    for name, outcome in outcomes.items():
        where = f"{outcome.service}, beside the others" if outcome.scenario.beside else outcome.service
        line = f"- {name} ({where}): " + ", ".join(f"{k} {v:g}" for k, v in outcome.phases_s.items())
        lines.append(line + (f"; {_probe_cost_words(outcome)}" if outcome.probes else ""))
    return "\n".join(lines) + "\n"


def _probe_cost_words(outcome: ScenarioOutcome) -> str:
    """The probes on the scenario's timeline: what they sent and found, and what that cost."""
    tally, cost = outcome.probes["tally"], outcome.probes["cost"]
    load = outcome.load_totals.get("requests") or 0
    share = f", {100 * cost['requests'] / (cost['requests'] + load):.1f}% of the requests" if load else ""
    return (f"probes {cost['rounds']} rounds ({cost['failed']} failed), {tally['rows']} rows, {tally['disagreements']} "
            f"answered otherwise, {cost['requests']} requests{share}, first round done {cost['first_round_s']} s in, "
            f"answers p50 canary {cost['canary']['ms_p50']} ms / stable {cost['stable']['ms_p50']} ms")
