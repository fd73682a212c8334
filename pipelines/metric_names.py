"""The MLflow / Ray Train metric keys, in one place: the training loop logs them, the study and the analysis read
them. Kept free of heavy imports (no torch, no mlflow) so the analysis can use it alone."""

STEP = "step"
LOSS, LR, GRAD_NORM = "train/loss", "train/lr", "train/grad_norm"
IMAGES_PER_S, STEP_TIME, DATA_WAIT = "train/images_per_s", "train/step_time_s", "train/data_wait_frac"
IMAGES_SEEN, EPOCH, TRAIN_FLOPS = "train/images_seen", "train/epoch", "train/flops"
TFLOPS, MFU = "train/tflops_per_s", "train/mfu"
VAL_TOP1, TEST_TOP1 = "val/top1", "test/top1"
WALL_TIME = "time/train_s"
FEWSHOT_PREFIX = "fewshot/"  # + "<dataset>_<k>shot"
FINETUNE_PREFIX = "finetune/"  # a fine-tuning sweep's summary, logged on the run it started from


def finetune_best_key(metric: str) -> str:
    """``"test/top1"`` -> ``"finetune/best_test/top1"``: ``metric`` of the sweep's best learning rate."""
    return f"{FINETUNE_PREFIX}best_{metric}"


def fewshot_key(dataset: str, shots: int) -> str:
    """``("cifar10", 5)`` -> ``"fewshot/cifar10_5shot"``."""
    return f"{FEWSHOT_PREFIX}{dataset}_{shots}shot"
