"""``cer finetune``: train/evaluate classifiers on prompts, and apply a trained run.

    cer finetune train --config experiments/finetune/meld_minilm_lora.yaml [--flag VALUE ...]
    cer finetune predict RUN PROMPTS [--output predictions.parquet]

``train`` also covers generative SFT (``--mode generate``), zero-shot scoring (``--mode
zeroshot``) and cross-validation (``--splits FILE``). Data-parallel on several GPUs or machines::

    accelerate launch --multi_gpu --num_processes N -m cer.cli finetune train --config X.yaml
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from cer.config import add_options
    from finetune.config import FinetuneConfig, add_training_flags

    parser = subparsers.add_parser(
        "finetune",
        allow_abbrev=False,
        help="fine-tune BERT/LLaMA classifiers on textualized prompts",
        description="Fine-tune encoder (BERT) or decoder (LLaMA) classifiers on prompts from "
        "`cer textualize`, with LoRA or QLoRA, and evaluate them.",
    )
    sub = parser.add_subparsers(dest="finetune_command", metavar="ACTION")
    train = sub.add_parser(
        "train",
        allow_abbrev=False,
        help="train (or zero-shot score) and evaluate; writes a run folder",
        description="Train and evaluate. Options come from --config YAML and the flags below "
        "(flags win). Any transformers TrainingArguments field may also be set in the YAML.",
    )
    train.add_argument("--config", metavar="YAML", help="config file (flat option: value)")
    add_options(train, FinetuneConfig, skip=("training",))
    add_training_flags(train)
    train.set_defaults(func=run_train)

    predict = sub.add_parser(
        "predict",
        help="apply a trained run to a prompts file",
        description="Predict labels for every row, labelled or not (e.g. `cer textualize` "
        "output without --labels); score them only when every row has a gold label the run "
        "knows, and otherwise say why there are no metrics.",
    )
    predict.add_argument("run", metavar="RUN", help="run folder written by `cer finetune train`")
    predict.add_argument("prompts", metavar="PROMPTS", help="prompts Parquet/JSONL/CSV")
    predict.add_argument(
        "--output",
        metavar="PARQUET",
        help="where to write the predictions (default: RUN/predict_<prompts name>.parquet)",
    )
    predict.set_defaults(func=run_predict)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _user_errors() -> tuple[type[Exception], ...]:
    from cer.config import ConfigError
    from evaluation.runs import RunMismatchError
    from finetune.data import PromptDataError
    from finetune.models import ModelLoadError

    return (ConfigError, PromptDataError, ModelLoadError, RunMismatchError, FileNotFoundError)


def run_train(args: argparse.Namespace) -> int:
    import logging

    from evaluation.runs import is_main_process, results_summary
    from finetune.config import resolve_config
    from finetune.runner import run_finetune

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("cer finetune: %(message)s"))
    for name in ("finetune", "evaluation"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if is_main_process() else logging.WARNING)
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

    output = args.output or Path(args.run) / f"predict_{Path(args.prompts).stem}.parquet"
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
