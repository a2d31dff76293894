"""Put units into words and prompts, and lay them out as output rows (one per unit).

Missing modalities are said distinctly: "no face visible" (the camera shows no face), "no video"
(the file has no picture), "no speech" (nobody talks), "silence" (no voice at all), "no audio"
(the file has no sound), and "not available" (a model was missing or failed; see the status
columns). A neutral face is never written as "no face", nor the other way round.
"""

from __future__ import annotations

from textualize.describe import (
    ProsodyReference,
    describe_action_units,
    describe_prosody,
    describe_speech_emotion,
    describe_visual_emotions,
)
from textualize.face_words import describe_face_course
from textualize.prompts import ModalityText, PromptRenderer
from textualize.records import (
    ABSENT,
    AU_COLUMNS,
    EMOTION_COLUMNS,
    MODALITIES,
    NO_STREAM,
    OK,
    finite_or_none,
)
from textualize.units import UnitFeatures
from textualize.voice_words import voice_scores

MISSING_WORDS = {
    "face": {ABSENT: "no face visible", NO_STREAM: "no video"},
    "prosody": {ABSENT: "silence, no voice activity", NO_STREAM: "no audio"},
    "transcript": {ABSENT: "no speech", NO_STREAM: "no audio"},
}
NOT_AVAILABLE = "not available"


def _missing(unit: UnitFeatures, modality: str) -> str:
    return MISSING_WORDS[modality].get(unit.status[modality].status, NOT_AVAILABLE)


def transcript_text(unit: UnitFeatures, source: str) -> tuple[ModalityText, str]:
    """The words of the unit and where they came from ("whisper" or "gold")."""
    gold = unit.clip.gold_text
    whole = unit.unit_id == unit.clip.clip_id
    if whole and gold and (source == "gold" or source == "auto"):
        return ModalityText(True, text=gold.strip()), "gold"
    if source == "gold":
        return ModalityText(False, missing=NOT_AVAILABLE), "gold"
    if unit.status["transcript"].status == OK and unit.transcript:
        return ModalityText(True, text=unit.transcript), "whisper"
    return ModalityText(False, missing=_missing(unit, "transcript")), "whisper"


def visual_text(unit: UnitFeatures, describer: str = "graded") -> ModalityText:
    """The face in words: textualize/face_words.py's (probabilities said as such, FACS levels for
    intensities, when AUs appear and peak, the speaker's face), or paper2024's."""
    if unit.status["face"].status != OK or unit.face is None:
        return ModalityText(False, missing=_missing(unit, "face"))
    if describer != "paper2024" and unit.face.course is not None:
        action_units, emotions = describe_face_course(unit.face.course)
        return ModalityText(True, action_units=action_units, emotions=emotions)
    return ModalityText(
        True,
        action_units=describe_action_units(unit.face),
        emotions=describe_visual_emotions(unit.face),
    )


def audio_text(unit: UnitFeatures, reference: ProsodyReference) -> ModalityText:
    emotion = ""
    if unit.speech_emotion is not None and unit.status["speech_emotion"].status == OK:
        emotion = describe_speech_emotion(unit.speech_emotion)
    if unit.status["prosody"].status != OK or unit.prosody is None:
        return ModalityText(False, missing=_missing(unit, "prosody"), emotion=emotion)
    return ModalityText(
        True, prosody=describe_prosody(unit.prosody, reference, unit.clip.speaker), emotion=emotion
    )


def _flat(value: ModalityText, *fields: str) -> str:
    if not value.present:
        return value.missing
    return "; ".join(getattr(value, f) for f in fields if getattr(value, f))


def numeric_columns(unit: UnitFeatures) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    face = unit.face
    out["face_coverage"] = finite_or_none(face.face_coverage) if face else None
    for au in AU_COLUMNS:
        out[f"face_{au}"] = finite_or_none(face.au_means.get(au)) if face else None
    for emotion in EMOTION_COLUMNS:
        out[f"face_{emotion}"] = finite_or_none(face.emotions.get(emotion)) if face else None
    for name, value in (unit.prosody or {}).items():
        out[f"prosody_{name}"] = finite_or_none(value)
    for name, value in (unit.functionals or {}).items():
        out[f"egemaps_{name}"] = finite_or_none(value)
    if unit.speech_emotion is not None:
        for name, value in unit.speech_emotion.scores.items():
            out[f"ser_{name}"] = finite_or_none(value)
    return out


def unit_row(
    unit: UnitFeatures,
    renderer: PromptRenderer,
    reference: ProsodyReference,
    transcript_source: str,
) -> dict:
    """One output row: identity, texts, prompt, statuses and numeric descriptors."""
    clip = unit.clip
    transcript, source = transcript_text(unit, transcript_source)
    visual, audio = visual_text(unit, reference.describer), audio_text(unit, reference)
    prompt = ""
    if not unit.error:
        prompt = renderer.render(
            transcript=transcript,
            visual=visual,
            audio=audio,
            clip={
                "clip_id": clip.clip_id,
                "speaker": clip.speaker,
                "context": clip.context,
                "start": unit.start,
                "end": unit.end,
            },
        )
    row = {
        "clip_id": clip.clip_id,
        "unit_id": unit.unit_id,
        "source_path": clip.path,
        "start": unit.start,
        "end": unit.end,
        "label": clip.label,
        "split": clip.split,
        "speaker": clip.speaker,
        "gold_text": clip.gold_text,
        "context": clip.context,
        "clip_start": clip.start,  # the clip's own span in the file (None = whole file)
        "clip_end": clip.end,
        "transcript": transcript.text if transcript.present else "",
        "transcript_source": source,
        "visual_text": _flat(visual, "action_units", "emotions"),
        "audio_text": _flat(audio, "prosody", "emotion"),
        "prompt": prompt,
        "template": renderer.template_id,
        "modalities": "".join(m for m in "TVA" if m in renderer.modalities),
        "error": unit.error,
    }
    for modality in MODALITIES:
        row[f"{modality}_status"] = unit.status[modality].status
        row[f"{modality}_reason"] = unit.status[modality].reason
    row.update(numeric_columns(unit))
    row.update(voice_columns(unit, reference))
    return row


def voice_columns(unit: UnitFeatures, reference: ProsodyReference) -> dict[str, float | None]:
    """The numbers the graded voice words are made from (``voice_*``: differences from the
    baseline, changes over the clip, pauses); none for the paper2024 describer."""
    if reference.graded is None:
        return {}
    prosody = unit.prosody if unit.status["prosody"].status == OK else None
    if not prosody or prosody.get("silent"):
        return {f"voice_{name}": None for name in voice_scores({}, reference.graded, None)}
    scores = voice_scores(prosody, reference.graded, unit.clip.speaker)
    return {f"voice_{name}": finite_or_none(value) for name, value in scores.items()}


def is_gap(status: str) -> bool:
    return status not in (OK, "disabled")
