"""Images/s of the training data path (decode + Inception crop + flip + patchify): Ray Data versus a torch
``DataLoader`` with the same number of worker processes doing the same work.

Both read the same prepared Parquet shards and call the same batch function (``pipelines.data.pipeline.
decode_batch``: torchvision decode, torchvision ``resized_crop``, ``vit_model.patchify_numpy``) and hand the
consumer batches of the same size as torch tensors. Rounds alternate Ray / DataLoader / plain loop so load from
other processes on the machine hits all alike; medians and the per-round Ray/DataLoader ratio are reported.

    .venv/bin/python benchmarks/data_path.py                       # CIFAR-10 32 px, hymenoptera 224 and 384 px
    .venv/bin/python benchmarks/data_path.py --rounds 5 --workers 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipelines.data import build_datasets, load_manifest, prepare_dataset, subset_sizes
from pipelines.data.manifest import shard_paths
from pipelines.data.pipeline import decode_batch, decoded_batch_rows
from pipelines.data.subsets import Plan, plan_selections

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CASES = [  # (name, source, split names, image size, patch size, passes over the data per measurement)
    ("CIFAR-10 JPEG 32 px", "cifar10-jpg", None, 32, 4, 1),
    ("hymenoptera photos -> 224", "hymenoptera", ["train", "val=train"], 224, 16, 3),
    ("hymenoptera photos -> 384", "hymenoptera", ["train", "val=train"], 384, 16, 2),
]


class ShardBatches(IterableDataset):
    """The DataLoader twin of the Ray pipeline: worker ``i`` reads every ``i``-th shard, row group by row group,
    runs ``decode_batch`` on ``decoded_batch_rows`` rows at a time and yields torch batches of ``batch_size``."""

    def __init__(self, files: list[str], batch_size: int, **transform):
        self.files, self.batch_size, self.transform = files, batch_size, transform

    def __iter__(self):
        info = get_worker_info()
        files = self.files[info.id::info.num_workers] if info else self.files
        rows = decoded_batch_rows(self.transform["image_size"])
        patches, labels = [], []
        for path in files:
            for table in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=["id", "label", "image"]):
                out = decode_batch(table, train=True, with_ids=False, **self.transform)
                if out is None:  # no selected rows in this batch
                    continue
                patches.append(out["patches"])
                labels.append(out["label"])
                while sum(len(x) for x in labels) >= self.batch_size:
                    yield from self._emit(patches, labels)
        if labels:
            all_patches, all_labels = np.concatenate(patches), np.concatenate(labels)
            if len(all_labels):
                yield {"patches": torch.from_numpy(all_patches), "label": torch.from_numpy(all_labels)}

    def _emit(self, patches: list, labels: list):
        all_patches, all_labels = np.concatenate(patches), np.concatenate(labels)
        patches[:] = [all_patches[self.batch_size:]]
        labels[:] = [all_labels[self.batch_size:]]
        yield {"patches": torch.from_numpy(all_patches[: self.batch_size].copy()),
               "label": torch.from_numpy(all_labels[: self.batch_size].copy())}


def timed(passes: int, make) -> tuple[float, float, int]:
    """(images/s, seconds to the first batch, images) over ``passes`` iterations of ``make()``."""
    images, first = 0, None
    start = time.perf_counter()
    for _ in range(passes):
        for batch in make():
            if first is None:
                first = time.perf_counter() - start
            images += len(batch["label"])
    return images / (time.perf_counter() - start), first or 0.0, images


def prepared_dir(cache: Path, source: str, split_names) -> Path:
    out = cache / source
    if not (out / "manifest.json").exists():
        prepare_dataset(str(DATA / source), str(out), split_names=split_names, progress=False)
    return out


def run_case(name, prepared, image_size, patch_size, passes, *, workers, rounds, batch_size, train_count,
             read_tasks):
    count = min(train_count, subset_sizes(prepared, val_fraction=0.0)["train"])
    ray_ds = build_datasets(prepared, image_size=image_size, patch_size=patch_size, val_fraction=0.0,
                            train_count=count, splits=("train",), read_tasks=read_tasks)["train"]
    manifest = load_manifest(prepared)
    # The same subset as Ray's train dataset, applied by the same function on the same shards.
    selection = plan_selections(prepared, manifest, Plan.from_manifest(manifest, train_count=count,
                                                                       val_fraction=0.0))["train"]
    transform = dict(image_size=image_size, patch_size=patch_size, seed=0, crop_scale=(0.08, 1.0),
                     selection=selection)
    files = shard_paths(prepared, manifest, "train")
    loader = DataLoader(ShardBatches(files, batch_size, **transform), batch_size=None, num_workers=workers,
                        persistent_workers=True, prefetch_factor=2, multiprocessing_context="spawn")
    plain = ShardBatches(files, batch_size, **transform)
    def plain_loop():
        torch.set_num_threads(1)  # like a DataLoader worker or a Ray task: one thread per process
        try:
            yield from plain
        finally:
            torch.set_num_threads(threads)

    threads = torch.get_num_threads()
    runs = {
        "ray": lambda: ray_ds.iter_torch_batches(batch_size=batch_size),
        "dataloader": lambda: iter(loader),
        "plain loop (1 process)": plain_loop,
    }
    results = {key: [] for key in runs}
    for round_index in range(rounds + 1):  # round 0 warms up workers and caches
        for key, make in runs.items():
            if key.startswith("plain") and round_index > 1:
                continue  # one measured round of the single-process reference is enough
            rate, first, images = timed(passes, make)
            if round_index:
                results[key].append((rate, first, images))
    ray_rates = [r[0] for r in results["ray"]]
    dl_rates = [r[0] for r in results["dataloader"]]
    ratios = [r / d for r, d in zip(ray_rates, dl_rates)]
    return {
        "case": name, "images": results["ray"][0][2],
        "ray": statistics.median(ray_rates), "dataloader": statistics.median(dl_rates),
        "plain": statistics.median(r[0] for r in results["plain loop (1 process)"]),
        "ratio": statistics.median(ratios), "ratios": ratios,
        "ray_first": statistics.median(r[1] for r in results["ray"]),
        "dl_first": statistics.median(r[1] for r in results["dataloader"]),
        "ray_stats": ray_ds.stats(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="Ray CPUs = DataLoader worker processes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-count", type=int, default=50_000, help="at most this many images per pass")
    parser.add_argument("--read-tasks", type=int, help="Ray read+decode tasks per pass (default: build_datasets')")
    parser.add_argument("--cache", default=".vit-study/bench-data", help="where prepared data is kept")
    parser.add_argument("--only", help="run the cases whose name contains this")
    parser.add_argument("--stats", action="store_true", help="print Ray Data's per-operator stats")
    args = parser.parse_args()

    import ray

    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    try:
        rows = []
        for name, source, split_names, image_size, patch_size, passes in CASES:
            if args.only and args.only not in name:
                continue
            prepared = prepared_dir(Path(args.cache), source, split_names)
            row = run_case(name, prepared, image_size, patch_size, passes, workers=args.workers,
                           rounds=args.rounds, batch_size=args.batch_size, train_count=args.train_count,
                           read_tasks=args.read_tasks)
            rows.append(row)
            print(f"{name}: ray {row['ray']:.0f}/s, dataloader {row['dataloader']:.0f}/s, plain "
                  f"{row['plain']:.0f}/s, ratio {row['ratio']:.2f} (rounds {[round(r, 2) for r in row['ratios']]})",
                  flush=True)
            if args.stats:
                print(row["ray_stats"])
    finally:
        ray.shutdown()
    load = os.getloadavg()
    print(f"\n{date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, ray {ray.__version__}, load average {load[0]:.1f}/{load[1]:.1f}\n")
    print("| case | images/pass | Ray Data img/s | DataLoader img/s | Ray / DataLoader | plain loop img/s (1 proc) "
          "| first batch Ray / DL (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['images']:,} | {r['ray']:.0f} | {r['dataloader']:.0f} | {r['ratio']:.2f} "
              f"| {r['plain']:.0f} | {r['ray_first']:.2f} / {r['dl_first']:.2f} |")


if __name__ == "__main__":
    main()
