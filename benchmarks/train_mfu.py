"""Training MFU through our Ray Train path (FSDP2 on one device, bf16, compiled blocks) against the same model in a
bare PyTorch loop (issue 11, benchmark 5).

Both train the same registered model on the same uint8 patch batches (the synthetic source's shape) with AdamW:

* **ours**: ``vit-study train`` through the command's own code (``pipelines.cli.main``) on a local Ray with one
  worker, ``scaling.use_gpu=true``, ``parallel.mixed_precision=bf16``, ``parallel.compile=true``, synthetic data;
  per-step ``train/images_per_s`` and ``train/mfu`` are read back from MLflow;
* **bare loop**: one process, the model on the device, ``torch.compile`` of the whole model, bf16 autocast, fused
  AdamW, random patches made once on the device (no input pipeline at all).

MFU on both sides = 3 x forward FLOPs (``vit_model.forward_flops``) x images/s / the device's peak
(``pipelines.train.metrics.peak_flops``, the table the training loop uses). Medians over the steps after warm-up.

    .venv/bin/python benchmarks/train_mfu.py                              # vit-b/16 and vit-l/16 on the GPU
    .venv/bin/python benchmarks/train_mfu.py --models vit-ti/4 --image-size 32 --batch 32 --device cpu  # a dry run
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

import vit_model
from pipelines.train import metrics

BASE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train-smoke.yaml"  # every field below overrides it
EXPERIMENT = "train-mfu"
NUM_CLASSES = 1000


def bare_loop(name: str, image_size: int, batch: int, steps: int, warmup: int, device: torch.device,
              compile_: bool) -> dict:
    model = vit_model.create_model(name, num_classes=NUM_CLASSES, image_size=image_size, head="linear").to(device)
    cfg = model.config
    patches = torch.randint(0, 256, (batch, cfg.grid[0] * cfg.grid[1], cfg.patch_size ** 2 * 3), dtype=torch.uint8,
                            device=device)
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused, foreach=not fused)
    runner = torch.compile(model) if compile_ else model
    times = []
    for _ in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(runner(patches), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # the training loop reads its loss every step too
        times.append(time.perf_counter() - start)
    images_per_s = statistics.median(batch / t for t in times[warmup:])
    peak = metrics.peak_flops(device)
    achieved = vit_model.training_flops(vit_model.forward_flops(model), 1) * images_per_s
    return {"images_per_s": images_per_s, "mfu": achieved / peak if peak else None}


def ray_train(name: str, image_size: int, batch: int, steps: int, warmup: int, device: torch.device,
              work: Path) -> dict:
    from run_metrics import metric_history

    from pipelines import cli

    uri = f"sqlite:///{work / 'mlflow.db'}"
    run_name = f"{name.replace('/', '-')}-{image_size}"
    gpu = device.type == "cuda"
    args = ["train", "--config", str(BASE_CONFIG), "--tracking-uri", uri, "--storage-path", str(work / "runs"),
            "--run-name", run_name,
            f"tracking.experiment={EXPERIMENT}", f"model.name={name}", f"data.image_size={image_size}",
            "data.source=synthetic", f"data.num_classes={NUM_CLASSES}", f"data.synthetic_size={batch * 4}",
            f"data.synthetic_eval_size={batch}", f"schedule.global_batch_size={batch}",
            f"schedule.total={warmup + steps} steps", "schedule.warmup=1 steps", "scaling.num_workers=1",
            f"scaling.use_gpu={str(gpu).lower()}", f"parallel.mixed_precision={'bf16' if gpu else 'fp32'}",
            f"parallel.compile={str(gpu).lower()}", "eval.test=false", "eval.fewshot_shots=[]",
            "eval.every=null", "checkpoint.every=null", "checkpoint.export=false", "model.head=linear",
            "metrics.log_every=1000"]
    rc = cli.main(args)
    if rc:
        raise RuntimeError(f"vit-study {' '.join(args)} exited with {rc}")
    history = metric_history(uri, EXPERIMENT, run_name, (metrics.IMAGES_PER_S, metrics.MFU))
    after_warmup = [s for s in sorted(history[metrics.IMAGES_PER_S]) if s > warmup]
    mfu = [history[metrics.MFU][s] for s in after_warmup if s in history[metrics.MFU]]
    return {"images_per_s": statistics.median(history[metrics.IMAGES_PER_S][s] for s in after_warmup),
            "mfu": statistics.median(mfu) if mfu else None}


def _pct(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "n/a (no peak known)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit-b/16", "vit-l/16"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="measured steps, after --warmup")
    parser.add_argument("--warmup", type=int, default=10, help="steps not measured (compilation, allocator)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--no-compile", action="store_true", help="bare loop without torch.compile")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --device cpu for a dry run)")
    import ray

    from pipelines.train.ray_logs import RUNTIME_ENV

    work = Path(tempfile.mkdtemp(prefix="train-mfu-"))
    ray.init(include_dashboard=False, runtime_env=RUNTIME_ENV)
    rows = []
    try:
        for name in args.models:
            bare = bare_loop(name, args.image_size, args.batch, args.steps, args.warmup, device,
                             compile_=not args.no_compile and device.type == "cuda")
            ours = ray_train(name, args.image_size, args.batch, args.steps, args.warmup, device, work)
            rows.append((name, ours, bare))
            print({"model": name, "ours": ours, "bare": bare}, flush=True)
    finally:
        ray.shutdown()
    machine = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"\ntraining MFU, {args.image_size} px, batch {args.batch}, median of {args.steps} steps after "
          f"{args.warmup}; {date.today()}, {machine}, torch {torch.__version__}; runs in {work}")
    print("| model | ours img/s | ours MFU | bare loop img/s | bare loop MFU | ours / bare | goal |\n"
          "|---|---|---|---|---|---|---|")
    for name, ours, bare in rows:
        ratio = ours["images_per_s"] / bare["images_per_s"]
        print(f"| {name} | {ours['images_per_s']:.1f} | {_pct(ours['mfu'])} | {bare['images_per_s']:.1f} | "
              f"{_pct(bare['mfu'])} | {ratio:.3f} | MFU >= 50 %, >= 0.95x |")


if __name__ == "__main__":
    main()
