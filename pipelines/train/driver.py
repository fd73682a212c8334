"""Build and run the ``TorchTrainer`` for one validated run config: the entry point of the CLI, Tune trials and tests.

    result = run_training(load_config("configs/train-smoke.yaml"))

Order matters: the config is validated and the data and resources are resolved (with clear errors) before any
Train worker starts; the MLflow run is created here, its id handed to the workers, and its status set here.
"""

from __future__ import annotations

import time
from pathlib import Path

import ray
import ray.train
from ray.train.torch import TorchTrainer

import vit_model
from pipelines import tracking

from . import checkpointing, ray_logs
from .config import SYNTHETIC, ConfigError, TrainConfig, dataset_name, model_options, validate
from .config_loading import flatten
from .loop import train_func
from .plan import RunPlan, resolve_steps
from .resources import cpus_per_worker
from .sources import FEWSHOT_EVAL, FEWSHOT_TRAIN, TEST, VAL, input_patch_size

DEFAULT_STORAGE_DIR = "runs"  # under the working directory


def default_run_name(cfg: TrainConfig) -> str:
    return f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """The config with local paths made absolute: Train workers run in other working directories."""
    overrides = {}
    if cfg.init.checkpoint:  # rank 0 may download it from MLflow
        overrides["tracking.uri"] = tracking.resolve_tracking_uri(cfg.tracking.uri)
    if cfg.data.source != SYNTHETIC and "://" not in cfg.data.source:
        overrides["data.source"] = str(Path(cfg.data.source).expanduser().resolve())
    if cfg.storage_path and "://" not in cfg.storage_path:
        overrides["storage_path"] = str(Path(cfg.storage_path).expanduser().resolve())
    return cfg.replace(overrides) if overrides else cfg


def describe_data(cfg: TrainConfig, datasets: dict | None):
    """(datasets for the trainer or None, num_classes, train size, evaluation splits) for this config."""
    if datasets is not None:  # handed in ready-made (tests, notebooks): counted here
        if cfg.data.num_classes is None:
            raise ConfigError("data.num_classes: must be set when datasets are passed in")
        missing = {FEWSHOT_TRAIN, FEWSHOT_EVAL} - set(datasets) if cfg.eval.fewshot_shots else set()
        if missing:
            raise ConfigError(f"eval.fewshot_shots: the datasets passed in lack {sorted(missing)} (or set [])")
        splits = [name for name in (VAL, TEST) if name in datasets]
        return datasets, cfg.data.num_classes, datasets["train"].count(), splits
    if cfg.data.source == SYNTHETIC:
        return None, cfg.data.num_classes, cfg.data.synthetic_size, [VAL, TEST]
    from .data_adapter import build_run_datasets

    model_config = vit_model.model_config(cfg.model.name, num_classes=cfg.data.num_classes or 2,
                                          image_size=cfg.data.image_size, **model_options(cfg))
    return build_run_datasets(cfg, patch_size=input_patch_size(model_config))


def model_summary(cfg: TrainConfig, num_classes: int) -> dict:
    """Family, parameter count and forward GFLOPs per image, from a model built on the meta device."""
    import torch

    with torch.device("meta"):
        model = vit_model.create_model(cfg.model.name, num_classes=num_classes, image_size=cfg.data.image_size,
                                       **model_options(cfg))
    return {"family": model.family, "params": sum(p.numel() for p in model.parameters()),
            "forward_gflops": vit_model.forward_flops(model) / 1e9}


def check_services(tracking_uri: str | None, storage: str, *, field_prefix: str = "") -> None:
    """Before Ray starts: the tracking server at ``tracking_uri`` (None: no tracking) answers and the checkpoint
    storage takes a file - one clear error each, naming ``<field_prefix>tracking.uri`` or ``storage_path``, instead
    of minutes of retries or a failure at the first checkpoint. The study calls it too (``field_prefix="train."``)."""
    if tracking_uri is not None:
        try:
            tracking.check_reachable(tracking_uri)
        except tracking.TrackingUnavailableError as exc:
            raise ConfigError(f"{field_prefix}tracking.uri: {exc}") from None
    try:
        checkpointing.check_storage_writable(storage)
    except OSError as exc:
        raise ConfigError(f"storage_path: {exc}") from None


def open_mlflow_run(cfg: TrainConfig, plan: RunPlan, *, run_name: str, run_id: str | None, summary: dict,
                    extra_tags: dict | None = None) -> str:
    uri = plan.tracking_uri
    params = {**flatten(cfg.to_dict()), **{f"plan.{k}": v for k, v in plan.to_dict().items()
                                           if k not in ("tracking_uri", "mlflow_run_id")},
              **{f"model.{k}": v for k, v in summary.items()}}
    tags = {"family": summary["family"], "variant": cfg.model.name, "dataset": plan.dataset_name,
            "data_fraction": cfg.data.train_fraction, "budget": cfg.schedule.total, "vit_study.kind": "train",
            "objective": cfg.objective, **(extra_tags or {})}
    if run_id is not None:  # the caller (a Tune trial) owns the run: add to it
        tracking.log_params(uri, run_id, params)
        tracking.RunLogger(uri, run_id).set_tags(tags)
        return run_id
    experiment_id = tracking.get_or_create_experiment(uri, cfg.tracking.experiment, tracking.artifact_location(uri))
    return tracking.start_run(uri, experiment_id, key=run_name, run_name=run_name, tags=tags, params=params)


