"""RAVDESS as a study: the ``ravdess`` data kind, the shipped audio study, and the seed systems'
arms as the report shows them: a random-weights encoder marked "not a result", a missing released
checkpoint named with where it comes from.

The end-to-end study runs on six actors of spoken (espeak-ng) RAVDESS-named files, one fold.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from cer.config import ConfigError
from experiments.arms import arm_config
from experiments.cli import STUDIES_DIR
from experiments.runner import prepare_data, run_study, study_folds
from experiments.study import load_study, study_from_mapping
from featurebaseline.random_encoders import (
    MARKER,
    NOTE,
    random_encoder_folder,
    random_weight_encoders,
)

RAVDESS_STUDY = STUDIES_DIR / "ravdess_audio.yaml"
#: espeak-ng pitch and speed of each emotion's voice (code of the file name -> voice).
VOICES = {"05": ("80", "190"), "04": ("20", "110")}  # angry: high and fast; sad: low and slow
SENTENCES = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


@pytest.fixture(scope="module")
def spoken_ravdess(tmp_path_factory) -> Path:
    """Actors 01, 02 (HiCMAE fold 0), 05, 06 (fold 1) and 09, 10 (fold 2), two emotions and two
    sentences each: 24 audio-only files named as RAVDESS names them."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("ravdess")
    for actor in (1, 2, 5, 6, 9, 10):
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir()
        for emotion, (pitch, speed) in VOICES.items():
            for statement, text in SENTENCES.items():
                name = f"03-01-{emotion}-01-{statement}-01-{actor:02d}.wav"
                pitch_of_actor = str(int(pitch) + (actor % 2) * 10)
                command = [
                    espeak,
                    "-p",
                    pitch_of_actor,
                    "-s",
                    speed,
                    "-w",
                    str(folder / name),
                    text,
                ]
                subprocess.run(command, check=True, capture_output=True)
    return root


def ravdess_study(source: Path, output_dir: Path, arms: list[dict]) -> dict:
    return {
        "name": "tiny-ravdess",
        "output_dir": str(output_dir),
        "data": {
            "kind": "ravdess",
            "source": str(source),
            "folds": [0],
            "prepare": {"modality": "audio", "val_actors": 2},
        },
        "textualize": {
            "face": "off",
            "transcript": False,
            "transcript_source": "gold",
            "prosody_reference": "builtin",
            "workers": 1,
        },
        "seeds": [0],
        "arms": arms,
    }


def voice_arm(name: str, **config) -> dict:
    settings = {"arm": "unimodal", "epochs": 2, "patience": 0, "batch_size": 8, "hidden": 16}
    return {"name": name, "kind": "baseline", "modalities": "A", "config": {**settings, **config}}


def test_the_ravdess_kind_prepares_hicmae_folds_of_the_actors_present(spoken_ravdess, tmp_path):
    study = study_from_mapping(
        ravdess_study(spoken_ravdess, tmp_path / "study", [voice_arm("voice")])
    )
    assert (study.data.kind, study.data.protocol) == ("ravdess", "hicmae-6fold")  # the default
    prepared = prepare_data(study)
    assert prepared.n_clips == 24 and prepared.protocols == ("hicmae-6fold",)
    splits = pd.read_parquet(study.study_dir / "data" / "splits.parquet")
    assert sorted(splits["fold"].unique()) == [0, 1, 2]  # folds 3-5 have none of these actors
    manifest = pd.read_parquet(study.study_dir / "data" / "manifest.parquet")
    actor = dict(zip(manifest["clip_id"], manifest["actor"]))
    fold0 = splits[splits["fold"] == 0]
    roles = {
        r: sorted({actor[c] for c in fold0.loc[fold0["role"] == r, "clip_id"]})
        for r in ("test", "val", "train")
    }
    assert roles == {"test": [1, 2], "val": [5, 6], "train": [9, 10]}
    assert study_folds(study) == (0,)  # the study's `folds:`

    official = ravdess_study(spoken_ravdess, tmp_path / "official", [voice_arm("voice")])
    official["data"]["protocol"] = "official"
    with pytest.raises(ConfigError, match="not offered for ravdess; use one of hicmae-6fold"):
        study_from_mapping(official)
    bad = ravdess_study(spoken_ravdess, tmp_path / "bad", [voice_arm("voice")])
    bad["data"]["prepare"] = {"modalty": "audio"}
    with pytest.raises(ConfigError, match="modalty"):
        load_study_mapping(bad, tmp_path)


def load_study_mapping(values: dict, folder: Path):
    import yaml

    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return load_study(path)


