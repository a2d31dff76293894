"""End to end: a folder of clips in, prompts out; bad input, cache, resume, parallel workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from conftest import EXAMPLES, REPO
from media_factory import truncated, video

from textualize.config import TextualizeConfig
from textualize.extract import ModalityUnavailable
from textualize.pipeline import textualize
from textualize.units import window_spans

pytestmark = pytest.mark.slow


@pytest.fixture()
def cfg(tmp_path, whisper_tiny):
    return TextualizeConfig(
        cache_dir=str(tmp_path / "cache"),
        whisper_model=whisper_tiny,
        workers=1,
        progress=False,
        language="en",
    )


def rows_by_id(output: Path) -> dict[str, dict]:
    return {r["clip_id"]: r for r in pd.read_parquet(output / "prompts.parquet").to_dict("records")}


def test_example_clips_offline_give_audio_and_transcript_text(tmp_path, cfg, caplog):
    summary = textualize(EXAMPLES, tmp_path / "out", cfg)
    rows = rows_by_id(tmp_path / "out")
    assert summary.exit_code(strict=False) == 0
    assert set(rows) == {"happy news", "empty_room", "voicemail"}
    assert "won the game" in rows["happy news"]["transcript"].lower()
    assert "call me back" in rows["voicemail"]["transcript"].lower()
    for row in rows.values():
        assert row["prosody_status"] == "ok" and "pitch" in row["audio_text"]
        assert "Prosody characteristics:" in row["prompt"]
    # No face weights here: said once, and the visual modality is marked unavailable on video rows.
    assert (
        rows["happy news"]["face_status"] == "unavailable"
        and "face model" in rows["happy news"]["face_reason"]
    )
    assert (
        rows["voicemail"]["face_status"] == "no_stream"
        and "Visual: no video." in rows["voicemail"]["prompt"]
    )
    assert sum("Face modality unavailable" in r.message for r in caplog.records) == 1


def test_outputs_load_with_pandas_and_datasets(tmp_path, cfg):
    textualize(EXAMPLES / "voicemail.wav", tmp_path / "out", cfg)
    from datasets import load_dataset

    data = load_dataset(
        "parquet", data_files=str(tmp_path / "out" / "prompts.parquet"), split="train"
    )
    assert data[0]["clip_id"] == "voicemail" and data[0]["prompt"]
    jsonl = [
        json.loads(line) for line in (tmp_path / "out" / "prompts.jsonl").read_text().splitlines()
    ]
    assert jsonl[0]["prompt"] == data[0]["prompt"]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["config"]["whisper_model"] == cfg.whisper_model and "opensmile" in run["versions"]
    assert run["summary"]["clips"] == 1 and "transcript" in run["summary"]["stage_seconds"]
    textualizer = json.loads((tmp_path / "out" / "textualizer.json").read_text())
    assert textualizer["fitted_on"]["clips"] == 1 and textualizer["prosody"]["source"] == "builtin"
    assert run["textualizer"]["sha256"] and run["textualizer"]["reference"] is None


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory, speak) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    words = speak(
        "Thank you very much for coming to the meeting today.", "meeting", "-v", "en", "-s", "120"
    )
    video(folder / "speech and tone ü 😀.mp4", seconds=6.0, audio=words)
    video(folder / "mute video.mp4", seconds=1.5, audio=None)
    video(folder / "silent track.mp4", seconds=1.5, audio="silence")
    shutil.copy(words, folder / "audio only.wav")
    truncated(
        video(tmp_path_factory.mktemp("src") / "t.mp4", seconds=3.0), folder / "truncated.mp4"
    )
    (folder / "corrupt.mp4").write_bytes(os.urandom(4000))
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "readme.txt").write_text("not a video")
    return folder


def test_every_bad_input_gets_a_row_with_a_clear_reason(tmp_path, cfg, bad_folder):
    summary = textualize(bad_folder, tmp_path / "out", cfg)
    rows = rows_by_id(tmp_path / "out")
    assert len(rows) == 8 and summary.failed == 4
    assert summary.exit_code(strict=False) == 1
    good = rows["speech and tone ü 😀"]
    assert "meeting" in good["transcript"].lower() and good["error"] == ""
    assert (
        rows["mute video"]["transcript_status"] == "no_stream"
        and "no audio" in rows["mute video"]["prompt"]
    )
    silent = rows["silent track"]
    assert (silent["prosody_status"], silent["transcript_status"]) == ("absent", "absent")
    assert "silence" in silent["audio_text"] and "Transcription: no speech." in silent["prompt"]
    assert (
        rows["audio only"]["face_status"] == "no_stream"
        and "thank you" in rows["audio only"]["transcript"].lower()
    )
    assert "empty file" in rows["zero"]["error"]
    for name in ("truncated", "corrupt", "readme"):
        assert rows[name]["error"] and rows[name]["prompt"] == "", name
    failures = [
        json.loads(x) for x in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()
    ]
    assert {f["clip_id"] for f in failures} >= {
        "zero",
        "corrupt",
        "readme",
        "truncated",
        "silent track",
    }


def test_strict_turns_modality_gaps_into_failure(tmp_path, cfg):
    summary = textualize(EXAMPLES / "voicemail.wav", tmp_path / "out", cfg)
    assert summary.exit_code(strict=False) == 0 and summary.exit_code(strict=True) == 1  # no video


def test_rerender_reads_only_the_cache(tmp_path, cfg):
    first = textualize(EXAMPLES, tmp_path / "a", cfg)
    assert first.computed == 3
    from dataclasses import replace

    again = textualize(
        EXAMPLES,
        tmp_path / "b",
        replace(cfg, template="instruction", modalities="TA", window=1.0, hop=0.5),
    )
    assert again.computed == 0 and again.cached == 3
    rows = pd.read_parquet(tmp_path / "b" / "prompts.parquet")
    n = rows["clip_id"].value_counts()["voicemail"]
    assert (
        n == len(window_spans(sf.info(str(EXAMPLES / "voicemail.wav")).duration, 1.0, 0.5))
        and n >= 6
    )
    assert rows["prompt"].str.contains("What they say").all()
    assert (rows["end"] - rows["start"] <= 1.0 + 1e-6).all()
    forced = textualize(EXAMPLES, tmp_path / "c", replace(cfg, force=True))
    assert forced.computed == 3


def test_cold_clips_go_to_the_engine_unread_and_cached_ones_are_read_here(
    tmp_path, cfg, monkeypatch
):
    from textualize import pipeline

    looked_up = []

    def counting(clip, *args):
        looked_up.append(clip.clip_id)
        return read_cached(clip, *args)

    read_cached = pipeline.read_cached
    monkeypatch.setattr(pipeline, "read_cached", counting)
    first = textualize(EXAMPLES, tmp_path / "a", cfg)
    assert first.computed == 3 and looked_up == []  # nothing hashed or probed before the workers
    again = textualize(EXAMPLES, tmp_path / "b", cfg)
    assert again.cached == 3 and looked_up == []  # the units the workers stored: one read a clip
    assert (tmp_path / "a" / "prompts.jsonl").read_text() == (
        tmp_path / "b" / "prompts.jsonl"
    ).read_text()
    windows = textualize(EXAMPLES, tmp_path / "c", replace(cfg, window=1.0, hop=1.0))
    assert windows.computed == 0  # other units: derived here from the cached stage results
    assert sorted(looked_up) == ["empty_room", "happy news", "voicemail"]


def test_cache_only_read_decodes_no_audio(tmp_path, cfg, monkeypatch):
    from textualize import extract
    from textualize.cache import StageCache
    from textualize.inputs import discover

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cache-only read decoded audio")

    monkeypatch.setattr(extract, "read_audio", no_decoding)
    clip = next(c for c in discover(EXAMPLES).clips if c.clip_id == "voicemail")
    plan = extract.plan_extraction(cfg)
    desc = extract.read_cached(clip, cfg, plan, StageCache(cfg.cache_dir))
    assert set(desc.uncached) == {"prosody", "transcript"}
    assert "cer textualize" in desc.status["transcript"].reason


def test_explicit_face_request_fails_fast_without_weights(tmp_path, cfg):
    from dataclasses import replace

    started = time.perf_counter()
    with pytest.raises(ModalityUnavailable, match="--face on"):
        textualize(EXAMPLES, tmp_path / "out", replace(cfg, face="on"))
    assert time.perf_counter() - started < 10


def test_missing_whisper_model_is_one_clear_error(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cer",
            "textualize",
            str(EXAMPLES),
            str(tmp_path / "out"),
            "--whisper-model",
            str(tmp_path / "no-such-model"),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2
    assert "--whisper-model" in result.stderr and "Traceback" not in result.stderr


def test_face_tables_give_visual_descriptions(tmp_path, cfg, feat_data):
    from dataclasses import replace

    tables = tmp_path / "tables"
    tables.mkdir()
    shutil.copy(
        feat_data / "Feat_Test.csv", tables / "happy news.csv"
    )  # a real py-feat result: smiling
    shutil.copy(
        feat_data / "OpenFace_Test.csv", tables / "empty_room.csv"
    )  # a real OpenFace table: neutral
    textualize(EXAMPLES, tmp_path / "out", replace(cfg, face_tables=str(tables)))
    rows = rows_by_id(tmp_path / "out")
    happy, calm = rows["happy news"], rows["empty_room"]
    assert happy["face_status"] == "ok" and "lip corner puller (AU12)" in happy["visual_text"]
    assert "Predicted visual emotions: happiness" in happy["prompt"]
    assert calm["face_status"] == "ok" and calm["visual_text"].startswith("neutral face")
    assert rows["voicemail"]["face_status"] == "no_stream"


def test_two_workers_give_the_same_rows_as_one(tmp_path, cfg):
    from dataclasses import replace

    textualize(EXAMPLES, tmp_path / "one", cfg)
    textualize(
        EXAMPLES, tmp_path / "two", replace(cfg, workers=2, cache_dir=str(tmp_path / "cache2"))
    )
    one = pd.read_parquet(tmp_path / "one" / "prompts.parquet")
    two = pd.read_parquet(tmp_path / "two" / "prompts.parquet")
    pd.testing.assert_frame_equal(one, two)


def test_killed_run_resumes_and_finishes_identically(tmp_path, whisper_tiny, bad_folder):
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(6):
        shutil.copy(EXAMPLES / "voicemail.wav", folder / f"v{i}.wav")
        # different bytes per copy, so each clip is its own cache entry
        with open(folder / f"v{i}.wav", "ab") as handle:
            handle.write(bytes(2 * (i + 1)))
    cache = tmp_path / "cache"
    cmd = [
        sys.executable,
        "-m",
        "cer",
        "textualize",
        str(folder),
        str(tmp_path / "out"),
        "--cache-dir",
        str(cache),
        "--whisper-model",
        whisper_tiny,
        "--workers",
        "1",
        "--progress",
        "false",
        "--language",
        "en",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((cache / "transcript").rglob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((cache / "transcript").rglob("*.json")))
    assert 2 <= done_before < 6, "the kill should land mid-run"
    assert not (tmp_path / "out" / "prompts.parquet").exists()
    resumed = subprocess.run(
        cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (
        f"{6 - done_before} computed" in resumed.stderr
        or f"{done_before} from cache" in resumed.stderr
    )
    fresh = textualize(
        folder,
        tmp_path / "fresh",
        TextualizeConfig(
            cache_dir=str(tmp_path / "cache-fresh"),
            whisper_model=whisper_tiny,
            workers=1,
            progress=False,
            language="en",
        ),
    )
    assert fresh.computed == 6
    a = pd.read_parquet(tmp_path / "out" / "prompts.parquet").drop(columns=["source_path"])
    b = pd.read_parquet(tmp_path / "fresh" / "prompts.parquet").drop(columns=["source_path"])
    pd.testing.assert_frame_equal(a, b)
