"""``cer textualize``: describe the face, voice and words of every clip, render prompts."""

from __future__ import annotations

import argparse

from cer.config import add_options

EPILOG = """\
examples:
  cer textualize videos/ runs/videos                      # every file in videos/, all modalities
  cer textualize manifest.parquet runs/meld --template instruction --modalities TA
  cer textualize videos/ runs/win --window 2 --hop 1      # one prompt per 2-s window, cache only
  cer textualize videos/ runs/offline --whisper-model /models/whisper-small-ct2 --face off
  cer textualize manifest.parquet runs/big --engine ray --ray-address auto   # on a Ray cluster
  cer textualize new_clips/ runs/new --reference runs/meld   # words exactly as at training time

outputs: prompts.parquet and prompts.jsonl (one row per clip or window), failures.jsonl (every
missing or failed modality with its reason), run.json (configuration, versions, timings),
textualizer.json (what the words depend on beyond one clip: prosody reference statistics, label
list, template, modalities, windows; fitted on the clips with split "train" when any clip has a
split, else on all clips; per-speaker statistics from the same clips).

--reference PRIOR (a prior output folder or its textualizer.json) renders with that textualizer
instead of fitting one: the same statistics, labels and template, so a clip gets the prompt it got
in PRIOR. Template, modalities, windows and prosody reference default to PRIOR's; giving a
different one is an error (exit 2). A speaker PRIOR has no statistics for is described against its
overall statistics, however many clips of that speaker the new batch holds. Rendering again from
the cache with --reference runs no extractor.

exit code: 0 when every clip was read and no modality failed; 1 otherwise (with --strict, also
when a requested modality is missing, e.g. no face visible or no speech); 2 for usage errors.
"""


def add_parser(subparsers) -> None:
    from textualize.config import TextualizeConfig

    parser = subparsers.add_parser(
        "textualize",
        help="Describe face, voice and speech of video clips in words and render prompts",
        description="Turn a folder of clips (or a manifest from `cer data prepare`) into textual "
        "descriptions of facial action units (py-feat), prosody (openSMILE eGeMAPS) and speech "
        "(Whisper), rendered into prompts. Every stage is cached per clip; re-runs resume.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", help="Folder of media files, a manifest (.parquet/.csv/.jsonl), or one file"
    )
    parser.add_argument("output", help="Output folder for prompts.parquet, prompts.jsonl, run.json")
    parser.add_argument(
        "--config", metavar="YAML", help="YAML file of options; command-line flags override it"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log what each stage does")
    add_options(parser, TextualizeConfig)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import os
    import sys

    from cer.config import ConfigError, resolve

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    from textualize.config import TextualizeConfig
    from textualize.extract import ModalityUnavailable
    from textualize.inputs import InputError
    from textualize.pipeline import format_summary, textualize
    from textualize.prompts import TemplateError
    from textualize.ray_engine import RayEngineUnavailable
    from textualize.textualizer import TextualizerError

    try:
        cfg = resolve(TextualizeConfig, args, config_file=args.config)
    except (ConfigError, ValueError) as err:
        print(f"cer textualize: {err}", file=sys.stderr)
        return 2
    setup_errors = [
        ModalityUnavailable,
        InputError,
        TemplateError,
        RayEngineUnavailable,
        TextualizerError,
    ]
    try:
        from textualize.speech import TranscriberUnavailable

        setup_errors.append(TranscriberUnavailable)
    except ImportError:
        pass
    try:
        summary = textualize(args.source, args.output, cfg)
    except tuple(setup_errors) as err:
        print(f"cer textualize: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary), file=sys.stderr)
    return summary.exit_code(cfg.strict)
