"""The output folder of a run: checked before any work, locked while the run lasts, replaced whole.

A run writes its files into a staging folder beside OUTPUT (``.NAME.partial-*``) and swaps it in
with two renames, so OUTPUT holds one whole set: the previous one or the new one, never a mix.
A run killed at any instant (or stopped by a full disk) leaves the previous set; the next run on
OUTPUT removes the leftovers and puts the previous set back if a kill fell between the two
renames. ``run.json`` records the SHA-256 of every other file of its set.

The lock is a file beside OUTPUT (``.NAME.lock``, ``fcntl.flock``) held from before extraction
until the swap. A second run on the same OUTPUT does not wait: it stops at once with the pid of
the run that holds it, since two runs writing one folder is a mistake to report, not to queue.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from textualize.cache import current_umask

RUN_FILE = "run.json"
#: Files of an output folder written before run.json listed its set (older releases).
OLDER_OUTPUTS = (
    "prompts.parquet",
    "prompts.jsonl",
    "failures.jsonl",
    "textualizer.json",
    ".prompts.parquet.tmp",
)


class OutputError(RuntimeError):
    """OUTPUT cannot take this run's outputs: a file, inside the source, in use, not writable."""


def check_output(output: Path, source: Path, cache_dir: Path) -> None:
    """Fail before any work when OUTPUT cannot take this run's outputs."""
    out = output.resolve()
    if output.exists() and not output.is_dir():
        raise OutputError(f"output {output} is a file: give a folder")
    if source.is_dir() and out.is_relative_to(source.resolve()):
        raise OutputError(
            f"output {output} is inside the source folder {source}: the next run would read the "
            "outputs as clips; choose a folder outside it"
        )
    if cache_dir.resolve().is_relative_to(out):
        raise OutputError(
            f"cache folder {cache_dir} is inside the output {output}, which every run replaces: "
            "choose a cache folder outside it"
        )
    if out.is_dir() and os.path.ismount(out):
        raise OutputError(f"output {output} is a mount point: give a folder inside it")
    foreign = _foreign_entries(out)
    if foreign:
        raise OutputError(
            f"output {output} holds {', '.join(foreign[:3])}, which cer textualize did not write "
            "and a run replaces the whole folder: choose another folder or move them out"
        )
    folder = out.parent
    while not folder.exists():
        folder = folder.parent
    for place in (folder, out) if out.is_dir() else (folder,):
        try:
            tempfile.TemporaryFile(dir=place).close()
        except OSError as err:
            raise OutputError(
                f"output {output} is not writable ({place}: {err.strerror or err})"
            ) from err


def _foreign_entries(out: Path) -> list[str]:
    """Names in an existing OUTPUT that no run of cer textualize wrote."""
    if not out.is_dir():
        return []
    ours = {RUN_FILE, *OLDER_OUTPUTS}
    try:
        ours |= set(json.loads((out / RUN_FILE).read_text()).get("outputs", {}))
    except (OSError, ValueError, AttributeError):
        pass
    names = (p.name for p in out.iterdir())
    return sorted(n for n in names if n not in ours and not n.startswith(".tmp-"))


@contextmanager
def locked(output: Path) -> Iterator[None]:
    """Hold OUTPUT's lock for the block; OutputError at once when another run holds it.

    The holder removes the lock file when done; a run that locked a file removed meanwhile
    locks the new one instead, so two runs never both hold OUTPUT.
    """
    output = output.resolve()  # a symlinked OUTPUT: its target is locked and replaced
    lock = output.parent / f".{output.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(
                f"output {output} is in use by another cer textualize run (pid {holder}): "
                "wait for it to finish or choose another folder"
            ) from None
        if _same_file(fd, lock):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _clear_leftovers(output)
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _previous(output: Path) -> Path:
    return output.parent / f".{output.name}.previous"


def _clear_leftovers(output: Path) -> None:
    """Remove what killed runs left beside OUTPUT; put back a set killed mid-swap. Under the lock."""
    previous = _previous(output)
    if previous.exists():
        if output.exists():
            shutil.rmtree(previous)
        else:
            os.rename(previous, output)
    for partial in output.parent.glob(f".{glob.escape(output.name)}.partial-*"):
        shutil.rmtree(partial, ignore_errors=True)


@contextmanager
def replaced_whole(output: Path) -> Iterator[Path]:
    """A staging folder for the run's files, swapped in for OUTPUT when the block succeeds.

    On any failure the staging folder is removed and OUTPUT keeps its previous set; a failure
    to write (a full disk) becomes an OutputError. Call under ``locked(output)``.
    """
    output = output.resolve()
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    staging.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700: others could not read OUTPUT
    try:
        yield staging
        for path in staging.iterdir():
            _fsync(path)
        _fsync(staging)
        _swap(staging, output)
    except OSError as err:
        raise OutputError(
            f"could not write the outputs to {output} ({err.strerror or err}); "
            "its previous outputs are unchanged"
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, output: Path) -> None:
    previous = _previous(output)
    stops = {signal.SIGINT, signal.SIGTERM}
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # a stop waits for both renames
    try:
        moved = output.exists()
        if moved:
            os.rename(output, previous)
        try:
            os.rename(staging, output)
        except OSError:
            if moved:
                os.rename(previous, output)
            raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    _fsync(output.parent)
    shutil.rmtree(previous, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file in ``folder``, by name: what run.json says its set holds."""
    out = {}
    for path in sorted(folder.iterdir()):
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        out[path.name] = sha.hexdigest()
    return out
