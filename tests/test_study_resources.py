"""The resource plan: concurrency and CPU shares computed from the cluster never hang (trial drivers take no CPU,
a whole CPU stays free for Ray Data), use what there is, and a trial that could never run is a clear error."""

import itertools

import pytest

from pipelines.study.config import ResourcesSection
from pipelines.study.resources import MIB, MIN_CPUS_PER_WORKER, ClusterCapacity, plan_resources
from pipelines.train.config import ConfigError, ScalingSection


def _cluster(*nodes: dict, autoscaling: bool = False) -> ClusterCapacity:
    total = {}
    for node in nodes:
        for key, value in node.items():
            total[key] = total.get(key, 0) + value
    return ClusterCapacity(total, list(nodes), autoscaling)


LAPTOP = _cluster({"CPU": 2, "memory": 8 * 2**30})
TWO_NODES = _cluster({"CPU": 2, "memory": 8 * 2**30}, {"CPU": 2, "memory": 8 * 2**30})


def _plan(capacity, *, trials=8, wanted=None, uses_ray_data=True, **scaling):
    return plan_resources(ScalingSection(**scaling), ResourcesSection(max_concurrent_trials=wanted), capacity,
                          num_trials=trials, uses_ray_data=uses_ray_data)


def test_two_cores_two_workers_is_the_plan_that_worked_by_hand():
    # ../shared/NOTES-ray-mlflow.md: 0.5 CPU per worker, one CPU left for Ray Data, the driver on no CPU
    plan = _plan(LAPTOP, num_workers=2, data_cpus=1.0)
    assert (plan.max_concurrent_trials, plan.cpus_per_worker, plan.data_cpus) == (1, 0.5, 1.0)
    assert "CPU" not in plan.trial_resources and plan.trial_resources["memory"] == 512 * MIB


def test_asking_for_more_trials_at_once_shares_the_cpus():
    plan = _plan(LAPTOP, num_workers=1, data_cpus=0.5, wanted=2)
    assert (plan.max_concurrent_trials, plan.cpus_per_worker, plan.data_cpus) == (2, 0.5, 1.0)


def test_bigger_machines_run_one_trial_per_cpu_and_no_more_trials_than_exist():
    plan = _plan(_cluster({"CPU": 16}), num_workers=1, data_cpus=1.0)
    assert (plan.max_concurrent_trials, plan.cpus_per_worker) == (8, 1.0)
    assert _plan(_cluster({"CPU": 16}), trials=3, num_workers=1).max_concurrent_trials == 3


def test_shares_of_a_cpu_or_more_are_whole_so_a_node_keeps_a_whole_cpu_free():
    # 4 CPUs on two nodes, 2 trials: 1.5 CPUs each would leave half a CPU on each node and no Ray Data task runs
    plan = _plan(TWO_NODES, num_workers=1, data_cpus=0.5, wanted=2)
    assert (plan.max_concurrent_trials, plan.cpus_per_worker) == (2, 1.0)


@pytest.mark.parametrize("cpus, workers, data_cpus, wanted", itertools.product(
    [1, 2, 3, 4, 8, 12, 64], [1, 2, 3, 4], [0.5, 1.0, 2.0], [None, 1, 2, 5]))
def test_no_plan_oversubscribes_starves_ray_data_or_crawls(cpus, workers, data_cpus, wanted):
    capacity = _cluster({"CPU": cpus})
    try:
        plan = _plan(capacity, num_workers=workers, data_cpus=data_cpus, wanted=wanted, trials=10)
    except ConfigError as error:
        assert str(error).startswith("train.scaling")
        # refused only when even one trial with the smallest share (or the asked-for number) cannot fit
        k = wanted or 1
        assert k * (workers * MIN_CPUS_PER_WORKER + data_cpus) > cpus or k * data_cpus < 1
        return
    k, share = plan.max_concurrent_trials, plan.cpus_per_worker
    assert 1 <= k <= min(10, wanted or 10)
    assert share >= MIN_CPUS_PER_WORKER and (share < 1 or share == int(share))
    assert k * (workers * share + data_cpus) <= cpus + 1e-9  # everything placed at once fits
    assert cpus - k * workers * share >= 1  # at least one whole CPU for Ray Data's tasks
    if wanted is None and cpus >= workers + data_cpus:
        assert share >= 1  # not split finer than one CPU per worker unless asked to


