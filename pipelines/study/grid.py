"""The study's trials: models x data sizes x budgets (x learning-rate candidates), each a complete training config.

    data = describe_data(cfg)                      # prepares the source once; sizes from the manifest
    trials = expand_grid(cfg, data)                # [TrialSpec, ...] in a fixed order

Everything a trial's MLflow run records as params (``pipelines.analysis.contract.PARAM_COLUMNS``) is known here,
before any trial runs: parameter count and forward GFLOPs from the model's config, the training images of each
subset from the manifest, the budget in images seen from the step count the training driver will use. A trial's
``key`` is stable (its grid position and values), so a resumed study finds each trial's MLflow run again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from pipelines.analysis.contract import PARAM_COLUMNS
from pipelines.train.config import SYNTHETIC, ConfigError, TrainConfig, model_options
from pipelines.train.durations import parse_duration
from pipelines.train.plan import resolve_steps

from .config import StudyConfig

UNIT_LABELS = {"steps": "st", "images": "img", "epochs": "ep"}


@dataclass(frozen=True)
class DataFacts:
    """What the grid needs to know about the data: classes, the training pool and each subset's size."""

    source: str  # what trials read: a prepared directory (absolute) or URI, or "synthetic"
    num_classes: int
    pool_size: int  # training images at fraction 1
    train_sizes: dict = field(default_factory=dict)  # grid data size (fraction or count) -> training images


@dataclass
class TrialSpec:
    key: str  # unique and stable within the study: "003-vit-pi_8-f0.5-b1ep"
    cell: str  # the grid cell (key without index and lr): lr candidates of one cell compete
    train: dict  # the trial's complete TrainConfig, as a dict
    params: dict  # the MLflow contract's params (PARAM_COLUMNS)
    num_workers: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrialSpec:
        return cls(**data)


def size_label(value, counts: bool) -> str:
    return f"n{int(value)}" if counts else f"f{value:g}"


def budget_label(budget: str) -> str:
    d = parse_duration(budget)
    return f"b{d.amount:g}{UNIT_LABELS[d.unit]}"


