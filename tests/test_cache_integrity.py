"""The stage cache under damage: corrupt, edited or foreign entries, stale file-hash memos, a
read-only or full cache folder, and the permissions of what it writes. Real files throughout; the
pipeline tests run one real clip (prosody + Whisper tiny) and damage a copy of its warm cache."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from conftest import EXAMPLES

import textualize.cache as cache_module
from textualize.cache import StageCache, atomic_write
from textualize.config import TextualizeConfig
from textualize.media import content_hash
from textualize.pipeline import textualize


def _modes_are_enforced() -> bool:
    """False for root (os.geteuid() == 0 with CAP_DAC_OVERRIDE), which writes into 0o555 folders."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        try:
            Path(folder, "probe").touch()
        except PermissionError:
            return True
        finally:
            os.chmod(folder, 0o755)
    return False


MODES_IGNORED = not _modes_are_enforced()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    shutil.copy(EXAMPLES / "voicemail.wav", folder)
    return folder


@pytest.fixture(scope="module")
def cfg(whisper_tiny) -> TextualizeConfig:
    return TextualizeConfig(
        face="off", whisper_model=whisper_tiny, language="en", workers=1, progress=False
    )


@pytest.fixture(scope="module")
def warm(tmp_path_factory, clips, cfg) -> Path:
    """A cache filled by one cold run: hash memo, media, prosody and transcript entries."""
    cache = tmp_path_factory.mktemp("warm") / "cache"
    summary = textualize(clips, cache.parent / "out", replace(cfg, cache_dir=str(cache)))
    assert summary.exit_code(strict=False) == 0
    return cache


@pytest.fixture()
def cache(tmp_path, warm) -> Path:
    """A copy of the warm cache without its stored units, which would serve a re-run without
    reading the stage entries these tests damage (units: tests/test_unit_cache.py)."""
    copy = Path(shutil.copytree(warm, tmp_path / "cache"))
    shutil.rmtree(copy / "units")
    return copy


def rerun(clips: Path, cache: Path, cfg: TextualizeConfig, out: Path):
    summary = textualize(clips, out, replace(cfg, cache_dir=str(cache)))
    return summary, pd.read_parquet(out / "prompts.parquet").iloc[0]


def entry(cache: Path, stage: str) -> Path:
    (path,) = [p for p in (cache / stage).rglob("*") if p.is_file()]
    return path


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# --- 1. corrupt, edited and foreign entries


def test_a_truncated_media_entry_is_recomputed_with_a_warning(clips, cache, cfg, tmp_path, caplog):
    damaged = entry(cache, "media")
    truncate(damaged)
    with caplog.at_level(logging.WARNING):
        summary, row = rerun(clips, cache, cfg, tmp_path / "out")
    assert summary.exit_code(strict=False) == 0 and row["error"] == ""
    assert "call me back" in row["transcript"].lower()
    assert str(damaged) in caplog.text
    again, _ = rerun(clips, cache, cfg, tmp_path / "again")  # repaired: served from the cache
    assert (again.computed, again.cached) == (0, 1)


@pytest.mark.parametrize("stage", ["transcript", "prosody"])
def test_a_truncated_result_is_recomputed_not_served_as_a_failure(
    stage, clips, cache, cfg, tmp_path, caplog
):
    damaged = entry(cache, stage)
    truncate(damaged)
    with caplog.at_level(logging.WARNING):
        summary, row = rerun(clips, cache, cfg, tmp_path / "out")
    assert summary.exit_code(strict=False) == 0
    assert row[f"{stage}_status"] == "ok", row[f"{stage}_reason"]
    assert "call me back" in row["transcript"].lower() and "pitch" in row["audio_text"]
    assert str(damaged) in caplog.text


def test_a_hand_edited_entry_is_not_served(clips, cache, cfg, tmp_path):
    edited = entry(cache, "transcript")
    data = edited.read_bytes()
    assert b"call me back" in data.lower()
    edited.write_bytes(data.replace(b"back", b"never").replace(b"Back", b"Never"))
    _, row = rerun(clips, cache, cfg, tmp_path / "out")
    assert "call me back" in row["transcript"].lower()


def test_an_entry_copied_to_another_keys_path_does_not_verify(tmp_path):
    cache = StageCache(tmp_path / "cache")
    cache.put("transcript", "a" * 32, ".json", b'{"text": "I am happy"}')
    cache.put("transcript", "b" * 32, ".json", b'{"text": "I am furious"}')
    shutil.copy(
        cache.path("transcript", "a" * 32, ".json"), cache.path("transcript", "b" * 32, ".json")
    )
    assert cache.get("transcript", "b" * 32, ".json") is None
    assert cache.get("transcript", "a" * 32, ".json") == b'{"text": "I am happy"}'


def test_an_entry_written_without_a_header_is_recomputed_once(tmp_path, caplog):
    """Entries of earlier versions carry no header: absent once, then rewritten and served."""
    cache = StageCache(tmp_path / "cache")
    old = cache.path("media", "c" * 32, ".json")
    old.parent.mkdir(parents=True)
    old.write_bytes(b'{"duration": 3.0}')
    with caplog.at_level(logging.WARNING):
        assert cache.get("media", "c" * 32, ".json") is None
    assert str(old) in caplog.text and not old.exists()
    cache.put("media", "c" * 32, ".json", b'{"duration": 3.0}')
    assert cache.get("media", "c" * 32, ".json") == b'{"duration": 3.0}'


# --- 2. the file-hash memo


