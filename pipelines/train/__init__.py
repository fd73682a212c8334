"""Ray Train: FSDP2 training of any registered model, with evaluation, few-shot, checkpoints, resume and MLflow.

    from pipelines.train import load_config, run_training
    result = run_training(load_config("configs/train-smoke.yaml", ["optim.lr=3e-4"]))

``train_func`` is the per-worker function (for callers that build their own ``TorchTrainer``). Ray is imported only
when ``run_training`` or ``train_func`` is first used.
"""

from .config import ConfigError, TrainConfig, load_config

__all__ = ["ConfigError", "TrainConfig", "load_config", "run_training", "train_func"]


def __getattr__(name: str):
    if name == "run_training":
        from .driver import run_training

        return run_training
    if name == "train_func":
        from .loop import train_func

        return train_func
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
