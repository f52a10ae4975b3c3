"""Named seam checks with their evidence: what a scenario observed, kept whether it passed or not.

A check's id has one grammar, ``<suite>:<subject>[:<case>]`` (``conformance:predictions-match``,
``canary:judge-decides:healthy-sequential``): the subject is a literal in the test's code, so a
grep of it lands on the test. The record travels in the test item's ``user_properties``, which
pytest copies into every report and pytest-xdist ships to the controller, where the plugin
collects it (``pytest -n 2`` keeps a complete report).
"""
from __future__ import annotations

import json
import re
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["CHECK_PROPERTY", "EVIDENCE_CHARS", "CheckRecord", "CheckRecorder", "check_id", "failed_check_sections"]

#: The user_properties key a check record travels under.
CHECK_PROPERTY = "seamcheck.check"
_PART = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
#: How much of a failed check's evidence goes into pytest's report (the terminal, JUnit's
#: <failure>); the whole of it is in summary.json and index.html.
EVIDENCE_CHARS = 6000


def check_id(suite: str, subject: str, case: str | None = None) -> str:
    """``<suite>:<subject>[:<case>]``; each part lower-case letters, digits, '.' and '-'."""
    parts = [suite, subject] + ([case] if case is not None else [])
    for part in parts:
        if not _PART.match(part):
            raise ValueError(f"check id part {part!r} (in {':'.join(parts)!r}) must be lower-case letters, digits, "
                             "'.' and '-', starting with a letter or digit")
    return ":".join(parts)


@dataclass
class CheckRecord:
    test: str
    name: str  # the check id
    description: str
    outcome: str = "running"  # passed | failed | error | xfailed (known wrong, as expected) | xpassed
    evidence: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckRecord:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _portable(value: dict[str, Any]) -> dict[str, Any]:
    """Evidence as plain JSON types: xdist sends user_properties between processes."""
    return json.loads(json.dumps(value, default=str))


class CheckRecorder:
    """Used by scenarios through the `seam` fixture:

        with seam.check("storage-uri-holds-mlmodel", "storageUri resolves to a model dir") as ev:
            ev["storage_uri"] = uri
            assert ...

    The evidence dict is recorded even when the assertion fails, and the failure propagates.
    """

    def __init__(self, test: str, suite: str, sink: list[tuple[str, object]]) -> None:
        self.test = test
        self.suite = suite
        self._sink = sink

    @contextmanager
    def check(self, subject: str, description: str = "", *, case: str | None = None,
              known_wrong: str = "") -> Iterator[dict[str, Any]]:
        """`case`: which case of the check this is (a scenario, a row). `known_wrong`: the subject
        under test is known to fail this check (a strict xfail says why): its failure is recorded
        as xfailed, its success as xpassed."""
        record = CheckRecord(self.test, check_id(self.suite, subject, case), description)
        started = time.monotonic()
        try:
            yield record.evidence
        except AssertionError as exc:
            record.outcome = "xfailed" if known_wrong else "failed"
            record.message = (f"known wrong: {known_wrong}; " if known_wrong else "") + (
                str(exc) or traceback.format_exc(limit=1))
            raise
        except BaseException as exc:
            record.outcome, record.message = "error", f"{type(exc).__name__}: {exc}"
            raise
        else:
            record.outcome = "xpassed" if known_wrong else "passed"
        finally:
            record.seconds = round(time.monotonic() - started, 3)
            data = record.as_dict()
            data["evidence"] = _portable(record.evidence)
            self._sink.append((CHECK_PROPERTY, data))


def failed_check_sections(user_properties: list[tuple[str, object]]) -> list[tuple[str, str]]:
    """(title, text) per check of a test that did not pass: its message and its evidence as JSON,
    for pytest's own report of the test (terminal and JUnit carry the longrepr's sections)."""
    sections = []
    for key, value in user_properties:
        if key != CHECK_PROPERTY or not isinstance(value, dict) or value.get("outcome") not in ("failed", "error"):
            continue
        evidence = json.dumps(value.get("evidence", {}), indent=1, default=str)
        if len(evidence) > EVIDENCE_CHARS:
            evidence = evidence[:EVIDENCE_CHARS] + f"\n... ({len(evidence) - EVIDENCE_CHARS} more characters in summary.json)"
        sections.append((f"seamcheck evidence: {value['name']} ({value['outcome']})",
                         f"{value.get('message', '')}\n{evidence}"))
    return sections