def test_a_same_size_rewrite_with_its_mtime_restored_is_hashed_again(tmp_path):
    cache = StageCache(tmp_path / "cache")
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF happy voice")
    assert cache.file_hash(clip) == content_hash(clip)
    before = clip.stat()
    time.sleep(0.05)  # past one tick of the kernel's coarse file clock, so the ctime can move
    clip.write_bytes(b"RIFF angry voice")
    os.utime(clip, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = clip.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    assert cache.file_hash(clip) == content_hash(clip)


def test_a_memo_edited_to_another_clips_digest_is_not_trusted(tmp_path):
    cache = StageCache(tmp_path / "cache")
    happy, angry = tmp_path / "happy.wav", tmp_path / "angry.wav"
    happy.write_bytes(b"RIFF happy voice")
    angry.write_bytes(b"RIFF angry voice")
    true_digest, other = content_hash(happy), content_hash(angry)
    assert cache.file_hash(happy) == true_digest
    memo = entry(cache.root, "hash")
    memo.write_bytes(memo.read_bytes().replace(true_digest.encode(), other.encode()))
    assert cache.file_hash(happy) == true_digest


# --- 3. a read-only or full cache


def fail_cache_writes(monkeypatch, root: Path, code: int) -> None:
    """Writes under ``root`` fail with ``code``; other writes (the run's outputs) go through."""
    real = cache_module.atomic_write

    def write(path: Path, data: bytes) -> None:
        if Path(path).is_relative_to(root):
            raise OSError(code, os.strerror(code), str(path))
        real(path, data)

    monkeypatch.setattr(cache_module, "atomic_write", write)


def drop_results(cache: Path) -> None:
    for stage in ("prosody", "transcript"):
        entry(cache, stage).unlink()


def check_results_of_a_run_that_cannot_store(summary, row, caplog, words: str) -> None:
    assert summary.exit_code(strict=False) == 0 and summary.failed == 0
    assert row["error"] == "" and row["prosody_status"] == row["transcript_status"] == "ok"
    assert "call me back" in row["transcript"].lower()
    warnings = [r.getMessage() for r in caplog.records if words in r.getMessage()]
    assert len(warnings) == 1, caplog.text


def test_a_full_cache_still_gives_the_runs_results(
    clips, cache, cfg, tmp_path, monkeypatch, caplog
):
    drop_results(cache)
    fail_cache_writes(monkeypatch, cache, errno.ENOSPC)
    with caplog.at_level(logging.WARNING):
        summary, row = rerun(clips, cache, cfg, tmp_path / "out")
    check_results_of_a_run_that_cannot_store(summary, row, caplog, "is full")


@pytest.mark.skipif(MODES_IGNORED, reason="this user (root) writes into read-only folders")
def test_a_read_only_cache_still_gives_the_runs_results(clips, cache, cfg, tmp_path, caplog):
    drop_results(cache)
    folders = [cache, *(p for p in cache.rglob("*") if p.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
    try:
        with caplog.at_level(logging.WARNING):
            summary, row = rerun(clips, cache, cfg, tmp_path / "out")
    finally:
        for folder in folders:
            folder.chmod(0o755)
    check_results_of_a_run_that_cannot_store(summary, row, caplog, "is read-only")


@pytest.mark.parametrize(
    ("code", "words"), [(errno.ENOSPC, "is full"), (errno.EACCES, "read-only")]
)
def test_put_counts_what_it_cannot_store_and_warns_once(tmp_path, monkeypatch, caplog, code, words):
    cache = StageCache(tmp_path / "cache")
    cache.put("media", "d" * 32, ".json", b"{}")
    fail_cache_writes(monkeypatch, cache.root, code)
    with caplog.at_level(logging.WARNING):
        for key in ("e", "f", "0"):
            cache.put("media", key * 32, ".json", b"{}")
    assert cache.unstored == 3
    assert [r.getMessage() for r in caplog.records if words in r.getMessage()] != []
    assert len(caplog.records) == 1, caplog.text
    assert str(cache.root) in caplog.text
    assert cache.get("media", "d" * 32, ".json") == b"{}"  # what is there is still served


def test_check_cache_dir_creates_a_missing_folder_and_refuses_a_file(tmp_path):
    from textualize.cache import CacheError, check_cache_dir

    assert check_cache_dir(tmp_path / "new" / "cache") is None
    assert (tmp_path / "new" / "cache").is_dir()
    (tmp_path / "a_file").write_text("not a folder")
    for unusable in (tmp_path / "a_file", tmp_path / "a_file" / "cache"):
        with pytest.raises(CacheError, match=str(unusable)):
            check_cache_dir(unusable)


@pytest.mark.skipif(MODES_IGNORED, reason="this user (root) writes into read-only folders")
def test_check_cache_dir_warns_about_a_read_only_folder(tmp_path):
    from textualize.cache import check_cache_dir

    root = tmp_path / "cache"
    root.mkdir(mode=0o555)
    try:
        assert "read-only" in check_cache_dir(root)
    finally:
        root.chmod(0o755)
    assert list(root.iterdir()) == []


def test_check_cache_dir_warns_when_nothing_can_be_created_there(tmp_path, monkeypatch):
    """The read-only case as root would see it on a read-only mount (simulated: EROFS)."""
    from textualize.cache import check_cache_dir

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(cache_module.tempfile, "mkstemp", refuse)
    assert "read-only" in check_cache_dir(tmp_path)


# --- 4. permissions follow the umask


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    saved = os.umask(umask)
    try:
        atomic_write(tmp_path / "run.json", b"{}")
        cache = StageCache(tmp_path / "cache")
        cache.put("media", "a" * 32, ".json", b"{}")
    finally:
        os.umask(saved)
    assert stat.S_IMODE((tmp_path / "run.json").stat().st_mode) == mode
    assert stat.S_IMODE(cache.path("media", "a" * 32, ".json").stat().st_mode) == mode
