"""The training step's accelerator request really lands on a GPU node (kind-gpu: the labelled,
tainted pool advertising nvidia.com/gpu; cloud: a node with a real GPU), and only there."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.conformance, pytest.mark.stack]

GPU_PROFILES = ("kind-gpu", "cloud")


@pytest.fixture(scope="module", autouse=True)
def _needs_gpu_scheduling(stack_config) -> None:
    if stack_config.profile not in GPU_PROFILES:
        pytest.skip(f"profile {stack_config.profile!r} schedules no pods (the local runner ignores resource "
                    f"requests); GPU placement is checked on {' and '.join(GPU_PROFILES)}")


def test_training_ran_on_the_gpu_pool(stack, stack_config, pipeline_run, seam) -> None:
    with seam.check("gpu-placement", "the train task's pod ran on a GPU node") as ev:
        evidence = stack.gpu_placement(pipeline_run)
        ev.update(evidence)
        assert evidence["on_gpu_node"], evidence
        if stack_config.profile == "cloud":
            assert evidence["real_gpu"], "the node carries no real GPU (seamcheck's fake pool or none)"


def test_training_is_unschedulable_when_the_gpu_node_is_cordoned(stack, stack_config, pipeline_run, seam) -> None:
    if stack_config.profile != "kind-gpu":
        pytest.skip("cordoning a node is done only on seamcheck's own kind-gpu cluster, never on a user's")
    with seam.check("gpu-only", "with the GPU node cordoned the train task's pod cannot be scheduled") as ev:
        evidence = stack.gpu_cordon_check(pipeline_run)
        ev.update(evidence)
        assert evidence["unschedulable"], evidence
