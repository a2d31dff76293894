"""Run control of `cer textualize`: one output set per run, locked output, clear up-front checks,
clean stop on Ctrl-C / SIGTERM, a dead worker costs one clip, quiet `| head`.

Extraction runs for real (openSMILE prosody on short tones; no face, no Whisper). Where a run must
be slow or a worker must die, a driver script in tmp_path patches the prosody stage of
``textualize.extract`` in every process (spawned workers re-run it as their main module) and then
calls ``cer.cli.main``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import soundfile as sf
from conftest import REPO

from cer.cli import main

pytestmark = pytest.mark.slow

OPTIONS = ("--face", "off", "--transcript", "false", "--progress", "false")

DRIVER = """\
import multiprocessing, os, signal, sys, time
from textualize import extract

SLEEP, CRASH, MARKS = {sleep!r}, {crash!r}, {marks!r}
_prosody = extract._ClipRun.prosody


def prosody(self):
    if not isinstance(self.models, extract._CacheOnlyModels):  # computing, not reading the cache
        open(os.path.join(MARKS, self.clip.clip_id), "w").close()
        if self.clip.clip_id == CRASH:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(SLEEP)
    return _prosody(self)


extract._ClipRun.prosody = prosody
if {slow_write!r}:  # pause after the prompts are written, before run.json
    from textualize.textualizer import Textualizer

    _save = Textualizer.save

    def save(self, path):
        _save(self, path)
        open(os.path.join(MARKS, "writing"), "w").close()
        time.sleep(60)

    Textualizer.save = save

if __name__ == "__main__":
    from cer.cli import main

    sys.exit(main(sys.argv[1:]))
