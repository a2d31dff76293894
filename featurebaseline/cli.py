"""``cer baseline``: feature-fusion models on the same clips, splits and metrics as ``cer finetune``.

cer baseline train --config experiments/baseline/synthetic_voice_early.yaml [--flag VALUE ...]
cer baseline predict RUN SOURCE [--output predictions.parquet]   (SOURCE may have no labels)
accelerate launch --multi_gpu --num_processes N -m cer baseline train ...   (data-parallel; add
    CUDA_VISIBLE_DEVICES= for N CPU processes)
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from cer.config import add_options
    from featurebaseline.config import BaselineConfig

    parser = subparsers.add_parser(
        "baseline",
        help="train feature-fusion baselines (face/voice/text features) to compare with prompts",
        description="Train and evaluate multimodal fusion models on the numeric features that "
        "`cer textualize` cached (face AUs, openSMILE LLDs and functionals, text embeddings).",
    )
    sub = parser.add_subparsers(dest="baseline_command", metavar="ACTION")
    train = sub.add_parser(
        "train",
        help="train and evaluate one fusion arm; writes a run folder",
        description="Options come from --config YAML and the flags below (flags win).",
    )
    train.add_argument("--config", metavar="YAML", help="config file (flat option: value)")
    add_options(train, BaselineConfig)
    train.set_defaults(func=run_train)

    predict = sub.add_parser("predict", help="apply a trained run to a textualize output or table")
    predict.add_argument("run", metavar="RUN", help="run folder written by `cer baseline train`")
    predict.add_argument("source", metavar="SOURCE", help="`cer textualize` folder or table")
    predict.add_argument(
        "--output",
        metavar="PARQUET",
        help="where to write predictions (default: RUN/predict_<name>.parquet)",
    )
    predict.set_defaults(func=run_predict)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _user_errors() -> tuple[type[Exception], ...]:
    from cer.config import ConfigError
    from evaluation.runs import RunMismatchError
    from featurebaseline.encoders import EncoderUnavailable
    from featurebaseline.features import FeatureError
    from featurebaseline.train import FeatureMismatch

    return (
        ConfigError,
        FeatureError,
        FeatureMismatch,
        EncoderUnavailable,
        RunMismatchError,
        FileNotFoundError,
    )


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def run_train(args: argparse.Namespace) -> int:
    import logging

    from cer.config import resolve
    from evaluation.runs import results_summary
    from featurebaseline.config import BaselineConfig
    from featurebaseline.runner import run_baseline

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("cer baseline: %(message)s"))
    logger = logging.getLogger("evaluation")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        outcome = run_baseline(resolve(BaselineConfig, args, config_file=args.config))
    except _user_errors() as err:
        print(f"cer baseline train: error: {_one_line(err)}", file=sys.stderr)
        return 2
    print(results_summary(outcome.runs, outcome.aggregate))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from featurebaseline.runner import predict_source

    output = args.output or Path(args.run) / f"predict_{Path(args.source).stem}.parquet"
    try:
        outcome = predict_source(args.run, args.source, output)
    except _user_errors() as err:
        print(f"cer baseline predict: error: {_one_line(err)}", file=sys.stderr)
        return 2
    print(f"{len(outcome.predictions)} predictions written to {output}; {outcome.note}")
    if outcome.metrics:
        rows = outcome.metrics["rows"]
        print(json.dumps({k: rows[k] for k in ("accuracy", "macro_f1", "weighted_f1")}))
    return 0
