"""Frozen pretrained encoders whose outputs become features, cached like the textualize stages.

Each encoder is a Hugging Face model named by local path or hub name (images: also a
torchvision model), run under ``no_grad`` and never trained: text (sentence vectors, token
states), speech frames, face crops. Outputs go into the same ``StageCache`` as the extraction
stages, keyed by what was encoded (the text itself, or the clip's content hash and span, and the
face boxes) plus the model identity, so a second run, or another arm on the same features,
encodes nothing again.
"""

from __future__ import annotations

import hashlib
import io
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from textualize.cache import StageCache, stage_key

if TYPE_CHECKING:
    from textualize.records import Clip


class EncoderUnavailable(RuntimeError):
    """A configured encoder cannot be loaded; the message says how to make it available."""


def resolve_model(name: str) -> str:
    """A local path for a ``bundled-*`` name (``cer.bundled``); other names pass unchanged."""
    from cer.bundled import ModelUnavailable, resolve_model_name

    try:
        return resolve_model_name(name)[0]
    except ModelUnavailable as err:
        raise EncoderUnavailable(
            f"{err}; for the text encoder: --text-encoder DIR (text_encoder: in YAML)"
        ) from err


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


def cached_table(cache: StageCache, stage: str, key: str, compute) -> np.ndarray:
    """The array stored under ``stage``/``key``, else ``compute()``, stored there for next time."""
    data = cache.get(stage, key, ".npy")
    if data is not None:
        return _array(data)
    table = compute()
    cache.put(stage, key, ".npy", _array_bytes(table))
    return table


def face_boxes(track) -> tuple[np.ndarray, str]:
    """The located faces of a track as rows (time, x, y, width, height), and their digest."""
    from textualize.records import FACE_BOX_COLUMNS

    faces = track.frames[track.frames["face"].astype(bool)].dropna(subset=FACE_BOX_COLUMNS)
    boxes = faces[["time", *FACE_BOX_COLUMNS]].to_numpy(np.float64)
    return boxes, hashlib.sha256(_array_bytes(boxes)).hexdigest()[:16]


def _load(model: str, kind: str):
    from transformers import AutoModel

    from cer.bundled import ModelUnavailable, hub_options

    option = {"text": "--text-encoder", "audio": "--audio-encoder"}.get(kind, "--image-encoder")
    try:
        options = hub_options(
            model, option=option, alternatives=("bundled-minilm",) if kind == "text" else ()
        )
    except ModelUnavailable as err:
        raise EncoderUnavailable(f"{kind} encoder: {err}") from err
    try:
        encoder = AutoModel.from_pretrained(model, **options)
    except OSError as err:
        raise EncoderUnavailable(
            f"cannot load {kind} encoder {model!r}: {err}. Give a local model folder (offline) "
            "or a hub name while online"
        ) from err
    encoder.eval()
    return encoder


class TextEncoder:
    """Sentence embeddings (mean-pooled) and per-token states of any Hugging Face text encoder.

    One model pass gives both: the token states of a text (``(tokens, hidden)``, special tokens
    included, padding excluded) and their mean. Both are cached per distinct text, under keys that
    differ only in ``pooling``, so asking for the other kind later encodes nothing again.
    """

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

    def _key(self, text: str, pooling: str = "mean") -> str:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        config = {**self.key_config, "pooling": pooling}
        return stage_key("text_encoder", digest, (None, None), config, "")

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), hidden) float32; cached texts are read back, the rest encoded in batches.

        Each distinct text is encoded once ("Yeah." is one of MELD's most frequent utterances).
        """
        found = self._lookup(texts, "mean")
        if not texts:
            return np.zeros((0, 0), np.float32)
        return np.stack([found[t] for t in texts]).astype(np.float32)

    def encode_tokens(self, texts: list[str]) -> list[np.ndarray]:
        """One ``(tokens, hidden)`` float32 array of token states per text, in order."""
        found = self._lookup(texts, "tokens")
        return [found[t].astype(np.float32) for t in texts]

    def _lookup(self, texts: list[str], pooling: str) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for text in dict.fromkeys(texts):
            data = self.cache.get("text_encoder", self._key(text, pooling), ".npy")
            if data is not None:
                found[text] = _array(data)
        todo = sorted({t for t in texts if t not in found}, key=len)  # little padding per batch
        for begin in range(0, len(todo), self.batch_size):
            chunk = todo[begin : begin + self.batch_size]
            for text, tokens in zip(chunk, self._run(chunk)):
                encoded = {"tokens": tokens, "mean": tokens.mean(0)}
                for kind, value in encoded.items():
                    self.cache.put(
                        "text_encoder", self._key(text, kind), ".npy", _array_bytes(value)
                    )
                found[text] = encoded[pooling]
        return found

    def _run(self, texts: list[str]) -> list[np.ndarray]:
        """The states of each text's real tokens (padding dropped)."""
        import torch
        from transformers import AutoTokenizer

        if self._encoder is None:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model)
            self._encoder = _load(self.model, "text")
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.no_grad():
            hidden = self._encoder(**batch).last_hidden_state.float().numpy()
        lengths = batch["attention_mask"].sum(1).tolist()
        if self._tokenizer.padding_side == "left":
            return [h[len(h) - n :] for h, n in zip(hidden, lengths)]
        return [h[:n] for h, n in zip(hidden, lengths)]


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
        return cached_table(self.cache, "audio_encoder", key, lambda: self._table(clip))

    def _table(self, clip: Clip) -> np.ndarray:
        from textualize.media import SAMPLE_RATE, decode_audio

        audio = decode_audio(clip.path, clip.start, clip.end)
        hidden = self._run(audio, SAMPLE_RATE) if len(audio) else np.zeros((0, 0), np.float32)
        duration = len(audio) / SAMPLE_RATE
        times = (np.arange(len(hidden)) + 0.5) * duration / max(len(hidden), 1)
        return np.column_stack([times, hidden]).astype(np.float32) if len(hidden) else hidden

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


