"""The canary session's plan, as pure data: which scenarios run, in what order, on which service,
and what to prepare ahead of each. The runner (scenarios.py) executes it with its pools; every
decision that ordering bugs come from (a deadlock fixed once was one) is made here and unit-tested
(tests/test_canary_plan.py) without a stack.

How a session's scenarios share two cores:
- the main scenarios alternate between the main services: while one is judged on one service,
  the next one's model is made and its canary comes up on the other;
- the first main canary and every beside one are deployed as soon as the runner starts;
- a ``beside`` scenario (light load: it adds nothing the others would feel) is judged on a service
  of its own at the same time as the main ones; a scenario that stops what every judgement reads
  (Prometheus) waits until no beside scenario is in flight;
- a scenario with a ``baseline`` first rolls that model out in full on its service (its stable
  must answer in the canary's kind: probabilities to compare with probabilities), so the service
  serves it from then on: no scenario without one may follow on that service (the plan refuses).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CanaryScenario", "During", "ScenarioPlan"]


class During(str, enum.Enum):
    """A fault the scenario injects while it is judged."""

    NOTHING = ""
    STOP_PROMETHEUS = "stop-prometheus"
    KILL_CANARY = "kill-canary"


@dataclass(frozen=True)
class CanaryScenario:
    name: str
    fault: Any  # harness.faults.models.FaultSpec, or None: a healthy new model version
    expect: frozenset  # the right decisions (harness.judges.base.Decision)
    rps: float = 70.0
    during: During = During.NOTHING
    # judge -> why that judge is known to get this scenario wrong (strict xfail)
    known_wrong: dict[str, str] = field(default_factory=dict)
    # judge -> why that judge gets this scenario wrong in some runs and not others: what it decides
    # follows the run's conditions (the load on one replica, how many windows a dead canary
    # leaves), not the model. Graded and reported like the others; a non-strict xfail.
    sometimes_wrong: dict[str, str] = field(default_factory=dict)
    nightly: bool = False  # marked slow: `pytest -m canary` runs it, CI (not slow) does not
    beside: bool = False  # judged on a service of its own, beside the main scenarios (light load only)
    # The stable this canary is compared with: a FaultSpec rolled out in full on the service ahead of
    # the canary; None: whatever the service serves (the trained model, or the last promoted canary).
    baseline: Any = None
    # Correctness probes during the judgement (held-out rows to both revisions through their tagged
    # routes). Off where the scenario is about the traffic the judges see: the probes add to it.
    probes: bool = True

    def wrong_reason(self, judge: str) -> str:
        """Why ``judge`` may decide this scenario wrongly ('' if it should not)."""
        return self.known_wrong.get(judge) or self.sometimes_wrong.get(judge, "")

    def __post_init__(self) -> None:
        object.__setattr__(self, "during", During(self.during))

    @property
    def stops_shared(self) -> bool:
        """It stops what every judgement reads: nothing may be judged beside it."""
        return self.during is During.STOP_PROMETHEUS

    def __hash__(self) -> int:
        return hash(self.name)


@dataclass(frozen=True)
class ScenarioPlan:
    scenarios: tuple[CanaryScenario, ...]  # in the order their tests run
    main_services: tuple[str, ...]  # the scenarios alternate between these
    beside_service: str | None = None

    def __post_init__(self) -> None:
        if any(s.beside for s in self.scenarios) and not self.beside_service:
            raise ValueError("the plan has beside scenarios but no beside service")
        if any(not s.beside for s in self.scenarios) and not self.main_services:
            raise ValueError("the plan has main scenarios but no main service")
        names = [s.name for s in self.scenarios]
        if len(set(names)) != len(names):
            raise ValueError(f"a scenario is planned twice: {names}")
        serving: dict[str, CanaryScenario] = {}  # service -> the scenario whose baseline it serves
        for scenario in self.main:
            service = self.service_for(scenario)
            after = serving.get(service)
            if after is not None and scenario.baseline is None:
                raise ValueError(f"scenario {scenario.name!r} follows {after.name!r} on service {service}, which then "
                                 f"serves {after.name!r}'s baseline, not the trained model's lineage; run "
                                 f"{scenario.name!r} first or give it a baseline")
            if scenario.baseline is not None:
                serving[service] = scenario

    @property
    def main(self) -> tuple[CanaryScenario, ...]:
        return tuple(s for s in self.scenarios if not s.beside)

    @property
    def beside(self) -> tuple[CanaryScenario, ...]:
        return tuple(s for s in self.scenarios if s.beside)

    def service_for(self, scenario: CanaryScenario) -> str:
        """Its service: the beside one, or the main ones in turn (a scenario the plan does not hold,
        played because a test asked for it unplanned, takes the first main service)."""
        if scenario.beside:
            if self.beside_service is None:
                raise ValueError(f"scenario {scenario.name!r} runs beside, but the plan has no beside service")
            return self.beside_service
        order = self.main if scenario in self.main else (scenario,)
        return self.main_services[order.index(scenario) % len(self.main_services)]

    def following(self, scenario: CanaryScenario) -> CanaryScenario | None:
        """The next main scenario, whose model is made while this one runs."""
        if scenario not in self.main:
            return None
        at = self.main.index(scenario) + 1
        return self.main[at] if at < len(self.main) else None

    def deploy_during(self, scenario: CanaryScenario) -> CanaryScenario | None:
        """The next main scenario whose canary comes up while this one is judged: only when it is on
        the other service (a service judged must not get a new canary under it)."""
        nxt = self.following(scenario)
        if nxt is None or self.service_for(nxt) == self.service_for(scenario):
            return None
        return nxt

    def deploy_at_start(self) -> tuple[CanaryScenario, ...]:
        """Deployed as soon as the runner starts: the first main canary, and every beside one."""
        return self.main[:1] + self.beside

    def waits_for_beside(self, scenario: CanaryScenario) -> bool:
        return scenario.stops_shared