def safe_name(text: str) -> str:
    """A name usable in paths and run names: ``vit-pi/8`` -> ``vit-pi_8``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)


def grid_size(cfg: StudyConfig) -> int:
    """Number of trials of the grid."""
    g = cfg.grid
    sizes = g.data_counts if g.data_counts is not None else g.data_fractions
    return len(g.models) * len(sizes) * len(g.budgets) * max(1, len(g.lrs))


def describe_data(cfg: StudyConfig, *, prepare: bool = True) -> DataFacts:
    """Classes and subset sizes of ``cfg.train.data``; a real source is prepared once here (not in each trial)."""
    data, grid = cfg.train.data, cfg.grid
    sizes = grid.data_counts if grid.data_counts is not None else grid.data_fractions
    where = "grid.data_counts" if grid.data_counts is not None else "grid.data_fractions"
    if data.source == SYNTHETIC:
        pool = data.synthetic_size
        out = {}
        for i, value in enumerate(sizes):
            n = int(value) if grid.data_counts is not None else max(1, round(value * pool))
            if n > pool:
                raise ConfigError(f"{where}[{i}]: {value} images is more than the synthetic pool "
                                  f"(train.data.synthetic_size={pool})")
            out[value] = n
        return DataFacts(SYNTHETIC, data.num_classes, pool, out)

    from pipelines import data as data_pipeline
    from pipelines.train.data_adapter import data_options

    prepared = data_pipeline.ensure_prepared(data.source) if prepare else data.source
    manifest = data_pipeline.load_manifest(prepared)
    num_classes = len(manifest["classes"])
    if data.num_classes is not None and data.num_classes != num_classes:
        raise ConfigError(f"train.data.num_classes: {data.num_classes} given, but {data.source} has {num_classes}")
    if cfg.top1_split == "test" and "test" not in manifest["splits"]:
        raise ConfigError(f"top1_split: 'test', but {data.source} has no test split (only "
                          f"{sorted(manifest['splits'])}); use top1_split: val")
    base = {k: v for k, v in data_options(cfg.train).items() if k not in ("train_fraction", "train_count")}
    pool = data_pipeline.subset_sizes(prepared, **base)["train"]
    out = {}
    for i, value in enumerate(sizes):
        subset = {"train_count": int(value)} if grid.data_counts is not None else {"train_fraction": value}
        try:
            out[value] = data_pipeline.subset_sizes(prepared, **base, **subset)["train"]
        except ValueError as exc:
            raise ConfigError(f"{where}[{i}]: {exc}") from None
    return DataFacts(str(prepared), num_classes, pool, out)


def model_facts(cfg: TrainConfig, num_classes: int) -> dict:
    """Family, parameter count, forward GFLOPs per image (the training driver's own summary) and patch size."""
    import vit_model
    from pipelines.train.driver import model_summary
    from pipelines.train.sources import input_patch_size

    config = vit_model.model_config(cfg.model.name, num_classes=num_classes, image_size=cfg.data.image_size,
                                    **model_options(cfg))
    patch = input_patch_size(config) if hasattr(config, "patch_size") else None  # BiT ResNets have no patches
    return {**model_summary(cfg, num_classes), "patch_size": patch}


def expand_grid(cfg: StudyConfig, data: DataFacts, *, overrides: dict | None = None,
                summarize: Callable[[TrainConfig, int], dict] = model_facts) -> list[TrialSpec]:
    """Every trial of the study, in grid order (models, then data sizes, then budgets, then lrs).

    ``overrides`` (dotted train keys) are applied to every trial, e.g. the per-worker CPUs of the resource plan.
    Errors that only show for one combination (a budget shorter than one step, a batch larger than a subset)
    name the trial and the grid field.
    """
    grid, base = cfg.grid, cfg.train
    counts = grid.data_counts is not None
    sizes = grid.data_counts if counts else grid.data_fractions
    common = dict(overrides or {})
    if data.source != SYNTHETIC:
        common["data.source"] = data.source
    trials: list[TrialSpec] = []
    for m, entry in enumerate(grid.models):
        model_cfg = base.replace({**entry.overrides, **common, "model.name": entry.name})
        facts = summarize(model_cfg, data.num_classes)
        for value in sizes:
            n = data.train_sizes[value]
            subset = {"data.train_count": int(value)} if counts else {"data.train_fraction": value}
            if data.source == SYNTHETIC:
                subset = {"data.synthetic_size": n}
            for b, budget in enumerate(grid.budgets):
                for lr in grid.lrs or [None]:
                    cell = f"{safe_name(entry.name)}-{size_label(value, counts)}-{budget_label(budget)}"
                    key = f"{len(trials):03d}-{cell}" + (f"-lr{lr:g}" if lr is not None else "")
                    trial = {**subset, "schedule.total": budget, "name": key}
                    if lr is not None:
                        trial["optim.lr"] = lr
                    try:
                        train = model_cfg.replace(trial)
                        steps = resolve_steps(train, n)["total_steps"]
                    except ConfigError as exc:
                        raise ConfigError(f"trial {key} (grid.models[{m}], grid.budgets[{b}]): {exc}") from None
                    images = steps * train.schedule.global_batch_size
                    params = {**{k: facts[k] for k in ("family", "params", "forward_gflops", "patch_size")},
                              "variant": entry.name, "image_size": train.data.image_size,
                              "data_fraction": n / data.pool_size if counts else value, "data_count": n,
                              "budget": images, "budget_epochs": images / n, "lr": train.optim.lr}
                    trials.append(TrialSpec(key=key, cell=cell, train=train.to_dict(),
                                            params={k: params[k] for k in PARAM_COLUMNS},
                                            num_workers=train.scaling.num_workers))
    return trials


__all__ = ["DataFacts", "TrialSpec", "describe_data", "expand_grid", "grid_size", "model_facts"]
