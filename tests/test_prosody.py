"""Prosody stage: real openSMILE eGeMAPSv02 on speech synthesised with espeak-ng."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from textualize.prosody import (
    SUMMARY_FIELDS,
    ProsodyConfig,
    ProsodyConfigError,
    ProsodyExtractor,
    ProsodyInputError,
    ProsodySummary,
    count_syllables,
    summarize_prosody,
)
from textualize.records import Word

SR = 16000
SENTENCE = "The quick brown fox jumps over the lazy dog while the children watch from the window."


def speak(text: str, *espeak_args: str) -> np.ndarray:
    """espeak-ng speech as float32 mono at 16 kHz (ffmpeg resamples espeak's 22.05 kHz)."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", *espeak_args, text], check=True, capture_output=True
    ).stdout
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar", str(SR), "-"],
        input=wav,
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(pcm, dtype=np.float32).copy()


@pytest.fixture(scope="session")
def extractor() -> ProsodyExtractor:
    return ProsodyExtractor(ProsodyConfig())


@pytest.fixture(scope="session")
def voices() -> dict[str, np.ndarray]:
    return {
        "normal": speak(SENTENCE),
        "high": speak(SENTENCE, "-p", "90"),
        "low": speak(SENTENCE, "-p", "10"),
        "fast": speak(SENTENCE, "-s", "260"),
        "slow": speak(SENTENCE, "-s", "100"),
    }


@pytest.fixture(scope="session")
def tracks(extractor, voices):
    return {name: extractor.extract(audio, SR) for name, audio in voices.items()}


@pytest.fixture(scope="session")
def with_pause(extractor, voices):
    """The normal sentence with 1.5 s of digital silence inserted in the middle."""
    speech = voices["normal"]
    half = speech.size // 2
    audio = np.concatenate([speech[:half], np.zeros(int(1.5 * SR), np.float32), speech[half:]])
    return extractor.extract(audio, SR)


def whole(track) -> ProsodySummary:
    return summarize_prosody(track.lld, 0.0, track.duration)


def test_track_holds_egemaps_llds_every_10ms_and_88_functionals(extractor, voices, tracks):
    track = tracks["normal"]
    assert track.duration == pytest.approx(voices["normal"].size / SR)
    assert list(track.lld.columns) == ["time", *extractor.lld_names]
    assert len(extractor.lld_names) == 25 and "Loudness_sma3" in extractor.lld_names
    times = track.lld["time"].to_numpy()
    assert times[0] == 0.0 and np.allclose(np.diff(times), 0.01)
    assert times[-1] < track.duration
    assert len(track.functionals) == 88
    assert track.functionals["VoicedSegmentsPerSec"] > 0
    assert "opensmile" in extractor.version and "eGeMAPSv02" in extractor.version


def test_whole_clip_summary_agrees_with_opensmile_functionals(tracks):
    track = tracks["normal"]
    summary = whole(track)
    functionals = track.functionals
    assert summary.pitch_mean_st == pytest.approx(
        functionals["F0semitoneFrom27.5Hz_sma3nz_amean"], rel=1e-4
    )
    assert summary.loudness_mean == pytest.approx(functionals["loudness_sma3_amean"], rel=0.02)
    assert summary.speaking_rate == pytest.approx(functionals["VoicedSegmentsPerSec"], rel=0.05)
    assert summary.jitter == pytest.approx(functionals["jitterLocal_sma3nz_amean"], rel=1e-3)
    assert summary.shimmer_db == pytest.approx(functionals["shimmerLocaldB_sma3nz_amean"], rel=1e-3)
    assert summary.hnr_db == pytest.approx(functionals["HNRdBACF_sma3nz_amean"], rel=1e-3)
    assert not summary.silent and 0.3 < summary.voiced_ratio < 1.0
    assert summary.loudness_peaks_per_sec > 1.0  # syllable nuclei


def test_high_pitched_voice_has_higher_pitch_than_low_voice(tracks):
    high, low = whole(tracks["high"]), whole(tracks["low"])
    assert high.pitch_mean_st > low.pitch_mean_st + 6  # more than half an octave apart


def test_fast_speech_has_higher_speaking_rate_than_slow_speech(tracks):
    fast, slow = whole(tracks["fast"]), whole(tracks["slow"])
    assert fast.duration < slow.duration
    assert fast.speaking_rate > 1.5 * slow.speaking_rate


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(3 * SR, np.float32),
        (np.random.default_rng(0).standard_normal(3 * SR) * 1e-3).astype(np.float32),  # -60 dBFS
    ],
    ids=["digital-silence", "quiet-noise"],
)
def test_silence_and_quiet_noise_summarise_as_silent(extractor, audio):
    track = extractor.extract(audio, SR)
    summary = whole(track)
    assert summary.silent
    assert summary.voiced_ratio == 0.0 and summary.pitch_mean_st is None
    assert summary.speaking_rate == 0.0 and summary.loudness_peaks_per_sec == 0.0
    assert summary.pause_ratio > 0.95


