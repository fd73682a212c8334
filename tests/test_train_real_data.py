"""The Ray Data path of training: ready-made Ray datasets with uneven shards, and the CIFAR-10 preset on the real
JPEGs for a few dozen steps (both slow: each starts a Ray Train run with Ray Data)."""

from pathlib import Path

import numpy as np
import pytest
import ray

from pipelines.train import load_config, run_training

REPO = Path(__file__).resolve().parents[1]
CIFAR10 = REPO.parent / "shared" / "data" / "cifar10-jpg"



def _rows(count: int, seed: int) -> list[dict]:
    """Learnable rows in the data pipeline's schema: class-dependent mean brightness plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, count)
    patches = np.clip(labels[:, None, None] * 60 + rng.integers(-20, 21, (count, 64, 48)), 0, 255).astype(np.uint8)
    return [{"patches": p, "label": int(y)} for p, y in zip(patches, labels)]


@pytest.mark.slow
def test_ray_datasets_with_uneven_evaluation_shards(ray_cluster, tmp_path):
    cfg = load_config(None, ["model.name=vit-pi/4", "data.num_classes=4", "schedule.global_batch_size=32",
                             "schedule.total=12 steps", "schedule.warmup=2 steps", "eval.batch_size=16",
                             "eval.fewshot_train_size=40", "eval.fewshot_eval_size=33", "scaling.num_workers=2",
                             "tracking.enabled=false", "checkpoint.export=false", "metrics.log_every=4"])
    val = ray.data.from_items(_rows(101, 1))  # odd size: the two ranks' shards differ (lockstep evaluation)
    datasets = {"train": ray.data.from_items(_rows(256, 0)), "val": val, "test": ray.data.from_items(_rows(77, 2)),
                "fewshot_train": val.limit(40), "fewshot_eval": ray.data.from_items(_rows(33, 3))}
    result = run_training(cfg, run_name="ray-data", storage_path=str(tmp_path), datasets=datasets)
    metrics = result.metrics
    assert metrics["step"] == 12 and metrics["train/epoch"] == pytest.approx(12 * 32 / 256)
    assert metrics["val/top1"] > 0.5 and metrics["test/top1"] > 0.5  # 4 classes by brightness: easy
    assert {"fewshot/synthetic_1shot", "fewshot/synthetic_25shot"} <= metrics.keys()


@pytest.mark.slow
def test_a_worker_killed_in_the_second_epoch_resumes_its_ray_data_run(ray_cluster, tmp_path):
    # 8 steps per epoch; the checkpoint at step 10 is inside epoch 2, so the restarted workers start their
    # (prefetched) pipelines in the epoch the checkpoint names before any model exists
    cfg = load_config(None, ["model.name=vit-pi/4", "data.num_classes=4", "schedule.global_batch_size=32",
                             "schedule.total=14 steps", "schedule.warmup=2 steps", "eval.fewshot_shots=[]",
                             "scaling.num_workers=2", "tracking.enabled=false", "checkpoint.export=false",
                             "checkpoint.every=5 steps", "fault.kill_at_step=12", "fault.kill_rank=1",
                             "max_failures=1", "data.prefetch_batches=3"])
    datasets = {"train": ray.data.from_items(_rows(256, 0)), "val": ray.data.from_items(_rows(64, 1)),
                "test": ray.data.from_items(_rows(64, 2))}
    result = run_training(cfg, run_name="ray-data-killed", storage_path=str(tmp_path), datasets=datasets)
    metrics = result.metrics
    assert metrics["step"] == 14 and metrics["train/images_seen"] == 14 * 32
    assert metrics["train/epoch"] == pytest.approx(14 * 32 / 256)
    assert metrics["test/top1"] > 0.5


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR10.exists(), reason="the shared CIFAR-10 JPEGs are not on this machine")
def test_cifar10_preset_trains_on_the_real_jpegs(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the preset names its data relative to the project root
    cfg = load_config(REPO / "configs" / "train-cifar10-cpu.yaml", [
        "schedule.total=40 steps", "schedule.warmup=5 steps", "eval.every=null", "checkpoint.every=null",
        "eval.fewshot_eval_size=300", "tracking.enabled=false"])
    result = run_training(cfg, run_name="cifar10", storage_path=str(tmp_path))
    metrics = result.metrics
    assert metrics["step"] == 40 and metrics["train/epoch"] == pytest.approx(40 * 128 / 49000)
    assert metrics["test/top1"] > 0.15  # above chance (0.1) after 5k images
    assert {f"fewshot/cifar10_{k}shot" for k in (1, 5, 10, 25)} <= metrics.keys()