"""


def tones(folder: Path, count: int) -> Path:
    folder.mkdir()
    t = np.arange(8000) / 16_000
    for i in range(count):
        sf.write(folder / f"c{i}.wav", 0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t), 16_000)
    return folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return tones(tmp_path_factory.mktemp("run-control") / "clips", 3)


@pytest.fixture(scope="module")
def cache(clips) -> Path:
    """A cache holding every stage of ``clips``: later runs only render."""
    root = clips.parent / "cache"
    assert main(["textualize", str(clips), str(clips.parent / "warm"), *OPTIONS,
                 "--cache-dir", str(root), "--workers", "1"]) == 0  # fmt: skip
    return root


def cer(capsys, *args) -> tuple[int, str]:
    """``cer textualize ARGS`` in this process: exit code and stderr."""
    try:
        code = main(["textualize", *map(str, args)])
    except SystemExit as err:
        code = err.code
    return code, capsys.readouterr().err


def driver(tmp_path: Path, sleep=0.0, crash=None, slow_write=False) -> tuple[Path, Path]:
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    path = tmp_path / "driver.py"
    path.write_text(
        DRIVER.format(sleep=sleep, crash=crash, marks=str(marks), slow_write=slow_write)
    )
    return path, marks


def start(*args, script: Path | None = None) -> subprocess.Popen:
    prefix = [str(script)] if script else ["-m", "cer"]
    return subprocess.Popen(
        [sys.executable, *prefix, "textualize", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a shell job would be
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"hung: no exit within {timeout}s")
    return proc.returncode, err


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.05)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_set(output: Path) -> str:
    """The files of ``output`` are those its run.json describes; returns their template."""
    run = json.loads((output / "run.json").read_text())
    assert run["outputs"], "run.json lists the files of its set"
    for name, digest in run["outputs"].items():
        assert sha256(output / name) == digest, f"{name} is not the file run.json describes"
    template = run["config"]["template"]
    jsonl = [json.loads(line) for line in (output / "prompts.jsonl").read_text().splitlines()]
    assert set(pd.read_parquet(output / "prompts.parquet")["template"]) == {template}
    assert {r["template"] for r in jsonl} == {template}
    return template


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------ 1. one set per run, locked


def test_run_json_describes_the_files_beside_it(tmp_path, capsys, clips, cache):
    code, err = cer(capsys, clips, tmp_path / "out", *OPTIONS, "--cache-dir", cache)
    assert code == 0, err
    assert assert_one_set(tmp_path / "out") == "paper"
    assert leftovers(tmp_path) == []  # no lock file, no staging folder


def test_the_output_folder_and_its_files_follow_the_umask(tmp_path, capsys, clips, cache):
    import stat

    saved = os.umask(0o022)
    try:
        code, err = cer(capsys, clips, tmp_path / "out", *OPTIONS, "--cache-dir", cache)
    finally:
        os.umask(saved)
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    for name in ("prompts.parquet", "prompts.jsonl", "failures.jsonl", "run.json"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o644, name


def test_a_second_run_on_a_locked_output_stops_at_once(tmp_path, capsys, clips):
    script, marks = driver(tmp_path, sleep=1.0)
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = start(clips, out, *OPTIONS, "--cache-dir", cache, "--workers", "1", script=script)
    wait_for(lambda: any(marks.iterdir()))  # extracting
    started = time.perf_counter()
    code, err = cer(capsys, clips, out, *OPTIONS, "--cache-dir", cache, "--template", "instruction")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"pid {first.pid}" in err and time.perf_counter() - started < 15
    code, err = finish(first)
    assert code == 0 and "Traceback" not in err, err
    assert assert_one_set(out) == "paper"


def test_two_runs_started_together_leave_one_whole_set(tmp_path, clips, cache):
    out = tmp_path / "out"
    for _ in range(2):
        runs = [
            start(clips, out, *OPTIONS, "--cache-dir", cache, "--template", template)
            for template in ("paper", "instruction")
        ]
        results = [finish(proc) for proc in runs]
        for code, err in results:
            assert "Traceback" not in err, err
            assert code == 0 or (code == 2 and "in use" in err and len(err.splitlines()) == 1)
        assert 0 in {code for code, _ in results}
        assert assert_one_set(out) in {"paper", "instruction"}
    assert leftovers(tmp_path) == []


def test_a_rerender_killed_while_writing_keeps_the_previous_set(tmp_path, capsys, clips, cache):
    out = tmp_path / "out"
    assert cer(capsys, clips, out, *OPTIONS, "--cache-dir", cache)[0] == 0
    script, marks = driver(tmp_path, slow_write=True)
    proc = start(clips, out, *OPTIONS, "--cache-dir", cache, "--template", "instruction",
                 script=script)  # fmt: skip
    wait_for(lambda: (marks / "writing").exists())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert assert_one_set(out) == "paper"
    code, err = cer(capsys, clips, out, *OPTIONS, "--cache-dir", cache, "--template", "instruction")
    assert code == 0, err
    assert assert_one_set(out) == "instruction" and leftovers(tmp_path) == []


def test_a_full_disk_keeps_the_previous_set(tmp_path, capsys, clips, cache, monkeypatch):
    out = tmp_path / "out"
    assert cer(capsys, clips, out, *OPTIONS, "--cache-dir", cache)[0] == 0

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    code, err = cer(capsys, clips, out, *OPTIONS, "--cache-dir", cache, "--template", "instruction")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "No space left" in err, err
    monkeypatch.undo()
    assert assert_one_set(out) == "paper" and leftovers(tmp_path) == []


# ------------------------------------------------------------------ 2. and 3. checks up front


def test_output_that_is_a_file_or_inside_the_source_is_refused(tmp_path, capsys, clips, cache):
    (tmp_path / "file").write_text("keep me")
    code, err = cer(capsys, clips, tmp_path / "file", *OPTIONS, "--cache-dir", cache)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is a file" in err, err
    assert (tmp_path / "file").read_text() == "keep me"
    code, err = cer(capsys, clips, clips / "out", *OPTIONS, "--cache-dir", cache)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "inside" in err, err
    assert not (clips / "out").exists()


def test_a_folder_holding_other_files_is_not_replaced(tmp_path, capsys, clips, cache):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.md").write_text("mine")
    code, err = cer(capsys, clips, tmp_path / "out", *OPTIONS, "--cache-dir", cache)
    assert code == 2 and "notes.md" in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "out" / "notes.md").read_text() == "mine"


@pytest.mark.parametrize(
    "problem",
    [("--labels", "labels.csv"), ("--template", "no-such-template"), ("source", "missing")],
    ids=["labels", "template", "source"],
)
def test_a_failed_input_check_creates_no_output_folder(tmp_path, capsys, clips, cache, problem):
    (tmp_path / "labels.csv").write_text("clip_id,label\nnobody,happy\n")
    flag, value = problem
    source = tmp_path / value if flag == "source" else clips
    extra = [] if flag == "source" else [flag, tmp_path / value if flag == "--labels" else value]
    code, err = cer(capsys, source, tmp_path / "a" / "out", *OPTIONS, "--cache-dir", cache, *extra)
    assert code == 2 and "Traceback" not in err, err
    assert not (tmp_path / "a").exists()


def test_an_unwritable_output_is_one_line(tmp_path, capsys, clips, cache):
    if os.geteuid() == 0:  # root writes through permissions: use a file system that refuses
        out = Path("/proc/cer-textualize-out")
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        out = tmp_path / "ro" / "out"
    code, err = cer(capsys, clips, out, *OPTIONS, "--cache-dir", cache)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not writable" in err, err


def test_a_cache_dir_that_is_a_file_is_one_line(tmp_path, capsys, clips):
    (tmp_path / "cache").write_text("")
    code, err = cer(capsys, clips, tmp_path / "out", *OPTIONS, "--cache-dir", tmp_path / "cache")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_a_read_only_cache_is_a_warning(tmp_path, capsys, clips, cache, monkeypatch, caplog):
    from textualize import cache as cache_module

    monkeypatch.setattr(
        cache_module, "check_cache_dir", lambda root: f"cache {root} is read-only", raising=False
    )
    code, err = cer(capsys, clips, tmp_path / "out", *OPTIONS, "--cache-dir", cache)
    assert code == 0, err
    assert [r.message for r in caplog.records] == [f"cache {cache} is read-only"]


# ------------------------------------------------------------------ 4. and 5. workers


def workers_of(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return psutil.wait_procs(processes, timeout=5)[1]


@pytest.mark.parametrize(
    ("sig", "code", "to_group"),
    [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)],
    ids=["ctrl-c", "sigterm"],
)
def test_a_stopped_run_stops_every_worker_and_resumes(tmp_path, sig, code, to_group):
    clips = tones(tmp_path / "clips", 4)
    script, marks = driver(tmp_path, sleep=2.0)
    args = (clips, tmp_path / "out", *OPTIONS, "--cache-dir", tmp_path / "cache", "--workers", "2")
    proc = start(*args, script=script)
    wait_for(lambda: len(list(marks.iterdir())) >= 2)  # both workers extracting
    workers = workers_of(proc.pid)
    (os.killpg if to_group else os.kill)(proc.pid, sig)
    returncode, err = finish(proc, timeout=30)
    left = alive(workers)
    for p in left:
        p.kill()
    assert returncode == code and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and "same command" in err, err
    assert left == [], f"workers left running: {left}"
    assert not (tmp_path / "out").exists()
    if sig == signal.SIGINT:
        returncode, err = finish(start(*args))
        assert returncode == 0 and "4 clips" in err, err
        assert assert_one_set(tmp_path / "out") == "paper"


def test_a_worker_that_dies_costs_only_its_clip(tmp_path):
    clips = tones(tmp_path / "clips", 4)
    script, _ = driver(tmp_path, crash="c1")
    proc = start(clips, tmp_path / "out", *OPTIONS, "--cache-dir", tmp_path / "cache",
                 "--workers", "2", script=script)  # fmt: skip
    code, err = finish(proc, timeout=120)
    assert code == 1 and "Traceback" not in err, err
    rows = pd.read_parquet(tmp_path / "out" / "prompts.parquet").set_index("clip_id")
    assert len(rows) == 4
    assert "worker process died (signal 9)" in rows.loc["c1", "error"]
    assert (rows.drop(index="c1")["error"] == "").all()
    assert (rows.drop(index="c1")["prosody_status"] == "ok").all()


# ------------------------------------------------------------------ 6. quiet pipes


@pytest.mark.parametrize(
    "command",
    [["--help"], ["textualize", "--help"], ["data", "card", "meld"]],
    ids=["cer", "textualize", "card"],
)
def test_output_into_a_closed_pipe_is_quiet(command):
    read, write = os.pipe()
    os.close(read)  # `| head -1` that has already exited
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cer", *command],
            check=False,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=REPO,
        )
    finally:
        os.close(write)
    assert result.returncode in (0, 141) and result.stderr == "", result.stderr
