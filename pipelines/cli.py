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
    "download": ("pipelines.fetch.command", "a standard dataset (CIFAR-10) from its publisher, as image folders"),
    "prepare": ("pipelines.data.prepare_command", "read a dataset once into Parquet shards + manifest"),
    "train": ("pipelines.train.command", "one training run on Ray Train (FSDP2)"),
    "study": ("pipelines.study.command", "the scaling study: Ray Tune over model x data x compute"),
    "report": ("pipelines.analysis.report_command", "rebuild the study's table, fits and plots from MLflow"),
    "finetune": ("pipelines.transfer.command", "fine-tune a checkpoint at a new resolution"),
    "inspect": ("pipelines.inspection.command", "attention rollout, attention distance, embedding figures"),
    "smoke": ("pipelines.smoke", "a short single-process training on real images (no Ray)"),
}


def _available() -> dict[str, tuple[str, str]]:
    found = {}
    for name, spec in COMMANDS.items():
        try:
            if importlib.util.find_spec(spec[0]) is not None:
                found[name] = spec
        except ModuleNotFoundError:  # its package does not exist (yet)
            pass
    return found


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, object | None]:
    """A parser listing every command; only the command being run is imported and gets its options."""
    parser = argparse.ArgumentParser(prog="vit-study", description="Vision Transformer scaling study on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, (module_name, help_text) in _available().items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
    return parser, module


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parse_args``, except that KEY=VALUE overrides may sit between options (``train a=1 --run-name x b=2``):
    argparse's ``nargs="*"`` positional takes only the first run of them."""
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, module = build_parser(argv)
    args = parse_arguments(parser, argv)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
