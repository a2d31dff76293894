"""The local engine: extraction in worker processes on this machine, models loaded once per worker.

One worker runs in this process. More run in a spawn pool that outlives its workers: a worker
that dies (killed, out of memory, a native crash) costs only the clip it was extracting. At most
one clip per worker is in flight, so when a worker dies the suspects are few: each is run again
alone in a fresh pool, and a clip whose worker dies while it runs alone is recorded as
unreadable, with the reason. The other clips go on in a new pool.

Workers start with SIGINT blocked, so Ctrl-C in a terminal reaches only the main process; any
exception there (KeyboardInterrupt, a SIGTERM turned into one, a consumer that stops reading)
kills the workers before it propagates. What they finished is already in the stage cache.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from textualize.cache import StageCache
from textualize.config import TextualizeConfig
from textualize.extract import (
    THREAD_VARIABLES,
    ExtractionPlan,
    Extractors,
    extract_clip,
    limit_threads,
)
from textualize.records import FAILED, MODALITIES, Clip, ClipDescriptors, ModalityStatus
from textualize.unit_cache import UnitStore
from textualize.units import UnitFeatures, make_units

# Worker-process state: built once by the pool initializer.
_WORKER: dict = {}


def _init_worker(cfg: TextualizeConfig, plan: ExtractionPlan, threads: int) -> None:
    limit_threads(threads)
    cache = StageCache(cfg.cache_dir)
    _WORKER.update(
        cfg=cfg, plan=plan, models=Extractors(cfg), cache=cache, units=UnitStore(cfg, plan, cache)
    )


def _work(clip: Clip) -> list[UnitFeatures]:
    desc = extract_clip(clip, _WORKER["cfg"], _WORKER["plan"], _WORKER["models"], _WORKER["cache"])
    return _WORKER["units"].units_of(desc)


def compute_units(
    clips: list[Clip], cfg: TextualizeConfig, plan: ExtractionPlan
) -> Iterator[list[UnitFeatures]]:
    """Units of every clip, in completion order; models load once per worker process."""
    workers = min(cfg.worker_count, len(clips)) or 1
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers == 1:
        yield from _in_this_process(clips, cfg, plan, threads)
        return
    todo: deque[Clip] = deque(clips)
    suspects: deque[Clip] = deque()  # in flight when a worker died
    while todo or suspects:
        if suspects:
            clip = suspects.popleft()
            with _pool(1, cfg, plan, threads) as pool:
                future = _submit(pool, clip, cfg)
                worker = _processes(pool)  # held now: a broken pool forgets its processes
                try:
                    yield future.result()
                except BrokenProcessPool:
                    yield _died(clip, worker, cfg)
            continue
        with _pool(workers, cfg, plan, threads) as pool:
            running: dict[Future, Clip] = {}
            try:
                while todo or running:
                    while todo and len(running) < workers:
                        future = _submit(pool, todo[0], cfg)  # may raise: clip stays in todo
                        running[future] = todo.popleft()
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in sorted(done, key=lambda f: f.exception() is not None):
                        units = future.result()
                        del running[future]
                        yield units
            except BrokenProcessPool:
                suspects.extend(running.values())


def _in_this_process(
    clips: list[Clip], cfg: TextualizeConfig, plan: ExtractionPlan, threads: int
) -> Iterator[list[UnitFeatures]]:
    # Put this process's thread settings back afterwards (a Ray started later, or the caller's
    # own models, would otherwise inherit them).
    saved = {var: os.environ.get(var) for var in THREAD_VARIABLES}
    torch_threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    try:
        _init_worker(cfg, plan, threads)
        for clip in clips:
            yield _work(clip)
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        if torch_threads is not None:
            sys.modules["torch"].set_num_threads(torch_threads)


@contextmanager
def _pool(
    workers: int, cfg: TextualizeConfig, plan: ExtractionPlan, threads: int
) -> Iterator[ProcessPoolExecutor]:
    """A spawn pool (no fork of a process holding model threads); its workers are killed, not
    awaited, when the block ends with an exception."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(cfg, plan, threads)
    )
    try:
        yield pool
    except BaseException:
        for process in _processes(pool):
            process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _processes(pool: ProcessPoolExecutor) -> list:
    """The pool's worker processes (Python has no public accessor before 3.14)."""
    return list((pool._processes or {}).values())


def _submit(pool: ProcessPoolExecutor, clip: Clip, cfg: TextualizeConfig) -> Future:
    """Submit one clip; a worker it starts inherits a blocked SIGINT, so Ctrl-C stays ours."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return pool.submit(_work, clip)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _died(clip: Clip, processes: list, cfg: TextualizeConfig) -> list[UnitFeatures]:
    """The units of a clip whose worker died while extracting it alone: unreadable, with why."""
    for process in processes:
        process.join(timeout=5)  # the exit code is known once the dead process is reaped
    code = next((p.exitcode for p in processes if p.exitcode), None)
    how = f"signal {-code}" if code and code < 0 else f"exit code {code}"
    reason = (
        f"worker process died ({how}) while extracting this clip "
        "(killed, out of memory or a crash in native code)"
    )
    status = {m: ModalityStatus(FAILED, reason) for m in MODALITIES}
    return make_units(ClipDescriptors(clip, error=reason, status=status), cfg.window, cfg.hop)
