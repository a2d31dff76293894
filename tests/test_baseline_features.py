"""Feature assembly and the run folder: time alignment, missing modalities, encoders, resume."""

from __future__ import annotations

import json
import os
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
from test_faces import feat_hub  # noqa: F401  (py-feat stand-ins for the image-crop test)

from cer.config import from_mapping, load_yaml
from featurebaseline.config import BaselineConfig
from featurebaseline.features import FeatureError, align_to_grid, assemble_features
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


def test_attention_tokens_average_only_the_steps_that_hold_frames():
    import torch

    from featurebaseline.models import pool_tokens

    states = torch.arange(1.0, 6.0).view(1, 5, 1)  # steps hold 1 .. 5
    mask = torch.tensor([[True, True, False, True, False]])

    tokens, kept = pool_tokens(states, mask, 2)

    assert tokens.flatten().tolist() == [1.5, 4.0, 0.0] and kept.tolist() == [[True, True, False]]
    assert pool_tokens(states, mask, 1)[0] is states


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
    outcome = predict_source(run.run_dir, str(face_run / "out"), face_run / "p.parquet")
    assert len(outcome.predictions) == 4 and outcome.metrics["rows"]["examples"] == 4


def test_unlabelled_prompts_get_predictions_without_metrics(face_run, capsys, monkeypatch):
    """A new `cer textualize` run whose manifest has no label column (same cache: no re-extraction)."""
    from cer.cli import main

    labelled = pd.read_csv(face_run / "manifest.csv")
    labelled[["clip_id", "path"]].to_csv(face_run / "new.csv", index=False)
    cfg = TextualizeConfig(
        cache_dir=str(face_run / "cache"),
        face_tables=str(face_run / "tables"),
        transcript=False,
        workers=1,
        progress=False,
    )
    textualize(face_run / "new.csv", face_run / "new_out", cfg)
    run = run_baseline(face_config(face_run, output_dir=str(face_run / "run_for_new"))).runs[0]

    outcome = predict_source(run.run_dir, str(face_run / "new_out"), face_run / "new.parquet")
    assert outcome.metrics is None and "no gold labels" in outcome.note
    written = pd.read_parquet(face_run / "new.parquet")
    assert written["gold"].isna().all() and set(written["predicted"]) <= {"happy", "sad"}
    assert sorted(written["clip_id"]) == sorted(labelled["clip_id"])
    assert written.filter(like="prob_").sum(axis=1).to_numpy() == pytest.approx(np.ones(4))

    monkeypatch.chdir(face_run)  # by default predictions go under the working directory
    code = main(["baseline", "predict", str(run.run_dir), str(face_run / "new_out")])
    printed = capsys.readouterr().out
    assert code == 0 and "4 predictions written" in printed and "no metrics" in printed
    assert (face_run / "predictions" / "run_for_new_new_out.parquet").exists()
    assert not list(run.run_dir.glob("predict_*"))  # the run folder holds only what training wrote
    with pytest.raises(FeatureError, match="4 of 4 rows have no gold label"):
        run_baseline(face_config(face_run, source=str(face_run / "new_out")))


def test_an_interrupted_run_resumes_from_its_last_epoch(face_run, monkeypatch):
    import torch

    config = face_config(face_run, output_dir=str(face_run / "run_resume"), patience=0, epochs=4)
    save, saved = torch.save, []

    def killed_in_epoch_three(obj, path, *args, **kwargs):
        save(obj, path, *args, **kwargs)
        saved.append(path)
        if len(saved) == 3:  # killed while writing epoch 3's checkpoint: epoch 2's is the last
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", killed_in_epoch_three)
        with pytest.raises(KeyboardInterrupt):
            run_baseline(config)
    resumed = run_baseline(config).runs[0]

    assert resumed.summary["resumed_from_epoch"] == 2 and resumed.summary["epochs_run"] == 4
    assert [h["epoch"] for h in resumed.summary["history"]] == [1, 2, 3, 4]


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
    configs = sorted((REPO / "configs" / "baseline").glob("*.yaml"))
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


