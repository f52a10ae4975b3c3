"""Named seam checks with their evidence: what a scenario observed, kept whether it passed or not."""
from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CheckRecord", "CheckRecorder"]


@dataclass
class CheckRecord:
    test: str
    name: str
    description: str
    outcome: str = "running"  # passed | failed | error | xfailed (known wrong, as expected) | xpassed
    evidence: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CheckRecorder:
    """Used by scenarios through the `seam` fixture:

        with seam.check("storage-uri-holds-mlmodel", "storageUri resolves to a model dir") as ev:
            ev["storage_uri"] = uri
            assert ...

    The evidence dict is recorded even when the assertion fails, and the failure propagates.
    """

    def __init__(self, test: str, sink: list[CheckRecord]) -> None:
        self.test = test
        self._sink = sink

    @contextmanager
    def check(self, name: str, description: str = "", *, known_wrong: str = "") -> Iterator[dict[str, Any]]:
        """`known_wrong`: the subject under test is known to fail this check (a strict xfail
        says why): its failure is recorded as xfailed, its success as xpassed."""
        record = CheckRecord(self.test, name, description)
        self._sink.append(record)
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
