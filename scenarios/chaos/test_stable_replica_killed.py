"""stable-replica-killed.json: one of a stable service's two replicas SIGKILLed under load."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.load import read_events
from harness.local.haproxy import revision_of

pytestmark = [pytest.mark.chaos, pytest.mark.stack]


@pytest.mark.chaos_side_by_side("stable-replica-killed", "stable-replica-killed", {})  # its own service
def test_one_of_two_stable_replicas_killed(chaos_control, side_by_side, seam) -> None:
    journal = side_by_side.journal("stable-replica-killed")
    killed = journal.output("kill-one-replica")
    load = journal.output("load-under-kill")
    _meta, events, _end = read_events(Path(load["events"]))
    after = [e for e in events if e.t >= killed["at"]]
    failed = [e for e in events if not e.ok]
    served_after = {e.served_by for e in after if e.served_by}
    rev = chaos_control.profile.emulation.revision(chaos_control.profile.namespace, "chaos-replicas",
                                                   killed["revision"])
    with seam.check("replica-killed-error-rate", "one of two stable replicas SIGKILLed under load: error rate "
                                                 "stays under 2%, the other replica serves, the dead one restarts") as ev:
        ev.update(killed=killed, requests=len(events), after_kill=len(after), failed=len(failed),
                  statuses=load["statuses"], served_after=sorted(served_after),
                  restarts={r.name: r.restarts for r in rev.replicas})
        assert killed["replicas_before"] == 2 and len(killed["killed"]) == 1, killed
        assert len(after) >= 300, f"too little load after the kill: {len(after)}"
        assert len(failed) / len(events) <= 0.02, f"{len(failed)} of {len(events)} failed"
        assert all(revision_of(s) == killed["revision"] for s in served_after), served_after
        assert sum(r.restarts for r in rev.replicas) >= 1, "the killed replica was not restarted"
