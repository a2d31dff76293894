"""The VAEmo encoder: a checkpoint in the released layout loads, a wrong one stops with a message
naming the file and where the release lives, and features come out per time step, reproducibly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featurebaseline import vaemo
from featurebaseline.encoders import EncoderUnavailable
from featurebaseline.log_mel import SAMPLE_RATE, log_mel_fbank

WIDTH = vaemo.EMBED_DIM


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("vaemo") / "vaemo_random.pth"
    vaemo.random_checkpoint(path, seed=0)
    return path


@pytest.fixture(scope="module")
def model(checkpoint):
    return vaemo.load(checkpoint)


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (voice + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def faces(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(120, 100), (200, 180), (64, 64)]  # the face stage gives crops of any size
    return [rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8) for i in range(count)]


def test_random_checkpoint_in_the_release_layout_loads_into_the_encoder(checkpoint, model):
    saved = torch.load(checkpoint, weights_only=True)["model"]
    weights = model.state_dict()
    assert torch.equal(
        weights["encoder.blocks.11.attn.qkv.weight"], saved["encoder.blocks.11.attn.qkv.weight"]
    )
    assert weights["encoder.patch_embed.proj.weight"].shape == (WIDTH, 3, 2, 16, 16)
    assert weights["encoder.patch_embed_audio.proj.weight"].shape == (WIDTH, 1, 16, 16)
    # decoder and text-knowledge parts are in the file but not in the encoder
    assert {"mask_token", "decoder.head.weight", "text_proj.weight"} <= set(saved)
    assert not any(key.startswith(vaemo.DROPPED_PREFIXES) for key in weights)
    assert not model.training


def test_checkpoint_keys_saved_from_distributed_training_are_accepted():
    assert vaemo.rename("module.encoder.norm.weight") == "encoder.norm.weight"
    assert vaemo.rename("decoder_audio.head.weight") is None
    assert vaemo.rename("something.else") == "something.else"  # reported as unexpected, not hidden


def rewritten(checkpoint, tmp_path, change) -> str:
    wrapped = torch.load(checkpoint, weights_only=True)
    change(wrapped["model"])
    path = tmp_path / "vaemo_broken.pth"
    torch.save(wrapped, path)
    return str(path)


def test_a_checkpoint_with_a_wrong_shape_stops_naming_the_file_and_the_release(
    checkpoint, tmp_path
):
    def narrower(state):
        state["encoder.blocks.0.mlp.fc1.weight"] = torch.zeros(1536, WIDTH)

    path = rewritten(checkpoint, tmp_path, narrower)
    with pytest.raises(EncoderUnavailable) as caught:
        vaemo.load(path)
    message = str(caught.value)
    assert path in message
    assert "encoder.blocks.0.mlp.fc1.weight (1536, 512) != (2048, 512)" in message
    assert "github.com/MSA-LMC/VAEmo" in message


def test_a_checkpoint_missing_a_key_stops_naming_the_key(checkpoint, tmp_path):
    path = rewritten(checkpoint, tmp_path, lambda state: state.pop("encoder.norm_audio.weight"))
    with pytest.raises(
        EncoderUnavailable, match="1 missing keys .*encoder.norm_audio.weight"
    ) as caught:
        vaemo.load(path)
    assert path in str(caught.value) and "github.com/MSA-LMC/VAEmo" in str(caught.value)


def test_a_missing_file_says_where_to_get_the_release(tmp_path):
    path = tmp_path / "not_downloaded.pth"
    with pytest.raises(EncoderUnavailable, match="not found: download") as caught:
        vaemo.load(path)
    assert str(path) in str(caught.value)
    assert "https://github.com/MSA-LMC/VAEmo" in str(caught.value)


def test_log_mel_front_end_matches_kaldi_fbank_as_hicmae_calls_it():
    t = torch.arange(8000) / 16000
    tones = (
        0.5 * torch.sin(2 * math.pi * 440 * t) + 0.25 * torch.sin(2 * math.pi * 2500 * t)
    ).float()
    fbank = log_mel_fbank(tones)
    assert fbank.shape == (48, 128)  # 0.5 s: 1 + (8000 - 400) // 160 frames
    # torchaudio.compliance.kaldi.fbank(htk_compat=True, use_energy=False, window_type="hanning",
    # num_mel_bins=128, dither=0.0, frame_shift=10) on the same signal, averaged over frames:
    # peaks at the 440 Hz (bin 21) and 2.5 kHz (bin 76) tones, silence elsewhere
    expected = {0: -10.826, 21: 3.0793, 40: -13.2737, 76: 6.4836, 127: -14.6903}
    averaged = fbank.mean(dim=0)
    for mel_bin, value in expected.items():
        assert averaged[mel_bin].item() == pytest.approx(value, abs=1e-3)


def test_audio_frames_give_one_row_per_160_ms_with_its_centre_time(model):
    features = vaemo.audio_frames(model, speech_like(3.0))
    # a full 2.56 s window gives 16 time patches; the 0.44 s rest gives 42 fbank frames -> 3 patches
    assert features.shape == (19, 1 + WIDTH)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features[:3, 0], [0.0875, 0.2475, 0.4075], atol=1e-6)
    assert features[-1, 0] == pytest.approx(2.56 + 0.0875 + 2 * 0.16)
    assert np.all(np.diff(features[:, 0]) > 0) and features[-1, 0] < 3.0
    assert np.isfinite(features).all() and features[:, 1:].std() > 0.1


def test_audio_shorter_than_one_fbank_frame_gives_no_rows(model):
    assert vaemo.audio_frames(model, np.zeros(399, np.float32)).shape == (0, 1 + WIDTH)
    assert vaemo.audio_frames(model, np.zeros(0, np.float32)).shape == (0, 1 + WIDTH)


def test_face_frames_give_one_row_per_two_crops_at_their_mean_time(model):
    times = [index * 4 / 25 for index in range(20)]  # every 4th frame of a 25 fps video
    features = vaemo.face_frames(model, faces(20), times)
    # 16 crops make one clip of 8 tubelets; the last 4 crops are padded to a clip, 2 tubelets kept
    assert features.shape == (10, 1 + WIDTH)
    np.testing.assert_allclose(
        features[:, 0], [(times[i] + times[i + 1]) / 2 for i in range(0, 20, 2)], atol=1e-6
    )
    assert np.isfinite(features).all() and features[:, 1:].std() > 0.1
    assert vaemo.face_frames(model, [], []).shape == (0, 1 + WIDTH)
    with pytest.raises(ValueError, match="3 face crops but 2 times"):
        vaemo.face_frames(model, faces(3), [0.0, 0.1])


def test_two_loads_of_one_checkpoint_give_identical_features(checkpoint, model):
    again = vaemo.load(checkpoint)
    audio = speech_like(1.0, seed=1)
    crops, times = faces(4, seed=1), [0.0, 0.16, 0.32, 0.48]
    np.testing.assert_array_equal(
        vaemo.audio_frames(model, audio), vaemo.audio_frames(again, audio)
    )
    np.testing.assert_array_equal(
        vaemo.face_frames(model, crops, times), vaemo.face_frames(again, crops, times)
    )


def test_another_seed_writes_other_weights(checkpoint, tmp_path):
    other = tmp_path / "vaemo_seed1.pth"
    vaemo.random_checkpoint(other, seed=1)
    first = torch.load(checkpoint, weights_only=True)["model"]["encoder.norm.bias"]
    second = torch.load(other, weights_only=True)["model"]["encoder.norm.bias"]
    assert not torch.equal(first, second)
