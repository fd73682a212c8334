"""The scaling study: Ray Tune over model x data x compute, one ``TorchTrainer`` per trial, MLflow parent/child runs.

    from pipelines.study import load_study_config, run_study
    outcome = run_study(load_study_config("configs/study-smoke.yaml"))      # or: vit-study study --config ...

- ``config``: the study config (``train:`` recipe, ``grid:``, ``search:``, ``resources:``), validated up front.
- ``grid``: the trials, each a complete training config plus the MLflow contract's params.
- ``resources``: concurrency and CPU shares from the cluster; impossible plans are errors, not hangs.
- ``trial``: the Tune trainable (Ray Train V2 under Tune). ``runs``: the MLflow parent and child runs.
- ``tune_hooks``: trial directory names, closing runs Tune ended, ASHA within a cell. ``driver``: all of it.

Ray is imported only by ``trial``, ``tune_hooks`` and ``driver`` (``run_study`` loads it on first use).
"""

from .config import ConfigError, StudyConfig, load_study_config

__all__ = ["ConfigError", "StudyConfig", "load_study_config", "run_study"]


def __getattr__(name: str):
    if name == "run_study":
        from .driver import run_study

        return run_study
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
