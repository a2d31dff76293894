"""Cut a clip's extracted tracks into prompt units: the whole clip, or sliding windows.

A unit holds numbers only (face summary, prosody summary, transcript words of its span), so that
many thousands of units fit in memory while the run computes its prosody reference; the heavy
per-frame tracks stay in the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textualize.describe import FaceSummary, summarize_face
from textualize.face_words import voiced_spans
from textualize.records import ABSENT, OK, Clip, ClipDescriptors, ModalityStatus, SpeechEmotion


@dataclass(frozen=True)
class UnitFeatures:
    clip: Clip
    unit_id: str
    start: float  # seconds into the source file
    end: float
    status: dict[str, ModalityStatus]
    error: str = ""
    face: FaceSummary | None = None
    prosody: dict | None = None  # ProsodySummary.to_dict()
    functionals: dict | None = None  # eGeMAPS functionals, whole-clip units only
    transcript: str | None = None  # Whisper words of the span
    speech_emotion: SpeechEmotion | None = None  # whole-clip units only
    timings: dict[str, float] = field(default_factory=dict)
    cached: tuple[str, ...] = ()


def window_spans(duration: float, window: float, hop: float) -> list[tuple[float, float]]:
    """[start, end) spans covering ``duration``; the last one may be shorter; at least one span."""
    spans, start = [], 0.0
    while start < duration - 1e-9 or not spans:
        spans.append((round(start, 6), round(min(start + window, duration), 6)))
        start += hop
    return spans


def make_units(
    desc: ClipDescriptors, window: float | None = None, hop: float | None = None
) -> list[UnitFeatures]:
    clip = desc.clip
    offset = clip.start or 0.0
    common = {"timings": desc.timings, "cached": desc.cached}
    if desc.error or desc.media is None:
        end = clip.end if clip.end is not None else offset
        return [
            UnitFeatures(clip, clip.clip_id, offset, end, dict(desc.status), desc.error, **common)
        ]
    duration = desc.media.duration
    whole = window is None
    spans = [(0.0, duration)] if whole else window_spans(duration, window, hop or window)
    units = []
    voiced = voiced_spans(desc.prosody, desc.transcript) if desc.face is not None else ()
    for index, (begin, stop) in enumerate(spans):
        status = dict(desc.status)
        face = None
        if desc.face is not None:
            track = desc.face if whole else desc.face.between(begin, stop)
            face = summarize_face(track, voiced)
            if not whole and status["face"].status in (OK, ABSENT):
                status["face"] = (
                    ModalityStatus(OK)
                    if face.face_frames
                    else ModalityStatus(ABSENT, "no face visible")
                )
        prosody = None
        if desc.prosody is not None:
            from textualize.prosody import summarize_prosody

            words = (
                [w for seg in desc.transcript.segments for w in seg.words]
                if desc.transcript
                else []
            )
            prosody = summarize_prosody(desc.prosody.lld, begin, stop, words=words).to_dict()
            if not whole and status["prosody"].status in (OK, ABSENT):
                status["prosody"] = (
                    ModalityStatus(ABSENT, "silence") if prosody["silent"] else ModalityStatus(OK)
                )
        transcript = None
        if desc.transcript is not None:
            transcript = (
                desc.transcript.text.strip() if whole else desc.transcript.between(begin, stop)
            )
            if status["transcript"].status in (OK, ABSENT):
                status["transcript"] = (
                    ModalityStatus(OK) if transcript else ModalityStatus(ABSENT, "no speech")
                )
        units.append(
            UnitFeatures(
                clip,
                clip.clip_id if whole else f"{clip.clip_id}#w{index:04d}",
                round(offset + begin, 6),
                round(offset + stop, 6),
                status,
                face=face,
                prosody=prosody,
                functionals=desc.prosody.functionals
                if (whole and desc.prosody is not None)
                else None,
                transcript=transcript,
                speech_emotion=desc.speech_emotion if whole else None,
                **common,
            )
        )
    return units
