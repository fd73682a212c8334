"""A study's configuration: the shared training recipe, the grid, the search and the resources, from YAML.

    cfg = load_study_config("configs/study-smoke.yaml", ["grid.budgets=[640 images]"])

The ``train:`` section is a whole training config (``pipelines.train.config``, the same schema as
``configs/train-*.yaml``); each trial is that recipe with its model, data subset, budget and learning rate set from
the grid. Everything is checked here, before Ray starts, and an error names the field (``grid.models[1]``,
``train.data.source``, ...). What can only be checked against the cluster (a GPU asked of a CPU-only cluster, a
trial too big for any node) is checked by :mod:`pipelines.study.resources` once Ray is up, before any trial runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipelines.inspection import NUM_SAMPLE_IMAGES
from pipelines.train.config import SYNTHETIC, TrainConfig, model_options, validate
from pipelines.train.config_loading import ConfigError, apply_overrides, from_dict, read_yaml, to_dict
from pipelines.train.durations import parse_duration

SCHEDULERS = ("none", "asha")
TOP1_SPLITS = ("test", "val")
# Trial-level settings a model entry may not change: the cluster plan is made once for the whole study.
STUDY_WIDE_KEYS = ("scaling.", "tracking.", "storage_path", "name")


@dataclass
class ModelEntry:
    name: str = ""  # any registered model: vit_model.list_models(); in YAML a bare name is enough
    overrides: dict = field(default_factory=dict)  # dotted train keys for this model only, e.g. optim.lr: 3e-4


@dataclass
class GridSection:
    """Trials = models x data sizes x budgets (x lrs). Give data sizes as fractions or as counts, not both."""

    models: list[ModelEntry] = field(default_factory=list)
    data_fractions: list[float] | None = None  # nested class-balanced subsets of the training pool
    data_counts: list[int] | None = None  # or absolute numbers of training images
    budgets: list[str] = field(default_factory=list)  # training lengths: "<n> images", "<n> epochs" or "<n> steps"
    lrs: list[float] = field(default_factory=list)  # candidate peak lrs per cell; empty: train.optim.lr


@dataclass
class SearchSection:
    """Early stopping, only for a learning-rate search: ASHA within each cell (never across cells)."""

    scheduler: str = "none"  # "none": every trial runs its full budget (honest scaling curves); "asha"
    metric: str = "train/loss"  # what ASHA compares at each rung (reported every metrics.log_every steps)
    mode: str = "min"
    grace_fraction: float = 0.25  # first rung, as a fraction of the cell's budget
    reduction_factor: float = 3.0


@dataclass
class ResourcesSection:
    """Per-trial workers come from ``train.scaling``; this is what the study adds on top."""

    max_concurrent_trials: int | None = None  # None: as many as the cluster holds (pipelines/study/resources.py)
    driver_memory_mb: int = 512  # each trial's driver is reserved as memory, not CPU, so it never starves workers


@dataclass
class FrontierSection:
    """What the models on the accuracy-compute frontier get after the grid (``pipelines/study/frontier.py``)."""

    metric: str = "top1"  # the frontier of this table column against training FLOPs
    inspect: bool = False  # vit-study inspect's figures as artifacts of each frontier trial's run
    num_images: int = NUM_SAMPLE_IMAGES  # sample test images drawn and averaged over
    # A fine-tuning config (configs/finetune-<name>.yaml): each frontier trial's model is fine-tuned with it (its
    # learning-rate sweep) and the report gains transfer_top1, the paper's y-axis, with its own frontier and plots.
    finetune: str | None = None
    finetune_overrides: list[str] = field(default_factory=list)  # KEY=VALUE for that config, e.g. data.image_size=224


@dataclass
class StudyConfig:
    name: str = "study"  # Tune experiment directory name (under storage_path)
    experiment: str | None = None  # MLflow experiment; None: the study's name
    storage_path: str | None = None  # Tune experiment root: a local path or s3://...; None: <working dir>/runs
    top1_split: str = "test"  # which top-1 the results table reports as `top1` ("val" when lrs are searched)
    train: TrainConfig = field(default_factory=TrainConfig)
    grid: GridSection = field(default_factory=GridSection)
    search: SearchSection = field(default_factory=SearchSection)
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    frontier: FrontierSection = field(default_factory=FrontierSection)

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    def to_dict(self) -> dict:
        return to_dict(self)


def load_study_config(path, overrides=()) -> StudyConfig:
    """Read a study YAML, apply dotted overrides (``train.optim.lr=3e-4``) and validate; errors name the file."""
    data = read_yaml(path)
    try:
        return study_config_from_dict(apply_overrides(data, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def study_config_from_dict(data: dict) -> StudyConfig:
    data = dict(data)
    grid = data.get("grid")
    if isinstance(grid, dict) and isinstance(grid.get("models"), list):
        data["grid"] = {**grid, "models": [{"name": m} if isinstance(m, str) else m for m in grid["models"]]}
    return validate_study(from_dict(StudyConfig, data))


def _check(condition: bool, field_name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{field_name}: {message}")


def validate_study(cfg: StudyConfig) -> StudyConfig:
    """Check every field; raises :class:`ConfigError` whose message starts with the field's dotted name."""
    _check(bool(cfg.name) and "/" not in cfg.name, "name", f"must be a non-empty name without '/', got {cfg.name!r}")
    _check_choice(cfg.top1_split, TOP1_SPLITS, "top1_split")
    _check_data_source(cfg.train.data.source)
    try:
        validate(cfg.train)
    except ConfigError as exc:
        raise ConfigError(f"train.{exc}") from None
    if cfg.top1_split == "test":
        _check(cfg.train.eval.test, "top1_split", "'test' needs train.eval.test: true (or use top1_split: val)")
    else:
        _check(cfg.train.data.val_fraction != 0, "top1_split", "'val' needs a validation split "
               "(train.data.val_fraction is 0)")
    _validate_grid(cfg)
    _validate_search(cfg)
    r = cfg.resources
    _check(r.max_concurrent_trials is None or r.max_concurrent_trials >= 1, "resources.max_concurrent_trials",
           f"must be >= 1 (or null: computed from the cluster), got {r.max_concurrent_trials}")
    _check(r.driver_memory_mb > 0, "resources.driver_memory_mb", "must be positive")
    _validate_frontier(cfg)
    return cfg


