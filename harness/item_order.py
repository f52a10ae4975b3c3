"""Reorder a suite's tests within their own slots of the session's order.

Suites that overlap background work with their tests (the chaos suite's side-by-side runs, the
canary runner's early deploys) need their tests in a particular order; other suites' tests keep
their places, so nothing outside the suite ever runs beside that background work.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

__all__ = ["sort_items_under"]


def sort_items_under(items: list[pytest.Item], directory: Path, key: Callable[[pytest.Item], Any]) -> None:
    """Stable-sort, in place, the items collected under ``directory`` by ``key``; every item keeps
    its slot if it is elsewhere, and items of equal key keep their order."""
    slots = [i for i, item in enumerate(items) if directory in Path(item.path).parents]
    ordered = sorted((items[i] for i in slots), key=key)
    for slot, item in zip(slots, ordered):
        items[slot] = item
