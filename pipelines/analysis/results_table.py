"""The study's results table: one row per trial, the single source of every number a plot or fit shows.

Columns (``COLUMNS``, in order; ``fewshot_<dataset>_<k>shot`` columns go after ``top1``):

==================  =========  ===================================================================
trial_id            string     Tune's trial id (unique)
family, variant     string     e.g. ``vit`` and ``vit-ti/4``
params              Int64      parameter count
forward_gflops      float64    forward GFLOPs per image at ``image_size``
image_size          Int64      training resolution (pixels)
patch_size          Int64      patch size (pixels; NA for models without patches)
data_fraction       float64    fraction of the training set (nested subsets)
data_count          Int64      training images in that subset
budget              Int64      training length in images seen
budget_epochs       float64    the same in epochs of the subset
lr                  float64    peak learning rate
top1                float64    final top-1 accuracy (fraction in [0, 1]) on the evaluation split
fewshot_*           float64    few-shot linear-probe accuracies (fractions)
transfer_top1       float64    test top-1 after fine-tuning (the study's ``frontier.finetune``; NA otherwise)
train_flops         float64    training FLOPs (3 x forward FLOPs x images seen)
wall_time_s         float64    wall-clock seconds of the trial
device_hours        float64    accelerator (or CPU-worker) hours
status              string     ``finished``, ``failed``, ``killed``, ``running`` (lower case)
note                string     free text (e.g. why a trial failed)
==================  =========  ===================================================================

Only ``trial_id``, ``family``, ``variant`` and ``status`` are required; a failed trial may miss its metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .contract import FEWSHOT_COLUMN_PREFIX, TRANSFER_COLUMN

COLUMNS: dict[str, str] = {
    "trial_id": "string", "family": "string", "variant": "string", "params": "Int64", "forward_gflops": "float64",
    "image_size": "Int64", "patch_size": "Int64", "data_fraction": "float64", "data_count": "Int64",
    "budget": "Int64", "budget_epochs": "float64", "lr": "float64", "top1": "float64", "transfer_top1": "float64",
    "train_flops": "float64", "wall_time_s": "float64", "device_hours": "float64", "status": "string", "note": "string",
}
FEWSHOT_DTYPE = "float64"
REQUIRED = ("trial_id", "family", "variant", "status")
FINISHED = "finished"
# Accuracy-like columns are fractions; these must be positive when present.
POSITIVE = ("params", "forward_gflops", "image_size", "patch_size", "data_count", "budget", "budget_epochs", "lr",
            "train_flops")
# A cell of the grid: one model trained on one data subset for one budget; lr candidates compete inside it.
CELL_KEYS = ("family", "variant", "image_size", "data_fraction", "data_count", "budget", "budget_epochs")


def fewshot_columns(columns: Iterable[str]) -> list[str]:
    """The few-shot columns among ``columns``, sorted."""
    return sorted(c for c in columns if c.startswith(FEWSHOT_COLUMN_PREFIX))


def column_order(columns: Iterable[str]) -> list[str]:
    """``COLUMNS`` with the given few-shot columns placed right after ``top1``."""
    names = list(COLUMNS)
    at = names.index("top1") + 1
    return names[:at] + fewshot_columns(columns) + names[at:]


def results_table(rows: pd.DataFrame | Iterable[Mapping]) -> pd.DataFrame:
    """Validate and type a results table (from a DataFrame or from dicts, e.g. MLflow's string params).

    Missing optional columns are added as NA; unknown columns, duplicate trial ids, non-numeric values,
    accuracies outside [0, 1] and non-positive sizes fail with an error naming the column (and trial).
    """
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if frame.empty and len(frame.columns) == 0:  # no trials at all: an empty table with every column
        frame = pd.DataFrame(columns=list(REQUIRED))
    unknown = [c for c in frame.columns if c not in COLUMNS and not c.startswith(FEWSHOT_COLUMN_PREFIX)]
    if unknown:
        raise ValueError(f"results table: unknown column(s) {unknown}; known: {list(COLUMNS)} and "
                         f"{FEWSHOT_COLUMN_PREFIX}<dataset>_<k>shot")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"results table: missing required column(s) {missing}")
    order = column_order(frame.columns)
    out = pd.DataFrame(index=range(len(frame)))
    for name in order:
        values = frame[name].reset_index(drop=True) if name in frame.columns else pd.Series([None] * len(frame))
        out[name] = _typed(values, COLUMNS.get(name, FEWSHOT_DTYPE), name)
    out["status"] = out["status"].str.strip().str.lower()
    _check_values(out)
    return out


def _typed(values: pd.Series, dtype: str, name: str) -> pd.Series:
    if dtype == "string":
        # NaN/None become NA; everything else its text.
        return pd.Series([None if _is_missing(v) else str(v) for v in values], dtype="string")
    try:
        numbers = pd.to_numeric(values.map(lambda v: None if _is_missing(v) else v), errors="raise")
    except (ValueError, TypeError) as error:
        raise ValueError(f"results table: column {name!r} must be numeric: {error}") from None
    numbers = numbers.astype("float64")
    if dtype == "Int64":
        finite = numbers.dropna()
        if not np.all(np.isfinite(finite)) or not np.all(finite == np.round(finite)):
            raise ValueError(f"results table: column {name!r} must hold integers, got {finite.tolist()}")
        return numbers.round().astype("Int64")
    return numbers


def _is_missing(value) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, str):
        return value.strip() == "" or value.strip().lower() in {"nan", "none", "<na>"}
    return isinstance(value, float) and math.isnan(value)


def _check_values(table: pd.DataFrame) -> None:
    for name in REQUIRED:
        empty = table["trial_id"][table[name].isna()].tolist()
        if empty:
            raise ValueError(f"results table: column {name!r} is empty for trial(s) {empty}")
    duplicated = table["trial_id"][table["trial_id"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"results table: duplicate trial_id(s) {duplicated}")
    for name in ["top1", TRANSFER_COLUMN, *fewshot_columns(table.columns)]:
        _require(table, name, lambda v: (v >= 0) & (v <= 1), "a fraction in [0, 1]")
    for name in POSITIVE:
        _require(table, name, lambda v: v > 0, "positive")
    _require(table, "data_fraction", lambda v: (v > 0) & (v <= 1), "in (0, 1]")


def _require(table: pd.DataFrame, name: str, ok, what: str) -> None:
    values = table[name].astype("float64")
    bad = values.notna() & ~ok(values).fillna(False).astype(bool)
    if bad.any():
        rows = {t: v for t, v in zip(table["trial_id"][bad], values[bad])}
        raise ValueError(f"results table: column {name!r} must be {what}; bad values by trial: {rows}")


def accuracy_metrics(table: pd.DataFrame) -> list[str]:
    """What the analysis reports on: ``top1`` (always, so a study without results still gets its figures), then
    the few-shot columns and ``transfer_top1`` where they hold at least one value."""
    optional = [*fewshot_columns(table.columns), TRANSFER_COLUMN]
    return ["top1"] + [m for m in optional if m in table.columns and table[m].notna().any()]


def finished(table: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """Finished trials with a value for ``metric`` and for their training compute."""
    keep = (table["status"] == FINISHED) & table[metric].notna() & table["train_flops"].notna()
    return table[keep.fillna(False).astype(bool)].reset_index(drop=True)


def best_lr_rows(table: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """One row per grid cell (``CELL_KEYS``): the finished trial with the highest ``metric`` over its lr candidates.

    As in the paper, the learning rate is chosen per cell. Ties go to the lowest ``trial_id``. Choosing on the
    same split that is reported is optimistic; the study should report a held-out validation split as ``top1``.
    """
    rows = finished(table, metric).sort_values([metric, "trial_id"], ascending=[False, True], kind="stable")
    best = rows.groupby(list(CELL_KEYS), dropna=False, sort=False).head(1)
    return best.sort_values("trial_id", kind="stable").reset_index(drop=True)


def write_table(table: pd.DataFrame, out_dir: str | Path, stem: str = "results") -> dict[str, Path]:
    """``<out_dir>/<stem>.parquet`` and ``.csv`` (floats written at full precision); returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"parquet": out / f"{stem}.parquet", "csv": out / f"{stem}.csv"}
    table.to_parquet(paths["parquet"], index=False)
    table.to_csv(paths["csv"], index=False)
    return paths


def read_table(path: str | Path) -> pd.DataFrame:
    """A table written by ``write_table`` (Parquet or CSV), validated and typed again."""
    path = Path(path)
    if path.suffix == ".parquet":
        return results_table(pd.read_parquet(path))
    if path.suffix == ".csv":
        return results_table(pd.read_csv(path, dtype=str, keep_default_na=False))
    raise ValueError(f"{path}: expected a .parquet or .csv results table")
