"""canaryTrafficPercent in the local KServe emulation, measured at the router: N% goes to the new
revision (within 5 points over 1000 requests), removing the field promotes, 0 rolls back."""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness.local.haproxy import SERVED_BY_HEADER, backend_name, revision_of
from harness.pipeline.dataset import holdout_rows
from harness.serving.rollout import promote, rollback, split_of, start_canary
from harness.serving.v2 import v2_request

# Nightly with every live canary judgement (docs/canary.md): two minutes of load on two cores.
pytestmark = [pytest.mark.canary, pytest.mark.stack, pytest.mark.slow]

REQUESTS = 1000


CLIENTS = 4  # concurrent clients: the router's weighted round robin splits per request either way


def _served_by(stack, name: str, n: int) -> Counter:
    body = v2_request(holdout_rows(1))
    url = f"{stack.inference_base_url(name)}/v2/models/{name}/infer"

    def send(count: int) -> Counter:
        counts: Counter = Counter()
        with requests.Session() as session:
            for _ in range(count):
                resp = session.post(url, json=body, timeout=10)
                assert resp.status_code == 200, resp.text[:500]
                counts[revision_of(resp.headers[SERVED_BY_HEADER])] += 1
        return counts

    shares = [n // CLIENTS + (1 if i < n % CLIENTS else 0) for i in range(CLIENTS)]
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        return sum(pool.map(send, shares), Counter())


def test_canary_percent_promote_and_rollback_at_the_router(stack, canary_service, model_copies, seam) -> None:
    if stack.name != "local":
        pytest.skip("the split is counted from the local router's served-by header; on a cluster the "
                    "judgement scenarios read the split per revision from Prometheus instead")
    client = stack.isvc
    deadline = stack.config.isvc_deadline_s
    with seam.check("split", f"canaryTrafficPercent 30 sends 30% (+-5) of {REQUESTS} requests to the "
                                    "new revision, the rest to the rolled-out one") as ev:
        state = start_canary(client, canary_service, model_copies("split-v2"), 30, deadline_s=deadline)
        backend = backend_name(stack.namespace, canary_service)
        router_before = stack.router.server_stats(backend)
        counts = _served_by(stack, canary_service, REQUESTS)
        share = 100 * counts[state.canary] / REQUESTS
        ev.update(canary=state.canary, stable=state.stable, status_split=split_of(state.isvc),
                  served=dict(counts), canary_share_percent=round(share, 1),
                  router_before=router_before, router_after=stack.router.server_stats(backend))
        assert set(counts) <= {state.canary, state.stable}, counts
        assert abs(share - 30) <= 5, share
    with seam.check("split-promote", "removing canaryTrafficPercent sends 100% to the new revision and makes "
                                      "it the latest rolled-out revision") as ev:
        isvc = promote(client, canary_service, state, deadline_s=deadline)
        counts = _served_by(stack, canary_service, 200)
        comp = isvc["status"]["components"]["predictor"]
        ev.update(status_split=split_of(isvc), served=dict(counts),
                  latest_rolled_out=comp.get("latestRolledoutRevision"),
                  previous_rolled_out=comp.get("previousRolledoutRevision"))
        assert counts == Counter({state.canary: 200})
        assert comp["latestRolledoutRevision"] == state.canary
        assert comp["previousRolledoutRevision"] == state.stable
    with seam.check("split-rollback", "canaryTrafficPercent 0 on a new canary sends 100% back to the "
                                       "rolled-out revision") as ev:
        second = start_canary(client, canary_service, model_copies("split-v3"), 40, deadline_s=deadline)
        assert second.stable == state.canary
        isvc = rollback(client, canary_service, second, deadline_s=deadline)
        counts = _served_by(stack, canary_service, 200)
        ev.update(canary=second.canary, stable=second.stable, status_split=split_of(isvc), served=dict(counts),
                  traffic=isvc["status"]["components"]["predictor"]["traffic"])
        assert counts == Counter({second.stable: 200})