def test_gpu_trials_one_per_gpu_group_with_the_nodes_cpus_per_gpu():
    node = {"CPU": 96, "GPU": 8, "memory": 1e12}
    plan = _plan(_cluster({"CPU": 8}, node, node), num_workers=8, use_gpu=True, data_cpus=16.0)
    assert plan.max_concurrent_trials == 2  # 16 GPUs / 8 per trial
    assert plan.cpus_per_worker == 10.0  # (200 CPUs - 2 x 16 for Ray Data) / 16 workers, rounded down
    plan = _plan(_cluster(node), num_workers=1, use_gpu=True, data_cpus=4.0)
    assert (plan.max_concurrent_trials, plan.cpus_per_worker) == (8, 8.0)
    plan = _plan(_cluster(node), num_workers=1, use_gpu=True, data_cpus=0.0, uses_ray_data=False)
    assert plan.cpus_per_worker == 12.0  # capped at the node's CPUs per GPU: a worker fits next to its GPU


def test_gpus_asked_of_a_cpu_only_cluster_is_an_error_naming_the_field():
    with pytest.raises(ConfigError, match=r"^train\.scaling\.use_gpu: .*has no GPU"):
        _plan(TWO_NODES, num_workers=1, use_gpu=True)
    with pytest.raises(ConfigError, match=r"^train\.scaling\.use_gpu: a trial of 8 GPU worker\(s\) needs 8"):
        _plan(_cluster({"CPU": 32, "GPU": 4}), num_workers=8, use_gpu=True)


def test_an_autoscaling_cluster_is_planned_for_the_size_it_may_reach():
    gpu_type = {"CPU": 48, "GPU": 4}
    capacity = ClusterCapacity({"CPU": 8 + 4 * 48, "GPU": 16}, [{"CPU": 8}, gpu_type], autoscaling=True)
    plan = _plan(capacity, num_workers=4, use_gpu=True, data_cpus=8.0)
    assert plan.max_concurrent_trials == 4 and plan.cpus_per_worker == 10.0
    assert "up to 200 CPUs and 16 GPUs" in capacity.describe()


@pytest.mark.parametrize("capacity, scaling, match", [
    (LAPTOP, {"num_workers": 1, "cpus_per_worker": 4.0}, r"^train\.scaling: .*never be scheduled.*the cluster has 2"),
    (LAPTOP, {"num_workers": 30, "data_cpus": 1.0}, r"^train\.scaling: .*never be scheduled"),
    (LAPTOP, {"num_workers": 1, "data_cpus": 2.0}, r"^train\.scaling: .*never be scheduled"),
    (TWO_NODES, {"num_workers": 1, "cpus_per_worker": 3.0}, r"^train\.scaling\.cpus_per_worker: .*more than any node"),
    (LAPTOP, {"num_workers": 1, "data_cpus": 0.25}, r"^train\.scaling\.data_cpus: .*one whole CPU"),
])
def test_a_trial_that_could_never_run_is_an_error(capacity, scaling, match):
    with pytest.raises(ConfigError, match=match):
        _plan(capacity, **scaling)


def test_without_ray_data_no_cpu_needs_to_stay_free():
    plan = _plan(LAPTOP, num_workers=2, data_cpus=0.0, uses_ray_data=False)
    assert (plan.max_concurrent_trials, plan.cpus_per_worker) == (1, 1.0)


def test_a_driver_bigger_than_any_node_is_an_error():
    with pytest.raises(ConfigError, match=r"^resources\.driver_memory_mb"):
        plan_resources(ScalingSection(), ResourcesSection(driver_memory_mb=64 * 1024), LAPTOP, num_trials=1)
