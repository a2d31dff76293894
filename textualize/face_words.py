"""The face in words that say what the numbers are, when things happen, and whose face it is.

The face words of the ``graded`` describer (``paper2024`` keeps describe.describe_action_units).

* **What kind of number.** py-feat gives the *probability* that an action unit occurs, not how
  strongly: a frame shows the AU where it is >= 0.5, and the words are "clearly present" (median
  probability over those frames >= 0.8) or "possibly present". OpenFace gives an *intensity* on
  FACS's scale (``AUxx_r``, 1 = A ... 5 = E) and its own presence call (``AUxx_c``): a frame shows
  the AU where OpenFace calls it present and the intensity reaches A (r >= 1, OpenFace's "present
  at minimum intensity"); the word is the FACS level nearest to the median intensity over those
  frames: trace (A), slight (B), marked (C), severe (D), maximum (E).
* **When.** An AU that appears after the start, peaks, or fades before the end says so, in thirds
  of the unit: "lip corner puller (AU12) possibly present at times, appears midway and peaks near
  the end". A peak is named only when the (3-frame smoothed) value rises at least 0.15 above its
  median on the 0-1 scale (a probability 0.15 higher, or three quarters of a FACS level).
* **Whose face.** A detector keeps every face (``FaceTrack.detections``); faces are linked across
  frames by box overlap (``faces.track_faces``). The words describe the speaker's track: the face
  whose mouth (frame-to-frame change of AU25 lips part and AU26 jaw drop) moves more while the
  voice is on than while it is off (voiced frames of the clip's cached prosody track, else
  Whisper's word spans), if one clearly does; otherwise the largest face that stays in view.
  When more than one person stays in view (a track seen in at least a quarter of the frames), the
  words say how many and which face they describe.

``summarize_face_course`` reduces a face track to numbers (``FaceCourse``, kept in the unit, so
rendering never touches the frames); ``describe_face_course`` puts them into words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from textualize.face_tables import OPENFACE_PRESENCE_ONLY
from textualize.faces import track_faces
from textualize.records import (
    AU_COLUMNS,
    AU_NAMES,
    AU_PRESENCE_COLUMNS,
    AU_SCALE_INTENSITY,
    EMOTION_COLUMNS,
    FACE_BOX_COLUMNS,
    FaceTrack,
    ProsodyTrack,
    Transcript,
)

PRESENT_PROBABILITY = 0.5  # py-feat: a frame shows the AU at this probability or above
CLEAR_PROBABILITY = 0.8  # ... and it is "clearly present" at this median probability or above
MIN_INTENSITY = 1.0  # OpenFace r: FACS level A, "present at minimum intensity"
OPENFACE_MAX = 5.0  # a track's intensity values are r / 5
#: FACS intensity levels: (upper bound of r for the level, letter, word); r is rounded to a level.
FACS_LEVELS = ((1.5, "A", "trace"), (2.5, "B", "slight"), (3.5, "C", "marked"),
               (4.5, "D", "severe"), (math.inf, "E", "maximum"))  # fmt: skip
MIN_AU_COVERAGE = 0.1  # fraction of the face's frames an AU must show in to be mentioned
MAX_UNITS = 6  # AUs mentioned at most, most salient first
MIN_DYNAMIC_FRAMES = 4  # fewer face frames: no "appears"/"peaks"/"fades"
MIN_PEAK_RISE = 0.15  # smoothed max - smoothed median (0-1 scale) for a peak to be named
START_EDGE, END_EDGE = 0.15, 0.85  # shown before/after these positions = there from start/to end
EMOTION_LIKELY, EMOTION_POSSIBLE = 0.5, 0.2  # mean probability of a visual emotion
MIN_TRACK_COVERAGE = 0.25  # a track seen in this fraction of the frames is a person in view
MOUTH_AUS = ("AU25", "AU26")  # lips part, jaw drop: what moves when someone talks
MIN_MOUTH_LEAD = 0.05  # the speaker's mouth score must exceed 0 and every other's by this much
SPEAKER, LARGEST, ONLY = "speaker", "largest", "only"  # how the described face was chosen
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass(frozen=True)
class AUCourse:
    """One action unit of the described face over a unit (positions: 0 = first frame, 1 = last)."""

    au: str
    coverage: float  # fraction of the face's frames that show it
    level: float  # median over those frames: probability, or intensity r 0-5; NaN if unknown
    peak_level: float  # highest (smoothed) value, same scale as level
    onset: float | None  # where it first shows, when that is after the start
    peak: float | None  # where it peaks, when it varies enough to have a peak
    offset: float | None  # where it last shows, when that is before the end


@dataclass(frozen=True)
class FaceCourse:
    """The face a unit's words describe, reduced to numbers."""

    frames: int  # sampled frames of the unit
    face_frames: int  # frames in which the described face is seen
    au_scale: str
    people: int  # people in view: tracks seen in >= MIN_TRACK_COVERAGE of the frames
    chosen: str  # ONLY, SPEAKER or LARGEST
    aus: tuple[AUCourse, ...]  # AUs it shows, most salient first
    emotions: dict[str, float]  # mean probability over its frames
    box: tuple[float, ...] | None = None  # its median box (x, y, width, height), if known

    @property
    def face_coverage(self) -> float:
        return self.face_frames / self.frames if self.frames else 0.0


