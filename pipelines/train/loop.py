"""The per-worker training function of Ray Train: ``train_func({"config": ..., "plan": ...})``.

Imported by the driver (CLI), by Tune trials and by tests; never copied. Each worker builds the FSDP2-sharded model,
restores the latest checkpoint if Ray Train hands one over, trains to ``plan.total_steps``, evaluates, checkpoints,
and rank 0 logs to MLflow.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from pipelines.tracking import NullLogger, RunLogger

from . import checkpointing, metrics, objectives
from .config import TrainConfig, model_options
from .config_loading import from_dict
from .evaluate import pre_logit_features, top1_accuracy
from .fewshot import fewshot_accuracy, fewshot_metrics
from .optim import BatchSplit, WeightAverage, build_optimizer, build_scheduler, clip_grad_norm, split_batch
from .parallelize import build_model, local_parameter_count
from .plan import RunPlan
from .resources import torch_threads
from .sources import FEWSHOT_EVAL, FEWSHOT_TRAIN, TEST, VAL, RayDataSource, SyntheticSource, patch_geometry

log = logging.getLogger(__name__)  # Ray Train routes worker logging to the console once (print would be doubled)


class NonFiniteError(FloatingPointError):
    """The loss or the gradient norm became NaN/inf; the message names the step."""


def real_data_source(cfg: TrainConfig, plan: RunPlan, split: BatchSplit, restored) -> RayDataSource:
    """This worker's Ray Data shards, starting in the epoch the checkpoint in ``restored`` (if any) stopped in."""
    images_seen = checkpointing.read_progress(restored).images_seen if restored is not None else 0
    return RayDataSource(split=split, eval_batch_size=cfg.eval.batch_size, seed=cfg.data.seed,
                         first_epoch=images_seen // plan.train_size, prefetch=cfg.data.prefetch_batches)


def synthetic_source(cfg: TrainConfig, plan: RunPlan, model_config, split: BatchSplit, rank: int,
                     world: int) -> SyntheticSource:
    return SyntheticSource(geometry=patch_geometry(model_config), num_classes=plan.num_classes,
                           train_size=cfg.data.synthetic_size, eval_size=cfg.data.synthetic_eval_size,
                           seed=cfg.data.seed, split=split, rank=rank, world_size=world,
                           eval_batch_size=cfg.eval.batch_size, fewshot_train_size=cfg.eval.fewshot_train_size,
                           fewshot_eval_size=cfg.eval.fewshot_eval_size)


def train_step(model, optimizer, scheduler, batches, *, split: BatchSplit, device, meter: metrics.StepMeter,
               grad_clip: float, step: int, objective: str = objectives.CLASSIFICATION,
               average: WeightAverage | None = None) -> tuple[float, float, float, dict[str, float]]:
    """One optimiser step over ``split.accumulation`` micro-batches; returns (global mean loss, grad norm, lr,
    the objective's own metrics averaged the same way)."""
    total, extra = torch.zeros((), device=device), {}
    for i in range(split.accumulation):
        inputs, labels = meter.wait_for(batches)
        inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        model.set_requires_gradient_sync(i == split.accumulation - 1)  # reduce-scatter once per step
        loss, measured = objectives.loss_and_metrics(model, inputs, labels, objective)
        loss = loss / split.accumulation
        loss.backward()
        total += loss.detach()
        for key, value in measured.items():
            extra[key] = extra.get(key, 0.0) + value / split.accumulation
    names = sorted(extra)
    summed = torch.stack([total, *(extra[k].to(total.dtype) for k in names)])
    dist.all_reduce(summed, op=dist.ReduceOp.AVG if dist.get_backend() == "nccl" else dist.ReduceOp.SUM)
    if dist.get_backend() != "nccl":  # gloo has no AVG
        summed /= dist.get_world_size()
    grad_norm = clip_grad_norm(model.parameters(), grad_clip)
    loss_value, norm_value = summed[0].item(), grad_norm.item()
    if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
        raise NonFiniteError(f"non-finite training signal at step {step}: loss {loss_value}, gradient norm "
                             f"{norm_value}; stopping (lower optim.lr or raise schedule.warmup)")
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    if average is not None:
        average.update(model)
    return loss_value, norm_value, lr, dict(zip(names, summed[1:].tolist()))


def evaluation_metrics(model, source, cfg: TrainConfig, plan: RunPlan, *, device, dummy, final: bool, step: int,
                       average: WeightAverage | None = None) -> dict[str, float]:
    """Top-1 (validation; test at the end) and few-shot accuracies due at ``step`` (none for objectives that do not
    classify), of the averaged weights when ``average`` is given."""
    def due(every: int) -> bool:
        return final or bool(every and step % every == 0)

    val = VAL in plan.eval_splits and due(plan.eval_every)
    test = final and cfg.eval.test and TEST in plan.eval_splits
    fewshot = bool(cfg.eval.fewshot_shots) and due(plan.fewshot_every)
    out = {}
    if not objectives.classifies(cfg) or not (val or test or fewshot):
        return out
    with average.applied(model) if average is not None else contextlib.nullcontext():
        if val:
            out[metrics.VAL_TOP1] = top1_accuracy(model, source.eval_batches(VAL), device=device, dummy=dummy)
        if test:
            out[metrics.TEST_TOP1] = top1_accuracy(model, source.eval_batches(TEST), device=device, dummy=dummy)
        if fewshot:
            out.update(_fewshot(model, source, cfg, plan, device=device, dummy=dummy))
    return out


def _fewshot(model, source, cfg: TrainConfig, plan: RunPlan, *, device, dummy) -> dict[str, float]:
    train_x, train_y = pre_logit_features(model, source.eval_batches(FEWSHOT_TRAIN), device=device, dummy=dummy)
    test_x, test_y = pre_logit_features(model, source.eval_batches(FEWSHOT_EVAL), device=device, dummy=dummy)
    accuracies = fewshot_accuracy(train_x, train_y, test_x, test_y, num_classes=plan.num_classes,
                                  shots=cfg.eval.fewshot_shots, seeds=cfg.eval.fewshot_seeds,
                                  l2_reg=cfg.eval.fewshot_l2_reg)
    return fewshot_metrics(plan.dataset_name, accuracies)


def save_and_report(payload: dict, *, model, optimizer, scheduler, progress, cfg: TrainConfig, rank: int,
                    logger, final: bool, average: WeightAverage | None = None) -> None:
    """Collective: write this rank's checkpoint part (plus the consolidated export at the end) and report it."""
    directory = checkpointing.new_checkpoint_dir()
    try:
        checkpointing.write_checkpoint(directory, model=model, optimizer=optimizer, scheduler=scheduler,
                                       progress=progress, run_config=cfg.to_dict(), rank=rank,
                                       extra=_average_state(average), unlogged=logger.unwritten())
        if final and cfg.checkpoint.export:
            export = checkpointing.export_consolidated(model, directory / checkpointing.EXPORT_DIR, rank)
            if export is not None:
                logger.log_artifacts(export, "model")
                logger.log_artifact(directory / checkpointing.CONFIG_FILE)
        ray.train.report(payload, checkpoint=ray.train.Checkpoint.from_directory(str(directory)),
                         checkpoint_dir_name=f"step-{progress.step:08d}")
    finally:
        checkpointing.remove(directory)


def train_func(loop_config: dict) -> None:
    """Ray Train's per-worker entry point. ``loop_config = {"config": TrainConfig dict, "plan": RunPlan dict}``."""
    # validated by the driver; not again here, where the driver's local paths may not exist (other nodes)
    cfg, plan = from_dict(TrainConfig, loop_config["config"]), RunPlan.from_dict(loop_config["plan"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(torch_threads(plan.cpus_per_worker))
    split = split_batch(cfg.schedule, world)
    resumed = ray.train.get_checkpoint()
    source, batches = None, None
    progress = checkpointing.Progress()
    logger = RunLogger(plan.tracking_uri, plan.mlflow_run_id) if rank == 0 and plan.mlflow_run_id else NullLogger()
    with contextlib.ExitStack() as stack:  # a remote checkpoint is fetched once: for the data's epoch, then weights
        restored = stack.enter_context(resumed.as_directory()) if resumed is not None else None
        if not plan.synthetic:  # asked for first: the pipeline starts up in the background while the model is built
            source = real_data_source(cfg, plan, split, restored)
            batches = source.train_microbatches(0)
        mesh = init_device_mesh(device.type, (world,))
        model = build_model(cfg.model.name, num_classes=plan.num_classes, image_size=cfg.data.image_size,
                            options=model_options(cfg), seed=cfg.seed, parallel=cfg.parallel, mesh=mesh,
                            device=device, wrap=objectives.model_wrapper(cfg))
        if cfg.init.checkpoint and restored is None:
            load_initial_weights(model, cfg, plan, rank)
        optimizer = build_optimizer(model, cfg.optim)
        scheduler = build_scheduler(optimizer, total_steps=plan.total_steps, warmup_steps=plan.warmup_steps,
                                    decay=cfg.schedule.decay)
        average = WeightAverage(model, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None
        if restored is not None:
            progress = checkpointing.read_checkpoint(restored, model=model, optimizer=optimizer,
                                                     scheduler=scheduler, rank=rank, extra=_average_state(average))
            logger.requeue(checkpointing.read_unlogged(restored))
        else:
            torch.manual_seed(cfg.seed + 1 + rank)  # dropout / stochastic depth differ per rank
    if source is None:
        source = synthetic_source(cfg, plan, objectives.unwrap(model).config, split, rank, world)
        batches = source.train_microbatches(progress.step)
    with contextlib.closing(batches):  # stops a prefetching thread when training ends or fails
        _run(cfg, plan, model=model, optimizer=optimizer, scheduler=scheduler, source=source, batches=batches,
             split=split, progress=progress, resumed=resumed is not None, rank=rank, world=world, device=device,
             logger=logger, average=average)


def load_initial_weights(model, cfg: TrainConfig, plan: RunPlan, rank: int) -> None:
    """Collective: rank 0 loads ``init.checkpoint`` adapted for this run (new head, resolution) and broadcasts it
    into every rank's shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    from pipelines.transfer.initial_weights import initial_state

    full = initial_state(cfg, num_classes=plan.num_classes, tracking_uri=cfg.tracking.uri) if rank == 0 else {}
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


def _average_state(average: WeightAverage | None) -> dict | None:
    return {"ema": average.state_dict()} if average is not None else None


def _run(cfg: TrainConfig, plan: RunPlan, *, model, optimizer, scheduler, source, batches, split: BatchSplit, progress,
         resumed: bool, rank: int, world: int, device, logger, average: WeightAverage | None = None) -> None:
    throughput = metrics.Throughput(metrics.forward_flops_per_image(model), split.global_batch, world,
                                    metrics.peak_flops(device, cfg.metrics.peak_tflops))
    dummy = patch_geometry(objectives.unwrap(model).config).dummy()
    local_params = local_parameter_count(model)
    started = time.perf_counter()
    model.train()
    while progress.step < plan.total_steps:
        if cfg.fault.kill_at_step == progress.step + 1 and rank == cfg.fault.kill_rank and not resumed:
            _die(logger)
        meter = metrics.StepMeter()
        loss, grad_norm, lr, measured = train_step(model, optimizer, scheduler, batches, split=split, device=device,
                                                   meter=meter, grad_clip=cfg.optim.grad_clip, step=progress.step + 1,
                                                   objective=cfg.objective, average=average)
        progress.step += 1
        progress.images_seen += split.global_batch
        step, final = progress.step, progress.step == plan.total_steps
        payload = throughput.step_metrics(step=step, loss=loss, lr=lr, grad_norm=grad_norm, meter=meter,
                                          images_seen=progress.images_seen, epoch_size=plan.train_size)
        payload.update(measured)
        if final and average is not None:  # training is over: the averaged weights are the result
            average.copy_to(model)
        evaluated = evaluation_metrics(model, source, cfg, plan, device=device, dummy=dummy, final=final, step=step,
                                       average=None if final else average)
        payload.update(evaluated)
        if final:
            payload[metrics.WALL_TIME] = time.perf_counter() - started
        logger.log_metrics(payload, step)
        payload["fsdp/local_params"] = local_params
        checkpoint_due = final or bool(plan.checkpoint_every and step % plan.checkpoint_every == 0)
        if checkpoint_due or evaluated or step % cfg.metrics.log_every == 0:
            logger.flush(wait=False)  # training never waits for MLflow; a checkpoint saves what is unwritten
            if rank == 0:
                log.info(_progress_line(payload, plan.total_steps))
            if checkpoint_due:
                save_and_report(payload, model=model, optimizer=optimizer, scheduler=scheduler, progress=progress,
                                cfg=cfg, rank=rank, logger=logger, final=final, average=average)
            else:
                ray.train.report(payload)
    logger.flush()  # the end waits until MLflow has every metric


def _die(logger) -> None:
    """Test hook: this worker process dies mid-run (SIGKILL, no clean-up), once its reported checkpoints are
    committed - Ray Train registers a report asynchronously, and a crash before that would lose it."""
    logger.flush()
    ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
    os.kill(os.getpid(), signal.SIGKILL)


def _progress_line(payload: dict, total_steps: int) -> str:
    shown = {k: v for k, v in payload.items() if k not in (metrics.STEP, "fsdp/local_params")}
    parts = [f"{k.split('/', 1)[-1] if k.startswith('train/') else k} {v:.4g}" for k, v in shown.items()]
    return f"step {payload[metrics.STEP]}/{total_steps}: " + ", ".join(parts)
