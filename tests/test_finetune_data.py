"""Prompts validation, truncation counting and metrics of `cer finetune` (no model training)."""

from __future__ import annotations

import pandas as pd
import pytest

from cer.bundled import resolve_model_name
from evaluation.metrics import aggregate_runs, evaluate_predictions, score
from finetune.data import (
    PromptDataError,
    apply_splits,
    check_prompts,
    label_set,
    read_prompts,
    tokenize_texts,
)

MINILM_TOKENIZER = resolve_model_name("bundled-minilm")[0]


def prompts(**extra):
    frame = pd.DataFrame(
        {
            "clip_id": ["a", "b", "c", "d"],
            "label": ["happy", "sad", "happy", "sad"],
            "split": ["train", "train", "dev", "test"],
            "prompt": ["She smiles.", "He cries.", "Laughing.", "Tears."],
        }
    )
    return frame.assign(**extra)


def test_jsonl_manifest_with_gold_text_is_read(tmp_path):
    path = tmp_path / "manifest.jsonl"
    prompts(gold_text=["x", "y", "z", "w"]).drop(columns="prompt").to_json(
        path, orient="records", lines=True
    )
    frame = check_prompts(read_prompts(path), text_column="gold_text")
    assert frame["split"].tolist() == ["train", "train", "val", "test"]
    assert frame["unit_id"].tolist() == ["a", "b", "c", "d"]
    assert label_set(frame) == ("happy", "sad")


def test_bad_inputs_fail_with_a_fix():
    with pytest.raises(PromptDataError, match="empty prompt.*clip ids \\['b'\\]"):
        check_prompts(prompts(prompt=["ok", "  ", "ok", "ok"]))
    with pytest.raises(PromptDataError, match="--text-column"):
        check_prompts(prompts(), text_column="gold_text")
    frame = check_prompts(prompts(label=["happy", "sad", "happy", "angry"]))
    with pytest.raises(PromptDataError, match="'angry'.*not in the training split"):
        label_set(frame)


def test_truncation_keeps_the_chosen_end_and_is_counted():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MINILM_TOKENIZER)
    texts = ["short one", "alpha " * 30 + "omega"]
    ids, count = tokenize_texts(
        tokenizer, texts, max_length=10, truncation_side="left", split="train"
    )
    assert (count.truncated, count.examples) == (1, 2) and count.max_tokens_before == 33
    assert len(ids[1]) == 10 and tokenizer.decode(ids[1], skip_special_tokens=True).endswith(
        "omega"
    )
    ids, _ = tokenize_texts(tokenizer, texts, max_length=10, truncation_side="right", split="x")
    assert "omega" not in tokenizer.decode(ids[1])
    assert ids[0] == tokenizer("short one")["input_ids"]


def test_metrics_and_clip_level_aggregation():
    labels = ("happy", "sad")
    rows = pd.DataFrame(
        {
            "clip_id": ["c1", "c1", "c1", "c2", "c2"],
            "gold": ["happy", "happy", "happy", "sad", "sad"],
            "predicted": ["happy", "sad", "happy", "sad", "happy"],
            "prob_happy": [0.9, 0.4, 0.6, 0.1, 0.55],
            "prob_sad": [0.1, 0.6, 0.4, 0.9, 0.45],
        }
    )
    metrics = evaluate_predictions(rows, labels)
    assert metrics["rows"]["accuracy"] == pytest.approx(0.6)
    assert metrics["rows"]["confusion"] == ((2, 1), (1, 1))
    # c2 ties 1-1 in votes; the higher mean probability (sad 0.675) breaks the tie.
    assert metrics["clips_vote"]["accuracy"] == 1.0
    assert metrics["clips_mean_prob"]["examples"] == 2
    per_class = score([0, 0, 1], [0, 1, 1], labels).per_class
    assert per_class[1].precision == 0.5 and per_class[1].recall == 1.0


def test_cross_validation_folds_and_aggregate():
    frame = check_prompts(prompts())
    splits = pd.DataFrame(
        {
            "clip_id": ["a", "b", "c", "d"] * 2,
            "protocol": "cv",
            "fold": [0] * 4 + [1] * 4,
            "role": ["train", "train", "val", "test", "train", "train", "test", "val"],
        }
    )
    fold1 = apply_splits(frame, splits, protocol=None, fold=1)
    assert fold1.set_index("clip_id")["split"].to_dict() == {
        "a": "train",
        "b": "train",
        "c": "test",
        "d": "val",
    }
    runs = [
        {"metrics": {"rows": {"accuracy": a, "macro_f1": a, "weighted_f1": a}}} for a in (0.5, 0.7)
    ]
    summary = aggregate_runs(runs)
    assert summary["rows"]["accuracy"]["mean"] == pytest.approx(0.6)
    assert summary["rows"]["accuracy"]["std"] == pytest.approx(0.1)
