"""``cer finetune``: train/evaluate classifiers on prompts, and apply a trained run.

    cer finetune train --config configs/finetune/meld_minilm_lora.yaml [--flag VALUE ...]
    cer finetune predict RUN PROMPTS [--output-dir DIR]

``train`` also covers generative SFT (``--mode generate``), zero-shot scoring (``--mode
zeroshot``) and cross-validation (``--splits FILE``). Data-parallel on several GPUs or machines::

    accelerate launch --multi_gpu --num_processes N -m cer.cli finetune train --config X.yaml
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from cer.config import add_options
    from finetune.config import FinetuneConfig, add_training_flags

    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune BERT/LLaMA classifiers on textualized prompts",
        description="Fine-tune encoder (BERT) or decoder (LLaMA) classifiers on prompts from "
        "`cer textualize`, with LoRA or QLoRA, and evaluate them.",
        examples=[
            (
                "cer finetune train --config configs/finetune/meld_minilm_lora.yaml "
                "--prompts runs/meld-text/prompts.parquet"
            ),
            "cer finetune predict runs/finetune runs/new/prompts.parquet",
        ],
    )
    sub = parser.add_commands(dest="finetune_command")
    train = sub.add_parser(
        "train",
        help="train (or zero-shot score) and evaluate; writes a run folder",
        description="Train and evaluate. Options come from --config YAML and the flags below "
        "(flags win). Any transformers TrainingArguments field may also be set in the YAML.",
        epilog="Data-parallel on several GPUs or machines: accelerate launch --multi_gpu "
        "--num_processes N -m cer.cli finetune train ...",
        examples=[
            (
                "cer finetune train --config configs/finetune/meld_minilm_lora.yaml "
                "--prompts runs/meld-text/prompts.parquet"
            ),
            (
                "cer finetune train --prompts prompts.parquet --model bert-base-uncased "
                "--seeds 1 2 3 --output-dir runs/bert"
            ),
            (
                "cer finetune train --config configs/finetune/cv_minilm_lora.yaml "
                "--prompts prompts.parquet --splits splits.parquet --folds 0 1"
            ),
        ],
    )
    train.add_argument("--config", metavar="YAML", help="config file (flat option: value)")
    add_options(train, FinetuneConfig, skip=("training",))
    add_training_flags(train)
    train.set_defaults(func=run_train, default_log_level=logging.INFO)

    predict = sub.add_parser(
        "predict",
        help="apply a trained run to a prompts file",
        description="Predict labels for every row, labelled or not (e.g. `cer textualize` "
        "output without --labels); score them only when every row has a gold label the run "
        "knows, and otherwise say why there are no metrics.",
        examples=[
            "cer finetune predict runs/finetune runs/new/prompts.parquet",
            "cer finetune predict runs/finetune runs/new/prompts.parquet --output-dir runs/new",
        ],
    )
    predict.add_argument("run", metavar="RUN", help="run folder written by `cer finetune train`")
    predict.add_argument("prompts", metavar="PROMPTS", help="prompts Parquet/JSONL/CSV")
    predict.add_argument(
        "--output-dir",
        metavar="DIR",
        help="folder for predict_<prompts name>.parquet (default: RUN)",
    )
    predict.set_defaults(func=run_predict)


def _user_errors() -> tuple[type[Exception], ...]:
    from cer.config import ConfigError
    from evaluation.runs import RunMismatchError
    from finetune.data import PromptDataError
    from finetune.models import ModelLoadError

    return (ConfigError, PromptDataError, ModelLoadError, RunMismatchError, FileNotFoundError)


def run_train(args: argparse.Namespace) -> int:
    from evaluation.runs import is_main_process, results_summary
    from finetune.config import resolve_config
    from finetune.runner import run_finetune

    if not is_main_process():  # other ranks of a distributed launch: rank 0 reports progress
        for name in ("finetune", "evaluation"):
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.level, logging.WARNING))
    try:
        outcome = run_finetune(resolve_config(args, args.config))
    except _user_errors() as err:
        print(f"cer finetune train: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if not is_main_process():  # other ranks of a distributed launch: rank 0 reports
        return 0
    print(results_summary(outcome.runs, outcome.aggregate))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from finetune.predict import predict_run

    output = Path(args.output_dir or args.run) / f"predict_{Path(args.prompts).stem}.parquet"
    try:
        outcome = predict_run(args.run, args.prompts, output)
    except _user_errors() as err:
        print(f"cer finetune predict: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(f"{len(outcome.predictions)} predictions written to {output}; {outcome.note}")
    if outcome.metrics:
        rows = outcome.metrics["rows"]
        print(json.dumps({k: rows[k] for k in ("accuracy", "macro_f1", "weighted_f1")}))
    return 0
