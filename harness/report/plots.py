"""The report's plots, drawn with matplotlib and returned as inline SVG text, so the page is one
file that opens offline (no script, no CDN, no image files beside it).

Every figure gets its own SVG id salt: several inline SVGs share one HTML document, and
matplotlib's default ids (hashes of the drawn paths) would repeat across them.
"""
from __future__ import annotations

import io
import itertools
import math
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

__all__ = ["canary_figure", "chaos_figure", "trend_figure"]

#: Colours by meaning, the same on every plot: canary/stable, and what a chaos activity did.
COLOURS = {"canary": "#d95f02", "stable": "#1b9e77", "5xx": "#d7191c", "ok": "#7fbf7b", "conn": "#5e3c99",
           "other": "#fdae61", "fault": "#d7191c", "lift": "#1a9641", "rollout": "#2b83ba", "rollback": "#7b3294",
           "load": "#999999", "alert": "#fdd0a2"}
_JUDGE_STYLES = ("-", "--", ":", "-.")


@cache
def _pyplot() -> Any:
    """matplotlib's pyplot, imported on the first figure: it takes half a second, and a pytest
    session that draws nothing (most inner sessions of the tests) should not pay it."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a CI machine or a worker thread has none
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any, salt: str) -> str:
    """The figure as SVG text: no date in it (the same data makes the same page) and its ids
    salted with what it draws (unique on the page, the same every time)."""
    out = io.StringIO()
    plt = _pyplot()
    with plt.rc_context({"svg.hashsalt": f"seamcheck-{salt}", "svg.fonttype": "none"}):
        fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = out.getvalue()
    return text[text.index("<svg"):]  # the XML declaration and doctype are not allowed inside HTML


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not (isinstance(value, float) and
                                                                    math.isnan(value)) else math.nan


def _window(reading: Mapping[str, Any], role: str, key: str) -> float:
    return _num((reading.get(role) or {}).get(key))


def canary_figure(timeline: Mapping[str, Any]) -> str:
    """Per window: canary and stable requests and 5xx, the canary's share of the traffic against
    its configured split, p99 against the limit, and the sequential judge's statistics against
    its bounds; every judge's decision time is a vertical line on each panel."""
    readings = timeline.get("readings") or []
    t = [r["t_s"] for r in readings]
    plt = _pyplot()
    fig, axes = plt.subplots(4, 1, figsize=(9, 8.4), sharex=True, height_ratios=(1.2, 0.8, 1, 1.2))
    ax_req, ax_split, ax_p99, ax_llr = axes
    for role in ("canary", "stable"):
        ax_req.plot(t, [_window(r, role, "window_requests") for r in readings], marker="o", ms=3,
                    color=COLOURS[role], label=f"{role} requests")
        ax_req.bar(t, [_window(r, role, "window_errors") for r in readings], width=0.8,
                   color=COLOURS[role], alpha=0.5, hatch="//" if role == "canary" else None, label=f"{role} 5xx")
    ax_req.set_ylabel("per window")
    _alert_strip(ax_req, timeline.get("alerts") or [], end=max(t, default=0.0), make_room=True)
    shares = []
    for r in readings:
        c, s = _window(r, "canary", "window_requests"), _window(r, "stable", "window_requests")
        shares.append(100 * c / (c + s) if c + s > 0 else math.nan)
    ax_split.plot(t, shares, marker="o", ms=3, color=COLOURS["canary"], label="canary share (observed)")
    ax_split.axhline(timeline.get("split_percent", 0), color="#555", ls="--", lw=1, label="canaryTrafficPercent")
    ax_split.set_ylim(0, 100)
    ax_split.set_ylabel("% of traffic")
    for role in ("canary", "stable"):
        ax_p99.plot(t, [1000 * _window(r, role, "p99_s") for r in readings], marker="o", ms=3,
                    color=COLOURS[role], label=f"{role} p99")
    ax_p99.axhline(500, color=COLOURS["5xx"], ls="--", lw=1, label="500 ms")
    ax_p99.set_ylabel("p99 (ms)")
    sequential = timeline.get("sequential") or {}
    path = sequential.get("path") or []
    pt = [p["t_s"] for p in path]
    for key, label in (("llr_rollback", "relative (rollback mixture)"), ("llr_absolute", "absolute"),
                       ("llr_slow", "slow requests"), ("llr_promote", "promotion mixture (promotes at its bound)")):
        if any(key in p for p in path):
            ax_llr.plot(pt, [_num(p.get(key)) for p in path], marker=".", label=label)
    if sequential.get("rollback_bound") is not None:
        ax_llr.axhline(sequential["rollback_bound"], color=COLOURS["fault"], ls="--", lw=1, label="ln A (roll back)")
        ax_llr.axhline(sequential["promote_bound"], color=COLOURS["lift"], ls="--", lw=1, label="ln B (accept)")
        ax_llr.axhline(-sequential["promote_bound"], color=COLOURS["lift"], ls=":", lw=1,
                       label="-ln B (promotion mixture)")
    ax_llr.set_ylabel("sequential LLR")
    ax_llr.set_xlabel("seconds into the judgement")
    fault = timeline.get("fault")
    for ax in axes:
        if fault:
            ax.axvline(fault["at_s"], color=COLOURS["fault"], lw=2, alpha=0.4)
        for (judge, info), style in zip(sorted((timeline.get("judges") or {}).items()),
                                        itertools.cycle(_JUDGE_STYLES)):
            if info.get("at_s") is not None:
                ax.axvline(info["at_s"], color="#333", ls=style, lw=1,
                           label=f"{judge}: {info['decision']} at {info['at_s']:g} s" if ax is ax_req else None)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    title = f"canary {timeline.get('name')}: {timeline.get('canary')} vs {timeline.get('stable')}"
    ax_req.set_title(title + (f" (fault: {fault['what']} at {fault['at_s']:g} s)" if fault else ""), fontsize=9)
    return _svg(fig, f"canary-{timeline.get('name')}")


