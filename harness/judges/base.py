"""What every canary judge sees and says: readings in, verdicts out.

A judge is fed one `Reading` per check interval (both revisions, read apart) and answers with a
`Verdict`; CONTINUE means "not decided, keep observing". At the overall deadline the driver calls
`finish`, which must decide (never CONTINUE). `None` in a reading always means "the query returned
no series": judges, not the reader, decide what missing data means, so the policy is testable.
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Decision", "Judge", "JudgeConfig", "ProbeTally", "Reading", "RevisionReading", "RoutedWindow", "Verdict"]


@dataclass(frozen=True)
class RevisionReading:
    requests: float | None  # cumulative requests since judgement start; None = no series
    errors: float | None  # cumulative 5xx since judgement start
    p99_s: float | None  # p99 latency over the last window, seconds
    window_requests: float | None  # requests in the last window
    window_errors: float | None  # 5xx in the last window
    # cumulative requests slower than the latency limit (p99_threshold_s) since judgement start,
    # from the latency histogram's bucket at the limit; None = no such series (no bucket there)
    slow: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RevisionReading:
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls)})


NO_DATA = RevisionReading(None, None, None, None, None)


@dataclass(frozen=True)
class RoutedWindow:
    """What the router itself counted for one revision in the last window, where the profile has a
    router that counts (the local HAProxy): requests it sent to the revision's servers, and the 2xx
    answers it got back. Independent of Prometheus, so it tells "no metrics for the canary" (the
    router sent it traffic and got answers) from "the canary stopped serving" (it got none)."""

    sent: float
    ok: float


@dataclass(frozen=True)
class ProbeTally:
    """What the correctness probes found since the judgement began (harness/canary/probes.py):
    the same labelled held-out rows sent to the canary and to the stable, each through its own
    tagged route. Counts are cumulative; a judge reads the latest tally."""

    rounds: int  # probe rounds sent: one request to each revision with the same rows
    failed: int  # rounds without a comparable answer from both (HTTP error, timeout, malformed answer)
    rows: int  # rows both revisions answered, compared
    disagreements: int  # of those, rows whose answers differ (numeric answers: by more than `tolerance`)
    last_ok: bool  # the latest round was answered by both
    output: str = ""  # what the stable answers: "label" (compared exactly) or "value" (within tolerance)
    tolerance: float = 0.0  # |canary - stable| above it disagrees (numeric answers only)
    canary_correct: int | None = None  # rows whose canary answer matches the held-out label (evidence only)
    stable_correct: int | None = None
    max_abs_diff: float | None = None  # numeric answers: the largest |canary - stable| seen
    last_error: str = ""  # why the latest failed round failed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeTally:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True)
class Reading:
    t_s: float  # seconds since judgement start
    canary: RevisionReading
    stable: RevisionReading
    source_ok: bool  # False: Prometheus could not be queried at all
    source_error: str = ""
    # What the seed's service-wide queries return (both revisions pooled, as its PromQL selects only
    # by service name). Optional: only the seed judge reads it, and it derives the pool from the two
    # revisions when absent. The simulator fills it exactly (pooled histogram buckets).
    combined: RevisionReading | None = None
    # The router's own counts for the window ("canary", "stable"); None where the profile has none.
    routed: dict[str, RoutedWindow] | None = None
    # The correctness probes' tally; None where the judgement runs no probes.
    probes: ProbeTally | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t_s": self.t_s, "canary": self.canary.to_dict(), "stable": self.stable.to_dict(),
                               "source_ok": self.source_ok, "source_error": self.source_error}
        if self.combined is not None:
            out["combined"] = self.combined.to_dict()
        if self.routed is not None:
            out["routed"] = {k: dataclasses.asdict(v) for k, v in self.routed.items()}
        if self.probes is not None:
            out["probes"] = self.probes.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reading:
        combined = data.get("combined")
        routed = data.get("routed")
        probes = data.get("probes")
        return cls(t_s=float(data["t_s"]), canary=RevisionReading.from_dict(data.get("canary") or {}),
                   stable=RevisionReading.from_dict(data.get("stable") or {}),
                   source_ok=bool(data.get("source_ok", False)), source_error=str(data.get("source_error", "")),
                   combined=RevisionReading.from_dict(combined) if combined else None,
                   routed={k: RoutedWindow(float(v["sent"]), float(v["ok"])) for k, v in routed.items()}
                   if routed else None, probes=ProbeTally.from_dict(probes) if probes else None)


class Decision(enum.Enum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    INCONCLUSIVE = "inconclusive"
    CONTINUE = "continue"  # not decided yet: keep observing


@dataclass
class Verdict:
    decision: Decision
    reasons: list[str]
    at_s: float
    observations_used: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.decision is not Decision.CONTINUE

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision.value, "reasons": list(self.reasons), "at_s": self.at_s,
                "observations_used": list(self.observations_used), "details": dict(self.details)}


@runtime_checkable
class Judge(Protocol):
    name: str

    def reset(self) -> None: ...

    def observe(self, reading: Reading) -> Verdict: ...

    def finish(self, reading: Reading | None) -> Verdict: ...


@dataclass(frozen=True)
class JudgeConfig:
    """The seed's CanaryConfig values (seconds instead of minutes/ms), plus what the sequential judge
    needs. `scaled` shrinks the clock for CI without touching thresholds or error bounds."""

    observation_s: float = 900.0  # seed: observation_minutes = 15
    interval_s: float = 60.0  # seed: check_interval_seconds = 60
    error_threshold: float = 0.02  # seed: 2 %
    p99_threshold_s: float = 0.5  # seed: 500 ms
    min_requests: int = 100  # seed: min_request_count
    immediate_rollback_factor: float = 3.0  # seed: error rate > 3x threshold rolls back at once
    pass_ratio: float = 0.9  # seed: promote if >= 90 % of checks passed
    relative_factor: float = 2.0  # dashboard rule: canary error rate > 2x stable is bad
    # A canary this many times worse than the stable is "severe": the sequential judge's relative
    # rollback statistic mixes the SPRTs for relative_factor and severe_factor (half weight each), so
    # a clearly bad canary is caught at close to the speed of an SPRT designed for it, while the
    # relative_factor SPRT alone still decides promotion (beta holds at relative_factor).
    severe_factor: float = 5.0
    alpha: float = 0.05  # sequential: bound on rolling back a canary as good as stable
    beta: float = 0.10  # sequential: bound on promoting a canary at the "bad" boundary
    # Below this error rate relative comparisons are noise nobody acts on: the relative rule compares
    # the canary with max(stable, floor). Default = threshold / (2 * relative_factor), so a clean
    # stable still lets a canary up to 1 % through while 2 % stays the absolute limit.
    error_floor: float = 0.005
    latency_windows: int = 3  # consecutive breaching windows that roll back on latency
    min_window_requests: int = 50  # fewer requests in a window: its p99 is mostly the max, not judged
    latency_floor_s: float = 0.05  # relative latency rule compares with max(stable p99, floor)
    require_latency: bool = True  # False: sources without a latency histogram may still promote
    external_timeout_s: float = 10.0  # per "cmd:" judge call (Flagger's webhook default)
    # What the sequential judge says at the deadline when no test has decided: "inconclusive" (the
    # evidence showed the canary neither good nor bad; the rollout policy maps it to hold, extend or
    # roll back, harness.judges.policy) or "rollback" (the judge's rule before 2026-12-01).
    deadline_decision: str = "inconclusive"
    # Correctness probes (readings that carry a ProbeTally): a one-sample SPRT on the rate of held-out
    # rows the canary answers differently from the stable, H0 probe_disagreement_ok vs H1
    # probe_disagreement_bad, at alpha and beta above (harness.judges.probes).
    probe_disagreement_ok: float = 0.01  # a retrained model may move 1 row in 100: noise nobody acts on
    probe_disagreement_bad: float = 0.05  # 1 row in 20 answered otherwise is a different model
    probe_tolerance: float = 0.05  # numeric answers (probabilities, regression): |canary - stable| above disagrees
    probe_max_failed_share: float = 0.1  # more failed probe rounds than this share holds promotion
    require_probes: bool = False  # True: never promote without probe evidence, even where readings carry none

    def __post_init__(self) -> None:
        problems = []
        if not (self.interval_s > 0 and self.observation_s >= self.interval_s):
            problems.append(f"need 0 < interval_s <= observation_s, got {self.interval_s} and {self.observation_s}")
        for name in ("alpha", "beta", "pass_ratio"):
            value = getattr(self, name)
            if not 0 < value < 1:
                problems.append(f"{name} must be in (0, 1), got {value}")
        if self.alpha + self.beta >= 1:
            problems.append(f"alpha + beta must be < 1, got {self.alpha + self.beta}")
        if not 0 < self.error_threshold < 1:
            problems.append(f"error_threshold must be in (0, 1), got {self.error_threshold}")
        if not 0 < self.error_floor < 1:
            problems.append(f"error_floor must be in (0, 1), got {self.error_floor}")
        if self.relative_factor <= 1:
            problems.append(f"relative_factor must be > 1, got {self.relative_factor}")
        if self.severe_factor < self.relative_factor:
            problems.append(f"severe_factor must be >= relative_factor, got {self.severe_factor} < "
                            f"{self.relative_factor}")
        if self.latency_windows < 1:
            problems.append(f"latency_windows must be >= 1, got {self.latency_windows}")
        if not 0 < self.probe_disagreement_ok < self.probe_disagreement_bad < 1:
            problems.append(f"need 0 < probe_disagreement_ok < probe_disagreement_bad < 1, got "
                            f"{self.probe_disagreement_ok} and {self.probe_disagreement_bad}")
        if self.probe_tolerance < 0:
            problems.append(f"probe_tolerance must be >= 0, got {self.probe_tolerance}")
        if not 0 <= self.probe_max_failed_share < 1:
            problems.append(f"probe_max_failed_share must be in [0, 1), got {self.probe_max_failed_share}")
        if self.deadline_decision not in ("inconclusive", "rollback"):
            problems.append(f"deadline_decision must be 'inconclusive' or 'rollback', got {self.deadline_decision!r}")
        if problems:
            raise ValueError("JudgeConfig: " + "; ".join(problems))

    @property
    def total_checks(self) -> int:
        # Tolerant floor: scaled() multiplies both by a float, 900/15 over 60/15 must still be 15.
        return int(self.observation_s / self.interval_s + 1e-9)

    def scaled(self, factor: float) -> JudgeConfig:
        """Same judgement on a faster clock (CI: 1/15 turns 900 s into 60 s)."""
        if factor <= 0:
            raise ValueError(f"scale factor must be > 0, got {factor}")
        return dataclasses.replace(self, observation_s=self.observation_s * factor,
                                   interval_s=self.interval_s * factor)
