"""A synthetic scaling study for the analysis tests (not a test module): a full grid with a known error law.

err = 0.04 + 0.9 * (params / 1e5) ** -0.25 * 0.5 + 0.5 * (data / 1e3) ** -0.3 + 0.3 * (images / 1e4) ** -0.35,
scaled up by a learning-rate penalty away from the best lr. Numbers are made up; only their structure matters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# variant: (family, params, forward GFLOPs per image, patch size)
VARIANTS = {
    "vit-pi/8": ("vit", 200_000, 0.012, 8),
    "vit-mu/8": ("vit", 1_200_000, 0.07, 8),
    "vit-mu/4": ("vit", 1_250_000, 0.28, 4),
    "resnet-8": ("resnet", 80_000, 0.03, None),
    "resnet-14": ("resnet", 600_000, 0.09, None),
}
FRACTIONS = (0.1, 0.3, 1.0)
FULL_DATA = 50_000
BUDGET_EPOCHS = (1.0, 4.0)
LRS = (1e-3, 3e-3)
BEST_LR = 1e-3


def synthetic_error(params: float, data: float, images: float, lr: float) -> float:
    base = 0.04 + 0.45 * (params / 1e5) ** -0.25 + 0.5 * (data / 1e3) ** -0.3 + 0.3 * (images / 1e4) ** -0.35
    return min(base * (1 + 0.3 * abs(np.log10(lr / BEST_LR))), 0.9)


def synthetic_study(variants=VARIANTS, fractions=FRACTIONS, budget_epochs=BUDGET_EPOCHS, lrs=LRS,
                    failed: int = 1, fewshot: bool = True) -> pd.DataFrame:
    """One row per trial of the grid (plus ``failed`` failed trials without metrics), results-table columns."""
    rows = []
    for variant, (family, params, gflops, patch) in variants.items():
        for fraction in fractions:
            count = int(round(fraction * FULL_DATA))
            for epochs in budget_epochs:
                images = int(epochs * count)
                for lr in lrs:
                    err = synthetic_error(params, count, images, lr)
                    row = {
                        "trial_id": f"t{len(rows):03d}", "family": family, "variant": variant, "params": params,
                        "forward_gflops": gflops, "image_size": 32, "patch_size": patch, "data_fraction": fraction,
                        "data_count": count, "budget": images, "budget_epochs": epochs, "lr": lr, "top1": 1 - err,
                        "train_flops": 3 * gflops * 1e9 * images, "wall_time_s": 1e-6 * gflops * 1e9 * images / 1e3,
                        "device_hours": 1e-9 * gflops * 1e9 * images / 3.6e6, "status": "finished", "note": None,
                    }
                    if fewshot:
                        row["fewshot_cifar10_5shot"] = 1 - min(1.3 * err, 0.9)
                    rows.append(row)
    for _ in range(failed):
        rows.append({"trial_id": f"t{len(rows):03d}", "family": "vit", "variant": "vit-mu/4", "params": 1_250_000,
                     "forward_gflops": 0.28, "image_size": 32, "patch_size": 4, "data_fraction": 1.0,
                     "data_count": FULL_DATA, "budget": 4 * FULL_DATA, "budget_epochs": 4.0, "lr": 1e-2,
                     "status": "failed", "note": "loss became NaN at step 12"})
    return pd.DataFrame(rows)


def synthetic_curves(table: pd.DataFrame, steps: int = 8) -> pd.DataFrame:
    """``trial_id, step, metric, value`` curves (loss, lr, val_top1) for every finished trial."""
    rows = []
    for trial in table[table["status"] == "finished"].itertuples():
        for step in range(1, steps + 1):
            frac = step / steps
            rows += [(trial.trial_id, step, "loss", 2.3 * (1 - trial.top1) ** frac + 0.01),
                     (trial.trial_id, step, "lr", trial.lr * min(1.0, 2 * frac) * (1 - 0.9 * frac)),
                     (trial.trial_id, step, "val_top1", trial.top1 * frac)]
    return pd.DataFrame(rows, columns=["trial_id", "step", "metric", "value"])
