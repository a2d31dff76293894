"""Prompts in, tokenized splits out: validation, label set, truncation counted, lengths kept.

The input is the prompts table written by ``cer textualize`` (``clip_id``, ``unit_id``,
``label``, ``split``, ``prompt`` ...) or any manifest with a text column (``--text-column
gold_text``). Rows are never padded here: each example keeps its own length and a ``length``
column, so the Trainer can group similar lengths and the collator pads per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluation.metrics import has_label

if TYPE_CHECKING:
    import pandas as pd

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"dev": "val", "valid": "val", "validation": "val"}


class PromptDataError(ValueError):
    """The prompts table cannot be used as given; the message says what to change."""


@dataclass(frozen=True)
class TruncationCount:
    """How many prompts of a split were longer than ``max_length`` tokens and were cut."""

    split: str
    examples: int
    truncated: int
    max_tokens_before: int


def read_prompts(path: str | Path) -> pd.DataFrame:
    """Read a Parquet, JSONL or CSV prompts table."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise PromptDataError(f"prompts file not found: {path}; run `cer textualize` first")
    suffix = path.suffix.lower()
    readers = {
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".json": pd.read_json,
        ".csv": pd.read_csv,
    }
    if suffix not in readers:
        raise PromptDataError(f"{path}: expected a .parquet, .jsonl or .csv prompts file")
    try:
        return readers[suffix](path)
    except Exception as err:  # pyarrow and pandas raise many types for a damaged file
        raise PromptDataError(
            f"cannot read prompts file {path}: {type(err).__name__}: "
            f"{' '.join(str(err).split())[:300]}"
        ) from err


def check_prompts(
    frame: pd.DataFrame,
    *,
    text_column: str = "prompt",
    label_column: str = "label",
    require_labels: bool = True,
) -> pd.DataFrame:
    """Validate and normalise: ids present, no empty prompts, blank labels None, split names
    canonical. ``require_labels`` (training) makes a missing or blank label an error."""
    needed = ["clip_id", text_column] + ([label_column] if require_labels else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise PromptDataError(
            f"prompts table lacks column(s) {missing}; it has {list(frame.columns)}. "
            "Use --text-column/--label-column to name the right ones."
        )
    frame = frame.copy()
    text = frame[text_column]
    empty = text.isna() | (text.astype(str).str.strip() == "")
    if empty.any():
        ids = frame.loc[empty, "clip_id"].astype(str).head(5).tolist()
        raise PromptDataError(
            f"{int(empty.sum())} empty prompt(s) in column {text_column!r} (clip ids {ids} ...); "
            "drop them or re-render them before fine-tuning"
        )
    if label_column in frame.columns:
        known = has_label(frame[label_column])
        if require_labels and not known.all():
            ids = frame.loc[~known, "clip_id"].astype(str).head(5).tolist()
            raise PromptDataError(
                f"{int((~known).sum())} row(s) have no label in column {label_column!r} (clip ids "
                f"{ids} ...); fill in their labels or drop them (`cer finetune predict` takes "
                "unlabelled prompts)"
            )
        frame[label_column] = frame[label_column].where(known, None)
    if "unit_id" not in frame.columns:
        frame["unit_id"] = frame["clip_id"].astype(str)
    if "split" in frame.columns:
        frame["split"] = frame["split"].astype(str).str.lower().replace(_SPLIT_ALIASES)
    return frame.reset_index(drop=True)


def label_set(frame: pd.DataFrame, label_column: str = "label") -> tuple[str, ...]:
    """The sorted label names of the training split; every other split must use only these."""
    if "split" not in frame.columns:
        raise PromptDataError("prompts table has no 'split' column; pass a splits file (--splits)")
    train = frame[frame["split"] == "train"]
    if train.empty:
        raise PromptDataError("no rows with split == 'train'; check the split column or --splits")
    labels = tuple(sorted(train[label_column].astype(str).unique()))
    if len(labels) < 2:
        raise PromptDataError(f"training split has a single label {labels}; need at least two")
    for split in sorted(set(frame["split"]) - {"train"}):
        seen = set(frame.loc[frame["split"] == split, label_column].astype(str))
        extra = sorted(seen - set(labels))
        if extra:
            raise PromptDataError(
                f"label(s) {extra} appear in split {split!r} but not in the training split; "
                "add training examples for them or drop them from the evaluation data"
            )
    return labels


def encode_labels(frame: pd.DataFrame, labels: tuple[str, ...], label_column: str) -> list[int]:
    index = {name: i for i, name in enumerate(labels)}
    values = frame[label_column].astype(str)
    unknown = sorted(set(values) - set(index))
    if unknown:
        raise PromptDataError(f"unknown label(s) {unknown}; this run knows only {list(labels)}")
    return [index[v] for v in values]


def apply_splits(
    frame: pd.DataFrame, splits: pd.DataFrame, *, protocol: str | None, fold: int
) -> pd.DataFrame:
    """Replace the ``split`` column by the roles of one fold of a splits table."""
    needed = {"clip_id", "protocol", "fold", "role"}
    if not needed <= set(splits.columns):
        raise PromptDataError(f"splits table needs columns {sorted(needed)}")
    if protocol is None:
        protocols = sorted(splits["protocol"].unique())
        if len(protocols) != 1:
            raise PromptDataError(f"splits file has protocols {protocols}; choose one (--protocol)")
        protocol = protocols[0]
    chosen = splits[(splits["protocol"] == protocol) & (splits["fold"] == fold)]
    if chosen.empty:
        raise PromptDataError(f"no rows for protocol {protocol!r} fold {fold} in the splits file")
    roles = dict(zip(chosen["clip_id"].astype(str), chosen["role"].astype(str)))
    out = frame.copy()
    out["split"] = out["clip_id"].astype(str).map(roles)
    return out[out["split"].notna()].reset_index(drop=True)


def tokenize_texts(
    tokenizer: Any, texts: list[str], *, max_length: int, truncation_side: str, split: str
) -> tuple[list[list[int]], TruncationCount]:
    """Token ids per text, truncated on the configured side; counts what was cut."""
    encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
    out = list(encoded)
    too_long = [i for i, ids in enumerate(encoded) if len(ids) > max_length]
    if too_long:
        side, tokenizer.truncation_side = tokenizer.truncation_side, truncation_side
        try:
            cut = tokenizer([texts[i] for i in too_long], truncation=True, max_length=max_length)
        finally:
            tokenizer.truncation_side = side
        for i, ids in zip(too_long, cut["input_ids"]):
            out[i] = ids
    longest = max((len(ids) for ids in encoded), default=0)
    return out, TruncationCount(split, len(texts), len(too_long), longest)


def build_dataset(input_ids: list[list[int]], labels: list[int] | None = None) -> Any:
    """A ``datasets.Dataset`` with ``input_ids``, ``attention_mask``, ``length`` (and labels)."""
    from datasets import Dataset

    columns: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": [[1] * len(ids) for ids in input_ids],
        "length": [len(ids) for ids in input_ids],
    }
    if labels is not None:
        columns["labels"] = labels
    return Dataset.from_dict(columns)
