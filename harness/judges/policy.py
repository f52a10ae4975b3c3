"""What a rollout does with a judge's verdict: promote and roll back as said, and an inconclusive
verdict held, extended or rolled back as configured.

A judge says INCONCLUSIVE when the evidence showed the canary neither good nor bad (the sequential
judge at its deadline, too little traffic, no data at all; Argo's paused run; Flagger's analysis
still running). That is a finding, not an action: the policy turns it into one. The default is
ROLLBACK after `max_extensions` extensions (0): an unattended pipeline must not leave a canary
serving forever nor promote what was not shown good, and the verdict still records that the canary
was not shown bad, so the report does not count it as a failed model. EXTEND asks the driver to
observe for another deadline (worth it when the benchmarks' "decided by" times say the traffic needs
more time, docs/judges.md); HOLD leaves the split as it is for a person to decide.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from harness.judges.base import Decision, Verdict

__all__ = ["Action", "DeadlinePolicy"]


class Action(enum.Enum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    HOLD = "hold"  # keep the split, a person decides
    EXTEND = "extend"  # observe for another deadline


@dataclass(frozen=True)
class DeadlinePolicy:
    """Maps a final verdict to the rollout's action."""

    on_inconclusive: Action = Action.ROLLBACK
    max_extensions: int = 0  # EXTEND this many times before on_inconclusive applies

    def __post_init__(self) -> None:
        if self.on_inconclusive not in (Action.ROLLBACK, Action.HOLD):
            raise ValueError(f"DeadlinePolicy: on_inconclusive={self.on_inconclusive}; use Action.ROLLBACK or "
                             "Action.HOLD (extensions are counted with max_extensions)")
        if self.max_extensions < 0:
            raise ValueError(f"DeadlinePolicy: max_extensions={self.max_extensions}; use 0 or more")

    def action(self, verdict: Verdict, extensions_done: int = 0) -> Action:
        if verdict.decision is Decision.CONTINUE:
            raise ValueError("DeadlinePolicy: verdict.decision=continue is not final; act on the verdict of "
                             "finish() or on a final observe()")
        if verdict.decision is Decision.PROMOTE:
            return Action.PROMOTE
        if verdict.decision is Decision.ROLLBACK:
            return Action.ROLLBACK
        return Action.EXTEND if extensions_done < self.max_extensions else self.on_inconclusive
