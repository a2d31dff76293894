"""HiCMAE's released encoder as a feature extractor: loading, inputs, outputs, cache, dispatch.

The released VoxCeleb2 checkpoint cannot be downloaded here, so a randomly initialised one in the
released layout stands in for it (``hicmae.random_checkpoint``); everything else is real: the
architecture, the key check, the fbank, the face crops, the stage cache, the baseline features.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from cer.cli import main
from featurebaseline import hicmae
from featurebaseline.config import BaselineConfig
from featurebaseline.encoders import EncoderUnavailable
from featurebaseline.log_mel import log_mel_fbank
from featurebaseline.released_encoders import ReleasedAudioEncoder, ReleasedImageEncoder
from textualize.cache import StageCache
from textualize.records import Clip

URL = "https://drive.google.com/file/d/1mR2r-_LWmtTYl4pS_L3YlhKNCCnv_ZaE"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("hicmae") / "checkpoint-99.pth"
    hicmae.random_checkpoint(path, seed=0)
    return path


@pytest.fixture(scope="module")
def model(checkpoint):
    return hicmae.load(checkpoint)


def saved_state(path) -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, weights_only=True)


def calls(module: torch.nn.Module) -> list:
    """A list that grows by one each time ``module`` runs."""
    seen: list = []
    module.register_forward_hook(lambda *_: seen.append(1))
    return seen


def test_the_released_layout_loads_key_for_key_and_drops_the_decoders(checkpoint, model):
    saved = saved_state(checkpoint)
    assert isinstance(saved["args"], argparse.Namespace) and saved["epoch"] == 99
    dropped = [k for k in saved["model"] if hicmae.rename(k) is None]
    assert sorted(dropped) == [
        "decoder.head.weight",
        "encoder_to_decoder.weight",
        "mask_token_audio",
    ]
    kept = model.state_dict()
    assert len(kept) == len(saved["model"]) - len(dropped)
    for key in ("encoder.patch_embed.proj.weight", "encoder_audio.blocks.9.attn.v_bias",
                "encoder_fusion.blocks_audio.1.cross_attn.kv.weight"):  # fmt: skip
        assert torch.equal(kept[key], saved["model"][key])
    assert tuple(kept["encoder.patch_embed.proj.weight"].shape) == (512, 3, 2, 16, 16)
    assert hicmae.rename("module.encoder.norm.weight") == "encoder.norm.weight"  # a DDP save


@pytest.mark.parametrize("damage", ["wrong-shape", "missing-key"])
def test_a_checkpoint_that_does_not_fit_names_the_file_and_where_to_get_it(
    checkpoint, tmp_path, damage
):
    saved = saved_state(checkpoint)
    if damage == "wrong-shape":
        saved["model"]["encoder.blocks.3.mlp.fc1.weight"] = torch.zeros(1024, 512)
        expected = (
            "1 shape mismatches (e.g. encoder.blocks.3.mlp.fc1.weight (1024, 512) != (2048, 512))"
        )
    else:
        del saved["model"]["encoder_fusion.norm_audio.bias"]
        expected = "1 missing keys (e.g. encoder_fusion.norm_audio.bias)"
    broken = tmp_path / "checkpoint-99.pth"
    torch.save(saved, broken)

    with pytest.raises(EncoderUnavailable) as caught:
        hicmae.load(broken)

    message = str(caught.value)
    assert str(broken) in message and expected in message
    assert "'checkpoint-99.pth'" in message and URL in message


def test_a_missing_checkpoint_says_where_to_download_it(tmp_path):
    missing = tmp_path / "models" / "checkpoint-99.pth"
    with pytest.raises(
        EncoderUnavailable, match="not found: download the HiCMAE release"
    ) as caught:
        ReleasedAudioEncoder(f"hicmae:{missing}", StageCache(tmp_path / "cache"))
    assert str(missing) in str(caught.value) and URL in str(caught.value)


def test_the_fbank_is_kaldis_log_mel_of_25_ms_frames_every_10_ms():
    seconds = np.arange(2 * 16_000) / 16_000
    fbank = log_mel_fbank(0.3 * np.sin(2 * np.pi * 1000 * seconds).astype(np.float32))

    assert tuple(fbank.shape) == (1 + (32_000 - 400) // 160, 128)
    loudest = int(fbank.mean(0).argmax())  # Kaldi's mel scale, 20 Hz .. 8 kHz in 129 steps
    mel = 1127 * np.log1p(np.array([20.0, 8000.0]) / 700)
    centre_hz = 700 * np.expm1((mel[0] + (loudest + 1) * (mel[1] - mel[0]) / 129) / 1127)
    assert abs(centre_hz - 1000) < 40


def test_audio_gives_one_row_per_160_ms_with_its_centre_time(model):
    rng = np.random.default_rng(0)
    audio = rng.normal(scale=0.1, size=3 * 16_000).astype(np.float32)  # 298 fbank frames

    table = hicmae.audio_frames(model, audio)

    assert table.shape == (19, 1 + 512)  # 2 windows of 2.56 s; steps past the end dropped
    assert table[:3, 0] == pytest.approx([0.0875, 0.2475, 0.4075])
    assert table[16, 0] == pytest.approx(2.6475) and table[-1, 0] < 3.0
    assert np.isfinite(table).all()
    assert not np.allclose(table[0, 1:], hicmae.audio_frames(model, audio[::-1].copy())[0, 1:])
    assert hicmae.audio_frames(model, np.zeros(0, np.float32)).shape == (0, 513)


def test_faces_give_one_row_per_pair_of_crops_in_windows_of_16(model):
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (90 + i, 70, 3), dtype=np.uint8) for i in range(20)]
    times = [0.2 * i for i in range(20)]  # a 5-fps face track

    table = hicmae.face_frames(model, crops, times)

    assert table.shape == (10, 1 + 512)  # 8 tubelets of the first window, 2 of the second
    assert table[:, 0] == pytest.approx([0.1 + 0.4 * k for k in range(10)])
    assert hicmae.face_frames(model, [], []).shape == (0, 513)


def test_two_loads_of_one_checkpoint_give_identical_features(checkpoint, model):
    again = hicmae.load(checkpoint)
    audio = np.random.default_rng(1).normal(scale=0.1, size=16_000).astype(np.float32)
    crops = [np.full((64, 48, 3), 40 * i, np.uint8) for i in range(3)]

    assert np.array_equal(hicmae.audio_frames(model, audio), hicmae.audio_frames(again, audio))
    assert np.array_equal(
        hicmae.face_frames(model, crops, [0, 0.2, 0.4]),
        hicmae.face_frames(again, crops, [0, 0.2, 0.4]),
    )


def test_audio_features_are_cached_under_the_checkpoint_content(checkpoint, tmp_path):
    from media_factory import tone

    clip = Clip(clip_id="tone", path=str(tone(tmp_path / "tone.wav", seconds=1.0)))
    cache = StageCache(tmp_path / "cache")
    encoder = ReleasedAudioEncoder(f"hicmae:{checkpoint}", cache)
    runs = calls(encoder.released.model.encoder_audio.patch_embed)

    first = encoder.frames(clip, "tone-hash")
    assert first.shape == (7, 513) and len(runs) == 1  # 1 s: 98 fbank frames, one window
    assert np.array_equal(encoder.frames(clip, "tone-hash"), first) and len(runs) == 1

    copy = shutil.copy(checkpoint, tmp_path / "elsewhere.pth")  # same content, another path
    other = ReleasedAudioEncoder(f"hicmae:{copy}", cache)
    assert np.array_equal(other.frames(clip, "tone-hash"), first)
    assert other.released._model is None  # read from the cache; the model was never loaded
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    assert other.key_config["checkpoint"] == digest and other.key_config["system"] == "HiCMAE"


def test_face_crops_from_the_face_boxes_are_encoded_once(checkpoint, tmp_path):
    from media_factory import video

    from textualize.records import FACE_BOX_COLUMNS, FACE_FRAME_COLUMNS, FaceTrack

    frames = pd.DataFrame(np.nan, index=range(3), columns=[*FACE_FRAME_COLUMNS, *FACE_BOX_COLUMNS])
    frames["time"] = [0.0, 0.5, 1.0]
    frames["face"] = True
    frames[list(FACE_BOX_COLUMNS)] = [[40, 20, 64, 80], [40, 20, 64, 80], [0, 0, 32, 32]]
    track = FaceTrack(frames, "py-feat:Detectorv2")
    clip = Clip(clip_id="face", path=str(video(tmp_path / "face.mp4", seconds=1.5)))
    encoder = ReleasedImageEncoder(f"hicmae:{checkpoint}", StageCache(tmp_path / "cache"))
    runs = calls(encoder.released.model.encoder.patch_embed)

    table = encoder.frames(clip, "face-hash", track, fps=2)

    assert table.shape == (2, 513) and table[:, 0].tolist() == [0.25, 1.0] and len(runs) == 1
    assert np.array_equal(encoder.frames(clip, "face-hash", track, fps=2), table)
    assert len(runs) == 1
    boxless = FaceTrack(frames.drop(columns=list(FACE_BOX_COLUMNS)), "py-feat:Detectorv2")
    assert encoder.frames(clip, "face-hash", boxless, fps=2).shape == (0, 513)


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory, speak):
    """A `cer textualize` run of two spoken audio clips (prosody only)."""
    from textualize.config import TextualizeConfig
    from textualize.pipeline import textualize

    folder = tmp_path_factory.mktemp("speech_run")
    rows = [
        {
            "clip_id": name,
            "path": str(speak(text, f"hicmae_{name}")),
            "label": label,
            "split": split,
        }
        for name, text, label, split in [
            ("calm", "Everything is fine today.", "calm", "train"),
            ("tense", "Get out of here right now!", "tense", "test"),
        ]
    ]
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    cfg = TextualizeConfig(
        cache_dir=str(folder / "cache"), face="off", transcript=False, workers=1, progress=False
    )
    textualize(folder / "manifest.csv", folder / "out", cfg)
    return folder


def test_hicmae_audio_frames_join_the_baseline_audio_sequence(speech_run, checkpoint, tmp_path):
    from featurebaseline.features import assemble_features

    config = BaselineConfig(
        source=str(speech_run / "out"),
        modalities="A",
        audio_encoder=f"hicmae:{checkpoint}",
        cache_dir=str(tmp_path / "encoded"),
        max_steps=32,
    )

    audio = assemble_features(config).modalities["audio"]

    assert audio.sequence_columns[-512:] == tuple(f"encoder_{j}" for j in range(512))
    encoded = np.abs(audio.sequence[..., -512:]).sum(-1) > 0
    for filled, steps in zip(encoded, audio.steps):  # 160-ms rows on a 100-ms grid
        assert filled.sum() >= 5 and not (filled & ~steps).any()


def test_baseline_train_with_a_missing_checkpoint_is_one_line_and_exit_2(
    speech_run, tmp_path, capsys
):
    missing = tmp_path / "checkpoint-99.pth"
    code = main(["baseline", "train", "--prompts", str(speech_run / "out"), "--modalities", "A",
                 "--audio-encoder", f"hicmae:{missing}", "--output-dir", str(tmp_path / "run")])  # fmt: skip

    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cer baseline train: error: HiCMAE checkpoint")
    assert URL in err[0] and not (tmp_path / "run").exists()


def test_vaemo_values_go_to_the_vaemo_module_and_an_empty_path_is_a_config_error(tmp_path):
    from cer.config import ConfigError

    with pytest.raises(EncoderUnavailable, match="(?i)vaemo"):  # no checkpoint, or no module
        ReleasedImageEncoder(f"vaemo:{tmp_path / 'vaemo.pth'}", StageCache(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="needs the checkpoint file after the colon"):
        BaselineConfig(source="x", image_encoder="hicmae:")
