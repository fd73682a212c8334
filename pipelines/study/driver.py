"""Run a study: Ray up, the data prepared once, the resource plan, the MLflow parent run, the Tuner, the report.

    outcome = run_study(load_study_config("configs/study-smoke.yaml"))
    outcome = run_study(cfg, resume=True)   # after a crash or a kill: only unfinished and errored trials run

Where things go:

- Tune's experiment directory ``<storage_path>/<name>`` (``storage_path`` defaults to ``<working dir>/runs``, made
  absolute; ``s3://...`` on a cluster) holds each trial's result files and TensorBoard event files
  (``tensorboard --logdir <experiment dir>``), the trials' Ray Train runs and checkpoints under ``train/``, and
  ``vit_study.json`` (the trials' specs, the MLflow parent run and tracking URI; ``pipelines.study.state``);
- MLflow: one parent run per study (reused by ``--resume``), one child run per trial (``pipelines.study.runs``);
- the report (``pipelines.analysis.report.build_report`` on the table read back from MLflow) goes to
  ``<experiment dir>/report`` (``outputs/study/<name>/report`` when the experiment is remote) and to the parent
  run's artifacts under ``report/``.

No trial is stopped early unless the config asks for a learning-rate search with ASHA (``search.scheduler``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import ray
import yaml
from ray import tune

from pipelines import tracking
from pipelines.data.storage import is_uri, join
from pipelines.tracking.runs import client
from pipelines.train.config import SYNTHETIC, ConfigError
from pipelines.train.driver import DEFAULT_STORAGE_DIR, check_services

from . import frontier, ray_env, runs, tune_hooks
from .config import StudyConfig
from .grid import describe_data, expand_grid, grid_size
from .resources import cluster_capacity, plan_resources
from .state import read_state, write_state
from .trial import run_trial

TRAIN_DIR, REPORT_DIR = "train", "report"
REMOTE_REPORT_ROOT = Path("outputs") / "study"


@dataclass
class StudyOutcome:
    experiment_path: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    report_dir: Path
    table: pd.DataFrame
    errored: list[str] = field(default_factory=list)  # keys of trials that ended in an error
    unfinished: int = 0  # trials neither finished nor errored: the study was interrupted

    @property
    def ok(self) -> bool:
        return not self.errored and not self.unfinished


def storage_root(cfg: StudyConfig) -> str:
    """Where Tune keeps the study: local paths made absolute (trials run in other directories), URIs as they are."""
    storage = cfg.storage_path or str(Path.cwd() / DEFAULT_STORAGE_DIR)
    return storage if is_uri(storage) else str(Path(storage).expanduser().resolve())


def experiment_path(cfg: StudyConfig) -> str:
    """``<storage_path>/<name>``: the Tune experiment directory."""
    return join(storage_root(cfg), cfg.name)


def tracking_uri_for(cfg: StudyConfig, path: str, resume: bool) -> str:
    """The study's MLflow URI; a resumed study keeps the one it started with (and refuses another)."""
    given = tracking.resolve_tracking_uri(cfg.train.tracking.uri) if cfg.train.tracking.uri else None
    state = read_state(path) if resume else None
    if state is None:
        return given or tracking.resolve_tracking_uri(None)
    if given and given != state["tracking_uri"]:
        raise ConfigError(f"train.tracking.uri: the study at {path} logs to {state['tracking_uri']}; resume it "
                          f"there (got {given})")
    return state["tracking_uri"]


def check_resumable(path: str, resume: bool) -> None:
    exists = tune.Tuner.can_restore(path)
    if resume and not exists:
        raise ConfigError(f"--resume: there is no study to resume at {path} (run it once without --resume)")
    if not resume and exists:
        raise ConfigError(f"name: a study already exists at {path}; continue it with --resume, or start another "
                          "with name=<new name> (or storage_path=...)")


def start_ray(num_cpus: int | None, dashboard_port: int | None) -> bool:
    """Connect to the cluster in ``RAY_ADDRESS`` (``ray job submit`` sets it) or start a local Ray; True if started
    here (then :func:`run_study` shuts it down)."""
    if ray.is_initialized():
        return False
    options = {"runtime_env": ray_env.RUNTIME_ENV}
    if not os.environ.get("RAY_ADDRESS"):
        options["num_cpus"] = num_cpus
        if dashboard_port is not None:
            options["dashboard_port"] = dashboard_port
    ray.init(**options)
    return True


def run_study(cfg: StudyConfig, *, resume: bool = False, num_cpus: int | None = None,
              dashboard_port: int | None = None, log=print) -> StudyOutcome:
    """Run (or ``resume``) the study and build its report; see the module docstring.

    ``num_cpus``/``dashboard_port`` apply only to a local Ray started here (default: all CPUs, Ray's port).
    Raises :class:`ConfigError` for a study that cannot run (before any trial starts); a trial that fails does not
    stop the others and is listed in ``StudyOutcome.errored``.
    """
    path = experiment_path(cfg)
    check_resumable(path, resume)
    uri = tracking_uri_for(cfg, path, resume)
    check_services(uri, storage_root(cfg), field_prefix="train.")
    started_ray = start_ray(num_cpus, dashboard_port)
    try:
        return _run(cfg, path=path, uri=uri, resume=resume, log=log)
    finally:
        if started_ray:
            ray.shutdown()