# ---------------------------------------------------------------- voice activity


def voiced_spans(
    prosody: ProsodyTrack | None, transcript: Transcript | None
) -> tuple[tuple[float, float], ...]:
    """When the voice is on, in seconds from the clip start: runs of voiced prosody frames (F0 > 0),
    else Whisper's word (or segment) spans; empty when neither says anything."""
    from textualize.prosody import F0, LLD_HOP_SEC

    if prosody is not None and F0 in prosody.lld.columns and len(prosody.lld):
        times = prosody.lld["time"].to_numpy(dtype=float)
        voiced = np.nan_to_num(prosody.lld[F0].to_numpy(dtype=float)) > 0
        edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(int), [0]])))
        return tuple(
            (float(times[a]), float(times[b - 1] + LLD_HOP_SEC))
            for a, b in zip(edges[::2], edges[1::2])
        )
    if transcript is not None:
        words = [(w.start, w.end) for s in transcript.segments for w in s.words]
        spans = words or [(s.start, s.end) for s in transcript.segments if s.text.strip()]
        return tuple((float(a), float(b)) for a, b in spans if b > a)
    return ()


def _voiced_fraction(spans: Sequence[tuple[float, float]], starts, ends) -> np.ndarray:
    """Fraction of each interval [starts[i], ends[i]] during which the voice is on."""
    starts, ends = np.asarray(starts, dtype=float), np.asarray(ends, dtype=float)
    merged: list[list[float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    if not merged:
        return np.zeros(len(starts))
    # voiced time before t, piecewise linear through the span edges
    edges = np.asarray(merged).ravel()
    before = np.concatenate(
        [[0.0], np.cumsum(np.diff(edges) * (np.arange(len(edges) - 1) % 2 == 0))]
    )
    voiced = np.interp(ends, edges, before) - np.interp(starts, edges, before)
    return np.clip(voiced / np.maximum(ends - starts, 1e-9), 0.0, 1.0)


# ---------------------------------------------------------------- whose face


def _mouth_score(times: np.ndarray, track: pd.DataFrame, spans) -> float | None:
    """How much more the track's mouth moves while the voice is on than while it is off.

    Movement between two consecutive sampled frames is the change of mean(AU25, AU26); it is
    weighted by how much of that interval is voiced, and by how much is not. None: no voice.
    """
    mouth = track.set_index("time")[list(MOUTH_AUS)].mean(axis=1, skipna=True)
    values = mouth.reindex(times).to_numpy(dtype=float)
    move = np.abs(np.diff(values))
    voice = _voiced_fraction(spans, times[:-1], times[1:])
    seen = np.isfinite(move)
    move, voice = move[seen], voice[seen]
    if voice.sum() < 1.0:
        return None
    silent = 1.0 - voice
    on = float((move * voice).sum() / voice.sum())
    off = float((move * silent).sum() / silent.sum()) if silent.sum() >= 1.0 else 0.0
    return on - off


def _described_face(track: FaceTrack, spans) -> tuple[pd.DataFrame, int, str]:
    """(per-frame table of the face to describe, people in view, how it was chosen)."""
    frames = track.frames
    found = track.detections
    if found is None or not len(found):
        people = 1 if frames["face"].astype(bool).any() else 0
        return frames[frames["face"].astype(bool)], people, ONLY
    width, height = FACE_BOX_COLUMNS[2:]
    found = found.assign(track=track_faces(found), area=found[width] * found[height])
    times = np.sort(frames["time"].to_numpy(dtype=float))
    by_track = found.groupby("track")
    coverage = by_track["time"].nunique() / max(len(times), 1)
    area = by_track["area"].median()
    persistent = coverage.index[coverage >= MIN_TRACK_COVERAGE]
    candidates = persistent if len(persistent) else coverage.index
    people = max(len(persistent), 1)
    chosen, how = None, ONLY if len(candidates) == 1 else LARGEST
    if len(candidates) > 1:
        scores = {
            t: _mouth_score(times, found[found["track"] == t].drop_duplicates("time"), spans)
            for t in candidates
        }
        known = sorted(((s, t) for t, s in scores.items() if s is not None), reverse=True)
        if known:
            best, runner_up = known[0][0], max(known[1][0], 0.0) if len(known) > 1 else 0.0
            if best >= MIN_MOUTH_LEAD and best - runner_up >= MIN_MOUTH_LEAD:
                chosen, how = known[0][1], SPEAKER
    if chosen is None:
        chosen = max(candidates, key=lambda t: (area[t], coverage[t], -t))
    face = found[found["track"] == chosen].drop_duplicates("time")
    return face.drop(columns=["track", "area"]).sort_values("time"), people, how


# ---------------------------------------------------------------- numbers


def summarize_face_course(
    track: FaceTrack, voiced: Sequence[tuple[float, float]] = ()
) -> FaceCourse:
    """The face to describe (the speaker's, when more than one is in view) and its AUs' course."""
    face, people, chosen = _described_face(track, voiced)
    times = np.sort(track.frames["time"].to_numpy(dtype=float))
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    grid = face.set_index("time").reindex(times)  # NaN where the face is not seen
    seen = grid.index.isin(face["time"])
    intensity = track.au_scale == AU_SCALE_INTENSITY
    courses = []
    for au, presence_column in zip(AU_COLUMNS, AU_PRESENCE_COLUMNS):
        values = grid[au].to_numpy(dtype=float)
        if not np.isfinite(values[seen]).any():
            continue
        presence = grid[presence_column].to_numpy(dtype=float) if presence_column in grid else None
        shown = _shown(au, values, presence, intensity) & seen
        coverage = float(shown.sum() / max(seen.sum(), 1))
        if coverage < MIN_AU_COVERAGE:
            continue
        courses.append(_course(au, values, shown, seen, times, span, intensity))
    courses.sort(key=lambda c: c.coverage * _strength(c, intensity), reverse=True)
    emotions = {
        e: float(np.nanmean(grid[e].to_numpy(dtype=float)[seen]))
        for e in EMOTION_COLUMNS
        if e in grid and np.isfinite(grid[e].to_numpy(dtype=float)[seen]).any()
    }
    box = None
    if (
        set(FACE_BOX_COLUMNS) <= set(face.columns)
        and face[list(FACE_BOX_COLUMNS)].notna().any().all()
    ):
        box = tuple(float(v) for v in face[list(FACE_BOX_COLUMNS)].median())
    return FaceCourse(len(times), int(seen.sum()), track.au_scale, people, chosen,
                      tuple(courses), emotions, box)  # fmt: skip


def _shown(au: str, values: np.ndarray, presence: np.ndarray | None, intensity: bool) -> np.ndarray:
    """Frames that show the AU (see the module docstring)."""
    with np.errstate(invalid="ignore"):
        if not intensity:
            return values >= PRESENT_PROBABILITY
        if au in OPENFACE_PRESENCE_ONLY:
            return values >= 0.5
        shown = values * OPENFACE_MAX >= MIN_INTENSITY - 1e-9
        if presence is not None and np.isfinite(presence).any():
            shown &= presence >= 0.5
        return shown


def _course(au, values, shown, seen, times, span, intensity) -> AUCourse:
    scale = OPENFACE_MAX if intensity else 1.0
    unknown = intensity and au in OPENFACE_PRESENCE_ONLY
    level = math.nan if unknown else float(np.median(values[shown])) * scale
    smooth = pd.Series(np.where(seen, values, np.nan)).rolling(3, center=True, min_periods=1)
    smoothed = smooth.mean().to_numpy()
    peak_level = math.nan if unknown else float(np.nanmax(smoothed[seen])) * scale
    onset = peak = offset = None
    if seen.sum() >= MIN_DYNAMIC_FRAMES and span > 0:
        position = (times - times[0]) / span
        steady = pd.Series(shown.astype(float)).rolling(3, center=True, min_periods=1).mean()
        steady = steady.to_numpy() >= 0.5
        if steady.any():
            first, last = position[np.flatnonzero(steady)[[0, -1]]]
            onset = float(first) if first > START_EDGE else None
            offset = float(last) if last < END_EDGE else None
        rises = np.nanmax(smoothed[seen]) - np.nanmedian(smoothed[seen]) >= MIN_PEAK_RISE
        if rises and not unknown:
            peak = float(position[int(np.nanargmax(np.where(seen, smoothed, np.nan)))])
    return AUCourse(au, float(shown[seen].mean()), level, peak_level, onset, peak, offset)


def _strength(course: AUCourse, intensity: bool) -> float:
    if math.isnan(course.level):
        return 0.5
    return course.level / OPENFACE_MAX if intensity else course.level


# ---------------------------------------------------------------- words


def describe_face_course(course: FaceCourse, max_units: int = MAX_UNITS) -> tuple[str, str]:
    """(action units, visual emotions) in words, e.g. ("two people visible, described is the
    speaker's face (mouth moving with the voice): lip corner puller (AU12) clearly present
    throughout; lips part (AU25) possibly present at times, appears midway", "happiness (likely)")."""
    if course.face_frames == 0:
        return "no face visible", "no face visible"
    phrases = [_au_phrase(a, course.au_scale) for a in course.aus[:max_units]]
    text = "; ".join(phrases) or "neutral face, no action unit present"
    if course.face_coverage < 0.5:
        text = f"face visible only {coverage_word(course.face_coverage)}; {text}"
    if course.people > 1:
        whose = {
            SPEAKER: "the speaker's face (mouth moving with the voice)",
            LARGEST: "the largest face",
        }.get(course.chosen, "the face")
        count = _NUMBERS[course.people] if course.people < len(_NUMBERS) else str(course.people)
        text = f"{count} people visible, described is {whose}: {text}"
    ranked = sorted(course.emotions.items(), key=lambda kv: kv[1], reverse=True)[:2]
    emotions = ", ".join(
        f"{e} ({'likely' if p >= EMOTION_LIKELY else 'possible'})"
        for e, p in ranked
        if p >= EMOTION_POSSIBLE
    )
    return text, emotions


def _au_phrase(a: AUCourse, scale: str) -> str:
    name, label = AU_NAMES[a.au], f"AU{int(a.au[2:])}"
    where = coverage_word(a.coverage)
    if scale != AU_SCALE_INTENSITY:
        certainty = "clearly" if a.level >= CLEAR_PROBABILITY else "possibly"
        text, peak = f"{name} ({label}) {certainty} present {where}", "peaks"
    elif math.isnan(a.level):
        text, peak = f"{name} ({label}) present {where}", "peaks"
    else:
        letter, word = _facs_level(a.level)
        text = f"{word} {name} ({label}, intensity {letter}) {where}"
        top_letter, top_word = _facs_level(a.peak_level)
        peak = f"peaks at {top_word} ({top_letter})" if top_letter > letter else "peaks"
    events, peak_at = [], a.peak
    if a.onset is not None:
        if peak_at is not None and _third(peak_at) == _third(a.onset):
            events.append(f"appears and {peak} {_third(a.onset)}")
            peak_at = None
        else:
            events.append(f"appears {_third(a.onset)}")
    if peak_at is not None:
        events.append(f"{peak} {_third(peak_at)}")
    if a.offset is not None:
        events.append(f"fades {_third(a.offset)}")
    if not events:
        return text
    if len(events) == 1 or any(" and " in e for e in events):
        said = ", ".join(events)
    else:
        said = ", ".join(events[:-1]) + " and " + events[-1]
    return f"{text}, {said}"


def _facs_level(r: float) -> tuple[str, str]:
    for bound, letter, word in FACS_LEVELS:
        if r < bound:
            return letter, word
    return FACS_LEVELS[-1][1:]


def _third(position: float) -> str:
    return "early" if position < 1 / 3 else "midway" if position < 2 / 3 else "near the end"


def coverage_word(coverage: float) -> str:
    """How much of a unit something lasts, in words (shared with the paper2024 face words)."""
    if coverage >= 0.8:
        return "throughout"
    if coverage >= 0.5:
        return "most of the time"
    return "at times" if coverage >= 0.25 else "briefly"
