"""Shared by the benchmark scripts: run a command as its own process and measure it."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_measured(cmd: list[str], cwd: Path = ROOT) -> tuple[float, float, str]:
    """Run ``cmd`` offline; (wall seconds, peak RSS of its process tree in MB, its stderr).

    Exit codes 0 and 1 (a run with failed clips) count as finished; any other raises.
    """
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()))
    reader.start()
    root, peak = psutil.Process(proc.pid), 0.0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.1)
    reader.join()
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{cmd[:4]} failed ({proc.returncode}): {''.join(stderr)[-2000:]}")
    return wall, peak, "".join(stderr)
