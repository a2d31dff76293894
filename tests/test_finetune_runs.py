"""Run folders of `cer finetune`: merged models, finished runs read back on rerun, bad input.

Tiny random checkpoints keep this quick: what is checked is what the run folder holds and how it
reloads, not how well the model learns (tests/test_finetune_train.py covers that).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from test_finetune_train import MINILM, synthetic_prompts, tiny_bert_checkpoint

from cer.config import ConfigError
from evaluation.runs import finished_run
from finetune.config import config_from_mapping, flat_mapping
from finetune.data import PromptDataError, check_prompts, tokenize_texts
from finetune.models import ModelLoadError
from finetune.predict import classify_texts
from finetune.runner import job_fingerprint, run_config, run_finetune

PROBS = ["prob_angry", "prob_happy", "prob_sad"]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    return synthetic_prompts(tmp_path_factory.mktemp("prompts") / "prompts.parquet")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return tiny_bert_checkpoint(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A randomly initialised 2-layer Llama (hidden size 64) with the MiniLM tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    config = LlamaConfig(
        vocab_size=30522,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(out)
    return str(out)


def quick(prompts, model, output_dir, **extra):
    """A few optimizer steps, no intermediate evaluation or checkpoints."""
    return config_from_mapping(
        {
            "prompts": str(prompts),
            "output_dir": str(output_dir),
            "model": model,
            "max_steps": 3,
            "per_device_train_batch_size": 8,
            "eval_strategy": "no",
            "save_strategy": "no",
            **extra,
        }
    )


def plain_checkpoint(model_dir):
    """A merged run's model and tokenizer, loaded by plain transformers (no peft)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def probabilities_on_test(model, tokenizer, prompts) -> np.ndarray:
    test = pd.read_parquet(prompts).query("split == 'test'")
    ids, _ = tokenize_texts(
        tokenizer, test["prompt"].tolist(), max_length=512, truncation_side="right", split="test"
    )
    return classify_texts(model, tokenizer, ids)


def test_merged_lora_classifier_reloads_with_plain_from_pretrained(prompts, tiny_bert, tmp_path):
    from safetensors.torch import load_file

    config = quick(prompts, tiny_bert, tmp_path / "run", learning_rate=1e-2, save_merged=True)
    run = run_finetune(config).runs[0]
    assert run.summary["merged"] == {"path": "merged", "dtype": "float32"}

    model, tokenizer = plain_checkpoint(run.run_dir / "merged")
    probabilities = probabilities_on_test(model, tokenizer, prompts)
    assert model.config.id2label == {0: "angry", 1: "happy", 2: "sad"}
    assert not any("lora" in name for name, _ in model.named_parameters())
    # The LoRA update is folded into the attention weights ...
    base = load_file(f"{tiny_bert}/model.safetensors")[
        "encoder.layer.0.attention.self.query.weight"
    ]
    merged = model.bert.encoder.layer[0].attention.self.query.weight.detach()
    assert not torch.allclose(base, merged)
    # ... and the merged model predicts exactly what base + adapter predicted during the run.
    run_test = pd.read_parquet(run.run_dir / "predictions.parquet").query("split == 'test'")
    np.testing.assert_allclose(probabilities, run_test[PROBS].to_numpy(), atol=1e-5)


