"""Order and overlap of the chaos suite's tests.

The experiments marked ``chaos_side_by_side`` run in the background (harness/fixtures/chaos.py:
SideBySide) from the first test here that needs the stack. So that they overlap the tests that
share nothing with them, this suite's tests run in three groups (each keeps its own order):

1. the rest: they disrupt nothing a side-by-side run uses (the network cut is inside the
   pipeline's own namespace; the storageUri scenario touches only its own service);
2. the side-by-side tests, which read their journals (waiting for the runs);
3. the tests marked ``chaos_alone``: they stop a component every run shares (MLflow, the
   artifact store) or check the whole stack's fault state, so none may be in flight.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.fixtures.chaos import planned_side_by_side
from harness.item_order import sort_items_under

HERE = Path(__file__).parent


def _group(item: pytest.Item) -> int:
    if item.get_closest_marker("chaos_alone"):
        return 2
    return 1 if item.get_closest_marker("chaos_side_by_side") else 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    sort_items_under(items, HERE, _group)


@pytest.fixture(autouse=True)
def _side_by_side_in_step(request: pytest.FixtureRequest) -> None:
    """Start the alert log and the side-by-side runs with the first test that needs the stack
    anyway (the log first: it must see the runs' faults); hold a ``chaos_alone`` test until none
    is in flight."""
    if "chaos_control" not in request.fixturenames:
        return
    request.getfixturevalue("alert_log")
    if not planned_side_by_side(request.session.items):
        return
    runs = request.getfixturevalue("side_by_side")
    if request.node.get_closest_marker("chaos_alone"):
        runs.wait()
