"""A judge's reasons name what it observed: "no metrics for the canary" (the router got answers
from it, Prometheus has no series) and "the canary stopped serving" (the router got none) are
different findings, told apart by the router's own per-revision counts, and a judge without them
says that it cannot tell the two apart. Each seam is broken on purpose with readings shaped like
the live ones."""
from __future__ import annotations

from harness.canary.observe import RouterWindows
from harness.judges.base import NO_DATA, Decision, JudgeConfig, Reading, RevisionReading, RoutedWindow
from harness.judges.sequential import SequentialJudge

CFG = JudgeConfig(observation_s=45.0, interval_s=3.0)


def _rev(total: float, window: float, errors: float = 0.0) -> RevisionReading:
    return RevisionReading(requests=total, errors=errors, p99_s=0.05, window_requests=window, window_errors=0.0,
                           slow=0.0)


def _reading(t: float, canary: RevisionReading, stable: RevisionReading,
             routed: dict[str, RoutedWindow] | None) -> Reading:
    return Reading(t_s=t, canary=canary, stable=stable, source_ok=True, routed=routed)


def test_no_canary_series_while_the_router_gets_answers_is_named_missing_metrics() -> None:
    judge = SequentialJudge(CFG)
    verdict = judge.observe(_reading(3, NO_DATA, _rev(200, 100),
                                     {"canary": RoutedWindow(104, 104), "stable": RoutedWindow(100, 100)}))
    assert verdict.decision is Decision.CONTINUE
    assert "no metrics for the canary" in verdict.reasons[0], verdict.reasons
    assert "got 104 answers" in verdict.reasons[0], verdict.reasons


def test_no_canary_series_and_no_router_answers_is_named_not_answering() -> None:
    judge = SequentialJudge(CFG)
    verdict = judge.observe(_reading(3, NO_DATA, _rev(200, 100),
                                     {"canary": RoutedWindow(30, 0), "stable": RoutedWindow(170, 170)}))
    assert "the canary is not answering: the router sent it 30 of 200 requests" in verdict.reasons[0], verdict.reasons
    assert "no metrics for the canary" not in verdict.reasons[0]


def test_without_router_counts_the_judge_says_it_cannot_tell_the_two_apart() -> None:
    verdict = SequentialJudge(CFG).observe(_reading(3, NO_DATA, _rev(200, 100), None))
    assert "dead canary or metrics missing: the profile has no router counts" in verdict.reasons[0]


def _dark_run(routed_canary: RoutedWindow | None) -> list:
    """A canary that served, then shows no requests in Prometheus for three windows."""
    judge = SequentialJudge(CFG)
    verdicts = [judge.observe(_reading(3, _rev(100, 100), _rev(100, 100),
                                       {"canary": RoutedWindow(100, 100), "stable": RoutedWindow(100, 100)}
                                       if routed_canary is not None else None))]
    for i in range(2, 5):
        routed = {"canary": routed_canary, "stable": RoutedWindow(100, 100)} if routed_canary is not None else None
        verdicts.append(judge.observe(_reading(3 * i, _rev(100, 0), _rev(100 * i, 100), routed)))
    return verdicts


def test_a_canary_that_stopped_serving_is_rolled_back_naming_the_routers_count() -> None:
    last = _dark_run(RoutedWindow(12, 0))[-1]
    assert last.decision is Decision.ROLLBACK
    assert "canary stopped serving" in last.reasons[0] and "the router sent it 12 of 112 requests" in last.reasons[0]
    assert "got 0 answers back" in last.reasons[0], last.reasons


def test_a_canary_the_router_still_gets_answers_from_is_not_rolled_back_as_dead() -> None:
    """Prometheus shows no canary requests for three windows, but the router got answers: the
    metrics are missing, not the canary: no availability rollback, and the reasons say so."""
    verdicts = _dark_run(RoutedWindow(100, 100))
    assert all(v.decision is not Decision.ROLLBACK for v in verdicts), [v.reasons for v in verdicts]
    assert "no metrics for the canary's last window" in verdicts[-1].reasons[0], verdicts[-1].reasons


def test_without_router_counts_the_dark_canary_rollback_says_what_it_could_not_see() -> None:
    last = _dark_run(None)[-1]
    assert last.decision is Decision.ROLLBACK
    assert "the profile has no router counts, so a dead canary and missing metrics look alike here" in last.reasons[0]


def test_router_windows_count_each_window_and_survive_servers_coming_and_going() -> None:
    samples = iter([
        {"c-r0": ("c", 10, 10), "s-r0": ("s", 50, 50)},
        {"c-r0": ("c", 25, 20), "s-r0": ("s", 80, 80)},  # +15 sent, +10 ok to c
        {"c-r1": ("c", 5, 5), "s-r0": ("s", 90, 90)},  # c-r0 gone (replica removed), c-r1 new
        {"c-r1": ("c", 2, 2), "s-r0": ("s", 91, 91)},  # c-r1 re-added: counters restarted
    ])
    windows = RouterWindows(lambda: next(samples))
    roles = {"canary": "c", "stable": "s"}
    assert windows.window(roles) == {"canary": RoutedWindow(15, 10), "stable": RoutedWindow(30, 30)}
    assert windows.window(roles) == {"canary": RoutedWindow(5, 5), "stable": RoutedWindow(10, 10)}
    assert windows.window(roles) == {"canary": RoutedWindow(2, 2), "stable": RoutedWindow(1, 1)}


def test_a_router_that_cannot_answer_gives_no_counts_not_zero() -> None:
    def broken() -> dict:
        raise ConnectionRefusedError("admin socket gone")

    assert RouterWindows(broken).window({"canary": "c"}) is None


def test_readings_round_trip_with_router_counts() -> None:
    reading = _reading(3, _rev(1, 1), _rev(2, 2), {"canary": RoutedWindow(1, 1), "stable": RoutedWindow(2, 2)})
    assert Reading.from_dict(reading.to_dict()) == reading
