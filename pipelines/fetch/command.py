"""``vit-study download cifar10 --out DIR``: a standard dataset from its publisher, as an ImageFolder tree.

    vit-study download cifar10 --out ~/data/cifar10      # then: make study DATA=~/data/cifar10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DATASETS = ("cifar10",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=DATASETS, help="which dataset")
    parser.add_argument("--out", required=True, help="folder to create: <out>/train/<class>/*.png, <out>/test/...")
    parser.add_argument("--cache", default=None, help="where the downloaded archive is kept (default: beside --out)")


def run(args: argparse.Namespace) -> int:
    from .cifar10 import FetchError, fetch_cifar10

    try:
        out = fetch_cifar10(Path(args.out).expanduser().resolve(),
                            cache=Path(args.cache).expanduser().resolve() if args.cache else None,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
    except (FetchError, OSError) as exc:  # urllib's URLError is an OSError
        print(f"vit-study download: error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0
