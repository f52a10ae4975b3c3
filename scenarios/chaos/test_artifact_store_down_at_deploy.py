"""artifact-store-down-at-deploy.json: the artifact store down while a new revision deploys."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.chaos.runner import run_scenario
from harness.load import read_events
from harness.local.haproxy import revision_of

pytestmark = [pytest.mark.chaos, pytest.mark.stack]


@pytest.mark.slow  # about 2 minutes; nightly
@pytest.mark.chaos_alone("stops the artifact store, which every other run's replicas download their models from")
def test_artifact_store_down_at_deploy(chaos_control, journal_dir, alert_log, seam) -> None:
    journal = run_scenario("artifact-store-down-at-deploy", journal_dir)
    lint = journal.activity("deploy-through-lint")
    failed = journal.output("new-revision-status")
    load = journal.output("load-during-outage")
    listing = journal.output("stable-model-still-stored")
    _meta, events, _end = read_events(Path(load["events"]))
    served = {revision_of(e.served_by) for e in events if e.served_by}
    info = failed["model_status"].get("lastFailureInfo", {})
    with seam.check("artifact-store-down-at-deploy", "store down at deploy: lint refuses, the applied revision fails "
                                                     "in the storage initializer, stable serves with zero failures, "
                                                     "the store comes back with its objects") as ev:
        ev.update(lint=("".join(lint.get("exception") or []))[-300:], failure=info, served=sorted(served),
                  statuses=load["statuses"], requests=len(events), listing=listing["files"][:5])
        assert lint["status"] == "failed" and "cannot list storageUri" in "".join(lint.get("exception") or [])
        assert info.get("message") and "Could not connect" in info["message"] or "Connect" in str(info), info
        assert failed["failed_revision"] not in served and len(events) >= 300, served
        assert all(e.ok for e in events), load["statuses"]
        assert listing["has_mlmodel"], listing
    # The dashboard agrees: the outage never reached a client, so no serving-error alert fired for
    # the service (15 s after the load: the rules' window and hold).
    window = (min(e.t for e in events), max(e.end for e in events) + 15)
    found = alert_log.seen(start=window[0], end=window[1], alertname="SeamcheckServingErrorRate",
                           labels={"isvc": "chaos-store-down"})
    with seam.check("dashboard-alert", "the store outage at deploy raises no serving-error alert: the stable "
                                       "served every request", case="store-down-quiet") as ev:
        ev.update(window=window, alerts=found, log=alert_log.health(), requests=len(events))
        assert found == [], found
