"""Time the training loop waits for data inside a real training run: ``vit-study train`` on the CIFAR-10 preset
(Ray Data reading the prepared JPEGs; a quarter of the training split, so that the run crosses epoch boundaries, where
Ray Data starts a new read), against the same run fed by the in-memory synthetic source (no input
pipeline: what the steps cost without data).

Both runs go through the command's own code (``pipelines.cli.main(["train", ...])``) on one local Ray started here
with ``num_cpus`` CPUs and no dashboard. Every step logs ``train/step_time_s`` (from the first batch request to
the optimiser update) and ``train/data_wait_frac`` (the part of it blocked on the batch iterator); they are read
back from MLflow. Reported: the waiting share of all step time (sum of waits / sum of step times), the same without
the first step (the pipeline's start-up), the worst step, and the median images/s of the runs. A third run,
``data.prefetch_batches=0``, is the loop without its background batch thread (what the prefetching saves).

    .venv/bin/python benchmarks/data_wait.py                     # 250 steps of 128 (2.6 epochs), then synthetic
    .venv/bin/python benchmarks/data_wait.py --steps 100 --no-peer
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import ray
from run_metrics import metric_history

from pipelines import cli
from pipelines.train import metrics
from pipelines.train.ray_logs import RUNTIME_ENV

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "train-cifar10-cpu.yaml"
EXPERIMENT = "data-wait"
TRAIN_FRACTION = 0.25  # 12,250 images: an epoch of 96 steps, so a short run crosses epoch boundaries (new reads)
SYNTHETIC = ["data.source=synthetic", "data.num_classes=10", "data.synthetic_size=12288"]


def run(name: str, overrides: list[str], work: Path) -> dict:
    uri = f"sqlite:///{work / 'mlflow.db'}"
    args = ["train", "--config", str(CONFIG), "--tracking-uri", uri, "--storage-path", str(work / "runs"),
            "--run-name", name, f"tracking.experiment={EXPERIMENT}", *overrides]
    start = time.perf_counter()
    rc = cli.main(args)
    wall = time.perf_counter() - start
    if rc:
        raise RuntimeError(f"vit-study {' '.join(args)} exited with {rc}")
    history = metric_history(uri, EXPERIMENT, name, (metrics.STEP_TIME, metrics.DATA_WAIT, metrics.IMAGES_PER_S))
    steps = sorted(history[metrics.STEP_TIME])
    step_time = [history[metrics.STEP_TIME][s] for s in steps]
    wait = [history[metrics.STEP_TIME][s] * history[metrics.DATA_WAIT][s] for s in steps]
    return {"name": name, "steps": len(steps), "wall": wall, "step_sum": sum(step_time), "wait_sum": sum(wait),
            "wait_share": sum(wait) / sum(step_time), "wait_share_after_1": sum(wait[1:]) / sum(step_time[1:]),
            "first_wait": wait[0], "worst_wait": max(wait[1:]),
            "slow_steps": sum(w > 0.05 * t for w, t in zip(wait[1:], step_time[1:], strict=True)),
            "images_per_s": statistics.median(history[metrics.IMAGES_PER_S][s] for s in steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true", help="skip the synthetic-data run")
    parser.add_argument("--no-unprefetched", action="store_true", help="skip the run without the batch thread")
    args = parser.parse_args()
    common = [f"schedule.total={args.steps} steps", "schedule.warmup=50 steps", f"data.train_fraction={TRAIN_FRACTION}",
              "eval.every=null", "eval.test=false", "eval.fewshot_shots=[5]", "eval.fewshot_seeds=1",
              "checkpoint.export=false"]
    rows, loads = [], [os.getloadavg()[0]]
    work = Path(tempfile.mkdtemp(prefix="data-wait-"))
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, runtime_env=RUNTIME_ENV)
    try:
        rows.append(run("ray-data", common, work))
        loads.append(os.getloadavg()[0])
        if not args.no_unprefetched:
            rows.append(run("ray-data-unprefetched", common + ["data.prefetch_batches=0"], work))
            loads.append(os.getloadavg()[0])
        if not args.no_peer:
            rows.append(run("synthetic", common + SYNTHETIC, work))
            loads.append(os.getloadavg()[0])
    finally:
        ray.shutdown()
    print(f"\ndata wait inside `vit-study train` ({CONFIG.name}, {args.steps} steps of 128), {args.num_cpus} CPUs; "
          f"{date.today()}; load average at start / after each run: {' / '.join(f'{x:.1f}' for x in loads)}; "
          f"runs in {work}")
    print("| run | steps | wall s | step time s (sum) | waiting (all steps) | waiting (after step 1) | goal "
          "| first-batch wait s | worst later wait s | later steps > 5% waiting | images/s (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['steps']} | {r['wall']:.0f} | {r['step_sum']:.1f} | {r['wait_share']:.2%} | "
              f"{r['wait_share_after_1']:.2%} | < 5% | {r['first_wait']:.2f} | {r['worst_wait']:.2f} | "
              f"{r['slow_steps']} | {r['images_per_s']:.0f} |")
    if rows[-1]["name"] == "synthetic":
        ratio = rows[0]["images_per_s"] / rows[-1]["images_per_s"]
        print(f"images/s Ray Data / synthetic (median per-step): {ratio:.3f}")


if __name__ == "__main__":
    main()
