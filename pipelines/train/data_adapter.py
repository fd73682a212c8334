"""Real data for a training run: the Ray datasets of :mod:`pipelines.data`, sized from the manifest without
executing anything.

Splits handed to the trainer: ``train`` (augmented), ``val`` (carved from train), ``test`` (if prepared), and for
few-shot evaluation ``fewshot_train`` (the first examples of ``val``: the k shots per class are drawn from it) and
``fewshot_eval`` (the first examples of ``test``, where the classifiers are scored). The synthetic source follows
the same convention.
"""

from __future__ import annotations

from .config import ConfigError, TrainConfig
from .sources import FEWSHOT_EVAL, FEWSHOT_TRAIN, TEST, TRAIN, VAL


def data_options(cfg: TrainConfig) -> dict:
    """Subset arguments shared by ``build_datasets`` and ``subset_sizes`` (their defaults where the config has none)."""
    options = {"train_fraction": cfg.data.train_fraction, "train_count": cfg.data.train_count}
    if cfg.data.val_fraction is not None:
        options["val_fraction"] = cfg.data.val_fraction
    return options


def build_run_datasets(cfg: TrainConfig, *, patch_size: int):
    """(datasets, num_classes, train size, evaluation splits) for ``cfg.data``; prepares the source once."""
    from pipelines import data

    prepared = data.ensure_prepared(cfg.data.source)
    manifest = data.load_manifest(prepared)
    num_classes = len(manifest["classes"])
    if cfg.data.num_classes is not None and cfg.data.num_classes != num_classes:
        raise ConfigError(f"data.num_classes: {cfg.data.num_classes} given, but {cfg.data.source} has {num_classes} "
                          f"classes ({', '.join(manifest['classes'][:5])}, ...)")
    sizes = data.subset_sizes(prepared, **data_options(cfg))
    extra = {} if cfg.data.crop_scale is None else {"crop_scale": tuple(cfg.data.crop_scale)}
    datasets = data.build_datasets(prepared, image_size=cfg.data.image_size, patch_size=patch_size,
                                   seed=cfg.data.seed, **data_options(cfg), **extra)
    if cfg.eval.fewshot_shots:
        if VAL not in datasets or TEST not in datasets:
            raise ConfigError("eval.fewshot_shots: few-shot evaluation draws shots from the val split and scores on "
                              "the test split; this data lacks one of them (set eval.fewshot_shots: [])")
        datasets[FEWSHOT_TRAIN] = datasets[VAL].limit(cfg.eval.fewshot_train_size)
        datasets[FEWSHOT_EVAL] = datasets[TEST].limit(cfg.eval.fewshot_eval_size)
    return datasets, num_classes, sizes[TRAIN], [name for name in (VAL, TEST) if name in datasets]
