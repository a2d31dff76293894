"""One identity per stage: what changes a stage's bytes changes its cache key, nothing else does,
and the same identity is the cache key, the entry in run.json and the extractor's version.
Transcripts are deterministic: two cold runs over the same clips give the same prompts."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from textualize.config import TextualizeConfig
from textualize.extract import Extractors, plan_extraction
from textualize.faces import MULTITASK_ENV, FaceConfig
from textualize.prosody import ProsodyConfig, ProsodyExtractor
from textualize.speech import SpeechConfig
from textualize.speech_emotion import SpeechEmotionConfig
from textualize.stage_identity import identity_text

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "clips"


def test_what_changes_the_transcript_bytes_changes_its_identity():
    base = SpeechConfig(model="small", device="cpu")
    changed = {
        "device": dataclasses.replace(base, device="cuda"),
        "precision": dataclasses.replace(base, compute_type="float32"),
        "threads": dataclasses.replace(base, threads=4),
        "sampling": dataclasses.replace(base, temperatures=(0.0, 0.2)),
        "backend": dataclasses.replace(base, backend="openai-whisper"),
    }
    for what, config in changed.items():
        assert config.identity() != base.identity(), what
    assert base.identity()["compute_type"] == "int8"
    assert changed["device"].identity()["compute_type"] == "float16"
    assert base.identity()["temperatures"] == [0.0]  # no random sampling fallback by default
    # The download folder only says where the same model lies.
    assert dataclasses.replace(base, download_root="/elsewhere").identity() == base.identity()


def test_auto_device_is_resolved_to_what_runs():
    import ctranslate2

    if ctranslate2.get_cuda_device_count():
        pytest.skip("a GPU is present: auto means cuda here")
    auto = SpeechConfig(model="small", device="auto").identity()
    assert auto == SpeechConfig(model="small", device="cpu").identity()
    assert auto["device"] == "cpu"


def test_face_identity_follows_detector_sampling_device_and_replaced_weights(tmp_path, monkeypatch):
    monkeypatch.delenv(MULTITASK_ENV, raising=False)
    base = FaceConfig(device="cpu")
    assert base.identity()["multitask_weights"] == "face_multitask_v28.safetensors"
    for changed in (
        dataclasses.replace(base, device="cuda"),
        dataclasses.replace(base, fps=10.0),
        dataclasses.replace(base, threads=2),
        dataclasses.replace(base, face_threshold=0.3),
        dataclasses.replace(base, detector="Detectorv1"),
    ):
        assert changed.identity() != base.identity(), changed
    assert (
        FaceConfig(device="cpu", detector="Detector").identity()
        == dataclasses.replace(base, detector="Detectorv1").identity()
    )  # an alias of the same detector

    weights = tmp_path / "my_multitask.safetensors"
    weights.write_bytes(b"first weights")
    monkeypatch.setenv(MULTITASK_ENV, str(weights))
    first = base.identity()
    assert first["multitask_weights"].startswith("my_multitask.safetensors@")
    weights.write_bytes(b"other weights")
    assert base.identity() != first  # replaced weights, same name


def test_summary_thresholds_are_not_part_of_the_prosody_identity():
    base = ProsodyConfig()
    words_only = ProsodyConfig(min_pause_sec=0.5, pause_loudness=0.3, min_voiced_sec=0.1)
    assert words_only.identity() == base.identity()
    assert ProsodyConfig(chunk_sec=30.0).identity() != base.identity()


def test_speech_emotion_identity_names_device_and_local_weights(tmp_path):
    model = tmp_path / "ser"
    model.mkdir()
    (model / "config.json").write_text("{}")
    cpu = SpeechEmotionConfig(model=str(model), device="cpu").identity()
    assert cpu["model"].startswith("ser@") and cpu["device"] == "cpu"
    assert SpeechEmotionConfig(model=str(model), device="cuda").identity() != cpu
    (model / "config.json").write_text('{"changed": true}')
    assert SpeechEmotionConfig(model=str(model), device="cpu").identity() != cpu


def test_plan_keys_are_the_stage_identities_and_rendering_options_change_none(whisper_tiny):
    cfg = TextualizeConfig(whisper_model=whisper_tiny, face="off", device="cpu", progress=False)
    keys = plan_extraction(cfg).keys
    assert keys["transcript"] == cfg.speech_stage().identity()
    assert keys["prosody"] == cfg.prosody_stage().identity()
    assert set(keys) == {"media", "prosody", "transcript"}  # only the stages that run

    rendering = dataclasses.replace(
        cfg,
        template="instruction",
        modalities="TA",
        window=2.0,
        describer="paper2024",
        transcript_source="auto",
        workers=3,
        force=True,
    )
    assert plan_extraction(rendering).keys == keys
    assert (
        plan_extraction(dataclasses.replace(cfg, beam_size=1)).keys["transcript"]
        != (keys["transcript"])
    )


def test_extractors_compute_as_their_identity_says(whisper_tiny):
    cfg = TextualizeConfig(whisper_model=whisper_tiny, face="off", device="cpu", progress=False)
    keys = plan_extraction(cfg).keys
    models = Extractors(cfg)  # each model on its stage's fixed thread count, whatever the workers
    assert models.get("transcript").version == identity_text(keys["transcript"])
    assert ProsodyExtractor(ProsodyConfig()).version == identity_text(keys["prosody"])


def test_onnxruntime_writes_nothing_into_home(tmp_path):
    """faster-whisper's VAD runs on onnxruntime, whose telemetry would create
    ~/.cache/Microsoft/DeveloperTools/.onnxruntime."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY")
    }
    env["HOME"] = str(home)
    code = (
        "import numpy as np\n"
        "from textualize.speech import speech_regions\n"
        "print(speech_regions(np.zeros(32000, np.float32)))\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    assert [p.relative_to(home) for p in home.rglob("*")] == []


@pytest.mark.slow
def test_two_cold_runs_give_identical_prompts_and_record_the_identities(tmp_path, whisper_tiny):
    from textualize.pipeline import textualize

    outputs = []
    for run in ("first", "second"):
        cfg = TextualizeConfig(
            cache_dir=str(tmp_path / run / "cache"),  # cold: nothing cached
            whisper_model=whisper_tiny,
            face="off",
            workers=1,
            progress=False,
        )
        textualize(EXAMPLES, tmp_path / run / "out", cfg)
        outputs.append(tmp_path / run / "out")

    first, second = (pd.read_parquet(out / "prompts.parquet") for out in outputs)
    assert first["prompt"].tolist() == second["prompt"].tolist()
    spoken = " ".join(first["prompt"]).lower()
    assert "said" in spoken or "transcript" in spoken

    run_json = json.loads((outputs[0] / "run.json").read_text())
    stage_keys = run_json["plan"]["stage_keys"]
    assert stage_keys["transcript"] == cfg.speech_stage().identity()
    assert stage_keys["prosody"] == cfg.prosody_stage().identity()
    assert "face" not in stage_keys  # turned off: no key, no detector settings


def test_a_model_that_computes_otherwise_than_its_key_says_writes_nothing(tmp_path):
    from textualize.cache import StageCache
    from textualize.extract import extract_clip
    from textualize.records import FAILED, Clip

    cfg = TextualizeConfig(
        cache_dir=str(tmp_path), face="off", transcript=False, device="cpu", progress=False
    )
    plan = plan_extraction(cfg)
    # As if the main process had planned other settings than this worker builds its model with.
    plan.keys["prosody"] = ProsodyConfig(chunk_sec=30.0).identity()
    clip = Clip(clip_id="voicemail", path=str(EXAMPLES / "voicemail.wav"))
    desc = extract_clip(clip, cfg, plan, Extractors(cfg), StageCache(cfg.cache_dir))

    assert desc.status["prosody"].status == FAILED
    assert "cache key says" in desc.status["prosody"].reason
    assert not (tmp_path / "prosody").exists()
