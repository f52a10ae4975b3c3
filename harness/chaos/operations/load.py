"""Locust load against one of the stack's services (a subprocess), started and finished by
separate activities, with what its requests met per revision."""

from __future__ import annotations

import time
from typing import Any

from harness.chaos.control import ChaosControl, ControlError
from harness.load import start_load as start_locust
from harness.local.activator import HOLD_S
from harness.local.haproxy import revision_of

#: Locust's start (imports, its users) until its first request, on a busy machine.
FIRST_REQUEST_DEADLINE_S = 60.0

__all__ = ["finish_load", "start_load"]


def start_load(
    control: ChaosControl,
    service: str,
    seconds: float,
    rate: float = 30.0,
    users: int = 6,
    load_id: str | None = None,
) -> dict[str, Any]:
    """Locust against ``service`` (a subprocess), returning once its first request is logged;
    ``load_id`` (default: the service's name) is how a later activity finds it, since an
    experiment cannot pass one activity's output on."""
    load_id = load_id or service
    if load_id in control.loads:
        raise ControlError(f"a load named {load_id!r} is already running; finish it first")
    out = control.workdir / "loads" / f"{load_id}-{next(control.ids)}"
    handle = start_locust(
        control.profile.inference_base_url(service),
        service,
        control.context.rows_path,
        users=users,
        spawn_rate=users,
        duration_s=seconds,
        target_rps=rate,
        out_dir=out,
        # Longer than the activator holds a request for a cold start: what is
        # measured is the stack's answer, not the client giving up first.
        request_timeout_s=HOLD_S + 5,
    )
    control.loads[load_id] = handle
    waited = handle.wait_for_first_request(FIRST_REQUEST_DEADLINE_S)
    return {
        "load_id": load_id,
        "events": str(handle.events_path),
        "started": time.time(),
        "first_request_after_s": round(waited, 1),
    }


def finish_load(control: ChaosControl, load_id: str, stop: bool = False) -> dict[str, Any]:
    """Wait for (or with ``stop`` end) a load and report what its requests met."""
    handle = control.loads.pop(load_id, None)
    if handle is None:
        raise ControlError(f"no running load {load_id!r}")
    with handle:
        result = handle.stop() if stop else handle.result()
    per_revision: dict[str, int] = {}
    for event in result.events:
        if event.served_by:
            rev = revision_of(event.served_by)
            per_revision[rev] = per_revision.get(rev, 0) + 1
    total = result.between(0, 1e9)
    return {
        "load_id": load_id,
        "requests": result.requests,
        "failures": result.failures,
        "failures_5xx": total.failures_5xx,
        "statuses": {str(k): v for k, v in total.statuses.items()},
        "per_revision": per_revision,
        "events": str(handle.events_path),
        "error_rate": round(result.failures / result.requests, 5) if result.requests else None,
    }
