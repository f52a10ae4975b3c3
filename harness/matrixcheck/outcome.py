"""What a matrix check can conclude, and what makes it pass.

Every check of a row (or of an upgrade step between two rows) ends in one outcome:

* ``compatible``   - the check did its work and everything it tried worked;
* ``incompatible`` - the check did its work and found something that does not work; each finding
  names a facet (``<check>/<facet>``) and quotes the component's own words (an error line, a
  warning, the differing predictions);
* ``cannot-build`` - the row's environments could not be built; uv's own error line is the evidence.

A check's test passes whenever it established one of these with evidence. It fails only when the
harness could not establish an outcome (a probe crashed, a component never answered within its
deadline) or the evidence contradicts itself: that is :class:`NotEstablished` (or a
``ComponentFailed`` from harness.procs), i.e. the harness is wrong, not the stack.

Whether an incompatibility is acceptable is a separate question: the matrix file's ``accept``
tables list the known ones, and the gate (``--matrix-gate``) fails the run on any other.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CANNOT_BUILD", "COMPATIBLE", "INCOMPATIBLE", "OUTCOMES", "Cell", "Finding", "NotEstablished"]

COMPATIBLE = "compatible"
INCOMPATIBLE = "incompatible"
CANNOT_BUILD = "cannot-build"
OUTCOMES = (COMPATIBLE, INCOMPATIBLE, CANNOT_BUILD)


class NotEstablished(AssertionError):
    """The harness could not establish an outcome, or its evidence contradicts itself."""


@dataclass(frozen=True)
class Finding:
    facet: str
    text: str  # one line, in the component's own words where there are any

    def key(self, check: str) -> str:
        return f"{check}/{self.facet}"


@dataclass
class Cell:
    """One cell of the matrix table: a subject (a row, or "older -> newer") x a check."""

    kind: str  # "row" | "upgrade"
    subject: str
    check: str
    outcome: str
    summary: str
    findings: list[Finding] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    #: Filled by the gate: finding key -> why, for the findings the matrix file accepts.
    accepted: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise NotEstablished(f"{self.subject} {self.check}: outcome {self.outcome!r} is none of {OUTCOMES}")
        if self.outcome == INCOMPATIBLE and not self.findings:
            raise NotEstablished(f"{self.subject} {self.check}: incompatible without a finding")
        if self.outcome == COMPATIBLE and self.findings:
            raise NotEstablished(f"{self.subject} {self.check}: compatible with findings {self.findings}")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["findings"] = [{"key": f.key(self.check), "text": f.text} for f in self.findings]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        """The inverse of ``as_dict`` (a cell sent from an xdist worker)."""
        prefix = f"{data['check']}/"
        findings = [Finding(f["key"][len(prefix):] if f["key"].startswith(prefix) else f["key"], f["text"])
                    for f in data.get("findings") or []]
        return cls(kind=data["kind"], subject=data["subject"], check=data["check"], outcome=data["outcome"],
                   summary=data["summary"], findings=findings, evidence=dict(data.get("evidence") or {}),
                   accepted=dict(data.get("accepted") or {}))