@pytest.mark.parametrize("n_samples", [0, 1, 400, 959])
def test_audio_shorter_than_a_frame_gives_an_empty_silent_track(extractor, n_samples):
    track = extractor.extract(np.full(n_samples, 0.1, np.float32), SR)
    assert track.lld.empty and "time" in track.lld.columns
    assert len(track.functionals) == 88
    summary = summarize_prosody(track.lld, 0.0, track.duration)
    assert summary.silent and summary.loudness_mean == 0.0 and summary.pause_ratio == 0.0


def test_inserted_silence_raises_pause_ratio(tracks, with_pause):
    plain, paused = whole(tracks["normal"]), whole(with_pause)
    assert paused.pause_ratio > plain.pause_ratio + 0.15
    assert paused.duration == pytest.approx(plain.duration + 1.5, abs=0.01)
    added_pause_sec = paused.pause_ratio * paused.duration - plain.pause_ratio * plain.duration
    assert added_pause_sec == pytest.approx(1.5, abs=0.15)
    assert paused.mean_pause_sec > (plain.mean_pause_sec or 0.0)


def test_pauses_before_and_after_the_speech_do_not_count(extractor, voices, tracks):
    speech, second = voices["normal"], np.zeros(SR, np.float32)
    padded = whole(extractor.extract(np.concatenate([second, speech, second]), SR))
    plain = whole(tracks["normal"])
    assert padded.pause_ratio > plain.pause_ratio + 0.2  # the old measure counts the silence
    assert padded.inner_pauses == plain.inner_pauses  # pauses inside the speech: unchanged
    assert padded.speech_sec == pytest.approx(plain.speech_sec, abs=0.05)


def test_a_pause_inside_the_speech_is_one_long_inner_pause(tracks, with_pause):
    plain, paused = whole(tracks["normal"]), whole(with_pause)
    assert paused.inner_pauses == plain.inner_pauses + 1
    assert paused.inner_pause_sec - plain.inner_pause_sec == pytest.approx(1.5, abs=0.15)
    # Speaking rate excludes the pause: the same syllables over the same speaking time.
    assert paused.articulation_rate == pytest.approx(plain.articulation_rate, rel=0.15)


def test_speaking_rate_from_word_timestamps(tracks):
    words = [Word(0.1 + 0.3 * i, 0.35 + 0.3 * i, w) for i, w in enumerate(SENTENCE.split())]
    syllables = sum(count_syllables(w) for w in SENTENCE.split())
    assert syllables == 20  # "quick" 1, "over" 2, "while" 1, "children" 2, "window." 2 ...
    for name in ("fast", "slow"):
        summary = summarize_prosody(tracks[name].lld, 0.0, tracks[name].duration, words=words[:5])
        assert summary.syllables == 5  # only the words inside the span count
    fast = summarize_prosody(tracks["fast"].lld, words=[Word(0.0, 0.1, SENTENCE)])
    slow = summarize_prosody(tracks["slow"].lld, words=[Word(0.0, 0.1, SENTENCE)])
    speaking = fast.speech_sec - fast.inner_pause_sec
    assert fast.articulation_rate == pytest.approx(fast.syllables / speaking)
    assert fast.articulation_rate > 1.8 * slow.articulation_rate  # espeak 260 vs 100 words/min


def test_pitch_and_loudness_over_the_clip(extractor, voices):
    high, low = voices["high"], voices["low"]
    rising = whole(extractor.extract(np.concatenate([low, high]), SR))
    falling = whole(extractor.extract(np.concatenate([high, low * 0.1]), SR))
    assert rising.pitch_trend_st > 4 and falling.pitch_trend_st < -4
    assert rising.pitch_peak_pos > 0.5 and falling.pitch_peak_pos < 0.5
    assert falling.loudness_trend < -1 and falling.loudness_peak_pos < 0.5  # trailing off


def test_window_summary_is_the_summary_of_the_sliced_llds(with_pause):
    track = with_pause
    full = summarize_prosody(track.lld)
    window = summarize_prosody(track.lld, 1.5, 3.5)
    assert window.duration == pytest.approx(2.0)
    assert window.to_dict() != full.to_dict()
    assert window.pause_ratio > full.pause_ratio  # the window sits on the inserted silence

    sliced = track.between(1.5, 3.5)
    assert summarize_prosody(sliced, 1.5, 3.5) == window
    rebased = sliced.assign(time=sliced["time"] - 1.5)  # a window's LLDs cached on their own
    assert summarize_prosody(rebased).to_dict() == pytest.approx(window.to_dict())


def test_summary_fields_are_the_numeric_fields_of_to_dict(tracks):
    row = whole(tracks["normal"]).to_dict()
    assert set(SUMMARY_FIELDS) == set(row) - {"silent"}
    assert all(isinstance(row[name], float) for name in SUMMARY_FIELDS)
    json.dumps(row)


