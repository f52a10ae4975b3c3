"""How often Prometheus scrapes and how long the canary judges' windows are: one setting for every
profile, with the relation between the two checked where it is made.

A window shorter than two scrape intervals holds a single sample about half the time, and then
``rate()`` and ``increase()`` over it return nothing: the readings come back empty and verdicts
turn inconclusive or wrong (the cluster Prometheus once scraped every 2 s against 3 s windows).
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.errors import ConfigError

__all__ = ["CADENCE", "Cadence"]


@dataclass(frozen=True)
class Cadence:
    scrape_s: float = 1.0  # Prometheus' scrape (and evaluation) interval, on every profile
    window_s: float = 3.0  # the canary judges' check interval, the window each reading covers

    def __post_init__(self) -> None:
        if self.scrape_s <= 0:
            raise ConfigError(f"scrape_s={self.scrape_s!r} must be > 0")
        if self.window_s < 2 * self.scrape_s:
            raise ConfigError(f"window_s={self.window_s!r} is shorter than two scrapes (scrape_s={self.scrape_s!r}): a "
                              f"window would often hold one sample and rate() read nothing; use window_s >= "
                              f"{2 * self.scrape_s:g} or scrape more often")

    @property
    def scrape(self) -> str:
        """The scrape interval as Prometheus' configuration spells it ("1s", "500ms")."""
        return f"{self.scrape_s:g}s" if self.scrape_s >= 1 else f"{self.scrape_s * 1000:g}ms"


CADENCE = Cadence()