def _check_choice(value, choices, field_name: str) -> None:
    _check(value in choices, field_name, f"{value!r} is not one of {', '.join(map(repr, choices))}")


def _check_data_source(source: str) -> None:
    if source == SYNTHETIC or "://" in source:
        return
    path = Path(source).expanduser()
    _check(path.exists(), "train.data.source",
           f"{source}: no such file or directory (relative paths are read from the working directory "
           f"{Path.cwd()}; a job submitted with `ray job submit --working-dir` runs in a copy of it, so give such a "
           "job an absolute path or a URI, e.g. train.data.source=/data/cifar10-jpg)")


def _validate_grid(cfg: StudyConfig) -> None:
    g = cfg.grid
    _check(bool(g.models), "grid.models", "list at least one model (vit_model.list_models() has the names)")
    for i, entry in enumerate(g.models):
        _validate_model_entry(entry, f"grid.models[{i}]", cfg.train)
    names = [e.name for e in g.models]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    _check(not duplicated, "grid.models", f"listed twice: {duplicated}")

    _check((g.data_fractions is None) != (g.data_counts is None), "grid.data_fractions",
           "give the data sizes as grid.data_fractions or as grid.data_counts (exactly one of them)")
    sizes, name = (g.data_fractions, "grid.data_fractions") if g.data_counts is None else (g.data_counts,
                                                                                          "grid.data_counts")
    _check(bool(sizes), name, "list at least one data size")
    for i, value in enumerate(sizes):
        if g.data_counts is None:
            _check(0.0 < value <= 1.0, f"{name}[{i}]", f"a fraction of the training pool must be in (0, 1], got "
                   f"{value}")
        else:
            _check(value > 0, f"{name}[{i}]", f"must be a positive number of images, got {value}")
    _check(len(set(sizes)) == len(sizes), name, f"has duplicates: {sizes}")

    _check(bool(g.budgets), "grid.budgets", "list at least one budget, e.g. ['1 epochs', '3 epochs']")
    for i, budget in enumerate(g.budgets):
        try:
            duration = parse_duration(budget, f"grid.budgets[{i}]")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        _check(duration.amount > 0, f"grid.budgets[{i}]", f"must be longer than zero, got {budget!r}")
    _check(len(set(g.budgets)) == len(g.budgets), "grid.budgets", f"has duplicates: {g.budgets}")

    for i, lr in enumerate(g.lrs):
        _check(lr > 0, f"grid.lrs[{i}]", f"a learning rate must be positive, got {lr}")
    _check(len(set(g.lrs)) == len(g.lrs), "grid.lrs", f"has duplicates: {g.lrs}")


