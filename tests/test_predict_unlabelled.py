"""`cer finetune predict` on prompts as `cer textualize` writes them without --labels.

A run trained for two steps is enough: what is checked is that unlabelled rows get predictions
and no metrics, and that metrics appear only when every row has a gold label the run knows.
"""

from __future__ import annotations

import pandas as pd
import pytest
from test_finetune_train import CUES, synthetic_prompts, tiny_bert_checkpoint

from cer.cli import main
from finetune.config import config_from_mapping
from finetune.data import PromptDataError, check_prompts
from finetune.predict import predict_run
from finetune.runner import run_finetune


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    config = config_from_mapping(
        {
            "prompts": str(synthetic_prompts(folder / "prompts.parquet")),
            "output_dir": str(folder / "run"),
            "model": tiny_bert_checkpoint(folder / "tiny_bert"),
            "method": "full",
            "max_steps": 2,
            "per_device_train_batch_size": 8,
            "eval_strategy": "no",
            "save_strategy": "no",
        }
    )
    return run_finetune(config).runs[0].run_dir


def textualized(labels: list) -> pd.DataFrame:
    """Rows shaped like prompts.parquet: the label column is there, empty without --labels."""
    return pd.DataFrame(
        {
            "clip_id": [f"clip{i}" for i in range(len(labels))],
            "unit_id": [f"clip{i}" for i in range(len(labels))],
            "label": labels,
            "split": [None] * len(labels),
            "prompt": [
                f"Speaker {i} is smiling while the voice is soft." for i in range(len(labels))
            ],
        }
    )


def test_unlabelled_prompts_get_predictions_and_no_metrics_through_the_cli(
    trained_run, tmp_path, capsys
):
    textualized([None, "", "  "]).to_parquet(tmp_path / "prompts.parquet")
    output = tmp_path / "out" / "predict_prompts.parquet"

    code = main(
        [
            "finetune",
            "predict",
            str(trained_run),
            str(tmp_path / "prompts.parquet"),
            "--output-dir",
            str(output.parent),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert f"3 predictions written to {output}" in printed
    assert "has no gold labels: predictions only, no metrics" in printed
    assert "accuracy" not in printed
    written = pd.read_parquet(output)
    assert written["clip_id"].tolist() == ["clip0", "clip1", "clip2"]
    assert written["gold"].isna().all() and set(written["predicted"]) <= set(CUES)
    assert written.filter(like="prob_").sum(axis=1).round(4).eq(1).all()


def test_metrics_only_when_every_row_has_a_gold_label_the_run_knows(trained_run):
    partly = predict_run(trained_run, textualized(["happy", None, ""]))
    assert partly.metrics is None and "2 of 3 rows have no gold label" in partly.note
    assert partly.predictions["gold"].isna().tolist() == [False, True, True]

    unknown = predict_run(trained_run, textualized(["happy", "bored"]))
    assert unknown.metrics is None and "gold label(s) ['bored'] are not among" in unknown.note

    labelled = predict_run(trained_run, textualized(["happy", "sad"]))
    assert labelled.note == "metrics over 2 labelled rows"
    assert labelled.metrics["rows"]["examples"] == 2


def test_training_refuses_blank_labels_like_missing_ones():
    frame = textualized(["happy", "", None])
    with pytest.raises(PromptDataError, match="2 row\\(s\\) have no label"):
        check_prompts(frame)
    kept = check_prompts(frame, require_labels=False)
    assert kept["label"].isna().tolist() == [False, True, True]
