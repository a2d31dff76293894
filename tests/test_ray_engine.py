"""`cer textualize --engine ray` on a local Ray: the local engine's prompts and cache, byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from conftest import EXAMPLES, REPO
from media_factory import video
from test_speech_emotion import save_tiny_wav2vec2

from textualize.config import TextualizeConfig
from textualize.pipeline import textualize
from textualize.ray_engine import RayEngineUnavailable

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the whole file (2 CPUs, no dashboard); the engine joins it."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """The shipped examples, a video without sound, and a file that is not media at all."""
    folder = tmp_path_factory.mktemp("clips")
    for path in EXAMPLES.iterdir():
        shutil.copy(path, folder / path.name)
    video(folder / "mute video.mp4", seconds=1.5, audio=None)
    (folder / "corrupt.mp4").write_bytes(os.urandom(4000))
    return folder


@pytest.fixture(scope="module")
def cfg(tmp_path_factory, whisper_tiny) -> TextualizeConfig:
    """Two model stages (Whisper, and a tiny random speech-emotion model as in test_speech_emotion),
    so a Ray run has two actor pools whose results are merged per clip."""
    ser = save_tiny_wav2vec2(tmp_path_factory.mktemp("ser"), ("angry", "happy", "neutral", "sad"))
    return TextualizeConfig(
        whisper_model=whisper_tiny,
        speech_emotion_model=ser,
        language="en",
        progress=False,
        labels=str(REPO / "examples" / "labels.csv"),
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, clips, cfg, local_ray) -> dict[str, tuple[Path, Path, object]]:
    """The same clips through both engines, each into its own cold cache: name -> (output, cache, summary).

    Both run every model on one thread per process (2 local workers on 2 cores; Ray actors get
    one CPU each): torch's float32 sums can differ in the last bit between 1 and 2 threads, which
    would change cached speech-emotion bytes whatever the engine.
    """
    work = tmp_path_factory.mktemp("runs")
    out = {}
    for engine in ("local", "ray"):
        cache = work / f"cache-{engine}"
        run_cfg = replace(cfg, engine=engine, cache_dir=str(cache), workers=2)
        out[engine] = (work / engine, cache, textualize(clips, work / engine, run_cfg))
    return out


def cache_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_ray_engine_writes_the_local_engines_prompts(runs):
    (local_out, _, local), (ray_out, _, on_ray) = runs["local"], runs["ray"]
    local_rows = pd.read_parquet(local_out / "prompts.parquet")
    ray_rows = pd.read_parquet(ray_out / "prompts.parquet")
    pd.testing.assert_frame_equal(local_rows, ray_rows)
    assert (local_out / "failures.jsonl").read_text() == (ray_out / "failures.jsonl").read_text()
    rows = ray_rows.set_index("clip_id")
    assert "won the game" in rows.loc["happy news", "transcript"].lower()
    assert rows.loc["happy news", "label"] == "joy" and rows.loc["voicemail", "speaker"] == "kim"
    assert rows.loc["mute video", "transcript_status"] == "no_stream"
    assert (
        rows.loc["voicemail", "speech_emotion_status"] == "ok"
        and rows.loc["voicemail", "ser_happy"] > 0
    )
    # the mute video has nothing to compute but its probe: neither computed nor failed
    assert (on_ray.computed, on_ray.failed) == (local.computed, local.failed) == (3, 1)
    run = json.loads((ray_out / "run.json").read_text())
    assert run["config"]["engine"] == "ray" and run["summary"]["clips"] == 5


def test_ray_engine_writes_the_same_cache_files_byte_for_byte(runs):
    local, on_ray = cache_files(runs["local"][1]), cache_files(runs["ray"][1])
    assert {name.split("/")[0] for name in on_ray} == {
        "hash",
        "media",
        "prosody",
        "transcript",
        "speech_emotion",
        "units",
    }
    assert sorted(on_ray) == sorted(local)
    assert [name for name in local if local[name] != on_ray[name]] == []


def test_a_broken_clip_is_a_recorded_failure_and_the_run_goes_on(runs, local_ray):
    output, _, summary = runs["ray"]
    rows = pd.read_parquet(output / "prompts.parquet").set_index("clip_id")
    assert rows.loc["corrupt", "error"] and rows.loc["corrupt", "prompt"] == ""
    assert rows.loc["voicemail", "error"] == ""
    assert "call me back" in rows.loc["voicemail", "transcript"].lower()
    failures = [json.loads(line) for line in (output / "failures.jsonl").read_text().splitlines()]
    assert {f["modality"] for f in failures if f["clip_id"] == "corrupt"} == {
        "face",
        "prosody",
        "transcript",
        "speech_emotion",
    }
    assert summary.exit_code(strict=False) == 1
    assert local_ray.is_initialized(), "a Ray the engine joined is left running"


def test_second_ray_run_is_served_from_the_cache(runs, clips, cfg, tmp_path):
    output, cache, _ = runs["ray"]
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    cfg = replace(cfg, engine="ray", cache_dir=str(cache))
    started = time.perf_counter()
    again = textualize(clips, tmp_path / "again", cfg)
    assert (again.computed, again.cached, again.failed) == (0, 4, 1)
    assert time.perf_counter() - started < 10
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == before
    pd.testing.assert_frame_equal(
        pd.read_parquet(output / "prompts.parquet"),
        pd.read_parquet(tmp_path / "again" / "prompts.parquet"),
    )


def test_cli_starts_its_own_ray_when_none_is_running(tmp_path, whisper_tiny):
    cmd = [
        sys.executable,
        "-m",
        "cer",
        "textualize",
        str(EXAMPLES / "voicemail.wav"),
        str(tmp_path / "out"),
        "--engine",
        "ray",
        "--workers",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--whisper-model",
        whisper_tiny,
        "--language",
        "en",
        "--progress",
        "false",
    ]
    result = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "1 clips -> 1 prompts" in result.stderr and "1 computed" in result.stderr
    row = pd.read_parquet(tmp_path / "out" / "prompts.parquet").iloc[0]
    assert "call me back" in row["transcript"].lower() and row["prosody_status"] == "ok"
    assert json.loads((tmp_path / "out" / "run.json").read_text())["config"]["engine"] == "ray"


def test_missing_ray_names_the_extra_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(
        sys.modules, "ray", None
    )  # what `import ray` sees where Ray is not installed
    cfg = TextualizeConfig(
        cache_dir=str(tmp_path / "cache"), engine="ray", transcript=False, progress=False
    )
    with pytest.raises(RayEngineUnavailable, match=r"pip install 'cer-textualize\[ray\]'"):
        textualize(EXAMPLES / "voicemail.wav", tmp_path / "out", cfg)
    from cer.cli import main

    code = main(
        [
            "textualize",
            str(EXAMPLES / "voicemail.wav"),
            str(tmp_path / "out"),
            "--engine",
            "ray",
            "--transcript",
            "false",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 2 and "cer-textualize[ray]" in capsys.readouterr().err


def test_ray_address_without_the_ray_engine_is_a_config_error():
    with pytest.raises(ValueError, match="--engine ray"):
        TextualizeConfig(ray_address="auto")


def test_model_actors_ask_for_a_gpu_share_only_where_there_are_gpus(whisper_tiny):
    from textualize.extract import plan_extraction
    from textualize.ray_engine import actor_resources, model_stages

    cfg = TextualizeConfig(whisper_model=whisper_tiny, face="off", speech_emotion_model="ser-model")
    stages = model_stages(plan_extraction(cfg))
    assert stages == ("transcript", "speech_emotion")
    assert actor_resources(stages, cfg, {"CPU": 64.0, "GPU": 4.0}) == (
        {"num_cpus": 1, "num_gpus": 0.5},
        4,
    )
    assert actor_resources(stages, cfg, {"CPU": 16.0}) == ({"num_cpus": 1}, 16)
    on_cpu = replace(cfg, device="cpu")
    assert actor_resources(stages, on_cpu, {"CPU": 16.0, "GPU": 4.0}) == ({"num_cpus": 1}, 16)
