"""Prompt units kept in the stage cache, so that a re-render reads one small entry per clip.

A unit (``textualize.units.UnitFeatures``) holds the numbers the words are rendered from: face
and prosody summaries, functionals, the transcript of its span. Deriving them again means
reading a clip's prosody frames (a Parquet table) and summarising them, about 5 ms a clip; a
re-render with another template, describer or prompt reads the same units. So every clip's
units are stored as one JSON entry, under a key made of what they are derived from: the clip's
content hash and span, the plan (every stage's identity, which stages run), the window and hop,
and a digest of the source of the modules that derive them, so a changed summary never serves
an old one. Clips with a failed stage are never stored (a re-run retries them), nor are face
tables (they live outside the cache). The entry holds no clip id: a copy of a clip under another
name reads it too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from functools import lru_cache
from pathlib import Path

from textualize.cache import StageCache, stage_key
from textualize.config import TextualizeConfig
from textualize.describe import AUActivity, FaceSummary
from textualize.extract import ExtractionPlan
from textualize.face_words import AUCourse, FaceCourse
from textualize.records import FAILED, Clip, ClipDescriptors, ModalityStatus, SpeechEmotion
from textualize.units import UnitFeatures, make_units

log = logging.getLogger(__name__)

STAGE = "units"
#: The modules whose code turns cached stage results into units.
_DERIVING_MODULES = (
    "units",
    "prosody",
    "describe",
    "face_words",
    "records",
    "extract",
    "media",
    "unit_cache",
)


@lru_cache(maxsize=1)
def derivation_digest() -> str:
    """Digest of the source of every module that derives units (their code is their version)."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _DERIVING_MODULES:
        digest.update((here / f"{name}.py").read_bytes())
    return digest.hexdigest()[:16]


class UnitStore:
    """Units of one run's clips: stored after they are derived, read back on the next run."""

    def __init__(self, cfg: TextualizeConfig, plan: ExtractionPlan, cache: StageCache):
        self.cfg, self.plan, self.cache = cfg, plan, cache
        self._config = {
            "plan": dataclasses.asdict(plan),
            "window": cfg.window,
            "hop": cfg.hop,
            "code": derivation_digest(),
        }

    def key(self, clip: Clip, clip_hash: str) -> str | None:
        """The key of a clip's units, or None when they cannot be cached (face tables)."""
        if self.plan.face == "tables":
            return None
        return stage_key(STAGE, clip_hash, (clip.start, clip.end), self._config, "")

    def units_of(self, desc: ClipDescriptors) -> list[UnitFeatures]:
        """``make_units`` of a clip's descriptors, stored for the next run when nothing failed."""
        units = make_units(desc, self.cfg.window, self.cfg.hop)
        failed = any(s.status == FAILED for s in desc.status.values())
        if desc.content_hash and not (desc.error or desc.uncached or failed):
            key = self.key(desc.clip, desc.content_hash)
            if key is not None:
                self.cache.put(STAGE, key, ".json", _encode(units, desc.clip))
        return units

    def load(self, clip: Clip) -> list[UnitFeatures] | None:
        """The clip's stored units, named for this clip; None when they are not stored."""
        if self.cfg.force:
            return None
        try:
            clip_hash = self.cache.known_hash(clip.path)
        except OSError:
            return None
        key = self.key(clip, clip_hash) if clip_hash else None
        data = self.cache.get(STAGE, key, ".json") if key else None
        if data is None:
            return None
        try:
            return _decode(data, clip)
        except (ValueError, KeyError, TypeError) as err:  # an entry from a foreign writer
            log.warning("stored units of %s are unreadable (%s): deriving them again", clip, err)
            return None


# ------------------------------------------------------------------ JSON form


def _encode(units: list[UnitFeatures], clip: Clip) -> bytes:
    offset = clip.start or 0.0
    rows = []
    for unit in units:
        row = {
            "suffix": unit.unit_id[len(clip.clip_id) :],
            "begin": unit.start - offset,
            "stop": unit.end - offset,
            "status": {m: [s.status, s.reason] for m, s in unit.status.items()},
            "face": dataclasses.asdict(unit.face) if unit.face else None,
            "prosody": unit.prosody,
            "functionals": unit.functionals,
            "transcript": unit.transcript,
            "speech_emotion": dataclasses.asdict(unit.speech_emotion)
            if unit.speech_emotion
            else None,
            "cached": list(unit.cached),
        }
        rows.append(row)
    return json.dumps(rows, allow_nan=True).encode()


def _decode(data: bytes, clip: Clip) -> list[UnitFeatures]:
    offset = clip.start or 0.0
    units = []
    for row in json.loads(data):
        units.append(
            UnitFeatures(
                clip,
                clip.clip_id + row["suffix"],
                round(offset + row["begin"], 6),
                round(offset + row["stop"], 6),
                {m: ModalityStatus(*s) for m, s in row["status"].items()},
                face=_face(row["face"]),
                prosody=row["prosody"],
                functionals=row["functionals"],
                transcript=row["transcript"],
                speech_emotion=SpeechEmotion(**row["speech_emotion"])
                if row["speech_emotion"]
                else None,
                cached=(*row["cached"], STAGE),
            )
        )
    return units


def _face(row: dict | None) -> FaceSummary | None:
    if row is None:
        return None
    course = row["course"]
    if course is not None:
        course = FaceCourse(
            **{
                **course,
                "aus": tuple(AUCourse(**a) for a in course["aus"]),
                "box": tuple(course["box"]) if course["box"] is not None else None,
            }
        )
    return FaceSummary(
        **{
            **row,
            "active": tuple(AUActivity(**a) for a in row["active"]),
            "course": course,
        }
    )