def test_the_shipped_ravdess_study_has_every_seed_system_as_an_arm():
    study = load_study(RAVDESS_STUDY)  # validates every arm's trainer config
    assert study.data.kind == "ravdess" and study.data.protocol == "hicmae-6fold"
    assert study.data.source.endswith("shared/data/ravdess") and study.data.folds == (0, 1, 2, 3)
    assert study.data.prepare["modality"] == "audio"
    arms = {arm.name: arm for arm in study.arms}
    assert {(a.kind, a.modalities) for a in arms.values()} >= {
        ("finetune", "A"),
        ("finetune", "TA"),
        ("baseline", "A"),
        ("baseline", "TA"),
    }
    configs = {name: arm_config(study, arm) for name, arm in arms.items()}
    assert configs["text_A"].method == "lora" and Path(configs["text_A"].model).is_dir()
    assert configs["fusion_unimodal_A"].audio_encoder is None
    assert configs["wav2vec2_random_A"].audio_encoder == "random:wav2vec2"
    assert random_weight_encoders({"audio_encoder": "random:wav2vec2"})
    # released checkpoints are named by absolute path, like every relative path of a study
    hicmae = configs["hicmae_A"].audio_encoder
    assert hicmae == f"hicmae:{Path('checkpoints/hicmae/checkpoint-99.pth').resolve()}"
    assert configs["vaemo_A"].audio_encoder.startswith(f"vaemo:{Path.cwd()}")
    assert configs["m2fnet_TA"].arm == "m2fnet" and configs["m2fnet_TA"].modalities == "TA"


def test_random_weights_are_seeded_marked_and_found(tmp_path):
    first = random_encoder_folder("random:wav2vec2", tmp_path / "a")
    again = random_encoder_folder("random:wav2vec2:0", tmp_path / "b")
    other = random_encoder_folder("random:wav2vec2:1", tmp_path / "a")

    def weights(folder: Path) -> str:
        return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()

    assert weights(first) == weights(again) != weights(other)
    marker = json.loads((first / "config.json").read_text())[MARKER]
    assert marker == {"architecture": "wav2vec2", "seed": 0, "note": NOTE}
    # found from the value, and from a folder written with the marker (used by path)
    assert random_weight_encoders(
        {"audio_encoder": str(first), "text_encoder": "bundled-minilm"}
    ) == {"audio_encoder": str(first)}
    arms = [voice_arm("v", audio_encoder="random:hubert")]
    study = study_from_mapping(ravdess_study(tmp_path, tmp_path / "s", arms))
    with pytest.raises(ConfigError, match="arm 'v': audio_encoder: .*no random architecture"):
        arm_config(study, study.arms[0])


@pytest.fixture(scope="module")
def seed_system_study(spoken_ravdess, tmp_path_factory):
    """A study with a random-weights wav2vec2 arm and a HiCMAE arm whose checkpoint is absent."""
    folder = tmp_path_factory.mktemp("seed-systems")
    missing = folder / "checkpoints" / "hicmae" / "checkpoint-99.pth"
    arms = [
        voice_arm("wav2vec2_random_A", audio_encoder="random:wav2vec2"),
        voice_arm("hicmae_A", audio_encoder=f"hicmae:{missing}"),
    ]
    study = study_from_mapping(ravdess_study(spoken_ravdess, folder / "study", arms))
    outcome = run_study(study)
    return study.study_dir, outcome, missing


def test_a_random_weights_arm_runs_and_the_report_says_it_is_not_a_result(seed_system_study):
    study_dir, outcome, _ = seed_system_study
    assert outcome.arms["wav2vec2_random_A"].status == "done"
    info = json.loads((study_dir / "arms" / "wav2vec2_random_A" / "arm.json").read_text())
    assert info["random_weights"] == {"audio_encoder": "random:wav2vec2"}
    assert list((study_dir / "cache" / "random_encoders").glob("wav2vec2-seed0-*/config.json"))
    summary = json.loads(
        (study_dir / "arms" / "wav2vec2_random_A" / "fold0_seed0" / "summary.json").read_text()
    )
    assert summary["feature_dims"]["audio"]["sequence"] > 64  # 64 encoder dims beside the LLDs

    report = (study_dir / "report" / "report.md").read_text()
    summary_part = report.split("## Summary", 1)[1].split("## Dataset", 1)[0]
    assert "| wav2vec2_random_A (random weights: not a result) |" in summary_part
    assert "**Random weights: not a result.**" in summary_part
    assert "- **wav2vec2_random_A**: audio_encoder `random:wav2vec2`" in summary_part
    assert "(random weights: not a result)" in report.split("### Scores in detail", 1)[1]


def test_a_missing_hicmae_checkpoint_is_a_failed_arm_naming_the_file_and_its_source(
    seed_system_study,
):
    study_dir, outcome, missing = seed_system_study
    status = outcome.arms["hicmae_A"].status
    assert status.startswith(f"failed: EncoderUnavailable: HiCMAE checkpoint '{missing}' not found")
    assert "github.com/sunlicai/HiCMAE" in status and "drive.google.com" in status
    assert "checkpoint-99.pth" in status and status.endswith("give its local path")
    book = json.loads((study_dir / "status.json").read_text())
    assert book["arms"]["hicmae_A"]["status"] == status
    report = (study_dir / "report" / "report.md").read_text()
    assert f"- **hicmae_A**: {status}" in report  # whole, not cut, and no traceback
    assert "Traceback" not in report
    assert not list((study_dir / "arms" / "hicmae_A").glob("fold*"))  # stopped before features
