"""Per-clip, per-stage cache keyed by content hash + time span + stage configuration + backend version.

Each entry is one file written atomically (temporary file, fsync, rename), so a run killed at
any instant leaves either a complete entry or none: re-running resumes from what is there.
Entries live at ``<root>/<stage>/<key[:2]>/<key><suffix>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from textualize.media import content_hash


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


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StageCache:
    """A folder of cached stage results. Safe to share between processes on one file system."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, stage: str, key: str, suffix: str) -> Path:
        return self.root / stage / key[:2] / f"{key}{suffix}"

    def get(self, stage: str, key: str, suffix: str) -> bytes | None:
        try:
            return self.path(stage, key, suffix).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, stage: str, key: str, suffix: str, data: bytes) -> None:
        atomic_write(self.path(stage, key, suffix), data)

    def file_hash(self, path: str | Path) -> str:
        """Content hash of a file, remembered by (path, size, mtime) so reruns do not re-read it."""
        stat = Path(path).stat()
        ident = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        key = hashlib.sha256(ident.encode()).hexdigest()[:32]
        cached = self.get("hash", key, ".txt")
        if cached is not None:
            return cached.decode()
        digest = content_hash(path)
        self.put("hash", key, ".txt", digest.encode())
        return digest
