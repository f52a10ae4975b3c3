"""The dashboard's alert rules, live: the local Prometheus evaluates them (harness/metrics/rules/
local.rules.yml) and the session's alert log records /api/v1/alerts every second. Here the healthy
window: the pipeline's own service under steady load raises no alert while the rules demonstrably
evaluate its traffic. The faults' alerts are asserted by their experiments' tests (the rollback to
a scaled-to-zero revision, the store outage)."""
from __future__ import annotations

import time

import pytest
import requests

from harness.load import run_load
from harness.metrics.alerts import LOCAL_GROUPS, MIN_RPS
from harness.metrics.prometheus import query_scalar

pytestmark = [pytest.mark.chaos, pytest.mark.stack]

HEALTHY_S = 20
SETTLE_S = 6  # the rules' 10 s window and 2 s hold: an alert the load caused shows within this after it


def test_no_alert_in_a_healthy_window(chaos_control, chaos_context, alert_log, seam, tmp_path) -> None:
    stack = chaos_control.profile
    service = chaos_context.template["metadata"]["name"]
    started = time.time()
    load = run_load(stack.inference_base_url(service), service, chaos_context.rows_path, users=4, spawn_rate=4,
                    duration_s=HEALTHY_S, target_rps=30, out_dir=tmp_path / "load")
    rate = query_scalar(stack.prometheus_url, f'sum(rate(rest_server_requests_total{{isvc="{service}",'
                                              f'path=~".*/infer"}}[10s]))')
    time.sleep(SETTLE_S)
    ended = time.time()
    groups = requests.get(f"{stack.prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {g["name"]: [(r["name"], r["health"]) for r in g["rules"]] for g in groups}
    seen = alert_log.seen(start=started, end=ended, labels={"isvc": service})
    with seam.check("dashboard-alert", "a healthy service under steady load raises none of the dashboard's alerts, "
                                       "while the rules evaluate its traffic", case="healthy-quiet") as ev:
        ev.update(service=service, requests=load.requests, failures=load.failures, rate_rps=rate, rules=loaded,
                  alerts_for_service=seen, log=alert_log.health(),
                  alerts_elsewhere=sorted({a["alertname"] + " " + a["labels"].get("isvc", "")
                                           for a in alert_log.seen(start=started, end=ended)}))
        assert {f"seamcheck-dashboard-{d}" for d in LOCAL_GROUPS} <= set(loaded), loaded
        assert all(health == "ok" for rules in loaded.values() for _n, health in rules), loaded
        assert load.requests >= 300 and load.failures == 0, (load.requests, load.failures)
        assert rate is not None and rate > MIN_RPS, f"the rules would see no traffic: {rate}"
        assert alert_log.health()["polls"] >= HEALTHY_S, alert_log.health()
        assert seen == [], seen