def _alert_strip(ax: Any, alerts: list[Mapping[str, Any]], *, end: float, make_room: bool) -> None:
    """Active alerts as a strip along the top of ``ax`` (pending pale, firing strong); an alert
    still active when the timeline was taken runs to ``end``. ``make_room``: raise the axis' top
    so the strip sits above the data (where there is any alert)."""
    if not alerts:
        return
    if make_room:
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, bottom + (top - bottom) * 1.3)
    labelled: set[str] = set()
    for alert in alerts:
        until = alert["to"] if alert.get("to") is not None else end
        state = alert.get("state", "firing")
        label = f"alert {alert['alertname']} ({state})"
        ax.axvspan(alert["from"], until, ymin=0.86, ymax=0.97, color="#e6550d" if state == "firing" else "#fdae6b",
                   zorder=3, label=label if label not in labelled else None)
        labelled.add(label)


def chaos_figure(timeline: Mapping[str, Any]) -> str:
    """Locust's requests per second by outcome, stacked, for every load of the experiment, with
    its activities as vertical lines (fault, lift, rollout, rollback) and active alerts shaded."""
    loads = timeline.get("loads") or []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    totals: dict[float, dict[str, float]] = {}
    for load in loads:
        for row in load["bins"]:
            into = totals.setdefault(row["t"], {"ok": 0, "5xx": 0, "conn": 0, "other": 0})
            for key in into:
                into[key] += row.get(key, 0)
    xs = sorted(totals)
    bottom = [0.0] * len(xs)
    for key, label in (("ok", "ok (200)"), ("5xx", "5xx"), ("conn", "no answer (connection)"), ("other", "other")):
        heights = [totals[x][key] for x in xs]
        if any(heights):
            ax.bar(xs, heights, bottom=bottom, width=1.0, align="edge", color=COLOURS[key], label=label)
            bottom = [b + h for b, h in zip(bottom, heights)]
    top = max(bottom, default=1.0) or 1.0
    ax.set_ylim(0, top * 1.3)  # room above the bars for the alerts' strip
    _alert_strip(ax, timeline.get("alerts") or [], end=timeline.get("seconds", 0), make_room=False)
    seen: set[str] = set()
    for activity in timeline.get("activities") or []:
        category = activity["category"]
        if category not in ("fault", "lift", "rollout", "rollback") or activity.get("start") is None:
            continue
        ax.axvline(activity["start"], color=COLOURS[category], lw=1.5,
                   label=category if category not in seen else None)
        seen.add(category)
        ax.annotate(activity["name"], (activity["start"], 1.0), xycoords=("data", "axes fraction"), rotation=90,
                    fontsize=6, va="top", ha="right", color=COLOURS[category])
    ax.set_xlim(0, max(timeline.get("seconds", 0), max(xs, default=0) + 1))
    ax.set_xlabel("seconds after the experiment started")
    ax.set_ylabel("requests per second")
    ax.set_title(f"chaos {timeline.get('name')}: {timeline.get('title', '')}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _svg(fig, f"chaos-{timeline.get('name')}")


def trend_figure(series: Mapping[str, Sequence[float | None]], runs: Sequence[str], *, ylabel: str,
                 title: str) -> str:
    """One line per series (a judge on a scenario, a suite) across the runs, oldest left."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.4))
    xs = list(range(len(runs)))
    for name, values in sorted(series.items()):
        ax.plot(xs, [_num(v) for v in values], marker="o", ms=4, label=name)
    ax.set_xticks(xs, [r[:16] for r in runs], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _svg(fig, f"trend-{title}")
