"""``vit-study``: one entry point, one sub-command per module.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``; this file
only dispatches, so importing one command never imports the others (or Ray, when it is not needed).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("pipelines.data.prepare_command", "read a dataset once into Parquet shards + manifest"),
    "train": ("pipelines.train.command", "one training run on Ray Train (FSDP2)"),
    "study": ("pipelines.study.command", "the scaling study: Ray Tune over model x data x compute"),
    "report": ("pipelines.analysis.report_command", "rebuild the study's table, fits and plots from MLflow"),
    "finetune": ("pipelines.transfer.command", "fine-tune a checkpoint at a new resolution"),
    "inspect": ("pipelines.inspection.command", "attention rollout, attention distance, embedding figures"),
    "smoke": ("pipelines.smoke", "a short single-process training on real images (no Ray)"),
}


def _available() -> dict[str, tuple[str, str]]:
    return {name: spec for name, spec in COMMANDS.items() if importlib.util.find_spec(spec[0]) is not None}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="vit-study", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in _available().items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
        modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
