"""The `cer` command: one subcommand per capability, each owned by its package.

Subcommand modules are imported only to build their parser; they keep heavy imports inside
their run functions so that ``cer --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: (subcommand, module that defines ``add_parser(subparsers)``)
SUBCOMMANDS = (
    ("data", "data_cards.cli"),
    ("textualize", "textualize.cli"),
    ("finetune", "finetune.cli"),
    ("baseline", "featurebaseline.cli"),
    ("experiment", "experiments.cli"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cer",
        description="Multimodal emotion recognition by textualization: describe the face, voice "
        "and words of video clips in text, fine-tune language models on the prompts, and compare "
        "them with feature-fusion baselines.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in SUBCOMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue  # capability not built yet in this release
        mod.add_parser(sub)
    return parser


#: Exit status of a command whose reader went away (``| head``), as a shell reports SIGPIPE.
EXIT_BROKEN_PIPE = 128 + 13


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        # The reader (e.g. `| head -1`) has what it wanted: stop quietly, like any Unix filter.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
