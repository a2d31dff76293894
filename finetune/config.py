"""Configuration of a fine-tuning run: our options plus Hugging Face ``TrainingArguments``.

A YAML file holds flat values. Keys that are fields of ``FinetuneConfig`` configure the data, the
model and the adapter; any other key must be a ``TrainingArguments`` field (``learning_rate``,
``num_train_epochs``, ``per_device_train_batch_size`` ...) and is passed through unchanged, so we
never redeclare what transformers already documents. Anything else is an error naming the key.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cer.command_line import closest
from cer.config import ConfigError, from_mapping, load_yaml, to_mapping

MODES = ("classify", "generate", "zeroshot")
METHODS = ("full", "lora", "qlora")
FAMILIES = ("auto", "encoder", "decoder")
TRUNCATION_SIDES = ("right", "left")
EARLY_STOPPING_METRICS = ("macro_f1", "weighted_f1", "accuracy")

#: LoRA defaults per model family: (rank, alpha, dropout, target modules).
#: Encoders follow the BERT LoRA literature (attention query/value); decoders adapt every
#: projection of attention and MLP as in QLoRA (Dettmers et al. 2023).
LORA_DEFAULTS: dict[str, tuple[int, int, float, tuple[str, ...]]] = {
    "encoder": (8, 16, 0.1, ("query", "value")),
    "decoder": (
        16,
        32,
        0.05,
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    ),
}

#: TrainingArguments values we choose differently from transformers' defaults.
TRAINING_DEFAULTS: dict[str, Any] = {
    "learning_rate": 5e-4,
    "num_train_epochs": 3.0,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 32,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "logging_steps": 20,
    "train_sampling_strategy": "group_by_length",
    "length_column_name": "length",
    "report_to": "none",
}

#: TrainingArguments fields also offered as flags: name -> (type, help). Any field works in YAML;
#: the help is ours so that building the parser does not import transformers (and torch).
TRAINING_FLAGS: dict[str, tuple[type, str]] = {
    "learning_rate": (float, "peak learning rate"),
    "num_train_epochs": (float, "passes over the training split"),
    "max_steps": (int, "stop after this many optimizer steps (overrides epochs when > 0)"),
    "per_device_train_batch_size": (int, "training batch size per device"),
    "per_device_eval_batch_size": (int, "evaluation batch size per device"),
    "gradient_accumulation_steps": (int, "batches accumulated per optimizer step"),
    "weight_decay": (float, "AdamW weight decay"),
    "warmup_steps": (float, "warm-up steps (a fraction < 1 means a ratio of all steps)"),
    "lr_scheduler_type": (str, "learning-rate schedule, e.g. linear, cosine"),
    "train_sampling_strategy": (str, "group_by_length (similar lengths per batch) or random"),
    "eval_strategy": (str, "when to evaluate on val: epoch, steps or no"),
    "save_strategy": (str, "when to checkpoint: epoch, steps or no"),
    "eval_steps": (float, "evaluate every N steps (eval_strategy steps)"),
    "save_steps": (float, "checkpoint every N steps (save_strategy steps)"),
    "logging_steps": (float, "log every N steps"),
    "bf16": (bool, "bf16 mixed precision (GPU)"),
    "fp16": (bool, "fp16 mixed precision (GPU)"),
    "use_cpu": (bool, "train on CPU even when a GPU is present"),
}


@dataclass(frozen=True)
class FinetuneConfig:
    """Data, model and adapter options of one run (training options live in ``training``)."""

    prompts: str = field(
        default="", metadata={"help": "prompts Parquet/JSONL from `cer textualize` or a manifest"}
    )
    output_dir: str = field(default="runs/finetune", metadata={"help": "run folder to write"})
    text_column: str = field(default="prompt", metadata={"help": "column with the model input"})
    label_column: str = field(default="label", metadata={"help": "column with the gold label"})
    splits: str | None = field(
        default=None,
        metadata={"help": "splits Parquet (clip_id, protocol, fold, role) for cross-validation"},
    )
    protocol: str | None = field(
        default=None,
        metadata={"help": "protocol of the splits file to run (default: the only one)"},
    )
    folds: tuple[int, ...] = field(
        default=(), metadata={"help": "folds of the splits file to run (default: all)"}
    )
    seeds: tuple[int, ...] = field(default=(42,), metadata={"help": "one run per seed"})
    mode: str = field(
        default="classify",
        metadata={
            "help": "classify (head), generate (SFT, scored over labels) or zeroshot",
            "choices": MODES,
        },
    )
    model: str = field(
        default="bert-base-uncased", metadata={"help": "checkpoint directory or hub name"}
    )
    gguf_file: str | None = field(
        default=None, metadata={"help": "GGUF file inside --model to load (dequantized)"}
    )
    family: str = field(
        default="auto",
        metadata={
            "help": "encoder (BERT-like) or decoder (causal LM); auto reads the config",
            "choices": FAMILIES,
        },
    )
    method: str = field(
        default="lora",
        metadata={
            "help": "full fine-tuning, LoRA, or QLoRA (4-bit NF4 base + LoRA)",
            "choices": METHODS,
        },
    )
    lora_r: int | None = field(default=None, metadata={"help": "LoRA rank (family default)"})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (family default)"})
    lora_dropout: float | None = field(
        default=None, metadata={"help": "LoRA dropout (family default)"}
    )
    lora_target_modules: tuple[str, ...] = field(
        default=(), metadata={"help": "module names to adapt (family default)"}
    )
    max_length: int = field(default=512, metadata={"help": "tokens per prompt after truncation"})
    truncation_side: str = field(
        default="right",
        metadata={"help": "which end of a too-long prompt is cut", "choices": TRUNCATION_SIDES},
    )
    class_weights: bool = field(
        default=False, metadata={"help": "weight the loss by inverse training class frequency"}
    )
    early_stopping_metric: str = field(
        default="macro_f1",
        metadata={
            "help": "validation metric that picks the best checkpoint",
            "choices": EARLY_STOPPING_METRICS,
        },
    )
    early_stopping_patience: int = field(
        default=3, metadata={"help": "evaluations without improvement before stopping; 0: never"}
    )
    resume: bool | None = field(
        default=None,
        metadata={
            "help": "continue from the run folder's last checkpoint: by default when the folder "
            "holds the same run (same fingerprint), else train afresh; true (--resume): the folder "
            "must hold the same run (an error otherwise); false (--no-resume): always train afresh"
        },
    )
    retrain: bool = field(
        default=False,
        metadata={
            "help": "train again even where the run folder already holds a finished run with "
            "this config (finished runs are otherwise read back, not retrained); drops its "
            "checkpoints"
        },
    )
    save_merged: bool = field(
        default=False,
        metadata={
            "help": "after LoRA/QLoRA training also write RUN/merged/: the adapter merged into "
            "the base weights, loadable with plain from_pretrained (QLoRA: merged into the base "
            "reloaded unquantized in bfloat16)"
        },
    )
    instruction: str = field(
        default="Which emotion is expressed? Answer with one of: {labels}.",
        metadata={"help": "question appended to the prompt in generate/zeroshot modes"},
    )
    training: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "TrainingArguments overrides (flat keys in YAML)"},
    )

    def __post_init__(self) -> None:
        for name, allowed in (
            ("mode", MODES),
            ("method", METHODS),
            ("family", FAMILIES),
            ("truncation_side", TRUNCATION_SIDES),
            ("early_stopping_metric", EARLY_STOPPING_METRICS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8 tokens, got {self.max_length}")
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed, e.g. seeds: [42]")
        if self.save_merged and (self.method == "full" or self.mode == "zeroshot"):
            raise ConfigError(
                "save_merged merges a LoRA adapter into its base; with method full the run's "
                "adapter/ folder already is the whole model, and zeroshot trains nothing: "
                "drop save_merged"
            )

    def lora_settings(self, family: str) -> tuple[int, int, float, tuple[str, ...]]:
        """(rank, alpha, dropout, target modules) with family defaults filled in."""
        r, alpha, dropout, targets = LORA_DEFAULTS[family]
        return (
            self.lora_r if self.lora_r is not None else r,
            self.lora_alpha if self.lora_alpha is not None else alpha,
            self.lora_dropout if self.lora_dropout is not None else dropout,
            self.lora_target_modules or targets,
        )


def training_argument_names() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments) if f.init}


def config_from_mapping(values: dict[str, Any], *, source: str = "config") -> FinetuneConfig:
    """Split flat keys between ``FinetuneConfig`` and ``TrainingArguments``; unknown keys fail."""
    ours = {f.name for f in dataclasses.fields(FinetuneConfig)} - {"training"}
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    training = dict(values.pop("training", None) or {})
    trainer_names = training_argument_names()
    for key in [k for k in values if k not in ours]:
        if key not in trainer_names:
            guess = closest(key, ours | trainer_names)
            raise ConfigError(
                f"unknown option {key!r} in {source}"
                + (f" (did you mean {guess}?)" if guess else "")
                + ": it is neither a finetune option ("
                + ", ".join(sorted(ours))
                + ") nor a transformers TrainingArguments field"
            )
        training[key] = values.pop(key)
    bad = sorted(set(training) - trainer_names)
    if bad:
        guesses = {key: closest(key, trainer_names) for key in bad}
        named = [f"{k} (did you mean {g}?)" if g else k for k, g in guesses.items()]
        raise ConfigError(f"unknown TrainingArguments field(s) in {source}: {', '.join(named)}")
    return from_mapping(FinetuneConfig, {**values, "training": training}, source=source)


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for the most used TrainingArguments fields (dest ``training.<name>``)."""
    group = parser.add_argument_group("training (transformers TrainingArguments)")
    for name, (kind, help_text) in TRAINING_FLAGS.items():
        default = TRAINING_DEFAULTS.get(name)
        shown = f" (default: {default!r})" if default is not None else ""
        typed = (
            {"action": argparse.BooleanOptionalAction}
            if kind is bool
            else {"type": kind, "metavar": name.upper()}
        )
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=f"training.{name}",
            default=argparse.SUPPRESS,
            help=help_text + shown,
            **typed,
        )


def resolve_config(args: argparse.Namespace, config_file: str | None = None) -> FinetuneConfig:
    """Merge a YAML file with the flags actually given on the command line (flags win)."""
    values: dict[str, Any] = load_yaml(config_file) if config_file else {}
    ours = {f.name for f in dataclasses.fields(FinetuneConfig)}
    for key, value in vars(args).items():
        if key.startswith("training."):
            values[key.split(".", 1)[1]] = value
        elif key in ours and key != "training":
            values[key] = value
    return config_from_mapping(values, source=config_file or "command line")


def load_config(path: str | Path, **overrides: Any) -> FinetuneConfig:
    """Read a YAML config; keyword overrides win (same flat keys as the file)."""
    return config_from_mapping({**load_yaml(path), **overrides}, source=str(path))


def flat_mapping(config: FinetuneConfig) -> dict[str, Any]:
    """The resolved config as one flat mapping, the same shape as a YAML config file."""
    values = to_mapping(config)
    training = values.pop("training")
    return {**values, **training}


def save_resolved(config: FinetuneConfig, path: str | Path) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(flat_mapping(config), sort_keys=False), encoding="utf-8")
