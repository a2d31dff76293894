"""``cer baseline``: feature-fusion models on the same clips, splits and metrics as ``cer finetune``.

cer baseline train --config configs/baseline/synthetic_voice_early.yaml [--flag VALUE ...]
cer baseline predict RUN PROMPTS [--output-dir DIR]   (PROMPTS may have no labels)
accelerate launch --multi_gpu --num_processes N -m cer baseline train ...   (data-parallel; add
    CUDA_VISIBLE_DEVICES= for N CPU processes)
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from cer.config import add_options
    from featurebaseline.config import BaselineConfig

    parser = subparsers.add_parser(
        "baseline",
        help="train feature-fusion baselines (face/voice/text features) to compare with prompts",
        description="Train and evaluate multimodal fusion models on the numeric features that "
        "`cer textualize` cached (face AUs, openSMILE LLDs and functionals, text embeddings).",
        examples=[
            (
                "cer baseline train --config configs/baseline/textualized_leader.yaml "
                "--prompts runs/meld-text"
            ),
            "cer baseline predict runs/baseline runs/new",
        ],
    )
    sub = parser.add_commands(dest="baseline_command")
    train = sub.add_parser(
        "train",
        help="train and evaluate one fusion arm; writes a run folder",
        description="Options come from --config YAML and the flags below (flags win). "
        "--prompts is the YAML key source (prompts: is read too).",
        examples=[
            (
                "cer baseline train --config configs/baseline/textualized_leader.yaml "
                "--prompts runs/meld-text"
            ),
            "cer baseline train --prompts runs/meld-text --arm late --modalities VA --seeds 1 2 3",
            "cer baseline train --prompts features.parquet --modalities T --output-dir runs/text",
        ],
    )
    train.add_argument("--config", metavar="YAML", help="config file (flat option: value)")
    add_options(train, BaselineConfig)
    train.set_defaults(func=run_train, default_log_level=logging.INFO)

    predict = sub.add_parser(
        "predict",
        help="apply a trained run to a textualize output or table",
        description="Predict labels for every row, labelled or not; score them only when every "
        "row has a gold label the run knows.",
        examples=[
            "cer baseline predict runs/baseline runs/new",
            "cer baseline predict runs/baseline runs/new --output-dir runs/new",
        ],
    )
    predict.add_argument("run", metavar="RUN", help="run folder written by `cer baseline train`")
    predict.add_argument(
        "prompts", metavar="PROMPTS", help="`cer textualize` output folder, or a table"
    )
    predict.add_argument(
        "--output-dir",
        metavar="DIR",
        help="folder for predict_<PROMPTS name>.parquet (default: predictions/<RUN name>_<PROMPTS "
        "name>.parquet under the working directory)",
    )
    predict.set_defaults(func=run_predict)


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
    from cer.config import resolve
    from evaluation.runs import results_summary
    from featurebaseline.config import BaselineConfig
    from featurebaseline.runner import run_baseline

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

    from featurebaseline.runner import default_prediction_path, predict_source

    if args.output_dir:
        output = Path(args.output_dir) / f"predict_{Path(args.prompts).stem}.parquet"
    else:  # outside the run folder, which holds only what training wrote
        output = default_prediction_path(args.run, args.prompts)
    try:
        outcome = predict_source(args.run, args.prompts, output)
    except _user_errors() as err:
        print(f"cer baseline predict: error: {_one_line(err)}", file=sys.stderr)
        return 2
    print(f"{len(outcome.predictions)} predictions written to {output}; {outcome.note}")
    if outcome.metrics:
        rows = outcome.metrics["rows"]
        print(json.dumps({k: rows[k] for k in ("accuracy", "macro_f1", "weighted_f1")}))
    return 0
