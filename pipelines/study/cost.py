"""What a study costs, from the FLOP accounting alone: no data, no Ray, no GPU needed.

    python -m pipelines.study.cost configs/study-imagenet21k.yaml --train-images 14.2e6 --peak-tflops 312

Each trial costs ``3 x forward FLOPs per image x images seen`` (``vit_model.training_flops``), with the images seen
that the training driver will use (its step count times the global batch); a device of peak ``P`` FLOP/s at
model-FLOPs utilisation ``MFU`` needs ``FLOPs / (P x MFU)`` seconds of it. The training pool is given as a number
of images (subsets are ``round(fraction x pool)``), so the estimate works before the data is at hand.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from pipelines.train.config import SYNTHETIC

from .config import StudyConfig, load_study_config
from .grid import DataFacts, expand_grid

DEFAULT_MFU = 0.40


@dataclass(frozen=True)
class StudyCost:
    trials: int
    train_flops: float

    def device_hours(self, peak_tflops: float, mfu: float = DEFAULT_MFU) -> float:
        return self.train_flops / (peak_tflops * 1e12 * mfu) / 3600.0


def estimate_cost(cfg: StudyConfig, *, train_images: int, num_classes: int | None = None) -> StudyCost:
    """Training FLOPs of every trial of ``cfg`` on a training pool of ``train_images`` images."""
    grid = cfg.grid
    sizes = grid.data_counts if grid.data_counts is not None else grid.data_fractions
    subset = {v: int(v) if grid.data_counts is not None else max(1, round(v * train_images)) for v in sizes}
    classes = num_classes or cfg.train.data.num_classes or 10
    source = cfg.train.data.source if cfg.train.data.source != SYNTHETIC else SYNTHETIC
    trials = expand_grid(cfg, DataFacts(source, classes, int(train_images), subset))
    flops = sum(3.0 * t.params["forward_gflops"] * 1e9 * t.params["budget"] for t in trials)
    return StudyCost(len(trials), flops)


def hours_text(hours: float) -> str:
    """``13,103`` for large numbers, two significant digits for small ones (``0.41``)."""
    return f"{hours:,.0f}" if hours >= 100 else f"{hours:.2g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="study config YAML")
    parser.add_argument("--train-images", type=float, required=True, help="images in the training pool")
    parser.add_argument("--num-classes", type=int, help="classes of the data (default: train.data.num_classes)")
    parser.add_argument("--peak-tflops", type=float, action="append", help="device peak, TFLOP/s (repeatable)")
    parser.add_argument("--mfu", type=float, default=DEFAULT_MFU, help="assumed model-FLOPs utilisation")
    args = parser.parse_args(argv)
    cost = estimate_cost(load_study_config(args.config), train_images=int(args.train_images),
                         num_classes=args.num_classes)
    print(f"{cost.trials} trials, {cost.train_flops:.2e} training FLOPs")
    for peak in args.peak_tflops or []:
        print(f"  {hours_text(cost.device_hours(peak, args.mfu))} device-hours at {peak:g} TFLOP/s and "
              f"{args.mfu:.0%} MFU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
