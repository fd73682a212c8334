"""``vit-study inspect``: attention rollout, mean attention distance, position-embedding similarity and embedding
filters of a trained model, as PNGs (and as artifacts of its MLflow run when the model came from one).

    vit-study inspect --checkpoint outputs/run/model --images ../shared/data/hymenoptera/val --out figures/
    vit-study inspect --checkpoint runs:/<run_id>/model --tracking-uri sqlite:////abs/mlflow.db --images DIR
"""

from __future__ import annotations

import argparse
import sys

from . import NUM_SAMPLE_IMAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="a directory saved by vit_model.save_model, a checkpoint file (with --model), "
                             "runs:/<run_id>/<artifact_path>, or an MLflow run id")
    parser.add_argument("--model", default=None,
                        help="model name (e.g. vit-b/16) to read any checkpoint format vit_model.load_pretrained knows")
    parser.add_argument("--images", default=None,
                        help="sample images: a folder (ImageFolder or flat), a .tar/.tgz of one, or Parquet shards; "
                             "without it only the position-embedding and filter figures are drawn")
    parser.add_argument("--num-images", type=int, default=NUM_SAMPLE_IMAGES,
                        help="sample images to average attention distances over (the rollout figure draws 8 at most)")
    parser.add_argument("--out", default="outputs/inspection", help="folder for the PNGs and inspection.json")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input resolution (default: the model's); another one resamples the position embeddings")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI for a run checkpoint (default: MLFLOW_TRACKING_URI)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


def run(args: argparse.Namespace) -> int:
    from .report import inspect_checkpoint

    if args.num_images < 1:
        print("error: --num-images must be at least 1", file=sys.stderr)
        return 2
    try:
        written = inspect_checkpoint(args.checkpoint, args.out, images=args.images, num_images=args.num_images,
                                     model_name=args.model, image_size=args.image_size,
                                     tracking_uri=args.tracking_uri, device=args.device)
    except (ValueError, FileNotFoundError) as exc:  # vit_model.CheckpointError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for file in written:
        print(file)
    return 0
