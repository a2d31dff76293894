"""``cer textualize``: describe the face, voice and words of every clip, render prompts."""

from __future__ import annotations

import argparse
import sys

from cer.config import add_options

EPILOG = """\
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

OUTPUT is replaced as one set: the files are written beside it and swapped in at the end, so a
run that is killed, stopped or out of disk space leaves the previous outputs as they were. A run
holds OUTPUT for its whole duration; a second run on the same OUTPUT stops at once (exit 2) and
names the process that holds it. OUTPUT may not lie inside a source folder, nor hold files that
cer textualize did not write.

Ctrl-C or SIGTERM stops every worker and exits (130 / 143); the stages already finished are in
the cache, so the same command again resumes. A worker that dies (killed, out of memory, a crash)
costs only the clip it was extracting, which is reported as unreadable.

One prompt per window instead of per clip: --window 2 --hop 1 (seconds). On a Ray cluster:
--engine ray --ray-address auto. Without network access: --whisper-model DIR and --face off.

exit code: 0 when every clip was read and no modality failed; 1 otherwise (with --strict, also
when a requested modality is missing, e.g. no face visible or no speech); 2 for usage errors and
when nothing was written (bad input, OUTPUT or cache folder unusable or in use, disk full);
130 / 143 when stopped by SIGINT / SIGTERM.
"""


EXAMPLES = (
    "cer textualize videos/ runs/videos                     # every file in videos/, all modalities",
    "cer textualize manifest.parquet runs/meld --template instruction --modalities TA",
    "cer textualize new_clips/ runs/new --reference runs/meld  # words exactly as at training time",
)


class Stopped(KeyboardInterrupt):
    """SIGTERM (or Ctrl-C) as an exception, so that one clean-up path stops the workers."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def add_parser(subparsers) -> None:
    from textualize.config import TextualizeConfig

    parser = subparsers.add_parser(
        "textualize",
        help="Describe face, voice and speech of video clips in words and render prompts",
        description="Turn a folder of clips (or a manifest from `cer data prepare`) into textual "
        "descriptions of facial action units (py-feat), prosody (openSMILE eGeMAPS) and speech "
        "(Whisper), rendered into prompts. Every stage is cached per clip; re-runs resume.",
        epilog=EPILOG,
        examples=EXAMPLES,
    )
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="Folder of media files, a manifest (.parquet/.csv/.jsonl), or one file",
    )
    parser.add_argument(
        "output",
        metavar="OUTPUT",
        help="Output folder for prompts.parquet, prompts.jsonl, run.json",
    )
    parser.add_argument(
        "--config", metavar="YAML", help="YAML file of options; command-line flags override it"
    )
    add_options(parser, TextualizeConfig)
    parser.set_defaults(func=run)


def _stop_on_signals() -> dict:
    """Turn SIGINT and SIGTERM into Stopped; the handlers they replace, to put back."""
    import signal

    def stop(signum, frame):
        for sig in (signal.SIGINT, signal.SIGTERM):  # one stop: the clean-up is not interrupted
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    return {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}


def run(args: argparse.Namespace) -> int:
    import signal

    previous = _stop_on_signals()
    try:
        return _run(args)
    except Stopped as stop:
        name = signal.Signals(stop.signum).name
        print(
            f"cer textualize: stopped by {name}; finished stages are cached: run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return 128 + stop.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace) -> int:
    import os

    from cer.config import ConfigError, resolve

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from textualize import cache
    from textualize.config import TextualizeConfig
    from textualize.extract import ModalityUnavailable
    from textualize.inputs import InputError
    from textualize.output_folder import OutputError
    from textualize.pipeline import format_summary, textualize
    from textualize.prompts import TemplateError
    from textualize.ray_engine import RayEngineUnavailable
    from textualize.textualizer import TextualizerError

    try:
        cfg = resolve(TextualizeConfig, args, config_file=args.config)
    except (ConfigError, ValueError) as err:
        print(f"cer textualize: error: {err}", file=sys.stderr)
        return 2
    setup_errors = [
        ModalityUnavailable,
        InputError,
        TemplateError,
        RayEngineUnavailable,
        TextualizerError,
        OutputError,
    ]
    if hasattr(cache, "CacheError"):  # textualize/cache.py, new
        setup_errors.append(cache.CacheError)
    try:
        from textualize.speech import TranscriberUnavailable

        setup_errors.append(TranscriberUnavailable)
    except ImportError:
        pass
    try:
        summary = textualize(args.source, args.output, cfg)
    except tuple(setup_errors) as err:
        print(f"cer textualize: error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary), file=sys.stderr)
    return summary.exit_code(cfg.strict)