def run_training(config, *, run_name: str | None = None, storage_path: str | None = None,
                 mlflow_run_id: str | None = None, callbacks=(), failure_config=None,
                 datasets: dict | None = None) -> ray.train.Result:
    """Train one model as configured and return Ray Train's ``Result``.

    Args:
        config: a :class:`TrainConfig` or its dict form; validated here before Ray starts.
        run_name: the Ray Train run name and the MLflow run key. Running again with the same name and storage
            resumes that run from its latest checkpoint, in the same MLflow run. Default: ``<config name>-<time>``.
        storage_path: where Ray Train keeps results and checkpoints (default ``config.storage_path`` or
            ``./runs``).
        mlflow_run_id: log into this existing run (a Tune trial's child run); its caller ends it.
        callbacks: Ray Train ``UserCallback`` objects (e.g. Tune's ``TuneReportCallback()``).
        failure_config: ``ray.train.FailureConfig``; default ``FailureConfig(max_failures=config.max_failures)``.
        datasets: ready-made Ray datasets (``train``, optionally ``val``/``test``/``fewshot_*``) instead of
            ``config.data.source``; ``config.data.num_classes`` must then be set.
    """
    cfg = absolute_paths(validate(config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)))
    init_tags = {}
    if cfg.init.checkpoint:  # fine-tuning: the architecture comes from the checkpoint
        from pipelines.transfer.starting_point import resolve_init

        cfg, init_tags = resolve_init(cfg, cfg.tracking.uri)
    run_name = run_name or default_run_name(cfg)
    storage = storage_path or cfg.storage_path or str(Path.cwd() / DEFAULT_STORAGE_DIR)
    if "://" not in storage:  # s3://, gs://, ... go to Ray as they are
        storage = str(Path(storage).expanduser().resolve())
    check_services(tracking.resolve_tracking_uri(cfg.tracking.uri) if cfg.tracking.enabled else None, storage)
    if not ray.is_initialized():
        ray.init(runtime_env=ray_logs.RUNTIME_ENV)
    reads_source = datasets is None and cfg.data.source != SYNTHETIC
    cpus = cpus_per_worker(cfg.scaling, ray.cluster_resources(), reads_data=reads_source or datasets is not None)
    datasets, num_classes, train_size, eval_splits = describe_data(cfg, datasets)
    plan = RunPlan(num_classes=num_classes, train_size=train_size, dataset_name=dataset_name(cfg),
                   eval_splits=eval_splits, cpus_per_worker=cpus, synthetic=datasets is None,
                   tracking_uri=tracking.resolve_tracking_uri(cfg.tracking.uri) if cfg.tracking.enabled else None,
                   **resolve_steps(cfg, train_size))
    own_run = cfg.tracking.enabled and mlflow_run_id is None
    if cfg.tracking.enabled:
        plan.mlflow_run_id = open_mlflow_run(cfg, plan, run_name=run_name, run_id=mlflow_run_id,
                                             summary=model_summary(cfg, num_classes), extra_tags=init_tags)
        print(f"MLflow run {plan.mlflow_run_id} at {plan.tracking_uri}", flush=True)
        if reads_source:
            from pipelines import data

            tracking.log_rejected_files(plan.tracking_uri, plan.mlflow_run_id,
                                        data.load_manifest(data.ensure_prepared(cfg.data.source)))
    trainer = TorchTrainer(
        train_func,
        train_loop_config={"config": cfg.to_dict(), "plan": plan.to_dict()},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
                                               resources_per_worker=_worker_resources(cfg, cpus)),
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=storage, callbacks=list(callbacks),
            failure_config=failure_config or ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.checkpoint.keep),
            worker_runtime_env=ray_logs.RUNTIME_ENV, logging_config=ray.train.LoggingConfig(log_level="WARNING")),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=datasets_to_split(cfg.scaling.num_workers)),
    )
    status = "FAILED"
    try:
        result = trainer.fit()
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if own_run:
            tracking.end_run(plan.tracking_uri, plan.mlflow_run_id, status)


def datasets_to_split(num_workers: int) -> list[str] | str:
    """Ray Train's ``DataConfig.datasets_to_split``: all of them across several workers; none for one worker, whose
    datasets then run inside the worker instead of behind a SplitCoordinator actor per dataset (up to 5 extra
    processes per run, each starting Ray Data: seconds of a short study trial's start-up on a small machine)."""
    return "all" if num_workers > 1 else []


def _worker_resources(cfg: TrainConfig, cpus: float) -> dict:
    resources = {"CPU": cpus}
    if cfg.scaling.use_gpu:
        resources["GPU"] = 1
    return resources
