"""Audio and face encoders from the seed systems' released checkpoints (``hicmae:PATH``, ``vaemo:PATH``).

A value ``SYSTEM:PATH`` of ``audio_encoder`` or ``image_encoder`` names a local checkpoint file of
one seed system; any other value is a Hugging Face model (``encoders.AudioEncoder`` /
``ImageEncoder``). Each system is one module (``featurebaseline.hicmae``, ``featurebaseline.vaemo``)
with the same small interface: ``RELEASE``, ``load(path)``, ``audio_frames(model, audio)`` and
``face_frames(model, crops, times)``. The classes here give such a module the ``frames(...)``
methods of the Hugging Face encoders, with the same output layout (column 0: time in seconds from
the clip start) and the same ``StageCache``; a cache key holds the system, the checkpoint file's
content digest and the digest of the system's module and of the shared layers, log-mel and windowing
modules (``SHARED_CODE``), so another file or changed code never reads old features.
"""

from __future__ import annotations

import hashlib
import importlib
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from featurebaseline.config import RELEASED_SYSTEMS
from featurebaseline.encoders import (
    AudioEncoder,
    EncoderUnavailable,
    ImageEncoder,
)
from textualize.cache import StageCache

if TYPE_CHECKING:
    from textualize.records import Clip

#: Prefix of a config value -> the module that builds and runs that system's encoder.
SYSTEMS = {system: f"featurebaseline.{system}" for system in RELEASED_SYSTEMS}
#: Modules every system's features depend on besides its own: part of each cache key.
SHARED_CODE = (
    "featurebaseline.vit_blocks",
    "featurebaseline.log_mel",
    "featurebaseline.av_windows",
)


def released_spec(value: str | None) -> tuple[str, str] | None:
    """``(system, path)`` for ``hicmae:PATH`` / ``vaemo:PATH``; None for any other value."""
    if not value or ":" not in value:
        return None
    system, path = value.split(":", 1)
    return (system.lower(), path) if system.lower() in SYSTEMS else None


def system_module(system: str):
    """The module of ``system`` (imported now), or ``EncoderUnavailable`` if it is not installed."""
    name = SYSTEMS[system]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise
        raise EncoderUnavailable(
            f"{system}: encoder not available in this installation (no module {name}); "
            f"use {', '.join(f'{s}:PATH' for s in SYSTEMS if s != system)} or a Hugging Face model"
        ) from err


def check_released(*values: str | None) -> None:
    """Fail now, before any feature is assembled, for a released checkpoint that is not there:
    ``EncoderUnavailable`` names the file and where the release comes from."""
    from featurebaseline.checkpoints import checkpoint_file

    for value in values:
        spec = released_spec(value)
        if spec:
            checkpoint_file(Path(spec[1]).expanduser(), system_module(spec[0]).RELEASE)


def code_digest(module) -> str:
    """Digest of a system's module and of the shared modules that prepare and pool its inputs."""
    files = [module.__file__, *(importlib.import_module(m).__file__ for m in SHARED_CODE)]
    return hashlib.sha256(b"".join(Path(f).read_bytes() for f in files)).hexdigest()[:16]


class ReleasedModel:
    """One system's checkpoint: checked for existence and digested now, loaded on first use."""

    def __init__(self, value: str):
        system, path = released_spec(value) or (None, None)
        if system is None:
            raise ValueError(f"not a released-checkpoint value: {value!r}")
        self.system, self.path = system, Path(path).expanduser()
        self.module = system_module(system)
        from featurebaseline.checkpoints import checkpoint_digest

        self.identity = {
            "system": self.module.RELEASE.system,
            "checkpoint": checkpoint_digest(self.path, self.module.RELEASE)[:16],
            "code": code_digest(self.module),
            "torch": metadata.version("torch"),
        }
        self._model = None

    @property
    def model(self):
        if self._model is None:
            self._model = self.module.load(self.path)
        return self._model


class ReleasedAudioEncoder(AudioEncoder):
    """``AudioEncoder.frames`` from a released checkpoint: (frames, 1 + hidden) per clip span."""

    def __init__(self, value: str, cache: StageCache):
        self.released, self.cache = ReleasedModel(value), cache
        self.key_config = {**self.released.identity, "input": "16 kHz mono"}

    def _table(self, clip: Clip) -> np.ndarray:
        from textualize.media import decode_audio

        audio = decode_audio(clip.path, clip.start, clip.end)
        return np.asarray(self.released.module.audio_frames(self.released.model, audio), np.float32)


class ReleasedImageEncoder(ImageEncoder):
    """``ImageEncoder.frames`` from a released checkpoint: the face stage's crops, with times.

    Crops are cut from the clip's frames with the cached face boxes exactly as for any image
    model (``ImageEncoder._crops``); the system's ``face_frames`` sees all crops of a clip at
    once, since its video encoder takes runs of frames, not single images.
    """

    def __init__(self, value: str, cache: StageCache):
        self.released, self.cache = ReleasedModel(value), cache
        self.key_config = {**self.released.identity, "crop": "box"}
        self._width: int | None = None

    def _table(self, clip: Clip, boxes: np.ndarray, fps: float) -> np.ndarray:
        times, crops = self._crops(clip, boxes, fps)
        if not crops:
            return np.zeros((0, 1 + self.width), np.float32)
        table = self.released.module.face_frames(self.released.model, crops, times)
        return np.asarray(table, np.float32)

    @property
    def width(self) -> int:
        """Embedding size, from the system's own answer for no crops (else one blank crop)."""
        if self._width is None:
            module, model = self.released.module, self.released.model
            empty = np.asarray(module.face_frames(model, [], []))
            if empty.ndim != 2 or empty.shape[1] < 2:
                empty = np.asarray(
                    module.face_frames(model, [np.zeros((32, 32, 3), np.uint8)], [0.0])
                )
            self._width = int(empty.shape[1]) - 1
        return self._width


def audio_encoder(value: str, cache: StageCache) -> AudioEncoder | ReleasedAudioEncoder:
    """The speech encoder an ``audio_encoder`` value names (released checkpoint, HF model, or
    ``random:wav2vec2[:SEED]``: random weights, built in the cache, see ``random_encoders``)."""
    from featurebaseline.random_encoders import RandomEncoderError, random_encoder_folder

    if released_spec(value):
        return ReleasedAudioEncoder(value, cache)
    if value.lower().startswith("random:"):
        try:
            return AudioEncoder(str(random_encoder_folder(value, cache.root)), cache)
        except RandomEncoderError as err:
            raise EncoderUnavailable(f"audio encoder: {err}") from err
    return AudioEncoder(value, cache)


def image_encoder(value: str, cache: StageCache) -> ImageEncoder | ReleasedImageEncoder:
    """The face-crop encoder an ``image_encoder`` value names (released checkpoint, HF model or
    ``torchvision:NAME``)."""
    if released_spec(value):
        return ReleasedImageEncoder(value, cache)
    if value.lower().startswith("random:"):
        raise EncoderUnavailable(
            f"image encoder {value!r}: random weights exist only for audio_encoder "
            "(random:wav2vec2)"
        )
    return ImageEncoder(value, cache)
