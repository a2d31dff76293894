"""Per-clip, per-stage cache keyed by content hash + time span + stage configuration + backend version.

Each entry is one file written atomically (temporary file, fsync, rename), so a run killed at
any instant leaves either a complete entry or none: re-running resumes from what is there.
Entries live at ``<root>/<stage>/<key[:2]>/<key><suffix>`` and open with a one-line header::

    cer-cache-1 <stage>/<key><suffix> <sha256 of the payload>\\n<payload>

An entry whose header does not match its path or its payload (truncated, edited by hand, copied
to another key, or written by a version before the header existed) counts as absent: it is
removed with a warning naming it, and the stage runs again. A cache that cannot be written
(read-only, full) never fails a run: results are returned unstored, with one warning.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from textualize.media import content_hash

log = logging.getLogger(__name__)

MAGIC = b"cer-cache-1"
_DIGEST = re.compile(r"[0-9a-f]+")
_KINDS = {
    errno.EACCES: "read-only",
    errno.EPERM: "read-only",
    errno.EROFS: "read-only",
    errno.ENOSPC: "full",
    errno.EDQUOT: "full",
}
_said: set[str] = set()  # unwritable-cache warnings already given in this process


class CacheError(RuntimeError):
    """The cache folder cannot be used at all."""


def stage_key(
    stage: str, clip_hash: str, span: tuple[float | None, float | None], config: Any, version: str
) -> str:
    """Stable key of one stage's result for one clip span."""
    payload = json.dumps(
        {
            "stage": stage,
            "hash": clip_hash,
            "span": list(span),
            "config": config,
            "version": version,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _umask_at_import() -> int:
    mask = os.umask(0)  # the only portable read changes it; done once, before any thread runs
    os.umask(mask)
    return mask


_UMASK = _umask_at_import()


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells it; else the one at import."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once, with the mode a plain ``open`` would give it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # ".tmp", not the entry's suffix: a run killed mid-write leaves nothing that globs as an entry
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600: others could not read it
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _unwritable(root: Path, err: OSError) -> str:
    kind = _KINDS.get(err.errno)
    state = f"is {kind}" if kind else f"cannot be written ({err.strerror or err})"
    return f"cache {root} {state}: results of this run are not stored"


def check_cache_dir(root: str | Path) -> str | None:
    """Create the cache folder if missing; a warning if nothing can be stored there, else None.

    Raises CacheError when ``root`` cannot be a folder (it is a file, or cannot be created).
    """
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CacheError(
            f"cache folder {root} cannot be used ({err.strerror or err}): "
            "pass --cache-dir with a folder you can write"
        ) from err
    try:
        fd, probe = tempfile.mkstemp(dir=root, prefix=".probe-")
    except OSError as err:
        _said.add(message := _unwritable(root, err))  # the caller says it; caches do not repeat it
        return message
    os.close(fd)
    os.unlink(probe)
    return None


class StageCache:
    """A folder of cached stage results. Safe to share between processes on one file system."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.unstored = 0  # entries this instance could not write
        self._digests: dict[str, str] = {}  # file identity -> content hash, seen by this instance

    def path(self, stage: str, key: str, suffix: str) -> Path:
        return self.root / stage / key[:2] / f"{key}{suffix}"

    @staticmethod
    def _header(stage: str, key: str, suffix: str, data: bytes) -> bytes:
        name = f"{stage}/{key}{suffix}".encode()
        return b"%s %s %s\n" % (MAGIC, name, hashlib.sha256(data).hexdigest().encode())

    def get(self, stage: str, key: str, suffix: str) -> bytes | None:
        """The payload stored for this key, or None when absent or when it does not verify."""
        path = self.path(stage, key, suffix)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.warning("cache entry %s cannot be read (%s): recomputing it", path, err)
            return None
        header, _, data = raw.partition(b"\n")
        if header + b"\n" == self._header(stage, key, suffix, data):
            return data
        log.warning(
            "cache entry %s does not verify (damaged, edited, moved, or from an older version): "
            "recomputing it",
            path,
        )
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only cache: put() will say so
        return None

    def put(self, stage: str, key: str, suffix: str, data: bytes) -> None:
        """Store ``data``; never raises for a cache that cannot be written.

        What is not stored is counted in ``unstored``; each kind of failure is warned about once
        per process (not at all when ``check_cache_dir`` already returned that warning).
        """
        try:
            atomic_write(
                self.path(stage, key, suffix), self._header(stage, key, suffix, data) + data
            )
        except OSError as err:
            self.unstored += 1
            message = _unwritable(self.root, err)
            if message not in _said:
                _said.add(message)
                log.warning(message)

    def file_hash(self, path: str | Path) -> str:
        """Content hash of a file, remembered by its identity so reruns do not re-read it.

        The identity is the resolved path, device, inode, size, mtime and ctime: ctime cannot be
        set back by a user, so a same-size rewrite whose mtime was restored is hashed again (git's
        index does the same). The memo stores the identity it was written for. A rewrite within
        one tick of the file system's clock is not seen.
        """
        ident, key, digest = self._memo(path)
        if digest is None:
            digest = content_hash(path)
            self.put("hash", key, ".txt", f"{ident}\n{digest}".encode())
            self._digests[ident] = digest
        return digest

    def known_hash(self, path: str | Path) -> str | None:
        """The content hash remembered for this file as it is now, or None; the file itself is
        not read.

        A clip without one has nothing in the cache under its current identity worth a serial
        look from the main process: the pipeline sends it straight to a worker.
        """
        return self._memo(path)[2]

    def _memo(self, path: str | Path) -> tuple[str, str, str | None]:
        """(identity, memo key, remembered digest or None) of the file at ``path``."""
        st = os.stat(path)
        ident = (
            f"{Path(path).resolve()}|{st.st_dev}|{st.st_ino}|{st.st_size}"
            f"|{st.st_mtime_ns}|{st.st_ctime_ns}"
        )
        key = hashlib.sha256(ident.encode()).hexdigest()[:32]
        if ident in self._digests:  # known_hash then file_hash: the memo is read once
            return ident, key, self._digests[ident]
        memo = self.get("hash", key, ".txt")
        if memo is not None:
            written_for, _, digest = memo.decode(errors="replace").rpartition("\n")
            if written_for == ident and _DIGEST.fullmatch(digest):
                self._digests[ident] = digest
                return ident, key, digest
        return ident, key, None
