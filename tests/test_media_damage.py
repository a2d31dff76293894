"""Partly damaged media: decode what can be decoded, keep the timeline, say how much was lost.

Each file is real: ffmpeg encodes it, then bytes in the middle are scrambled or the end is cut
off. ``ffmpeg`` itself is the yardstick for how much audio such a file still holds.
"""

from __future__ import annotations

import logging
import subprocess

import numpy as np
import pytest
from media_factory import movie, scrambled, several_audio_streams, tone, truncated

from textualize.media import MediaError, decode_audio, iter_frames, probe, read_audio
from textualize.records import MediaInfo

SR = 16_000


def ffmpeg_seconds(path) -> float:
    """Seconds of audio the ffmpeg command line gets out of the file."""
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "quiet",
            "-i",
            str(path),
            "-vn",
            "-ac",
            "1",
            "-ar",
            str(SR),
            "-f",
            "f32le",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return len(raw) / 4 / SR


def same_signal(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to codec noise, sample for sample (so also at the same times)."""
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1]) > 0.95


MAKERS = {
    "mp4-aac": lambda p: movie(p.with_suffix(".mp4"), 10.0, "aac"),
    # Matroska resyncs at the next cluster; 1 s clusters keep the loss to about a second.
    "mkv-opus": lambda p: movie(
        p.with_suffix(".mkv"), 10.0, "libopus", "-cluster_time_limit", "1000"
    ),
    "wav": lambda p: tone(p.with_suffix(".wav")),
    "flac": lambda p: tone(p.with_suffix(".flac")),
}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_scrambled_middle_keeps_the_rest_of_the_audio_in_place(tmp_path, kind, caplog):
    good = MAKERS[kind](tmp_path / "good")
    bad = scrambled(good, tmp_path / f"bad{good.suffix}")
    with caplog.at_level(logging.WARNING, logger="textualize.media"):
        decoded = read_audio(bad)
    healthy = decode_audio(good)
    # The timeline is kept: as long as the healthy file, and the last seconds line up with it.
    assert len(decoded.samples) == pytest.approx(len(healthy), abs=0.05 * SR)
    assert same_signal(decoded.samples[-2 * SR :], healthy[-2 * SR :])
    assert same_signal(decoded.samples[: 4 * SR], healthy[: 4 * SR])
    # At least as much audio as ffmpeg gets out of it, and the loss is what is missing.
    assert 10.0 - decoded.lost_seconds >= ffmpeg_seconds(bad) - 0.1
    if kind == "wav":  # PCM has no structure to break: the damage is 0.13 s of noise, not a loss
        assert decoded.lost_seconds == 0.0
    else:
        assert decoded.lost_seconds > 0.02
        assert bad.name in caplog.text and f"{decoded.lost_seconds:.2f} s" in caplog.text
        lost = decoded.samples[int(SR * 4) : int(SR * 9.9)] == 0
        assert lost.sum() == pytest.approx(decoded.lost_seconds * SR, rel=0.05, abs=0.03 * SR)


def test_scrambled_middle_still_yields_the_video_frames(tmp_path):
    bad = scrambled(movie(tmp_path / "good.mp4"), tmp_path / "bad.mp4")
    times = [frame.time for frame in iter_frames(bad, fps=2)]
    assert times[0] == 0.0 and times[-1] >= 9.0 and len(times) >= 15


@pytest.mark.parametrize("kind", ["mp4-faststart", "mkv"])
def test_cut_off_file_gives_the_first_part_and_reports_the_rest_lost(tmp_path, kind):
    if kind == "mkv":
        good = movie(tmp_path / "good.mkv", 10.0, "libopus")
    else:
        good = movie(tmp_path / "good.mp4", 10.0, "aac", "-movflags", "+faststart")
    cut = truncated(good, tmp_path / f"cut{good.suffix}", fraction=0.6)
    info = probe(cut)
    assert info.has_audio and info.duration == pytest.approx(10.0, abs=0.05)
    decoded = read_audio(cut)
    kept = ffmpeg_seconds(cut)
    assert 4.0 < kept < 8.0
    assert decoded.lost_seconds == pytest.approx(10.0 - kept, abs=0.1)
    assert len(decoded.samples) == pytest.approx(10.0 * SR, abs=0.05 * SR)
    assert same_signal(decoded.samples[: int(kept * SR)], decode_audio(good)[: int(kept * SR)])
    assert not decoded.samples[int((kept + 0.1) * SR) :].any()  # the lost tail is silence


def test_a_span_of_a_cut_off_file_counts_only_its_own_loss(tmp_path):
    good = movie(tmp_path / "good.mp4", 10.0, "aac", "-movflags", "+faststart")
    cut = truncated(good, tmp_path / "cut.mp4", fraction=0.6)
    kept = ffmpeg_seconds(cut)
    decoded = read_audio(cut, start=2.0, end=8.0)
    assert len(decoded.samples) == 6 * SR
    assert decoded.lost_seconds == pytest.approx(8.0 - kept, abs=0.1)
    assert read_audio(cut, start=1.0, end=3.0).lost_seconds == 0.0
    with pytest.raises(MediaError, match="no audio could be decoded"):
        read_audio(cut, start=8.0, end=9.0)  # wholly in the part that is gone


def test_audio_cut_off_before_its_first_packet_is_a_one_line_media_error(tmp_path):
    good = movie(tmp_path / "good.mp4", 10.0, "aac", "-movflags", "+faststart")
    data = good.read_bytes()
    (bad := tmp_path / "bad.mp4").write_bytes(data[: data.index(b"mdat") + 64])
    assert probe(bad).has_audio  # the header is whole
    with pytest.raises(MediaError, match="no audio could be decoded") as err:
        decode_audio(bad)
    assert "\n" not in str(err.value)


def test_the_speaking_stream_is_chosen_over_a_silent_first_one(tmp_path, speak):
    speech = speak("The weather is lovely today.", "weather")
    path = several_audio_streams(tmp_path / "dub.mkv", "silence", speech)
    info = probe(path)
    assert info.audio_stream == 2  # stream 0 is the video, 1 the silent track
    audio = decode_audio(path)
    assert audio[: SR * 2].std() > 0.01
    assert decode_audio(path, stream=1).std() == 0.0  # the silent one is still reachable


def test_the_default_stream_is_chosen_when_it_has_signal(tmp_path):
    path = several_audio_streams(tmp_path / "two.mkv", "tone", "silence", "tone", default=2)
    assert probe(path).audio_stream == 3
    path = several_audio_streams(tmp_path / "mute.mkv", "silence", "tone", default=0)
    assert probe(path).audio_stream == 2  # the default is silent: the first with signal wins


def test_one_audio_stream_is_named_without_decoding(tmp_path):
    assert probe(tone(tmp_path / "a.wav", 1.0)).audio_stream == 0
    assert probe(movie(tmp_path / "a.mp4", 1.0)).audio_stream == 1
    decoded = read_audio(movie(tmp_path / "b.mp4", 1.0))
    assert decoded.lost_seconds == 0.0 and decoded.stream == 1


def test_media_info_cached_before_these_fields_still_loads():
    old = (
        '{"duration": 2.0, "has_video": true, "has_audio": true, "video_fps": 10.0, '
        '"width": 160, "height": 120, "audio_sample_rate": 44100}'
    )
    info = MediaInfo.from_json(old)
    assert info.audio_stream is None and info.audio_lost_seconds is None
    assert MediaInfo.from_json(info.to_json()) == info


def test_textualize_says_how_much_audio_a_cut_off_file_lost(tmp_path):
    from textualize.config import TextualizeConfig
    from textualize.pipeline import textualize

    good = movie(tmp_path / "good.mp4", 10.0, "aac", "-movflags", "+faststart")
    clips = tmp_path / "clips"
    clips.mkdir()
    truncated(good, clips / "cut.mp4", fraction=0.6)
    cfg = TextualizeConfig(
        cache_dir=str(tmp_path / "cache"), face="off", transcript=False, progress=False
    )
    textualize(clips, tmp_path / "out", cfg)
    import pandas as pd

    row = pd.read_parquet(tmp_path / "out" / "prompts.parquet").iloc[0]
    assert row["prosody_status"] == "ok"
    assert "s of audio unreadable (damaged file), filled with silence" in row["prosody_reason"]
