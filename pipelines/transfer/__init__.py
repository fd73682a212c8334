"""Transfer: fine-tuning a pre-trained model at a new resolution with a new head, over a learning-rate sweep, on
Ray Train (the training loop of :mod:`pipelines.train`, started from ``init.checkpoint``).

    from pipelines.transfer import load_finetune_config, run_finetune
    summary = run_finetune(load_finetune_config("configs/finetune-hymenoptera.yaml"), checkpoint="runs/x/step-...")
    summary.best.lr, summary.best.metrics["val/top1"]
"""

from .config import FinetuneConfig, load_finetune_config

__all__ = ["FinetuneConfig", "SweepSummary", "load_finetune_config", "run_finetune"]


def __getattr__(name: str):
    if name in ("run_finetune", "SweepSummary"):
        from . import sweep

        return getattr(sweep, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
