"""Train a sequence classifier (encoder or decoder, full / LoRA / QLoRA) and write its run folder.

Reads top to bottom: tokenize the splits, load the model, train with the Hugging Face Trainer
(length-grouped batches, per-batch padding, optional class weights, early stopping on validation
F1, checkpoints and resume), predict val/test, save adapter and metrics.

Under ``accelerate launch`` or ``torchrun`` the Trainer trains data-parallel and ``predict``
gathers every process's rows back into row order; only the main process writes the run folder.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluation.coverage import prompt_modalities, run_coverage
from evaluation.runs import RunResult, finish_run, is_main_process, prediction_frame, start_run
from finetune.config import TRAINING_DEFAULTS, FinetuneConfig, flat_mapping
from finetune.data import build_dataset, encode_labels, tokenize_texts
from finetune.model_card import complete_adapter, drop_checkpoints, write_model_card

if TYPE_CHECKING:
    import pandas as pd


def training_arguments(
    config: FinetuneConfig,
    run_dir: Path,
    seed: int,
    has_val: bool,
    cls: Any = None,
    **fixed: Any,
) -> Any:
    """``TrainingArguments`` (or ``cls``, e.g. trl's SFTConfig): our defaults, then the config's
    overrides, then ``fixed`` values the caller needs."""
    import torch
    from transformers import TrainingArguments

    from cer.feedback import progress_enabled

    values = {**TRAINING_DEFAULTS, **config.training}
    if "disable_tqdm" not in config.training:  # the Trainer's bar (steps, ETA) unless asked off
        values["disable_tqdm"] = not progress_enabled()
    if not has_val:
        values.update(eval_strategy="no", load_best_model_at_end=False)
    elif values.get("eval_strategy") != "no":
        if "save_strategy" not in config.training:  # best-model loading needs them aligned
            values["save_strategy"] = values["eval_strategy"]
        values.setdefault("load_best_model_at_end", True)
        values.setdefault("metric_for_best_model", config.early_stopping_metric)
        values.setdefault("greater_is_better", True)
    # Mixed precision where the GPU supports it; never on CPU (trl's SFTConfig defaults to bf16).
    values.setdefault("bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        # Launched as several processes without GPUs: without use_cpu, accelerate would not
        # set up a (gloo) process group and each process would train alone on all the data.
        values.setdefault("use_cpu", True)
    if config.method == "qlora":
        values.setdefault("gradient_checkpointing", True)
    values.update(output_dir=str(run_dir / "checkpoints"), seed=seed, **fixed)
    return (cls or TrainingArguments)(**values)


def class_weight_vector(label_ids: list[int], n_labels: int) -> np.ndarray:
    """Inverse-frequency weights normalised to mean 1 (absent classes weigh 0)."""
    counts = np.bincount(label_ids, minlength=n_labels).astype(np.float64)
    weights = np.divide(counts.sum(), counts * n_labels, out=np.zeros(n_labels), where=counts > 0)
    return weights


def make_trainer(
    model: Any,
    args: Any,
    tokenizer: Any,
    datasets: dict[str, Any],
    weights: np.ndarray | None,
    callbacks: list[Any],
) -> Any:
    import torch
    from transformers import DataCollatorWithPadding, Trainer

    class ClassifierTrainer(Trainer):
        def _get_eval_sampler(self, eval_dataset):
            # transformers 5 also length-groups evaluation batches, which reorders predictions
            # relative to the rows they belong to; keep evaluation in row order.
            return torch.utils.data.SequentialSampler(eval_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            if weights is None:
                return super().compute_loss(model, inputs, return_outputs, **kwargs)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            weight = torch.as_tensor(weights, dtype=outputs.logits.dtype, device=labels.device)
            loss = torch.nn.functional.cross_entropy(outputs.logits, labels, weight=weight)
            return (loss, outputs) if return_outputs else loss

    return ClassifierTrainer(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets.get("val"),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_compute_metrics,
        callbacks=callbacks,
    )


def _compute_metrics(prediction: Any) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    logits = (
        prediction.predictions[0]
        if isinstance(prediction.predictions, tuple)
        else (prediction.predictions)
    )
    predicted, gold = np.asarray(logits).argmax(-1), prediction.label_ids
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(gold, predicted, average="weighted", zero_division=0)),
    }


def latest_checkpoint(run_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = run_dir / "checkpoints"
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def resume_point(config: FinetuneConfig, run_dir: Path) -> str | None:
    """The checkpoint to continue from; ``retrain`` discards old checkpoints instead."""
    if config.retrain:
        if is_main_process():
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        return None
    return latest_checkpoint(run_dir) if config.resume is not False else None


def train_classifier(
    config: FinetuneConfig,
    frame: pd.DataFrame,
    labels: tuple[str, ...],
    run_dir: Path,
    *,
    seed: int,
    run_id: str,
) -> RunResult:
    """Train on ``split == train``, select on ``val``, predict ``val`` and ``test``."""
    from transformers import EarlyStoppingCallback, set_seed

    from finetune.models import (
        load_classifier,
        load_tokenizer,
        memory_advice,
        model_family,
        save_merged,
    )

    set_seed(seed)
    start_run(run_dir, flat_mapping(config), labels)
    tokenizer = load_tokenizer(config)
    parts = {s: frame[frame["split"] == s] for s in ("train", "val", "test")}
    parts = {s: part for s, part in parts.items() if not part.empty}
    datasets, truncation = {}, []
    for split, part in parts.items():
        ids, count = tokenize_texts(
            tokenizer,
            part[config.text_column].astype(str).tolist(),
            max_length=config.max_length,
            truncation_side=config.truncation_side,
            split=split,
        )
        datasets[split] = build_dataset(ids, encode_labels(part, labels, config.label_column))
        truncation.append(dataclasses.asdict(count))

    model = load_classifier(config, labels, tokenizer)
    args = training_arguments(config, run_dir, seed, has_val="val" in datasets)
    weights = (
        class_weight_vector(datasets["train"]["labels"], len(labels))
        if config.class_weights
        else None
    )
    callbacks = []
    if args.load_best_model_at_end and config.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(config.early_stopping_patience))
    trainer = make_trainer(model, args, tokenizer, datasets, weights, callbacks)
    resume_from = resume_point(config, run_dir)
    started = time.perf_counter()
    with memory_advice(config, "training"):
        output = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - started

    trainer.save_model(str(run_dir / "adapter"))  # main process only; saves the tokenizer too
    if trainer.is_world_process_zero():
        complete_adapter(run_dir / "adapter", config, labels, trainer.model)
    predictions = []
    for split in ("val", "test"):
        if split in datasets:
            with memory_advice(config, "predicting with"):
                logits = trainer.predict(datasets[split]).predictions
            logits = logits[0] if isinstance(logits, tuple) else logits
            predictions.append(
                prediction_frame(
                    parts[split],
                    softmax(logits),
                    labels,
                    run_id=run_id,
                    label_column=config.label_column,
                )
            )
    import pandas as pd

    summary = {
        "run_id": run_id,
        "seed": seed,
        "mode": config.mode,
        "family": model_family(config),
        "method": config.method,
        "train_examples": len(datasets["train"]),
        "train_seconds": train_seconds,
        "train_examples_per_second": output.metrics.get("train_samples_per_second"),
        "global_step": output.global_step,
        "resumed_from": resume_from,
        # the selected checkpoint's name; its weights are adapter/ (checkpoints are removed)
        "best_checkpoint": Path(trainer.state.best_model_checkpoint).name
        if trainer.state.best_model_checkpoint
        else None,
        "truncation": truncation,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "processes": args.world_size,
        "coverage": run_coverage(frame, prompt_modalities(frame)),
    }
    if config.save_merged and trainer.is_world_process_zero():
        summary["merged"] = save_merged(trainer.model, config, labels, tokenizer, run_dir)
    result = finish_run(run_dir, pd.concat(predictions, ignore_index=True), labels, summary)
    if trainer.is_world_process_zero():
        sizes = {split: len(part) for split, part in parts.items()}
        write_model_card(run_dir / "adapter", config, labels, sizes, result.metrics, summary)
        drop_checkpoints(run_dir)
    return result


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
