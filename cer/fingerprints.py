"""Content identities: of files, of JSON-like values, of model folders and of the toolkit itself.

One place for every digest that decides whether something computed earlier may be reused (the
extraction cache, run folders, study stages), so they all agree on what "the same" means.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MODEL_PREFIX_BYTES = 1 << 20  # bytes of each model file hashed for its identity (1 MiB)
_BLOCK = 1 << 20


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (first 16 hex digits), read in 1 MiB blocks."""
    hasher = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            hasher.update(block)
    return hasher.hexdigest()[:16]


def value_digest(value: Any) -> str:
    """SHA-256 (16 hex digits) of a JSON-like value, keys sorted."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_fingerprint(path: str | Path) -> str:
    """Short hash of a model's files (names, sizes, first MiB): its identity in cache keys,
    cheap even for multi-GB weights and independent of where the folder lies."""
    digest = hashlib.blake2b(digest_size=6)
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        digest.update(
            f"{file.relative_to(root) if root.is_dir() else ''}:{file.stat().st_size}".encode()
        )
        with open(file, "rb") as handle:
            digest.update(handle.read(MODEL_PREFIX_BYTES))
    return digest.hexdigest()


def model_identity(model: str | None) -> str | None:
    """A local model's name plus the fingerprint of its files (replaced weights change it); a
    hub name as given."""
    if model and Path(model).expanduser().exists():
        local = Path(model).expanduser()
        return f"{local.name}@{model_fingerprint(local)}"
    return model


def toolkit_version() -> str:
    """The installed version of this toolkit (``cer-textualize``), or ``unknown``."""
    from importlib import metadata

    try:
        return metadata.version("cer-textualize")
    except metadata.PackageNotFoundError:
        return "unknown"
