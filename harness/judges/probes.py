"""The correctness probes' test: is the canary answering what the stable answers?

Errors and latency cannot see a canary that answers every request with HTTP 200 and a plausible but
wrong prediction. The probes (harness/canary/probes.py) send the same labelled held-out rows to the
canary and to the stable, each through its own tagged route, and count the rows the two answered
differently: a label that is not equal, or a number (a probability, a regression value) more than
``probe_tolerance`` away from the stable's. This module decides on those counts.

Each compared row is a Bernoulli trial "the canary answered it otherwise". The rows are distinct
held-out rows of one distribution, so whether the canary differs deterministically (another model)
or at random (a flaky one), trials are independent with one disagreement rate d. The test is a
one-sample Wald SPRT, H0 d = probe_disagreement_ok vs H1 d = probe_disagreement_bad, with the same
alpha, beta and Wald bounds as the error-rate SPRTs: crossing ln A rolls back, and since the
likelihood ratio is a nonnegative martingale under H0, a canary at the accepted rate is rolled back
with probability <= alpha / (1 - beta) however often the judge looks (Ville's inequality); reaching
ln B accepts, and a canary at the unacceptable rate is accepted with probability <= about beta. A
canary that answers exactly as the stable (d = 0, a copy) moves the statistic down by
ln((1 - d1) / (1 - d0)) per row and cannot be rolled back by the probes at all.

Missing or failed probes never promote: a judgement that ran probes (a reading carried a tally,
or ``require_probes``) holds promotion until the test accepts, while the latest round failed, while
more than ``probe_max_failed_share`` of the rounds failed, and when a reading comes without a
tally. A failed round (an HTTP error, a timeout, an answer that cannot be read) is missing
evidence, never a disagreement: one transient failure would otherwise count a whole batch of rows.
An answer of another datatype or shape than the stable's is different: the runner counts it as a
disagreement on every row of the round (the model's output contract changed).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.judges.base import JudgeConfig, ProbeTally
from harness.judges.sprt import asn_h0, asn_h1, bernoulli_llr, wald_log_bounds

__all__ = ["ProbeTest", "rows_to_decide"]


def rows_to_decide(config: JudgeConfig, disagreement: float) -> float:
    """Wald's expected number of compared rows before the probe test decides, for a canary whose
    true disagreement rate is ``disagreement`` (0: answers like the stable; overshoot ignored).
    What a probe batch and cadence are sized by."""
    d0, d1 = config.probe_disagreement_ok, config.probe_disagreement_bad
    log_b, log_a = wald_log_bounds(config.alpha, config.beta)
    if disagreement == d0:
        return asn_h0(d0, d1, config.alpha, config.beta)
    if disagreement == d1:
        return asn_h1(d0, d1, config.alpha, config.beta)
    drift = bernoulli_llr(disagreement, 1.0, d0, d1)  # E[LLR] per row at this rate
    if drift == 0:
        return float("inf")
    return (log_a if drift > 0 else log_b) / drift


@dataclass
class ProbeTest:
    """The probe SPRT as the sequential judge holds it: ``update`` with each reading's tally, then
    ``rejects`` (roll back), ``holds_promotion`` (why not promote yet, or None), and the lines and
    details its verdicts carry."""

    config: JudgeConfig
    tally: ProbeTally | None = field(default=None, init=False)
    llr: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._log_b, self._log_a = wald_log_bounds(self.config.alpha, self.config.beta)
        self.reset()

    def reset(self) -> None:
        self.tally, self.llr = None, 0.0
        self._expected = self.config.require_probes  # the judgement runs probes: they gate promotion
        self._missing = False  # the latest reading came without a tally

    @property
    def expected(self) -> bool:
        return self._expected

    def update(self, tally: ProbeTally | None) -> None:
        """The latest tally (cumulative), or None: a reading without one (missing, once expected)."""
        if tally is None:
            self._missing = self._expected
            return
        self._expected, self._missing, self.tally = True, False, tally
        d0, d1 = self.config.probe_disagreement_ok, self.config.probe_disagreement_bad
        self.llr = bernoulli_llr(float(tally.disagreements), float(tally.rows), d0, d1)

    @property
    def rejects(self) -> bool:
        """The canary's answers differ from the stable's at the unacceptable rate: roll back."""
        return self.tally is not None and self.llr >= self._log_a

    def holds_promotion(self) -> str | None:
        """Why the probes do not let the canary be promoted yet (None: they do, or none were run)."""
        if not self._expected:
            return None
        tally = self.tally
        if tally is None:
            return "correctness probes expected, none reported yet; not promoting without them"
        if self._missing:
            return "this reading carried no correctness probe tally; not promoting without it"
        if tally.rounds == 0:
            return "no correctness probe round sent yet" + (f": {tally.last_error}" if tally.last_error else "")
        if not tally.last_ok:
            return f"the latest correctness probe round failed ({tally.last_error or 'no detail'})"
        limit = self.config.probe_max_failed_share
        if tally.failed > limit * tally.rounds:
            return (f"{tally.failed} of {tally.rounds} correctness probe rounds failed (more than {limit:.0%}); "
                    f"last: {tally.last_error or 'no detail'}")
        if self.llr > self._log_b:
            return "correctness not yet shown: " + self.line()
        return None

    def line(self) -> str:
        """The probes' evidence in one line, for reasons."""
        cfg, tally = self.config, self.tally
        if tally is None:
            return "no correctness probes"
        how = (f"numeric answers, |canary - stable| > {tally.tolerance:g}" if tally.output == "value"
               else "labels, any difference")
        text = (f"{tally.disagreements} of {tally.rows} held-out rows answered otherwise than the stable ({how}; "
                f"probe LLR {self.llr:+.2f}, H0 {cfg.probe_disagreement_ok:g} vs H1 {cfg.probe_disagreement_bad:g}, "
                f"rollback >= {self._log_a:.2f}, promote <= {self._log_b:.2f}; {tally.failed} of {tally.rounds} "
                "rounds failed)")
        if tally.max_abs_diff is not None:
            text += f"; largest |difference| {tally.max_abs_diff:.4g}"
        if tally.canary_correct is not None and tally.stable_correct is not None and tally.rows:
            text += (f"; accuracy on the labels: canary {tally.canary_correct / tally.rows:.1%}, "
                     f"stable {tally.stable_correct / tally.rows:.1%}")
        return text

    def details(self) -> dict[str, Any]:
        return {"probes_expected": self._expected, "llr_probes": self.llr,
                "probes": self.tally.to_dict() if self.tally is not None else None,
                "probe_hypotheses": (f"H0 disagreement {self.config.probe_disagreement_ok:g} vs H1 "
                                     f"{self.config.probe_disagreement_bad:g}")}
