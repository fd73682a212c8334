"""The peer of a Ray Train run: the same model, recipe and data in a plain single-process PyTorch loop (no Ray, no
FSDP), for the same number of images. Acceptance 3 of the training issue compares their test top-1.

    python benchmarks/train_plain_loop.py --config configs/train-cifar10-cpu.yaml [key=value ...]

Same: the config (model, head, image size, global batch, steps, warm-up, decay, AdamW settings, clipping), the
initial weights (rank 0 of the Ray run draws them from ``torch.manual_seed(seed)`` exactly like this), the prepared
data and its subsets, and the decode/augment/patchify function of ``pipelines.data``. Different: one process,
a global shuffle per epoch instead of Ray Data's file order + local shuffle buffer, and its own augmentation draws.
Prints one JSON line with the test and validation top-1, images/s and wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

import vit_model
from pipelines import data
from pipelines.data.manifest import shard_paths
from pipelines.data.subsets import Plan, plan_selections
from pipelines.data.transforms import TRAIN_CROP_SCALE, augment_key, images_to_patches
from pipelines.train.config import load_config, model_options
from pipelines.train.data_adapter import data_options
from pipelines.train.optim import build_optimizer, build_scheduler, clip_grad_norm
from pipelines.train.plan import resolve_steps
from pipelines.train.sources import input_patch_size


def read_split(prepared, manifest, split: str) -> tuple[np.ndarray, np.ndarray, list]:
    """(ids, labels, encoded images) of a prepared split, in memory (CIFAR-10 is ~20 MB of JPEGs)."""
    ids, labels, images = [], [], []
    for path in shard_paths(prepared, manifest, split):
        table = pq.read_table(path, columns=["id", "label", "image"])
        ids.append(table.column("id").to_numpy())
        labels.append(table.column("label").to_numpy())
        images.extend(table.column("image").to_pylist())
    return np.concatenate(ids), np.concatenate(labels), images


def top1(model, images, labels, *, image_size: int, patch_size: int, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            patches = images_to_patches(images[start:start + batch_size], image_size=image_size,
                                        patch_size=patch_size, train=False)
            predictions = model(torch.from_numpy(patches)).argmax(-1).numpy()
            correct += int((predictions == labels[start:start + batch_size]).sum())
    model.train()
    return correct / len(labels)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.threads:
        torch.set_num_threads(args.threads)

    prepared = data.ensure_prepared(cfg.data.source)
    manifest = data.load_manifest(prepared)
    options = data_options(cfg)
    plan = Plan.from_manifest(manifest, **options)
    selections = plan_selections(prepared, manifest, plan)
    ids, labels, images = read_split(prepared, manifest, "train")
    keep_train, keep_val = selections["train"].mask(ids, labels), selections["val"].mask(ids, labels)
    train = (ids[keep_train], labels[keep_train], [im for im, k in zip(images, keep_train) if k])
    val = (labels[keep_val], [im for im, k in zip(images, keep_val) if k])
    _, test_labels, test_images = read_split(prepared, manifest, "test")
    num_classes, train_size = len(manifest["classes"]), len(train[1])
    assert train_size == data.subset_sizes(prepared, **options)["train"]

    steps = resolve_steps(cfg, train_size)
    torch.manual_seed(cfg.seed)  # the same draw as rank 0's broadcast initialisation in the Ray run
    model = vit_model.create_model(cfg.model.name, num_classes=num_classes, image_size=cfg.data.image_size,
                                   **model_options(cfg))
    patch_size = input_patch_size(model.config)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, total_steps=steps["total_steps"], warmup_steps=steps["warmup_steps"],
                                decay=cfg.schedule.decay)
    crop_scale = tuple(cfg.data.crop_scale) if cfg.data.crop_scale else TRAIN_CROP_SCALE
    batch = cfg.schedule.global_batch_size
    per_epoch = train_size // batch
    torch.manual_seed(cfg.seed + 1)
    started, step, losses = time.perf_counter(), 0, []
    model.train()
    while step < steps["total_steps"]:
        epoch = step // per_epoch
        order = np.random.default_rng([cfg.data.seed, epoch]).permutation(train_size)
        for within in range(step % per_epoch, per_epoch):
            rows = order[within * batch:(within + 1) * batch]
            patches = images_to_patches([train[2][i] for i in rows], image_size=cfg.data.image_size,
                                        patch_size=patch_size, train=True, ids=train[0][rows],
                                        key=augment_key(cfg.data.seed, epoch), crop_scale=crop_scale)
            loss = F.cross_entropy(model(torch.from_numpy(patches)), torch.from_numpy(train[1][rows]))
            loss.backward()
            grad_norm = clip_grad_norm(model.parameters(), cfg.optim.grad_clip)
            if not (math.isfinite(loss.item()) and math.isfinite(grad_norm.item())):
                raise FloatingPointError(f"non-finite loss at step {step + 1}")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            losses.append(loss.item())
            if step % 100 == 0:
                print(f"step {step}/{steps['total_steps']} loss {np.mean(losses[-100:]):.4f} "
                      f"{step * batch / (time.perf_counter() - started):.0f} img/s", flush=True)
            if step == steps["total_steps"]:
                break
    train_seconds = time.perf_counter() - started
    result = {
        "config": args.config, "overrides": args.overrides, "model": cfg.model.name, "steps": step,
        "images": step * batch, "train_seconds": round(train_seconds, 1),
        "images_per_s": round(step * batch / train_seconds, 1), "final_loss": float(np.mean(losses[-50:])),
        "val_top1": top1(model, val[1], val[0], image_size=cfg.data.image_size, patch_size=patch_size),
        "test_top1": top1(model, test_images, test_labels, image_size=cfg.data.image_size, patch_size=patch_size),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
