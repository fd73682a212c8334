"""The driver's side of ``init.checkpoint``: locate it once, take the architecture from it, and tag the run.

Workers then rebuild exactly that architecture (``model`` section) and rank 0 loads the weights
(:func:`pipelines.transfer.initial_weights.initial_state`).
"""

from __future__ import annotations

from pipelines.train.config import TrainConfig

from .checkpoints import architecture_overrides, locate, read_record, source_run_id

KIND_TAG, CHECKPOINT_TAG, SOURCE_RUN_TAG = "vit_study.kind", "vit_study.init_checkpoint", "vit_study.pretrain_run_id"


def resolve_init(cfg: TrainConfig, tracking_uri: str | None) -> tuple[TrainConfig, dict[str, str]]:
    """``cfg`` with ``init.checkpoint`` located (absolute path or ``runs:/`` URI) and, for our own checkpoints,
    the model section rebuilt from the checkpoint's record; plus the MLflow tags linking the run to its source."""
    location = locate(cfg.init.checkpoint)
    record = read_record(location, tracking_uri)
    overrides = {"init.checkpoint": location}
    if record is not None:
        overrides.update(architecture_overrides(record, reset_head=cfg.init.reset_head))
    tags = {KIND_TAG: "finetune", CHECKPOINT_TAG: str(cfg.init.checkpoint)}
    run_id = source_run_id(location)
    if run_id:
        tags[SOURCE_RUN_TAG] = run_id
    return cfg.replace(overrides), tags
