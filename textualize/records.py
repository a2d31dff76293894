"""Typed records that flow between the textualization stages, keyed by clip id.

Every modality result carries a ``ModalityStatus`` so that "no face in view", "nobody speaks",
"the face model is not installed" and "the decoder crashed" stay distinct all the way into the
prompt text and the output table.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

# Status values (plain strings so they serialise as-is to Parquet/JSONL).
OK = "ok"  # the modality was extracted and has content
ABSENT = "absent"  # extracted, but nothing there: no face in view, no speech, silence
NO_STREAM = "no_stream"  # the file has no video (or no audio) stream at all
UNAVAILABLE = "unavailable"  # the model or backend is not installed / weights missing
DISABLED = "disabled"  # the user turned the modality off
FAILED = "failed"  # an error while processing this clip; reason says which

MODALITIES = ("face", "prosody", "transcript", "speech_emotion")


@dataclass(frozen=True)
class Clip:
    """One unit of input: a media file, optionally a time span of it, and what is known about it."""

    clip_id: str
    path: str
    start: float | None = None  # seconds into the file; None = from the beginning
    end: float | None = None  # seconds into the file; None = to the end
    label: str | None = None
    split: str | None = None
    speaker: str | None = None
    gold_text: str | None = None  # the dataset's own transcript, when it has one
    context: str | None = None  # previous utterances of the dialogue, for prompts that want them

    def to_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModalityStatus:
    status: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class VideoFrame:
    """One decoded, sampled video frame: RGB uint8 array (H, W, 3), time in s from clip start."""

    time: float
    image: np.ndarray


@dataclass(frozen=True)
class MediaInfo:
    """What the container holds, read without decoding (except to pick among audio streams)."""

    duration: float  # seconds of the selected span (after start/end are applied)
    has_video: bool
    has_audio: bool
    video_fps: float | None = None
    width: int | None = None
    height: int | None = None
    audio_sample_rate: int | None = None  # of the chosen audio stream
    # Container-wide index of the audio stream the audio stages use: the default stream unless
    # it is silent, else the first with signal (``media.choose_audio_stream``).
    audio_stream: int | None = None
    # Seconds of the span's audio that could not be decoded (damaged or cut-off file) and were
    # filled with silence. None: not measured; probe does not decode, ``read_audio`` measures it.
    audio_lost_seconds: float | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MediaInfo:
        return cls(**json.loads(text))  # JSON cached before a field existed takes its default


# The 20 action units py-feat predicts, with their FACS names.
AU_NAMES: dict[str, str] = {
    "AU01": "inner brow raiser",
    "AU02": "outer brow raiser",
    "AU04": "brow lowerer",
    "AU05": "upper lid raiser",
    "AU06": "cheek raiser",
    "AU07": "lid tightener",
    "AU09": "nose wrinkler",
    "AU10": "upper lip raiser",
    "AU11": "nasolabial deepener",
    "AU12": "lip corner puller",
    "AU14": "dimpler",
    "AU15": "lip corner depressor",
    "AU17": "chin raiser",
    "AU20": "lip stretcher",
    "AU23": "lip tightener",
    "AU24": "lip pressor",
    "AU25": "lips part",
    "AU26": "jaw drop",
    "AU28": "lip suck",
    "AU43": "eyes closed",
}
AU_COLUMNS = tuple(AU_NAMES)
EMOTION_COLUMNS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
FACE_FRAME_COLUMNS = ("time", "face", "face_score", *AU_COLUMNS, *EMOTION_COLUMNS)
# Optional columns of a face track: the kept face's box in pixels of the frame it was found in.
FACE_BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")
# Optional columns: the source's own presence call per AU, 1/0 (OpenFace's ``AUxx_c``; NaN where
# it has none). With them an AU counts as shown only where the source says it is present.
AU_PRESENCE_COLUMNS = tuple(f"{au}_c" for au in AU_COLUMNS)
# Every face a detector found (``FaceTrack.detections``): one row per face per sampled frame.
FACE_DETECTION_COLUMNS = ("time", "face_score", *AU_COLUMNS, *EMOTION_COLUMNS, *FACE_BOX_COLUMNS)

# How AU values are scaled in a face track, which decides the activation thresholds.
AU_SCALE_PROBABILITY = "probability"  # py-feat: probability that the AU is active, 0-1
AU_SCALE_INTENSITY = "intensity"  # OpenFace: intensity 0-5 divided by 5, 0-1


@dataclass(frozen=True)
class FaceTrack:
    """Canonical per-frame face table: one row per sampled frame, the most confident face.

    Columns are ``FACE_FRAME_COLUMNS``: ``time`` in seconds from the clip start, ``face`` (bool,
    False for frames where no face was found; their AU/emotion values are NaN), ``face_score``,
    the 20 AUs scaled to 0-1, and the 7 emotion probabilities. AUs a source cannot measure are NaN.
    A detector's track also has ``FACE_BOX_COLUMNS`` (tracks cached before them, and imported
    tables, may not): where the kept face lies, NaN in frames without one; an OpenFace table has
    ``AU_PRESENCE_COLUMNS``. ``detections`` holds every face the detector found
    (``FACE_DETECTION_COLUMNS``, frames identified by ``time``), so that the people in a frame can
    be followed over the clip; None for imported tables and for tracks cached before it existed.
    """

    frames: pd.DataFrame
    source: str  # e.g. "py-feat:Detector", "py-feat-csv", "openface-csv"
    au_scale: str = AU_SCALE_PROBABILITY
    detections: pd.DataFrame | None = None

    #: Bump when ``to_table`` changes, so that cached face tracks are recomputed (a cache key part).
    TABLE_FORMAT: ClassVar[str] = "frames+detections-1"
    _FRAME_ROW: ClassVar[str] = "frame_row"

    def __post_init__(self) -> None:
        missing = [c for c in FACE_FRAME_COLUMNS if c not in self.frames.columns]
        if missing:
            raise ValueError(f"face track lacks canonical columns: {missing}")

    @property
    def face_frames(self) -> pd.DataFrame:
        return self.frames[self.frames["face"].astype(bool)]

    @property
    def has_boxes(self) -> bool:
        return all(c in self.frames.columns for c in FACE_BOX_COLUMNS)

    def between(self, start: float, end: float) -> FaceTrack:
        def cut(table: pd.DataFrame) -> pd.DataFrame:
            mask = (table["time"] >= start) & (table["time"] < end)
            return table[mask].reset_index(drop=True)

        detections = None if self.detections is None else cut(self.detections)
        return FaceTrack(cut(self.frames), self.source, self.au_scale, detections)

    def to_table(self) -> pd.DataFrame:
        """One table for the cache: the frames, then every detection (marked ``frame_row``)."""
        if self.detections is None:
            return self.frames
        return pd.concat(
            [
                self.frames.assign(**{self._FRAME_ROW: True}),
                self.detections.assign(face=True, **{self._FRAME_ROW: False}),
            ],
            ignore_index=True,
        )

    @classmethod
    def from_table(cls, table: pd.DataFrame, source: str, au_scale: str) -> FaceTrack:
        """The inverse of ``to_table``."""
        if cls._FRAME_ROW not in table.columns:
            return cls(table, source, au_scale)
        is_frame = table[cls._FRAME_ROW].astype(bool)
        frames = table[is_frame].drop(columns=cls._FRAME_ROW).reset_index(drop=True)
        detections = table.loc[~is_frame, list(FACE_DETECTION_COLUMNS)].reset_index(drop=True)
        return cls(frames, source, au_scale, detections)


@dataclass(frozen=True)
class ProsodyTrack:
    """openSMILE eGeMAPSv02 output for one clip: LLD frames and clip-level functionals."""

    lld: pd.DataFrame  # column "time" (s from clip start) + eGeMAPS low-level descriptors
    functionals: dict[str, float]
    duration: float

    def between(self, start: float, end: float) -> pd.DataFrame:
        return self.lld[(self.lld["time"] >= start) & (self.lld["time"] < end)]


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float | None = None


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    no_speech_prob: float | None = None


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    segments: tuple[Segment, ...] = ()
    backend: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Transcript:
        raw = json.loads(text)
        segments = tuple(
            Segment(**{**s, "words": tuple(Word(**w) for w in s.get("words", ()))})
            for s in raw.pop("segments", ())
        )
        return cls(segments=segments, **raw)

    def between(self, start: float, end: float) -> str:
        """Words spoken in [start, end), from word timestamps (segment midpoints as fallback)."""
        pieces: list[str] = []
        for seg in self.segments:
            if seg.words:
                pieces += [w.word for w in seg.words if start <= (w.start + w.end) / 2 < end]
            elif start <= (seg.start + seg.end) / 2 < end:
                pieces.append(seg.text)
        return " ".join(p.strip() for p in pieces if p.strip())


@dataclass(frozen=True)
class SpeechEmotion:
    """Output of a speech-emotion model: label scores, or dimensions such as arousal/valence."""

    scores: dict[str, float]
    kind: str  # "categorical" or "dimensional"
    model: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SpeechEmotion:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class ClipDescriptors:
    """Everything extracted for one clip; the input of description and rendering."""

    clip: Clip
    content_hash: str = ""
    media: MediaInfo | None = None
    face: FaceTrack | None = None
    prosody: ProsodyTrack | None = None
    transcript: Transcript | None = None
    speech_emotion: SpeechEmotion | None = None
    status: dict[str, ModalityStatus] = field(default_factory=dict)
    error: str = ""  # a whole-clip failure (unreadable file, ...); empty when the clip was read
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, this run
    cached: tuple[str, ...] = ()  # stages that were read from the cache in this run
    uncached: tuple[str, ...] = ()  # stages a cache-only read could not find

    def status_of(self, modality: str) -> ModalityStatus:
        return self.status.get(modality, ModalityStatus(DISABLED, "not requested"))


def finite_or_none(value: Any) -> float | None:
    """Floats for output rows: NaN/inf become None so JSONL stays valid JSON."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None