def _run(cfg: StudyConfig, *, path: str, uri: str, resume: bool, log) -> StudyOutcome:
    capacity = cluster_capacity()  # checked before the data is prepared (which may take minutes the first time)
    plan = plan_resources(cfg.train.scaling, cfg.resources, capacity, num_trials=grid_size(cfg),
                          uses_ray_data=cfg.train.data.source != SYNTHETIC)
    data = describe_data(cfg)
    trials = expand_grid(cfg, data, overrides={"scaling.cpus_per_worker": plan.cpus_per_worker,
                                               "tracking.enabled": True, "tracking.uri": uri})
    log(f"study {cfg.name!r}: {len(trials)} trials; {capacity.describe()}; "
        f"{plan.describe(cfg.train.scaling.num_workers, cfg.train.scaling.use_gpu)}")
    log(f"Tune experiment: {path}   (tensorboard --logdir {path})")

    experiment_id, parent = runs.open_parent_run(uri, cfg.experiment_name, key=path, run_name=cfg.name,
                                                 config=cfg.to_dict(), resume=resume)
    log(f"MLflow: experiment {cfg.experiment_name!r}, parent run {parent} at {uri}")
    if not resume:
        _log_plan(uri, parent, cfg, trials)
        write_state(path, {"tracking_uri": uri, "experiment": cfg.experiment_name, "parent_run_id": parent,
                           "trials": {t.key: t.to_dict() for t in trials}})
    study = {"path": path, "tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent,
             "train_storage": join(path, TRAIN_DIR), "top1_split": cfg.top1_split}
    trainable = tune.with_resources(run_trial, plan.trial_resources)
    status = "FAILED"
    try:
        if resume:
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(trainable, param_space={"study": study,
                                                       "trial": tune.grid_search([t.key for t in trials])},
                               tune_config=_tune_config(cfg, trials, plan.max_concurrent_trials),
                               run_config=tune.RunConfig(name=cfg.name, storage_path=storage_root(cfg),
                                                         callbacks=[tune_hooks.StudyRunCloser()],
                                                         failure_config=tune.FailureConfig(max_failures=0),
                                                         verbose=1))
        results = tuner.fit()
        errored = sorted(r.config["trial"] for r in results if r.error)
        unfinished = count_unfinished(results, [t.key for t in trials])
        report_dir = Path(path) / REPORT_DIR if not is_uri(path) else (REMOTE_REPORT_ROOT / cfg.name /
                                                                      REPORT_DIR).resolve()
        table = build_and_log_report(uri, cfg.experiment_name, parent, report_dir)
        if unfinished:  # Tune returns after a Ctrl-C (SIGINT) with the state saved: the report is a partial one
            log(f"study interrupted with {unfinished} trial(s) unfinished; continue it with --resume")
            status = "KILLED"
            return StudyOutcome(path, uri, experiment_id, parent, report_dir, table, errored, unfinished)
        if cfg.frontier.inspect:
            frontier.inspect_frontier(uri, experiment_id, parent, table, metric=cfg.frontier.metric,
                                      data_source=trials[0].train["data"]["source"],
                                      num_images=cfg.frontier.num_images, out_dir=report_dir, log=log)
        if cfg.frontier.finetune:
            tuned = frontier.finetune_frontier(uri, cfg.experiment_name, experiment_id, parent, table,
                                               metric=cfg.frontier.metric, config_path=cfg.frontier.finetune,
                                               overrides=cfg.frontier.finetune_overrides, study_path=path, log=log)
            if tuned:  # the report again, now with transfer_top1 (its frontier, fits and plots)
                table = build_and_log_report(uri, cfg.experiment_name, parent, report_dir)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracking.end_run(uri, parent, status)
    return StudyOutcome(path, uri, experiment_id, parent, report_dir, table, errored)


def count_unfinished(results, planned: list[str]) -> int:
    """Planned trials that neither finished nor errored: a trial's last report holds ``top1`` only once it finished,
    and trials Tune never created (the grid is expanded lazily; a Ctrl-C stops it) have no result at all."""
    done = {r.config["trial"] for r in results if r.error or (r.metrics and "top1" in r.metrics)}
    return len(set(planned) - done)


def _tune_config(cfg: StudyConfig, trials, max_concurrent: int) -> tune.TuneConfig:
    scheduler = None
    if cfg.search.scheduler == "asha":
        s = cfg.search
        scheduler = tune_hooks.asha_for(trials, metric=s.metric, mode=s.mode, grace_fraction=s.grace_fraction,
                                        reduction_factor=s.reduction_factor)
    return tune.TuneConfig(max_concurrent_trials=max_concurrent, scheduler=scheduler,
                           trial_dirname_creator=tune_hooks.trial_dirname, reuse_actors=False)


def _log_plan(uri: str, parent: str, cfg: StudyConfig, trials) -> None:
    """The study config and the planned trials (key + contract params) as artifacts of the parent run."""
    mlflow = client(uri)
    mlflow.log_text(parent, yaml.safe_dump(cfg.to_dict(), sort_keys=False), "study_config.yaml")
    plan = pd.DataFrame([{"key": t.key, "cell": t.cell, **t.params} for t in trials])
    mlflow.log_text(parent, plan.to_csv(index=False), "trials.csv")


def build_and_log_report(uri: str, experiment: str, parent_run_id: str, out_dir: Path) -> pd.DataFrame:
    """The report from what MLflow holds (as ``vit-study report`` builds it), logged to the parent run."""
    from pipelines.analysis.mlflow_log import log_report
    from pipelines.analysis.mlflow_source import load_study
    from pipelines.analysis.report import build_report

    study = load_study(experiment, uri, parent_run_id=parent_run_id)
    report = build_report(study.table, study.curves, out_dir)
    log_report(client(uri), parent_run_id, out_dir, report["fits"])
    return study.table


__all__ = ["StudyOutcome", "build_and_log_report", "count_unfinished", "experiment_path", "run_study", "storage_root"]