def _validate_model_entry(entry: ModelEntry, where: str, train: TrainConfig) -> None:
    import vit_model
    from pipelines.train.sources import input_patch_size

    try:
        vit_model.family_of(entry.name)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    for key in entry.overrides:
        _check(not str(key).startswith(STUDY_WIDE_KEYS), f"{where}.overrides.{key}",
               "is set for the whole study (train section, --tracking-uri), not per model")
        _check(str(key) not in ("model.name", "schedule.total", "data.train_fraction", "data.train_count"),
               f"{where}.overrides.{key}", "is set by the grid")
    try:
        trial = train.replace({**entry.overrides, "model.name": entry.name})
        config = vit_model.model_config(entry.name, num_classes=trial.data.num_classes or 10,
                                        image_size=trial.data.image_size, **model_options(trial))
        patch = input_patch_size(config)
    except (ConfigError, ValueError, TypeError) as exc:
        raise ConfigError(f"{where} ({entry.name}): {exc}") from None
    _check(trial.data.image_size % patch == 0, where,
           f"{entry.name}: image size {trial.data.image_size} is not a multiple of its patch size / stride {patch}")


def _validate_search(cfg: StudyConfig) -> None:
    s = cfg.search
    _check_choice(s.scheduler, SCHEDULERS, "search.scheduler")
    _check_choice(s.mode, ("min", "max"), "search.mode")
    if s.scheduler == "asha":
        _check(len(cfg.grid.lrs) >= 2, "search.scheduler", "'asha' stops weak learning-rate candidates early; it "
               "needs at least two grid.lrs (early stopping without a search would bias the scaling curves)")
    _check(0.0 < s.grace_fraction < 1.0, "search.grace_fraction", f"must be in (0, 1), got {s.grace_fraction}")
    _check(s.reduction_factor > 1.0, "search.reduction_factor", f"must be > 1, got {s.reduction_factor}")


def _validate_frontier(cfg: StudyConfig) -> None:
    f = cfg.frontier
    _check(f.metric == "top1" or f.metric.startswith("fewshot_"), "frontier.metric",
           f"must be 'top1' or a few-shot column such as 'fewshot_cifar10_5shot', got {f.metric!r}")
    _check(f.num_images >= 1, "frontier.num_images", f"must be >= 1, got {f.num_images}")
    if f.inspect:
        _check(cfg.train.checkpoint.export, "frontier.inspect",
               "inspects each frontier trial's exported model: it needs train.checkpoint.export: true")
    _check(f.finetune is not None or not f.finetune_overrides, "frontier.finetune_overrides",
           "set frontier.finetune (a fine-tuning config) for these to apply to")
    if f.finetune is not None:
        from pipelines.transfer.config import load_finetune_config

        _check(cfg.train.checkpoint.export, "frontier.finetune",
               "fine-tunes each frontier trial's exported model: it needs train.checkpoint.export: true")
        _check(Path(f.finetune).is_file(), "frontier.finetune", f"no fine-tuning config at {f.finetune!r}")
        try:
            load_finetune_config(f.finetune, f.finetune_overrides)
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"frontier.finetune: {exc}") from None


__all__ = ["ConfigError", "FrontierSection", "GridSection", "ModelEntry", "ResourcesSection", "SearchSection",
           "StudyConfig", "load_study_config", "study_config_from_dict", "validate_study"]