def test_long_audio_in_chunks_gives_the_same_llds_as_one_pass(voices):
    audio = np.concatenate([voices["high"], voices["slow"], voices["low"]])  # ~17 s
    one_pass = ProsodyExtractor(ProsodyConfig(chunk_sec=60.0)).extract(audio, SR)
    config = ProsodyConfig(chunk_sec=4.0, chunk_margin_sec=1.0, functionals_max_sec=10.0)
    chunked = ProsodyExtractor(config).extract(audio, SR)
    pd.testing.assert_frame_equal(chunked.lld, one_pass.lld)
    # Whole-clip functionals are skipped beyond functionals_max_sec, the keys stay.
    assert not np.isnan(list(one_pass.functionals.values())).any()
    assert set(chunked.functionals) == set(one_pass.functionals)
    assert np.isnan(list(chunked.functionals.values())).all()


@pytest.mark.parametrize("voice", ["normal", "fast"])
def test_one_opensmile_run_gives_what_its_two_process_signal_runs_give(extractor, voices, voice):
    import opensmile

    audio = voices[voice]
    track = extractor.extract(audio, SR)  # a short clip: both levels from one run
    level, egemaps = opensmile.FeatureLevel, opensmile.FeatureSet.eGeMAPSv02
    lld = opensmile.Smile(egemaps, level.LowLevelDescriptors).process_signal(audio, SR)
    functionals = opensmile.Smile(egemaps, level.Functionals).process_signal(audio, SR)
    starts = lld.index.get_level_values("start").total_seconds().to_numpy()
    assert np.array_equal(track.lld["time"].to_numpy(), np.round(starts, 6))
    assert np.array_equal(track.lld.drop(columns="time").to_numpy(), lld.to_numpy())
    assert track.functionals == functionals.iloc[0].astype(float).to_dict()


def test_extractor_builds_smile_objects_once_and_reuses_them(monkeypatch, voices):
    import opensmile

    built, real_smile = [], opensmile.Smile

    def counting_smile(*args, **kwargs):
        built.append(args)
        return real_smile(*args, **kwargs)

    monkeypatch.setattr(opensmile, "Smile", counting_smile)
    extractor = ProsodyExtractor(ProsodyConfig())
    assert len(built) == 2  # low-level descriptors and functionals
    first = extractor.extract(voices["fast"], SR)
    second = extractor.extract(voices["fast"], SR)
    extractor.extract(voices["slow"], SR)
    assert len(built) == 2
    pd.testing.assert_frame_equal(first.lld, second.lld)  # no state carried between clips


def test_bad_input_and_config_raise_specific_errors(extractor):
    with pytest.raises(ProsodyInputError, match="mono"):
        extractor.extract(np.zeros((2, SR), np.float32), SR)
    with pytest.raises(ProsodyInputError, match="NaN"):
        extractor.extract(np.full(SR, np.nan, np.float32), SR)
    with pytest.raises(ProsodyConfigError, match="eGeMAPSv02"):
        ProsodyExtractor(ProsodyConfig(feature_set="eGeMAPSv99"))
    with pytest.raises(ProsodyInputError, match="lacks columns"):
        summarize_prosody(pd.DataFrame({"time": [0.0]}))
    assert issubclass(ProsodyInputError, ValueError)


MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, psutil
    from textualize.prosody import ProsodyConfig, ProsodyExtractor, summarize_prosody

    sentence = np.load(sys.argv[1])
    unit = np.concatenate([sentence, np.zeros(8000, np.float32)])  # sentence + 0.5 s pause
    n = 30 * 60 * 16000
    audio = np.tile(unit, n // unit.size + 1)[:n]
    extractor = ProsodyExtractor(ProsodyConfig())
    extractor.extract(audio[:16000], 16000)  # load openSMILE before measuring
    before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    track = extractor.extract(audio, 16000)
    seconds = time.perf_counter() - started
    # VmHWM is this process image's own peak; ru_maxrss would carry over pytest's RSS across exec.
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    peak = int(status.split()[0]) * 1024
    middle = summarize_prosody(track.lld, 900.0, 960.0)
    print(json.dumps({
        "growth_mb": (peak - before) / 2**20, "audio_mb": audio.nbytes / 2**20,
        "seconds": seconds, "frames": len(track.lld), "last_time": float(track.lld.time.iat[-1]),
        "functionals_nan": bool(np.isnan(list(track.functionals.values())).all()),
        "middle": middle.to_dict(),
    }))
    """
)


@pytest.mark.slow
def test_thirty_minutes_of_speech_in_bounded_memory(voices, tmp_path):
    np.save(tmp_path / "sentence.npy", voices["normal"])
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "sentence.npy")],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(probe.stdout)
    print(f"30 min prosody: {result['growth_mb']:.0f} MB peak growth, {result['seconds']:.0f} s")
    assert result["frames"] == pytest.approx(30 * 60 * 100, abs=10)
    assert result["last_time"] == pytest.approx(1800, abs=0.1)
    # openSMILE in one pass grows by ~1 GB here; the audio itself is 110 MB.
    assert result["growth_mb"] < 300
    assert result["functionals_nan"]  # beyond functionals_max_sec
    middle = result["middle"]
    assert not middle["silent"] and middle["speaking_rate"] > 1.0
    assert 0.05 < middle["pause_ratio"] < 0.3  # the 0.5 s pauses between sentences