class ImageEncoder:
    """Embeddings of the face crops that the face stage located: one per frame with a face.

    The clip is decoded again at the face stage's rate (``textualize.media.iter_frames``), each
    kept face is cut out with its cached box (``FACE_BOX_COLUMNS``), and a frozen image model
    embeds the crops: a Hugging Face model (local folder or name; ``pooler_output``, else the
    mean of its last hidden state) or ``torchvision:NAME`` (its downloaded default weights,
    classifier removed). Embeddings are cached per clip, keyed by the boxes and the model.
    """

    def __init__(self, model: str, cache: StageCache, batch_size: int = 32):
        self.model, self.cache, self.batch_size = model, cache, batch_size
        self.key_config = {"model": _identity(model), "crop": "box", "version": _versions()}
        self._encoder = self._processor = None
        self._width: int | None = None

    def frames(self, clip: Clip, clip_hash: str, track, fps: float) -> np.ndarray:
        """(faces, 1 + hidden): column 0 is the frame time in seconds from the clip start.

        A track without boxes (cached by an older face stage, or an imported table) gives no rows.
        """
        if not track.has_boxes:
            return np.zeros((0, 1 + self.width), np.float32)
        boxes, digest = face_boxes(track)
        config = {**self.key_config, "fps": fps}
        key = stage_key("image_encoder", clip_hash, (clip.start, clip.end), config, digest)
        return cached_table(self.cache, "image_encoder", key, lambda: self._table(clip, boxes, fps))

    def _table(self, clip: Clip, boxes: np.ndarray, fps: float) -> np.ndarray:
        times, crops = self._crops(clip, boxes, fps)
        if not crops:
            return np.zeros((0, 1 + self.width), np.float32)
        batches = range(0, len(crops), self.batch_size)
        hidden = np.concatenate([self._run(crops[b : b + self.batch_size]) for b in batches])
        return np.column_stack([times, hidden]).astype(np.float32)

    @property
    def width(self) -> int:
        """Embedding size (the model is run once on a blank crop to learn it)."""
        if self._width is None:
            self._width = int(self._run([np.zeros((32, 32, 3), np.uint8)]).shape[1])
        return self._width

    @staticmethod
    def _crops(clip: Clip, boxes: np.ndarray, fps: float) -> tuple[list[float], list[np.ndarray]]:
        from textualize.media import iter_frames

        times, crops = [], []
        if not len(boxes):
            return times, crops
        for frame in iter_frames(clip.path, fps, clip.start, clip.end):
            near = np.flatnonzero(np.abs(boxes[:, 0] - frame.time) < 1e-3)
            if not len(near):
                continue
            _, x, y, w, h = boxes[near[0]]
            height, width = frame.image.shape[:2]
            left, top = int(max(0, np.floor(x))), int(max(0, np.floor(y)))
            right, bottom = int(min(width, np.ceil(x + w))), int(min(height, np.ceil(y + h)))
            if right > left and bottom > top:
                times.append(frame.time)
                crops.append(frame.image[top:bottom, left:right])
        return times, crops

    def _run(self, crops: list[np.ndarray]) -> np.ndarray:
        import torch

        if self._encoder is None:
            self._load()
        if self._processor is not None:
            pixels = self._processor(images=crops, return_tensors="pt")["pixel_values"]
        else:  # torchvision: ImageNet statistics at 224 x 224
            pixels = torch.stack(
                [
                    torch.nn.functional.interpolate(
                        torch.from_numpy(np.ascontiguousarray(c)).permute(2, 0, 1)[None].float()
                        / 255.0,
                        size=(224, 224),
                        mode="bilinear",
                        align_corners=False,
                    )[0]
                    for c in crops
                ]
            )
            mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
            std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
            pixels = (pixels - mean) / std
        with torch.no_grad():
            out = self._encoder(pixels)
        if isinstance(out, torch.Tensor):
            return out.flatten(1).float().numpy()
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            hidden = out.last_hidden_state
            pooled = hidden.mean(1) if hidden.dim() == 3 else hidden.mean((2, 3))
        return pooled.flatten(1).float().numpy()

    def _load(self) -> None:
        if self.model.startswith("torchvision:"):
            import torch
            import torchvision

            name = self.model.split(":", 1)[1]
            try:
                network = torchvision.models.get_model(name, weights="DEFAULT")
            except (OSError, RuntimeError, ValueError) as err:
                raise EncoderUnavailable(
                    f"cannot build torchvision model {name!r} with its default weights: {err}. "
                    "Download them once while online (they go to TORCH_HOME) or give a Hugging "
                    "Face model folder"
                ) from err
            for attribute in ("fc", "classifier", "head", "heads"):
                if hasattr(network, attribute):
                    setattr(network, attribute, torch.nn.Identity())
                    break
            self._encoder = network.eval()
            return
        from transformers import AutoImageProcessor

        self._encoder = _load(self.model, "image")
        try:
            self._processor = AutoImageProcessor.from_pretrained(self.model)
        except (OSError, ValueError) as err:
            raise EncoderUnavailable(
                f"image encoder {self.model!r} has no image processor config "
                f"(preprocessor_config.json): {err}"
            ) from err


def _versions() -> str:
    return f"transformers {metadata.version('transformers')}, torchvision {metadata.version('torchvision')}"
