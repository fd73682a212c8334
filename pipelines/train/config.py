"""One training run's configuration: dataclasses loaded from YAML plus dotted overrides, validated before Ray starts.

    cfg = load_config("configs/train-smoke.yaml", ["optim.lr=3e-4", "scaling.num_workers=2"])

The defaults below are the paper's pre-training recipe (AdamW 0.9/0.999, weight decay 0.1 on weights only, linear
warm-up then linear decay, global-norm clipping at 1). Every default lives here and nowhere else; the CLI only
overrides. Fine-tuning's recipe (SGD, cosine, no decay) is a subclass of these sections in
:mod:`pipelines.transfer.config`, which changes only the defaults that differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vit_model.masked_patch import Corruption

from .config_loading import ConfigError, apply_overrides, from_dict, read_yaml, to_dict
from .durations import parse_duration

SYNTHETIC = "synthetic"


@dataclass
class ModelSection:
    name: str = "vit-ti/4"  # any registered name: vit_model.list_models()
    head: str | None = None  # "mlp" = the paper's pre-training head, "linear"; None = the family's default
    options: dict = field(default_factory=dict)  # any other field of the family's config (dropout, pool, ...)


@dataclass
class DataSection:
    source: str = SYNTHETIC  # "synthetic", an ImageFolder dir / dir of split tarballs, or a prepared Parquet dir
    name: str | None = None  # dataset name in metric keys (fewshot/<name>_5shot); default: from the source
    image_size: int = 32
    num_classes: int | None = None  # synthetic: required; real data: read from the manifest (checked if given)
    train_fraction: float = 1.0  # nested class-balanced subset of the training split
    train_count: int | None = None  # or an absolute number of training examples
    val_fraction: float | None = None  # validation carved from train; None: the data pipeline's default
    seed: int = 0  # augmentation and shuffle seed (subsets do not depend on it)
    crop_scale: list[float] | None = None  # area range of the training crop; None: the data pipeline's (Inception)
    synthetic_size: int = 2048  # synthetic source: examples in its training split (its "epoch")
    synthetic_eval_size: int = 512  # synthetic source: examples in each evaluation split
    prefetch_batches: int = 8  # real data: micro-batches a background thread keeps ready for the loop; 0: none


@dataclass
class ScheduleSection:
    global_batch_size: int = 256  # split across workers
    micro_batch_size: int | None = None  # per worker and forward pass; None: the whole per-worker batch
    total: str = "1 epochs"  # steps, images or epochs
    warmup: str = "0 steps"
    decay: str = "linear"  # "linear", "cosine" or "constant" after warm-up


@dataclass
class OptimSection:
    name: str = "adamw"  # "adamw" (pre-training) or "sgd" (with momentum: fine-tuning)
    lr: float = 1e-3
    weight_decay: float = 0.1  # on weights only (model.no_weight_decay() is exempt); decoupled with AdamW
    betas: tuple[float, float] = (0.9, 0.999)  # adamw
    eps: float = 1e-8  # adamw
    momentum: float = 0.9  # sgd
    grad_clip: float = 1.0  # global norm; 0 disables clipping (the norm is still measured)
    ema_decay: float = 0.0  # Polyak (exponential moving) average of the weights, evaluated and exported; 0: off


@dataclass
class EvalSection:
    every: str | None = None  # top-1 on the validation split this often (and always at the end)
    batch_size: int = 256  # per worker
    test: bool = True  # top-1 on the test split at the end, when the data has one
    fewshot_shots: list[int] = field(default_factory=lambda: [1, 5, 10, 25])  # empty: no few-shot evaluation
    fewshot_seeds: int = 3
    fewshot_l2_reg: float = 1.0  # ridge penalty on standardised features
    fewshot_train_size: int = 2000  # pool the k shots per class are drawn from: the first examples of val
    fewshot_eval_size: int = 2000  # examples the few-shot classifiers are scored on: the first examples of test
    fewshot_every: str | None = None  # None: only at the end


@dataclass
class CheckpointSection:
    every: str | None = None  # and always at the end
    keep: int = 2  # newest checkpoints kept by Ray Train
    export: bool = True  # consolidated safetensors + config.json at the end


@dataclass
class ScalingSection:
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float | None = None  # None: computed from the cluster, leaving data_cpus for Ray Data
    data_cpus: float = 1.0  # CPUs left free for Ray Data's decode/augment/patchify tasks


@dataclass
class ParallelSection:
    mixed_precision: str = "auto"  # "auto" (bf16 compute + fp32 master/reduce on GPU, fp32 on CPU), "bf16", "fp32"
    activation_checkpointing: bool = False
    compile: bool = False  # torch.compile each block
    init: str = "broadcast"  # "broadcast": rank 0 initialises, identical for any worker count; "sharded": per shard
    reshard_after_forward: bool = True


@dataclass
class MetricsSection:
    log_every: int = 10  # steps between reports to Ray and flushes to MLflow (every step is recorded)
    peak_tflops: float | None = None  # per-device peak for MFU; None: looked up by device name


@dataclass
class TrackingSection:
    enabled: bool = True
    uri: str | None = None  # None: sqlite:///<working dir>/mlflow.db; or http://host:port
    experiment: str = "vit-study"


@dataclass
class FaultSection:
    """Test hooks: a worker kills itself (SIGKILL) at a step, on an attempt that did not resume from a checkpoint."""

    kill_at_step: int | None = None
    kill_rank: int = 0


@dataclass
class InitSection:
    """Start from pre-trained weights (fine-tuning) instead of a random initialisation."""

    checkpoint: str | None = None  # our export dir, a Ray Train checkpoint/run dir, an MLflow run id or runs:/ URI,
    #                                or any file vit_model.load_pretrained reads (then model.name says what it is)
    reset_head: bool = True  # a zero-initialised linear head for data.num_classes; False keeps the checkpoint's


@dataclass
class MaskedPatchSection:
    """Corruption of ``objective: masked_patch`` (defaults: vit_model.masked_patch.Corruption, the paper's)."""

    ratio: float = Corruption.ratio
    mask: float = Corruption.mask
    random: float = Corruption.random


OBJECTIVES = ("classification", "masked_patch")


@dataclass
class TrainConfig:
    name: str = "train"
    seed: int = 0
    storage_path: str | None = None  # Ray Train results and checkpoints; None: <working dir>/runs
    max_failures: int = 0  # worker-group restarts from the latest checkpoint
    objective: str = "classification"  # or "masked_patch": self-supervised pre-training (no classification eval)
    init: InitSection = field(default_factory=InitSection)
    masked_patch: MaskedPatchSection = field(default_factory=MaskedPatchSection)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    optim: OptimSection = field(default_factory=OptimSection)
    eval: EvalSection = field(default_factory=EvalSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    parallel: ParallelSection = field(default_factory=ParallelSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    fault: FaultSection = field(default_factory=FaultSection)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return validate(from_dict(cls, data))

    def replace(self, overrides) -> TrainConfig:
        """A validated copy with dotted overrides applied (``{"optim.lr": 3e-4}`` or ``["optim.lr=3e-4"]``)."""
        return type(self).from_dict(apply_overrides(self.to_dict(), overrides))


def load_config(path=None, overrides=()) -> TrainConfig:
    """Read a YAML run config (or the defaults when ``path`` is None), apply overrides and validate."""
    data = read_yaml(path) if path is not None else {}
    try:
        return TrainConfig.from_dict(apply_overrides(data, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None


def _check(condition: bool, field_name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{field_name}: {message}")


def _check_choice(value, choices, field_name: str) -> None:
    _check(value in choices, field_name, f"{value!r} is not one of {', '.join(map(repr, choices))}")


def _check_duration(value, field_name: str, optional: bool = True) -> None:
    if value is None and optional:
        return
    try:
        parse_duration(value, field_name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def model_options(cfg: TrainConfig) -> dict:
    """Keyword overrides for ``vit_model.create_model``: ``model.options`` plus ``model.head`` when set."""
    options = dict(cfg.model.options)
    if cfg.model.head is not None:
        options["head"] = cfg.model.head
    return options


def _validate_model(cfg: TrainConfig) -> None:
    import vit_model

    options = model_options(cfg)
    for reserved in ("num_classes", "image_size"):
        _check(reserved not in options, f"model.options.{reserved}", "set it under data:, not model.options")
    try:
        vit_model.family_of(cfg.model.name)
    except ValueError as exc:
        raise ConfigError(f"model.name: {exc}") from None
    try:
        vit_model.model_config(cfg.model.name, num_classes=cfg.data.num_classes or 10,
                               image_size=cfg.data.image_size, **options)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model.options (or model.head): {exc}") from None


def _validate_data(data: DataSection) -> None:
    _check(data.image_size > 0, "data.image_size", f"must be positive, got {data.image_size}")
    _check(0.0 < data.train_fraction <= 1.0, "data.train_fraction", f"must be in (0, 1], got {data.train_fraction}")
    _check(data.train_count is None or data.train_count > 0, "data.train_count", "must be positive")
    _check(data.val_fraction is None or 0.0 <= data.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)")
    _check(data.prefetch_batches >= 0, "data.prefetch_batches", f"must be >= 0, got {data.prefetch_batches}")
    if data.source == SYNTHETIC:
        _check(data.num_classes is not None and data.num_classes >= 2, "data.num_classes",
               "the synthetic source needs num_classes >= 2")
        _check(data.synthetic_size > 0, "data.synthetic_size", "must be positive")
        _check(data.synthetic_eval_size > 0, "data.synthetic_eval_size", "must be positive")
    elif "://" not in data.source:
        _check(Path(data.source).expanduser().exists(), "data.source", f"{data.source}: no such file or directory")
    _check(data.num_classes is None or data.num_classes >= 2, "data.num_classes", "must be >= 2")
    if data.crop_scale is not None:
        valid = len(data.crop_scale) == 2 and 0.0 < data.crop_scale[0] <= data.crop_scale[1] <= 1.0
        _check(valid, "data.crop_scale", f"expected [low, high] with 0 < low <= high <= 1, got {data.crop_scale}")


def _validate_schedule(cfg: TrainConfig) -> None:
    s, workers = cfg.schedule, cfg.scaling.num_workers
    _check(s.global_batch_size > 0, "schedule.global_batch_size", "must be positive")
    _check(s.global_batch_size % workers == 0, "schedule.global_batch_size",
           f"{s.global_batch_size} is not divisible by scaling.num_workers={workers}")
    per_worker = s.global_batch_size // workers
    if s.micro_batch_size is not None:
        _check(0 < s.micro_batch_size <= per_worker and per_worker % s.micro_batch_size == 0,
               "schedule.micro_batch_size",
               f"{s.micro_batch_size} must divide the per-worker batch {per_worker} (global {s.global_batch_size} "
               f"/ {workers} workers)")
    _check_duration(s.total, "schedule.total", optional=False)
    _check(parse_duration(s.total).amount > 0, "schedule.total", "must be longer than zero")
    _check_duration(s.warmup, "schedule.warmup", optional=False)
    _check_choice(s.decay, ("linear", "cosine", "constant"), "schedule.decay")


def _validate_objective(cfg: TrainConfig) -> None:
    _check_choice(cfg.objective, OBJECTIVES, "objective")
    m = cfg.masked_patch
    for name in ("ratio", "mask", "random"):
        _check(0.0 <= getattr(m, name) <= 1.0, f"masked_patch.{name}", f"must be in [0, 1], got {getattr(m, name)}")
    _check(m.ratio > 0, "masked_patch.ratio", "must be > 0")
    _check(m.mask + m.random <= 1.0, "masked_patch.random", f"mask + random must be <= 1, got {m.mask} + {m.random}")
    if cfg.objective == "masked_patch":
        import vit_model

        _check(vit_model.family_of(cfg.model.name) == "vit", "objective",
               f"masked_patch pre-trains plain ViTs, not {cfg.model.name}")
        _check(cfg.init.checkpoint is None, "init.checkpoint",
               "objective masked_patch pre-trains from a random initialisation (fine-tune its export instead)")
    _check(cfg.init.checkpoint is None or bool(str(cfg.init.checkpoint).strip()), "init.checkpoint",
           "must be a path, an MLflow run id or a runs:/ URI (or null)")


def _validate_optim(o: OptimSection) -> None:
    _check_choice(o.name, ("adamw", "sgd"), "optim.name")
    _check(o.lr > 0, "optim.lr", f"must be positive, got {o.lr}")
    _check(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    _check(all(0.0 <= b < 1.0 for b in o.betas), "optim.betas", f"each must be in [0, 1), got {o.betas}")
    _check(0.0 <= o.momentum < 1.0, "optim.momentum", f"must be in [0, 1), got {o.momentum}")
    _check(o.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 disables clipping)")
    _check(0.0 <= o.ema_decay < 1.0, "optim.ema_decay", f"must be in [0, 1) (0: no averaging), got {o.ema_decay}")


def _validate_rest(cfg: TrainConfig) -> None:
    _validate_optim(cfg.optim)
    e = cfg.eval
    _check_duration(e.every, "eval.every")
    _check_duration(e.fewshot_every, "eval.fewshot_every")
    _check(e.batch_size > 0, "eval.batch_size", "must be positive")
    _check(all(k > 0 for k in e.fewshot_shots), "eval.fewshot_shots", f"shots must be positive, got {e.fewshot_shots}")
    _check(e.fewshot_seeds > 0, "eval.fewshot_seeds", "must be positive")
    _check(e.fewshot_l2_reg > 0, "eval.fewshot_l2_reg", "must be positive")
    _check(e.fewshot_train_size > 0 and e.fewshot_eval_size > 0, "eval.fewshot_train_size",
           "few-shot pool and evaluation sizes must be positive")
    _check_duration(cfg.checkpoint.every, "checkpoint.every")
    _check(cfg.checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1")
    sc = cfg.scaling
    _check(sc.num_workers >= 1, "scaling.num_workers", "must be >= 1")
    _check(sc.cpus_per_worker is None or sc.cpus_per_worker > 0, "scaling.cpus_per_worker", "must be positive")
    _check(sc.data_cpus >= 0, "scaling.data_cpus", "must be >= 0")
    p = cfg.parallel
    _check_choice(p.mixed_precision, ("auto", "bf16", "fp32"), "parallel.mixed_precision")
    _check_choice(p.init, ("broadcast", "sharded"), "parallel.init")
    _check(cfg.metrics.log_every >= 1, "metrics.log_every", "must be >= 1")
    _check(cfg.metrics.peak_tflops is None or cfg.metrics.peak_tflops > 0, "metrics.peak_tflops", "must be positive")
    _check(cfg.max_failures >= -1, "max_failures", "must be >= 0 (or -1: retry forever)")
    _check(cfg.fault.kill_at_step is None or cfg.fault.kill_at_step >= 1, "fault.kill_at_step", "must be >= 1")
    _check(0 <= cfg.fault.kill_rank < sc.num_workers, "fault.kill_rank", "must be a worker rank")
    _check(bool(cfg.name) and "/" not in cfg.name, "name", f"must be a non-empty name without '/', got {cfg.name!r}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check every field (raising :class:`ConfigError` naming it); returns ``cfg`` for chaining."""
    _validate_data(cfg.data)
    _validate_model(cfg)
    _validate_schedule(cfg)
    _validate_objective(cfg)
    _validate_rest(cfg)
    return cfg


def dataset_name(cfg: TrainConfig) -> str:
    """The name few-shot metrics carry: ``data.name`` or the source's folder name (``cifar10-jpg`` -> cifar10)."""
    if cfg.data.name:
        return cfg.data.name
    if cfg.data.source == SYNTHETIC:
        return SYNTHETIC
    stem = Path(cfg.data.source.rstrip("/")).name.split(".")[0]
    return stem.removesuffix("-jpg").removesuffix("-parquet").removesuffix("-prepared") or "data"


__all__ = ["SYNTHETIC", "ConfigError", "TrainConfig", "dataset_name", "load_config", "model_options", "validate"]