@pytest.mark.slow
def test_qlora_merge_goes_into_an_unquantized_base_never_the_4bit_one(
    prompts, tiny_llama, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    config = quick(
        prompts, tiny_llama, tmp_path / "run", method="qlora", learning_rate=1e-2, save_merged=True
    )
    run = run_finetune(config).runs[0]
    assert run.summary["merged"]["base"] == "reloaded unquantized in bfloat16"
    assert "4-bit" in run.summary["merged"]["caveat"]
    saved = json.loads((run.run_dir / "merged" / "config.json").read_text())
    assert "quantization_config" not in saved

    model, tokenizer = plain_checkpoint(run.run_dir / "merged")
    probabilities = probabilities_on_test(model, tokenizer, prompts)
    assert model.dtype == torch.bfloat16
    base = AutoModelForSequenceClassification.from_pretrained(
        tiny_llama, num_labels=3, dtype=torch.bfloat16, pad_token_id=0
    )
    with_adapter = PeftModel.from_pretrained(base, run.run_dir / "adapter").eval()
    reference = probabilities_on_test(with_adapter, tokenizer, prompts)
    np.testing.assert_allclose(probabilities, reference, atol=2e-3)  # bfloat16 rounding
    # Close to the 4-bit run, as the summary's caveat says, but not the same model.
    run_test = pd.read_parquet(run.run_dir / "predictions.parquet").query("split == 'test'")
    np.testing.assert_allclose(probabilities, run_test[PROBS].to_numpy(), atol=0.05)


def test_save_merged_needs_an_adapter():
    with pytest.raises(ConfigError, match="drop save_merged"):
        config_from_mapping({"method": "full", "save_merged": True})
    with pytest.raises(ConfigError, match="zeroshot trains nothing"):
        config_from_mapping({"mode": "zeroshot", "save_merged": True})


@pytest.fixture()
def two_folds(prompts, tmp_path):
    """Fold 0 tests on the test clips, fold 1 on the val clips (and validates on the others)."""
    clips = pd.read_parquet(prompts).drop_duplicates("clip_id")[["clip_id", "split"]]
    rows = []
    for fold, swap in ((0, {}), (1, {"val": "test", "test": "val"})):
        roles = clips["split"].replace(swap)
        rows.append(clips.assign(protocol="cv", fold=fold, role=roles).drop(columns="split"))
    path = tmp_path / "splits.parquet"
    pd.concat(rows).to_parquet(path)
    return path


def test_rerun_after_an_interruption_trains_only_the_missing_fold(
    prompts, tiny_bert, two_folds, tmp_path, monkeypatch, caplog
):
    import finetune.classify

    trained = []
    train = finetune.classify.train_classifier

    def counting(config, frame, labels, run_dir, **kwargs):
        trained.append(run_dir.name)
        return train(config, frame, labels, run_dir, **kwargs)

    monkeypatch.setattr(finetune.classify, "train_classifier", counting)
    config = quick(prompts, tiny_bert, tmp_path / "cv", method="full", splits=str(two_folds))
    first = run_finetune(config)
    assert trained == ["fold0_seed42", "fold1_seed42"]
    fold0 = tmp_path / "cv" / "fold0_seed42"
    written = (fold0 / "predictions.parquet").stat().st_mtime_ns

    shutil.rmtree(tmp_path / "cv" / "fold1_seed42")  # as if killed during fold 1
    caplog.set_level("INFO", logger="evaluation")
    second = run_finetune(config)
    assert trained == ["fold0_seed42", "fold1_seed42", "fold1_seed42"]
    assert f"{fold0}: finished earlier with the same fingerprint; read back" in caplog.text
    assert [r.reused for r in second.runs] == [True, False]
    assert (fold0 / "predictions.parquet").stat().st_mtime_ns == written
    assert second.runs[0].metrics["test"]["rows"]["macro_f1"] == pytest.approx(
        first.runs[0].metrics["test"]["rows"]["macro_f1"]
    )
    cv = json.loads((tmp_path / "cv" / "cv_metrics.json").read_text())
    assert [r["fold"] for r in cv["per_run"]] == [0, 1]

    # Each run folder holds its own config: its folder, seed and fold.
    saved = (fold0 / "config.yaml").read_text()
    assert "folds:\n- 0\n" in saved and f"output_dir: {fold0}" in saved

    run_finetune(config_from_mapping({**flat_mapping(config), "retrain": True}))
    assert trained[3:] == ["fold0_seed42", "fold1_seed42"]


def test_a_run_folder_counts_as_finished_only_when_complete_with_the_same_fingerprint(
    prompts, tiny_bert, tmp_path
):
    from dataclasses import replace

    config = quick(prompts, tiny_bert, tmp_path / "run", method="full")
    run = run_finetune(config).runs[0]
    own = run_config(config, run.run_dir, 42, None)
    assert finished_run(run.run_dir, job_fingerprint(own)).summary == run.summary
    # How to run (resume, retrain) does not matter; what to run does.
    assert finished_run(run.run_dir, job_fingerprint(replace(own, resume=False, retrain=True)))
    assert finished_run(run.run_dir, job_fingerprint(replace(own, max_length=64))) is None
    (run.run_dir / "summary.json").unlink()  # interrupted while writing its results
    assert finished_run(run.run_dir, job_fingerprint(own)) is None


def test_running_out_of_memory_names_what_to_lower(prompts, tiny_bert, tmp_path, monkeypatch):
    from transformers import Trainer

    def huge_step(self, model, inputs, *args, **kwargs):
        torch.empty(2**50)  # the real CPU allocator failing, as a too-large batch would on GPU
        raise AssertionError("unreachable")

    monkeypatch.setattr(Trainer, "training_step", huge_step)
    config = quick(prompts, tiny_bert, tmp_path / "run", method="full")
    with pytest.raises(ModelLoadError, match="out of memory while training") as caught:
        run_finetune(config)
    message = str(caught.value)
    assert "per_device_train_batch_size (now 8" in message
    assert "max_length (now 512" in message and "gradient_checkpointing" in message
    assert "qlora" not in message  # QLoRA is for decoders; this one is a BERT
    assert "can't allocate memory" in str(caught.value.__cause__)


def test_a_checkpoint_unfit_for_the_mode_is_refused(prompts, tiny_bert, tiny_llama, tmp_path):
    from transformers import AutoTokenizer, WhisperConfig

    speech = tmp_path / "whisper"
    WhisperConfig(d_model=32, encoder_layers=1, decoder_layers=1).save_pretrained(speech)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(speech)
    with pytest.raises(ModelLoadError, match="no sequence-classification architecture"):
        run_finetune(quick(prompts, str(speech), tmp_path / "run"))
    with pytest.raises(ModelLoadError, match="no_such_model' does not exist"):
        run_finetune(quick(prompts, str(tmp_path / "no_such_model"), tmp_path / "run"))
    with pytest.raises(ModelLoadError, match="encoder.*need a decoder"):
        run_finetune(quick(prompts, tiny_bert, tmp_path / "zs", mode="zeroshot"))
    with pytest.raises(ModelLoadError, match="no end-of-sequence token"):
        run_finetune(quick(prompts, tiny_llama, tmp_path / "zs", mode="zeroshot"))


def test_rows_without_a_label_are_refused():
    frame = pd.DataFrame(
        {"clip_id": ["a", "b"], "prompt": ["She smiles.", "He cries."], "label": ["happy", None]}
    )
    with pytest.raises(PromptDataError, match="1 row\\(s\\) have no label"):
        check_prompts(frame)
