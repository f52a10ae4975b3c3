"""Faults on the stack's processes: a revision's replicas killed (SIGKILL, a pod dying), a
component (MLflow, the artifact store, Prometheus) stopped and restored with its state. Only
processes the stack's registry owns are ever signalled."""

from __future__ import annotations

import time
from typing import Any

from harness.chaos.control import ChaosControl, ControlError
from harness.chaos.operations.services import service_status

__all__ = ["kill_replicas", "restore_component", "stop_component"]


def kill_replicas(control: ChaosControl, name: str, revision: str, count: int = 1) -> dict[str, Any]:
    """SIGKILL ``count`` replicas of one revision of one of our services (a pod dying)."""
    if name not in control.services and name != (control.context.template.get("metadata") or {}).get("name"):
        raise PermissionError(f"service {name!r} was not created by the harness; refusing to touch it")
    assert control.profile.emulation is not None
    if revision == "latest-ready":
        revision = service_status(control, name)["latest_ready"]
    rev = control.profile.emulation.revision(control.profile.namespace, name, revision)
    alive = [r for r in rev.replicas if r.process is not None and r.alive()]
    if len(alive) < count:
        raise ControlError(f"{revision} has {len(alive)} live replica(s), cannot kill {count}")
    killed = []
    for replica in alive[:count]:
        pid = replica.process.pid  # type: ignore[union-attr]
        if not control.profile.registry.owns(pid):
            raise PermissionError(f"pid {pid} ({replica.name}) is not a process the harness started")
        replica.process.kill()  # type: ignore[union-attr]
        killed.append({"replica": replica.name, "pid": pid})
    return {"killed": killed, "revision": revision, "replicas_before": len(alive), "at": time.time()}


def stop_component(control: ChaosControl, component: str) -> dict[str, Any]:
    pid = control.profile.fault_stop_component(component)
    control.record_fault("stopped", component, lambda: control.profile.fault_restore_component(component))
    return {"component": component, "stopped_pid": pid, "at": time.time()}


def restore_component(control: ChaosControl, component: str) -> dict[str, Any]:
    lifted = control.lift_fault("stopped", component)
    return {"component": component, "restored": bool(lifted), "at": time.time()}
