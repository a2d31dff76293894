"""Decoding: probing, sampled frames, 16 kHz audio, spans, and unreadable files."""

from __future__ import annotations

import numpy as np
import pytest
from media_factory import truncated, video

from textualize.media import MediaError, content_hash, decode_audio, iter_frames, probe


def test_probe_reads_streams_and_duration(tmp_path):
    info = probe(video(tmp_path / "a.mp4", seconds=2.0))
    assert info.has_video and info.has_audio
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert (info.width, info.height) == (160, 120)


def test_frames_are_sampled_at_the_requested_rate(tmp_path):
    path = video(tmp_path / "a.mp4", seconds=3.0)
    frames = list(iter_frames(path, fps=2))
    assert [round(f.time, 1) for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert frames[0].image.shape == (120, 160, 3) and frames[0].image.dtype == np.uint8


def test_a_span_restricts_frames_and_audio(tmp_path):
    path = video(tmp_path / "a.mp4", seconds=3.0)
    frames = list(iter_frames(path, fps=10, start=1.0, end=2.0))
    assert len(frames) == 10 and frames[0].time == pytest.approx(0.0, abs=0.05)
    audio = decode_audio(path, start=1.0, end=2.0)
    assert len(audio) == 16_000
    assert probe(path, 1.0, 2.0).duration == pytest.approx(1.0)


def test_audio_is_16k_mono_float_and_holds_the_tone(tmp_path):
    audio = decode_audio(video(tmp_path / "a.mp4", seconds=1.0))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(16_000, abs=400)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * 16_000 / len(audio) == pytest.approx(220, abs=5)


def test_video_without_audio_stream(tmp_path):
    path = video(tmp_path / "mute.mp4", audio=None)
    assert not probe(path).has_audio
    assert decode_audio(path).size == 0


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_text("just some notes"), "not a readable media file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (
            lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)),
            "not a readable media file",
        ),
    ],
    ids=["text", "zero-bytes", "random-bytes"],
)
def test_unreadable_files_raise_media_error_with_reason(tmp_path, make, reason):
    path = tmp_path / "clip.mp4"
    make(path)
    with pytest.raises(MediaError, match=reason):
        probe(path)


def test_truncated_file_is_an_error_not_a_crash(tmp_path):
    good = video(tmp_path / "good.mp4", seconds=3.0)
    with pytest.raises(MediaError):
        probe(truncated(good, tmp_path / "cut.mp4"))


def test_span_past_the_end_is_reported(tmp_path):
    with pytest.raises(MediaError, match="past the end"):
        probe(video(tmp_path / "a.mp4", seconds=1.0), start=5.0)


def test_content_hash_follows_bytes_not_names(tmp_path):
    a = video(tmp_path / "a.mp4", seconds=1.0)
    b = tmp_path / "copy with spaces ü.mp4"
    b.write_bytes(a.read_bytes())
    assert content_hash(a) == content_hash(b)
