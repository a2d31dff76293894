"""Randomly initialised speech encoders: the wav2vec2-style arm where no pretrained weights exist.

``random:wav2vec2`` (or ``random:wav2vec2:SEED``) as ``audio_encoder`` builds a small
``transformers.Wav2Vec2Model`` with seeded random weights, writes it with ``save_pretrained`` to
``<encoder cache>/random_encoders/`` and runs it like any local model (``encoders.AudioEncoder``).
The same seed gives the same weights, so a rerun reads its features back from the cache.

Such an arm tests that the wav2vec2 route runs end to end; its scores are **not a result**. The
mark cannot get lost: the ``random:`` value itself is in every config that names it (the run
folder's ``config.yaml``, the arm's ``arm.json``, the study file), the folder's ``config.json``
carries ``cer_random_weights``, and ``random_weight_encoders`` finds either, so the study report
marks the arm ("random weights: not a result") whichever it reads. Light to import: torch and
transformers are imported when a model is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PREFIX = "random:"
#: Key of the marker that ``config.json`` of a random-weights folder carries.
MARKER = "cer_random_weights"
NOTE = "random weights: not a result"
DEFAULT_SEED = 0
#: Small wav2vec2 sizes: the convolutional front end and 2 transformer layers of width 64, so
#: 1,000 clips encode in about a minute on 2 CPU cores (wav2vec2-base: 512 channels, 12 x 768).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "wav2vec2": {
        "conv_dim": (32, 32, 32, 32, 32, 32, 32),
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
        "vocab_size": 32,
    },
}
#: Config fields of a baseline run that name an encoder.
ENCODER_FIELDS = ("audio_encoder", "image_encoder", "text_encoder")


class RandomEncoderError(ValueError):
    """A ``random:`` value names an architecture or seed this module cannot build."""


def random_spec(value: str | None) -> tuple[str, int] | None:
    """``(architecture, seed)`` for ``random:ARCH[:SEED]``; None for any other value."""
    if not value or not str(value).lower().startswith(PREFIX):
        return None
    arch, _, seed = str(value)[len(PREFIX) :].partition(":")
    arch = arch.lower()
    if arch not in ARCHITECTURES:
        raise RandomEncoderError(
            f"{value!r}: no random architecture {arch!r}; use "
            + ", ".join(f"{PREFIX}{name}[:SEED]" for name in ARCHITECTURES)
        )
    try:
        return arch, int(seed) if seed else DEFAULT_SEED
    except ValueError as err:
        raise RandomEncoderError(f"{value!r}: the seed after {arch}: must be an integer") from err


def _sizes_digest(arch: str) -> str:
    return hashlib.sha256(json.dumps(ARCHITECTURES[arch], sort_keys=True).encode()).hexdigest()[:8]


def write_random_encoder(folder: str | Path, arch: str = "wav2vec2", seed: int = DEFAULT_SEED):
    """Write a randomly initialised ``arch`` model to ``folder`` (``save_pretrained``, seeded,
    deterministic); its ``config.json`` says it is random. Returns ``folder``."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    if arch not in ARCHITECTURES:
        raise RandomEncoderError(f"no random architecture {arch!r}; use {', '.join(ARCHITECTURES)}")
    folder = Path(folder)
    marker = {"architecture": arch, "seed": seed, "note": NOTE}
    config = Wav2Vec2Config(**ARCHITECTURES[arch], **{MARKER: marker})
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = Wav2Vec2Model(config).eval()
    finally:
        torch.random.set_rng_state(generator_state)  # building must not move the caller's seed
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    return folder


def random_encoder_folder(value: str, root: str | Path) -> Path:
    """The model folder of ``random:ARCH[:SEED]`` under ``root``, built once (atomically)."""
    arch, seed = random_spec(value) or (None, None)
    if arch is None:
        raise RandomEncoderError(f"not a random-encoder value: {value!r}")
    folder = Path(root) / "random_encoders" / f"{arch}-seed{seed}-{_sizes_digest(arch)}"
    if (folder / "config.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        write_random_encoder(staging, arch, seed)
        try:
            os.replace(staging, folder)
        except OSError:  # another process built it first: same seed, same weights
            if not (folder / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def folder_marker(path: str | Path) -> dict[str, Any] | None:
    """The ``cer_random_weights`` block of a local model folder's ``config.json``, if any."""
    config = Path(path).expanduser() / "config.json"
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get(MARKER)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, dict) else None


def random_weight_encoders(config: Mapping[str, Any] | None) -> dict[str, str]:
    """Encoder field -> value for every encoder of a run config with random weights: a
    ``random:`` value, or a local folder whose ``config.json`` carries the marker."""
    found = {}
    for name in ENCODER_FIELDS:
        value = (config or {}).get(name)
        if not value or not isinstance(value, str):
            continue
        if value.lower().startswith(PREFIX) or folder_marker(value) is not None:
            found[name] = value
    return found
