"""Stored units: a re-render reads one entry per clip and renders exactly what deriving them again
would; anything they depend on changes their key; failed clips are never stored. Real clips,
real openSMILE and Whisper tiny."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import EXAMPLES

from textualize import unit_cache
from textualize.config import TextualizeConfig
from textualize.pipeline import textualize

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cfg(whisper_tiny, tmp_path_factory) -> TextualizeConfig:
    cache = tmp_path_factory.mktemp("units") / "cache"
    return TextualizeConfig(
        cache_dir=str(cache), face="off", whisper_model=whisper_tiny, language="en",
        workers=1, progress=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def first(cfg, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("first") / "out"
    assert textualize(EXAMPLES, out, cfg).computed == 3
    return out


def stored(cfg: TextualizeConfig) -> list[Path]:
    return sorted(p for p in (Path(cfg.cache_dir) / "units").rglob("*.json"))


def prompts(out: Path) -> str:
    return (out / "prompts.jsonl").read_text(encoding="utf-8")


def test_a_run_stores_one_units_entry_per_clip(cfg, first):
    assert len(stored(cfg)) == 3


def test_a_rerender_reads_the_units_and_renders_what_deriving_them_gives(cfg, first, tmp_path):
    again = textualize(EXAMPLES, tmp_path / "again", cfg)
    assert again.cached == 3 and again.computed == 0
    shutil.rmtree(Path(cfg.cache_dir) / "units")  # units derived again from the stage entries
    rebuilt = textualize(EXAMPLES, tmp_path / "rebuilt", cfg)
    assert rebuilt.cached == 3 and len(stored(cfg)) == 3
    assert prompts(first) == prompts(tmp_path / "again") == prompts(tmp_path / "rebuilt")


def test_a_copy_under_another_name_reads_the_same_units_under_its_own_id(cfg, first, tmp_path):
    folder = tmp_path / "copies"
    folder.mkdir()
    shutil.copy(EXAMPLES / "voicemail.wav", folder / "renamed.wav")
    summary = textualize(folder, tmp_path / "out", cfg)
    assert summary.cached == 1
    text = prompts(tmp_path / "out")
    assert '"clip_id": "renamed"' in text and "voicemail" not in text


def test_windows_the_derivation_code_and_the_plan_change_the_key(cfg, first, monkeypatch):
    from textualize.cache import StageCache
    from textualize.extract import plan_extraction
    from textualize.inputs import discover

    clip = discover(EXAMPLES).clips[0]
    cache = StageCache(cfg.cache_dir)
    clip_hash = cache.file_hash(clip.path)

    def key(config: TextualizeConfig) -> str:
        return unit_cache.UnitStore(config, plan_extraction(config), cache).key(clip, clip_hash)

    plain = key(cfg)
    assert key(replace(cfg, window=1.0, hop=0.5)) != plain
    assert key(replace(cfg, language="de")) != plain
    monkeypatch.setattr(unit_cache, "derivation_digest", lambda: "edited summary code")
    assert key(cfg) != plain


def test_damaged_units_are_derived_again(cfg, first, tmp_path):
    for path in stored(cfg):
        path.write_bytes(path.read_bytes()[:-20])
    summary = textualize(EXAMPLES, tmp_path / "out", cfg)
    assert summary.cached == 3 and summary.exit_code(strict=False) == 0
    assert prompts(tmp_path / "out") == prompts(first)


def test_units_of_a_failed_clip_are_not_stored(cfg, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    fresh = replace(cfg, cache_dir=str(tmp_path / "cache"))
    summary = textualize(folder, tmp_path / "out", fresh)
    assert summary.failed == 1
    assert stored(fresh) == []
