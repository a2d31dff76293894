"""Offline and portable by default, and quiet feedback while things run.

A model that is not on this machine fails at once (no Hub retries) and the error names the
bundled models; bundled weights have short names in every config; a trained adapter folder says
what it is on its own; library noise is filtered; a study prints a score per arm.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_finetune_train import synthetic_prompts, tiny_bert_checkpoint

from cer import bundled
from cer.bundled import ModelUnavailable, hub_options, resolve_model_name
from cer.feedback import quiet_libraries
from finetune.config import config_from_mapping
from finetune.models import ModelLoadError, model_source

NOT_CACHED = "cer-tests/no-such-model-anywhere"


@pytest.fixture
def offline(monkeypatch):
    """The Hub unreachable, as on a machine without network."""
    monkeypatch.setattr(bundled, "hub_reachable", lambda: False)


def test_bundled_names_resolve_to_the_packaged_weights():
    minilm, extra = resolve_model_name("bundled-minilm")
    assert Path(minilm, "config.json").is_file() and extra == {}
    smollm, extra = resolve_model_name("bundled-smollm2")
    assert Path(smollm, extra["gguf_file"]).is_file()
    assert resolve_model_name("bert-base-uncased") == ("bert-base-uncased", {})
    assert bundled.bundled_alias(minilm) == "bundled-minilm"


def test_a_yaml_or_flag_model_bundled_minilm_loads_from_the_package(offline):
    config = config_from_mapping({"model": "bundled-minilm"})
    path, options = model_source(config)
    assert Path(path, "config.json").is_file() and options == {}
    path, options = model_source(config_from_mapping({"model": "bundled-smollm2"}))
    assert options == {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def test_a_model_neither_local_nor_cached_fails_at_once_naming_the_bundled_ones(offline):
    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as caught:
        model_source(config_from_mapping({"model": NOT_CACHED}))
    assert time.perf_counter() - started < 5
    message = str(caught.value)
    assert NOT_CACHED in message and ("cannot be reached" in message or "HF_HUB_OFFLINE" in message)
    assert "--model bundled-minilm" in message and "--model bundled-smollm2" in message
    assert "--model DIR" in message


def test_a_cached_hub_model_offline_loads_from_the_cache_only(offline, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: "/x")
    assert hub_options("some-org/cached-model") == {"local_files_only": True}


def test_hf_hub_offline_is_named_and_a_local_folder_needs_no_hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    bundled.hub_reachable.cache_clear()
    try:
        with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE is set"):
            hub_options(NOT_CACHED)
        assert hub_options(resolve_model_name("bundled-minilm")[0]) == {}
    finally:
        bundled.hub_reachable.cache_clear()


def test_the_finetune_cli_offline_exits_2_with_the_alternatives(tmp_path):
    prompts = synthetic_prompts(tmp_path / "prompts.parquet")
    command = [sys.executable, "-m", "cer", "finetune", "train", "--prompts", str(prompts)]
    command += ["--model", NOT_CACHED, "--output-dir", str(tmp_path / "run")]
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "bundled-minilm" in done.stderr and "HF_HUB_OFFLINE" in done.stderr


def test_a_text_encoder_offline_names_only_the_bundled_encoder(offline):
    from featurebaseline.encoders import EncoderUnavailable, _load

    with pytest.raises(EncoderUnavailable) as caught:
        _load(NOT_CACHED, "text")
    assert "--text-encoder bundled-minilm" in str(caught.value)
    assert "smollm2" not in str(caught.value)


def test_library_noise_is_filtered_unless_verbose(monkeypatch):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_libraries(verbose=True)
        warnings.warn(
            "'pin_memory' argument is set as true but no accelerator is found", stacklevel=1
        )
        quiet_libraries(verbose=False)
        warnings.warn(
            "'pin_memory' argument is set as true but no accelerator is found", stacklevel=1
        )
        warnings.warn("something that matters", stacklevel=1)
    assert [str(w.message) for w in seen][1:] == ["something that matters"]
    assert not logging.getLogger("bitsandbytes.backends.cpu.ops").isEnabledFor(logging.WARNING)


def test_a_trained_adapter_folder_stands_on_its_own(tmp_path):
    from finetune.runner import run_finetune

    config = config_from_mapping(
        {
            "prompts": str(synthetic_prompts(tmp_path / "prompts.parquet")),
            "output_dir": str(tmp_path / "run"),
            "model": tiny_bert_checkpoint(tmp_path / "tiny_bert"),
            "method": "lora",
            "max_steps": 2,
            "per_device_train_batch_size": 8,
            "eval_strategy": "no",
            "save_strategy": "steps",
            "save_steps": 1,
        }
    )
    run = run_finetune(config).runs[0]
    adapter = run.run_dir / "adapter"
    labels = json.loads((run.run_dir / "labels.json").read_text())
    head = json.loads((adapter / "config.json").read_text())
    assert list(head["id2label"].values()) == labels and sorted(head["label2id"]) == sorted(labels)
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base).is_absolute() and Path(base, "config.json").is_file()
    card = (adapter / "README.md").read_text()
    assert all(label in card for label in labels)
    assert "prompts.parquet" in card and "| test |" in card and "cer finetune train" in card
    assert not (run.run_dir / "checkpoints").exists()  # adapter/ is the one copy


def test_a_study_prints_a_score_per_arm_and_a_table(tmp_path):
    from experiments.scoreboard import arm_score, describe_score, score_table

    def metrics(f1):
        return {"test": {"rows": {"examples": 8, "accuracy": f1 + 0.1, "macro_f1": f1}}}

    words = tmp_path / "arms" / "words" / "fold1_seed1"
    words.mkdir(parents=True)
    (words / "metrics.json").write_text(json.dumps(metrics(0.4)))
    fusion = tmp_path / "arms" / "fusion"
    fusion.mkdir(parents=True)
    rows = {k: {"mean": v, "std": 0.02} for k, v in (("macro_f1", 0.5), ("accuracy", 0.6))}
    cv = {"per_run": [{"split": "test"}], "runs": 3, "rows": rows}
    (fusion / "cv_metrics.json").write_text(json.dumps(cv))

    assert describe_score(arm_score(words.parent)) == (
        "test macro F1 0.400, accuracy 0.500 (1 run)"
    )
    assert "0.500 ± 0.020" in describe_score(arm_score(fusion))
    arms = [
        SimpleNamespace(name="words", kind="finetune", modalities="T"),
        SimpleNamespace(name="fusion", kind="baseline", modalities="TVA"),
    ]
    study = SimpleNamespace(arms=arms, study_dir=tmp_path)
    outcome = SimpleNamespace(arms={"words": SimpleNamespace(status="done")})
    lines = score_table(study, outcome).splitlines()
    assert lines[1].startswith("fusion") and "0.500 ± 0.020" in lines[1]  # best first
    assert lines[2].startswith("words") and "done" in lines[2] and "0.400" in lines[2]


def test_the_face_unavailable_message_names_the_tool_options_once(caplog, monkeypatch):
    from textualize import faces

    monkeypatch.setattr(faces, "feat_resources", lambda: None)
    with pytest.raises(faces.FaceModelUnavailable) as caught:
        faces.check_face_backend(faces.FaceConfig())
    assert "--face off" in str(caught.value)
    message = faces._missing_weights_message("Detectorv2", ["a/b/c.pt"], Path("/r"))
    assert "--face off" in message and "--face-tables DIR" in message
    assert "read_face_table" not in message
    from experiments.runner import RepeatedWarnings

    extraction_log = logging.getLogger("textualize.extract")
    once = RepeatedWarnings()
    extraction_log.addFilter(once)  # as `cer experiment run` does for the whole study
    try:
        with caplog.at_level(logging.INFO, logger="textualize.extract"):
            for _ in range(3):  # every fold and variant of a study plans its extraction
                extraction_log.warning("Face modality unavailable, continuing without it: x")
    finally:
        extraction_log.removeFilter(once)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
