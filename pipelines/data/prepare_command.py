"""``vit-study prepare SOURCE --out DIR [--split-names ...] [--strict]``."""

from __future__ import annotations

import argparse
import sys

from .manifest import ManifestError
from .prepare import PrepareError, format_summary, prepare_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="ImageFolder directory, .tgz/.tar/.zip archive or a directory of them, "
                                       "WebDataset shards, or Parquet; a local path or s3:// gs:// file:// URI")
    parser.add_argument("--out", required=True, help="directory (or URI) for the Parquet shards and manifest.json")
    parser.add_argument("--split-names", nargs="+", metavar="NAME|FROM=TO",
                        help="splits to keep, optionally renamed, e.g. `train val=test`; default: all, as named")
    parser.add_argument("--strict", action="store_true", help="stop at the first unusable file, naming it")
    parser.add_argument("--workers", type=int, help="image-checking processes (default: one per CPU)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing prepared --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        manifest = prepare_dataset(args.source, args.out, split_names=args.split_names, strict=args.strict,
                                   workers=args.workers, progress=not args.no_progress, overwrite=args.overwrite)
    except (PrepareError, ManifestError, ValueError) as exc:
        print(f"vit-study prepare: error: {exc}", file=sys.stderr)
        return 1
    print(format_summary(manifest, args.out))
    return 0
