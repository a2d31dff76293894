"""The `cer` command: one subcommand per capability, each owned by its package.

Subcommand modules are imported only to build their parser; they keep heavy imports inside
their run functions so that ``cer --help`` is instant. Every parser is a ``CommandParser``
(``cer/command_line.py``), which holds the conventions all commands share.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from cer.command_line import PROJECT_LOGGERS, CommandParser, log_level

#: (subcommand, module that defines ``add_parser(subparsers)``)
SUBCOMMANDS = (
    ("data", "data_cards.cli"),
    ("textualize", "textualize.cli"),
    ("finetune", "finetune.cli"),
    ("baseline", "featurebaseline.cli"),
    ("experiment", "experiments.cli"),
)


CONVENTIONS = """\
conventions (every command): inputs are positional, then OUTPUT where a command needs one; a
command configured by a YAML file (--config) takes --output-dir (its output_dir key) instead.
Booleans are --flag / --no-flag; lists are space-separated (--seeds 1 2 3); flags override
--config. -v logs INFO, -q errors only (default WARNING; INFO for train and experiment run).
Exit status 2 for usage and user errors, 1 when the work ran but failed, 0 otherwise.
"""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("cer-textualize")
    except PackageNotFoundError:
        return "unknown (not installed; run `pip install -e .`)"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="cer",
        description="Multimodal emotion recognition by textualization: describe the face, voice "
        "and words of video clips in text, fine-tune language models on the prompts, and compare "
        "them with feature-fusion baselines.",
        epilog=CONVENTIONS,
        examples=[
            "cer data prepare meld /data/MELD.Raw runs/meld-prepared",
            "cer textualize runs/meld-prepared/manifest.parquet runs/meld-text",
            "cer experiment run configs/studies/synthetic.yaml",
        ],
    )
    parser.add_argument("--version", action="version", version=f"cer {version()}")
    sub = parser.add_commands(dest="command", metavar="COMMAND")
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
    args = build_parser().parse_args(argv)
    from cer.feedback import quiet_libraries

    quiet_libraries(verbose=getattr(args, "log_level", None) == logging.INFO or None)
    loggers = [logging.getLogger(name) for name in PROJECT_LOGGERS]
    loggers.append(logging.getLogger())  # root, raised to ERROR by -q
    before = [logger.level for logger in loggers]
    _log_at(log_level(args), loggers[:-1])
    try:
        return int(args.func(args) or 0)
    finally:  # a command called in-process (tests, notebooks) leaves logging as it found it
        for logger, level in zip(loggers, before):
            logger.setLevel(level)


def _log_at(level: int, loggers: list[logging.Logger]) -> None:
    """Our loggers at ``level``; other libraries stay at WARNING (ERROR with -q)."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    if level >= logging.ERROR:
        logging.getLogger().setLevel(level)
    for logger in loggers:
        logger.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
