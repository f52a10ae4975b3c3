"""The canary suite's session: its own services, deployed from the model the conformance pipeline
trained and registered (canaries never disturb the conformance seams), and the scenario runner.

The split test runs first, on a service with no router history; meanwhile the runner deploys the
first judgement canaries (and plays the scenarios marked ``beside``), so the judgement tests that
follow start judging at once (harness/canary/scenarios.py says how the scenarios share the machine).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.canary.plan import ScenarioPlan
from harness.canary.probes import TAG_ROUTING
from harness.canary.scenarios import (
    ScenarioRunner,
    conformance_table,
    judge_makers,
    planned_scenarios,
    refused_scenarios,
)
from harness.item_order import sort_items_under
from harness.pipeline.params import trained_version
from harness.serving.isvc import IsvcClient, service_from_template, storage_uri_of
from harness.serving.storage import copy_storage

CANARY_ISVC = "rc-canary"
HERE = Path(__file__).parent
SPLIT_FIXTURE = "canary_service"  # what the split test asks for


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The split test first: the runner's first deploys overlap it instead of being waited for."""
    sort_items_under(items, HERE, lambda item: SPLIT_FIXTURE not in item.fixturenames)


@dataclass
class CanarySuite:
    runner: ScenarioRunner
    split_service: str | None  # None: no split test in this session


@pytest.fixture(scope="session")
def model_copies(stack, deployment):
    """make(tag) -> a storageUri holding the trained model under a new prefix (a 'new version')."""
    source = storage_uri_of(deployment.isvc)

    def make(tag: str) -> str:
        target = f"{source.rsplit('/', 1)[0]}/{tag}/model"
        copy_storage(source, target, stack.client_env())
        return target

    return make


@pytest.fixture(scope="session")
def judge_specs(run_settings) -> dict[str, str]:
    """Every judge graded (name -> spec): the built-ins and --judge, validated at configure time."""
    return dict(run_settings.judges)


@pytest.fixture(scope="session")
def canary_suite(request, stack, deployment, model_copies, judge_specs, run_settings, tmp_path_factory,
                 run_report, alert_log) -> Iterator[CanarySuite]:
    """The services the session's selected canary tests need, stood up side by side once: two for
    the judgement scenarios, one for those judged beside them, and a fresh one for the split test.

    The session's alert log is asked for here, before the runner judges anything: the dashboard
    alerts' tests (test_judgement.py) read it over judgements played long before they run, and
    each scenario's timeline lists the alerts active meanwhile.

    The split test needs a service whose router backend has no history: after the judgement's
    dozens of runtime weight changes and server swaps, HAProxy's weighted round robin sent 39% of
    1000 requests to a canary weighted 30% (twice, every server UP, weights 175/75); a new
    backend splits 700/300 exactly."""
    items = request.session.items
    planned = planned_scenarios(items)
    refused = refused_scenarios(stack, planned)  # their tests skip with the guard's reason
    plan = [s for s in planned if s.name not in refused]
    main = [CANARY_ISVC, f"{CANARY_ISVC}-b"] if any(not s.beside for s in plan) else []
    beside = f"{CANARY_ISVC}-beside" if any(s.beside for s in plan) else None
    split = f"{CANARY_ISVC}-split" if any(SPLIT_FIXTURE in item.fixturenames for item in items) else None
    names = main + [n for n in (beside, split) if n]
    client: IsvcClient = stack.isvc
    runner = None
    try:
        storage_uri = storage_uri_of(deployment.isvc)
        for name in names:  # created together, so their replicas start side by side (one replica per
            manifest = service_from_template(deployment.isvc, name, storage_uri)  # revision)
            # KServe tags the canary's target `latest` (the probes' route to it) only when asked
            manifest["metadata"]["annotations"].update(TAG_ROUTING)
            client.create_or_patch(manifest)
        for name in names:
            client.wait_ready(name, deadline_s=stack.config.isvc_deadline_s)
        runner = ScenarioRunner(stack, ScenarioPlan(tuple(plan), tuple(main), beside), make_copy=model_copies,
                                train_version=trained_version(deployment.run),
                                judges=judge_makers(judge_specs, run_settings.judge_factories),
                                workdir=tmp_path_factory.mktemp("canary"), refused=refused, alert_log=alert_log)
        runner.start()
        yield CanarySuite(runner, split)
    finally:
        if runner is not None:
            runner.close()
        for name in names:
            client.delete(name)
    if run_report is not None and runner is not None and runner.outcomes:
        run_report.add_artifact("judge-conformance.md", conformance_table(runner.outcomes))


@pytest.fixture(scope="module")
def canary_service(canary_suite) -> str:
    """The split test's service."""
    assert canary_suite.split_service is not None
    return canary_suite.split_service


@pytest.fixture(scope="module")
def runner(canary_suite) -> ScenarioRunner:
    return canary_suite.runner
