"""Generative mode (SFT with trl: the answer is the label name) and zero-shot scoring.

Evaluation never parses free text: every label name is scored as the assistant's answer (sum of
its token log-probabilities, end-of-turn included so "sad" cannot win by being a prefix of
"sadness"), and the softmax over the label set gives class probabilities.

Under ``accelerate launch``/``torchrun`` SFT trains data-parallel, but scoring is not sharded:
every process scores all val/test rows (same numbers) and only the main process writes them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluation.coverage import prompt_modalities, run_coverage
from evaluation.runs import RunResult, finish_run, is_main_process, prediction_frame, start_run
from finetune.config import FinetuneConfig, flat_mapping
from finetune.model_card import complete_adapter, drop_checkpoints, write_model_card

if TYPE_CHECKING:
    import pandas as pd


def question(config: FinetuneConfig, prompt: str, labels: tuple[str, ...]) -> str:
    return f"{prompt.strip()}\n\n{config.instruction.format(labels=', '.join(labels))}"


def _render(tokenizer: Any, text: str, answer: str | None) -> str:
    """Chat-formatted context (answer None) or context + answer, for instruct models."""
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": text}]
        if answer is None:
            return tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        messages.append({"role": "assistant", "content": answer})
        return tokenizer.apply_chat_template(messages, tokenize=False)
    context = f"{text}\nAnswer:"
    return context if answer is None else f"{context} {answer}{tokenizer.eos_token}"


def answer_ids(
    tokenizer: Any, text: str, labels: tuple[str, ...]
) -> tuple[list[int], list[list[int]]]:
    """Token ids of the context and of each label's continuation (answer + end of turn)."""
    context = _render(tokenizer, text, None)
    continuations = []
    for label in labels:
        full = _render(tokenizer, text, label)
        if not full.startswith(context):
            raise ValueError("chat template renders the answer in a way that changes the context")
        rest = full[len(context) :].rstrip("\n")
        continuations.append(tokenizer(rest, add_special_tokens=False)["input_ids"])
    return tokenizer(context, add_special_tokens=False)["input_ids"], continuations


def score_labels(
    model: Any, tokenizer: Any, texts: list[str], labels: tuple[str, ...], batch_size: int = 4
) -> np.ndarray:
    """(examples, labels) probabilities from the log-likelihood of each label as the answer."""
    import torch

    from cer.feedback import progress_bar

    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = np.zeros((len(texts), len(labels)))
    bar = progress_bar(len(texts), "scoring labels")
    for start in range(0, len(texts), batch_size):
        rows, spans = [], []
        for text in texts[start : start + batch_size]:
            context, continuations = answer_ids(tokenizer, text, labels)
            for cont in continuations:
                rows.append(context + cont)
                spans.append((len(context), len(cont)))
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for i, (begin, length) in enumerate(spans):
            positions = torch.arange(begin - 1, begin + length - 1)
            targets = ids[i, begin : begin + length]
            total = logprobs[i, positions, targets].sum().item()
            scores[start + i // len(labels), i % len(labels)] = total
        bar.update(len(rows) // len(labels))
    bar.close()
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _sft_rows(config: FinetuneConfig, part: pd.DataFrame, labels: tuple[str, ...], tokenizer: Any):
    from datasets import Dataset

    texts = [question(config, t, labels) for t in part[config.text_column].astype(str)]
    answers = part[config.label_column].astype(str).tolist()
    if tokenizer.chat_template:
        return Dataset.from_dict(
            {
                "prompt": [[{"role": "user", "content": t}] for t in texts],
                "completion": [[{"role": "assistant", "content": a}] for a in answers],
            }
        )
    return Dataset.from_dict(
        {
            "prompt": [f"{t}\nAnswer:" for t in texts],
            "completion": [f" {a}{tokenizer.eos_token}" for a in answers],
        }
    )


def train_generative(
    config: FinetuneConfig,
    frame: pd.DataFrame,
    labels: tuple[str, ...],
    run_dir: Path,
    *,
    seed: int,
    run_id: str,
) -> RunResult:
    """SFT (mode generate) or no training (mode zeroshot); then score val/test over labels."""
    from transformers import set_seed

    from finetune.classify import resume_point, training_arguments
    from finetune.models import (
        ModelLoadError,
        load_causal_lm,
        load_tokenizer,
        lora_config,
        memory_advice,
        require_decoder,
        save_merged,
    )
    from finetune.predict import on_inference_device

    set_seed(seed)
    start_run(run_dir, flat_mapping(config), labels)
    require_decoder(config)
    tokenizer = load_tokenizer(config)
    if tokenizer.eos_token is None:
        raise ModelLoadError(
            f"the tokenizer of {config.model!r} has no end-of-sequence token, which ends every "
            "answer in generate/zeroshot modes; use a causal LM checkpoint whose tokenizer has one"
        )
    model = load_causal_lm(config)
    parts = {s: frame[frame["split"] == s] for s in ("train", "val", "test")}
    summary: dict[str, Any] = {
        "run_id": run_id,
        "seed": seed,
        "mode": config.mode,
        "family": "decoder",
        "method": config.method,
        "coverage": run_coverage(frame, prompt_modalities(frame)),
    }
    if config.mode == "generate":
        from peft import prepare_model_for_kbit_training
        from trl import SFTConfig, SFTTrainer

        if config.method == "qlora":
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
        has_val = not parts["val"].empty
        # Scoring the label set at every evaluation is costly: select checkpoints on val loss.
        selection = {"metric_for_best_model": "eval_loss", "greater_is_better": False}
        args = training_arguments(
            config,
            run_dir,
            seed,
            has_val,
            cls=SFTConfig,
            max_length=config.max_length,
            **(selection if has_val else {}),
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=_sft_rows(config, parts["train"], labels, tokenizer),
            eval_dataset=_sft_rows(config, parts["val"], labels, tokenizer) if has_val else None,
            processing_class=tokenizer,
            peft_config=lora_config(config, "decoder", "CAUSAL_LM")
            if config.method != "full"
            else None,
        )
        resume_from = resume_point(config, run_dir)
        started = time.perf_counter()
        with memory_advice(config, "training"):
            output = trainer.train(resume_from_checkpoint=resume_from)
        summary.update(
            train_seconds=time.perf_counter() - started,
            global_step=output.global_step,
            resumed_from=resume_from,
            train_examples=len(parts["train"]),
            processes=args.world_size,
        )
        trainer.save_model(str(run_dir / "adapter"))  # main process only; with the tokenizer
        if is_main_process():
            complete_adapter(run_dir / "adapter", config, labels, trainer.model)
        model = trainer.model
    else:
        model = on_inference_device(model, config)
        if is_main_process():
            tokenizer.save_pretrained(run_dir / "adapter")
    predictions = []
    for split in ("val", "test"):
        if not parts[split].empty:
            texts = [question(config, t, labels) for t in parts[split][config.text_column]]
            with memory_advice(config, "scoring labels with"):
                probabilities = score_labels(model, tokenizer, texts, labels)
            predictions.append(
                prediction_frame(
                    parts[split],
                    probabilities,
                    labels,
                    run_id=run_id,
                    label_column=config.label_column,
                )
            )
    if config.save_merged and is_main_process():
        summary["merged"] = save_merged(model, config, labels, tokenizer, run_dir)
    import pandas as pd

    result = finish_run(run_dir, pd.concat(predictions, ignore_index=True), labels, summary)
    if is_main_process():
        sizes = {split: len(part) for split, part in parts.items() if not part.empty}
        write_model_card(run_dir / "adapter", config, labels, sizes, result.metrics, summary)
        drop_checkpoints(run_dir)
    return result