@pytest.mark.usefixtures("feat_hub")
def test_face_crops_become_image_embeddings_in_the_visual_sequence(tmp_path, monkeypatch):
    """py-feat's two networks are stand-ins (no weights here); decoding, boxes, crops, the image
    model (a tiny random Hugging Face ResNet) and the cache are real."""
    from test_faces import FEAT_DATA, SINGLE_FACE_MP4, FakeRetinaNet
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

    from featurebaseline.encoders import ImageEncoder
    from textualize.cache import StageCache
    from textualize.media import iter_frames

    FakeRetinaNet.faces = {(360, 640): [SINGLE_FACE_MP4]}
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(
        [
            {"clip_id": "face", "path": str(FEAT_DATA / "single_face.mp4"), "label": "a"},
            {"clip_id": "empty", "path": str(FEAT_DATA / "no_face.mp4"), "label": "b"},
        ]
    ).to_csv(manifest, index=False)
    cfg = TextualizeConfig(
        cache_dir=str(tmp_path / "cache"),
        face="on",
        fps=2,
        prosody=False,
        transcript=False,
        workers=1,
        progress=False,
    )
    textualize(manifest, tmp_path / "out", cfg)
    tiny = tmp_path / "tiny-resnet"
    spec = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ResNetModel(spec).save_pretrained(tiny)
    ConvNextImageProcessor(size={"shortest_edge": 64}).save_pretrained(tiny)
    config = BaselineConfig(
        source=str(tmp_path / "out"), modalities="V", image_encoder=str(tiny), max_steps=32
    )

    visual = assemble_features(config).modalities["visual"]
    image = [visual.sequence_columns.index(f"image_{j}") for j in range(16)]
    assert visual.sequence_columns[-17:-16] == ("neutral",) and len(visual.sequence_columns) == 43
    assert visual.present.tolist() == [True, False]
    filled = np.abs(visual.sequence[0][:, image]).sum(-1) > 0
    # frames every 0.5 s on a 0.1-s grid: cells 0, 5, 10, ... hold a face and its embedding
    assert filled.tolist() == visual.steps[0].tolist() and np.flatnonzero(filled)[:3].tolist() == [
        0,
        5,
        10,
    ]
    # cell 0 is the first frame alone: its embedding is the model's output for that face's crop
    first = next(iter_frames(FEAT_DATA / "single_face.mp4", fps=2))
    x1, y1, x2, y2 = (int(v) for v in SINGLE_FACE_MP4[:4])
    encoder = ImageEncoder(str(tiny), StageCache(tmp_path / "unused"))
    loose = encoder._run([first.image[y1:y2, x1:x2]])[0]
    exact = visual.sequence[0, 0, image]
    assert np.corrcoef(exact, loose)[0, 1] > 0.9  # py-feat's square box vs the raw detection
    assert not np.allclose(exact, encoder._run([first.image[:100, :100]])[0], atol=1e-3)

    monkeypatch.setattr(
        ImageEncoder, "_run", lambda *a: pytest.fail("cached crop embeddings were computed again")
    )
    again = assemble_features(config).modalities["visual"]
    assert np.array_equal(again.sequence, visual.sequence)


@pytest.mark.slow
def test_two_processes_train_one_run_with_accelerate(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` without a GPU: two CPU processes (DDP over
    gloo) train one run; only the main one writes the folder. (`--cpu` alone starts one process
    unless mpirun is set up.)"""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((160, 4)).astype(np.float32)
    table = pd.DataFrame({f"egemaps_{j}": x[:, j] for j in range(4)})
    table["clip_id"] = [f"c{i}" for i in range(160)]
    table["label"] = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "up", "down")
    table["split"] = ["train"] * 120 + ["val"] * 20 + ["test"] * 20
    table.to_parquet(tmp_path / "voice.parquet")
    command = [
        *(
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
        ),
        *("--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "cer"),
        *("baseline", "train", "--source", str(tmp_path / "voice.parquet"), "--modalities", "A"),
        *("--output-dir", str(tmp_path / "run"), "--epochs", "20", "--batch-size", "16"),
        *("--hidden", "16", "--patience", "0", "--learning-rate", "0.01", "--threads", "1"),
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, cwd=REPO, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["epochs_run"] == 20
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["rows"]["accuracy"] >= 0.85
    assert len(pd.read_parquet(tmp_path / "run" / "predictions.parquet")) == 160
    assert done.stdout.count("test accuracy") == 2  # both processes report; one folder written


def test_a_torchvision_backbone_embeds_boxed_faces_and_skips_tracks_without_boxes(
    tmp_path, monkeypatch
):
    import torchvision
    from test_faces import FEAT_DATA

    from featurebaseline.encoders import ImageEncoder
    from textualize.cache import StageCache
    from textualize.records import FACE_BOX_COLUMNS, FACE_FRAME_COLUMNS, Clip, FaceTrack

    built = []

    def offline_resnet(name, weights):  # the default weights cannot be downloaded here
        built.append((name, weights))
        return torchvision.models.resnet18(weights=None)

    monkeypatch.setattr(torchvision.models, "get_model", offline_resnet)
    frames = pd.DataFrame(np.nan, index=range(3), columns=[*FACE_FRAME_COLUMNS, *FACE_BOX_COLUMNS])
    frames["time"] = [0.0, 0.5, 1.0]
    frames["face"] = [True, False, True]
    frames.loc[[0, 2], list(FACE_BOX_COLUMNS)] = [[225, 90, 160, 215], [0, 0, 64, 64]]
    track = FaceTrack(frames, "py-feat:Detectorv2")
    clip = Clip(clip_id="face", path=str(FEAT_DATA / "single_face.mp4"))
    encoder = ImageEncoder("torchvision:resnet18", StageCache(tmp_path / "cache"))

    table = encoder.frames(clip, "hash", track, fps=2)

    assert built == [("resnet18", "DEFAULT")]
    assert table.shape == (2, 1 + 512) and table[:, 0].tolist() == [0.0, 1.0]  # 512: fc removed
    assert not np.allclose(table[0, 1:], table[1, 1:])  # the face and a corner differ
    without = FaceTrack(frames.drop(columns=list(FACE_BOX_COLUMNS)), "py-feat:Detectorv2")
    assert encoder.frames(clip, "hash", without, fps=2).shape == (0, 513)


def test_a_finished_run_is_read_back_not_retrained(face_run):
    config = face_config(face_run, output_dir=str(face_run / "run_reuse"), epochs=2, patience=0)
    first = run_baseline(config).runs[0]
    stamp = (first.run_dir / "predictions.parquet").stat().st_mtime_ns

    again = run_baseline(config).runs[0]
    assert again.reused
    assert again.metrics["test"]["rows"]["macro_f1"] == first.metrics["test"]["rows"]["macro_f1"]
    assert (again.run_dir / "predictions.parquet").stat().st_mtime_ns == stamp

    retrained = run_baseline(replace(config, retrain=True)).runs[0]
    assert not retrained.reused
