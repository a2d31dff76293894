"""Per-frame face tables from precomputed results: py-feat result CSVs and OpenFace 2.x CSVs.

``read_face_table`` turns either file into the canonical ``FaceTrack`` (one row per frame, the
most confident face, ``records.FACE_FRAME_COLUMNS``), so a corpus that was already run through
py-feat or OpenFace never has to see a detector again. The py-feat column mapping here is also
what ``faces.FaceExtractor`` applies to the live detector's output, so both paths agree.

Conventions shared by every source:

* frames without a face (py-feat: no box / score 0; OpenFace: ``success == 0``) are rows with
  ``face=False`` and NaN ``face_score``, AUs and emotions, never a "neutral" face;
* AUs a source does not measure are NaN (OpenFace has no AU11, AU24 or AU43; no emotions);
* OpenFace intensities (0-5) become ``r / 5`` (``AU_SCALE_INTENSITY``), set to 0 where OpenFace's
  own presence classifier (``AUxx_c``) says the AU is absent; AU28, which OpenFace only detects,
  is its presence (0 or 1). The presence calls themselves are kept too (``AU_PRESENCE_COLUMNS``),
  so that the words can say "present" only where OpenFace does (textualize/face_words.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from textualize.records import (
    AU_COLUMNS,
    AU_PRESENCE_COLUMNS,
    AU_SCALE_INTENSITY,
    AU_SCALE_PROBABILITY,
    EMOTION_COLUMNS,
    FACE_FRAME_COLUMNS,
    FaceTrack,
)

OPENFACE_MAX_INTENSITY = 5.0  # OpenFace AUxx_r runs 0 (absent) to 5 (maximum intensity)
OPENFACE_PRESENCE_ONLY = ("AU28",)  # OpenFace 2.x detects these but has no intensity for them

# py-feat's emotion columns: Detectorv1/MPDetector write ours already; Detectorv2 capitalises.
FEAT_EMOTION_NAMES: dict[str, str] = {
    **{name: name for name in EMOTION_COLUMNS},
    "Anger": "anger",
    "Disgust": "disgust",
    "Fear": "fear",
    "Happy": "happiness",
    "Sad": "sadness",
    "Surprise": "surprise",
    "Neutral": "neutral",
}
FEAT_REQUIRED = ("FaceScore", "AU01..AU43")
OPENFACE_REQUIRED = ("frame", "confidence", "success", "AUxx_r / AUxx_c")


class FaceTableError(ValueError):
    """A face table cannot be read as py-feat or OpenFace output; the message says what's missing."""


def read_face_table(path: str | Path, fps: float | None = None) -> FaceTrack:
    """Read a py-feat result CSV or an OpenFace 2.x CSV (detected from its columns) as a FaceTrack.

    Times come from the table (OpenFace ``timestamp``, py-feat ``approx_time``) or from
    ``frame / fps``; ``fps`` is needed only when the table has neither and spans several frames.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, skipinitialspace=True)
    except FileNotFoundError as err:
        raise FaceTableError(f"face table not found: {path}") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise FaceTableError(f"{path} is not a readable CSV table: {err}") from err
    table.columns = [str(c).strip() for c in table.columns]
    columns = set(table.columns)
    if "FaceScore" in columns and columns & set(AU_COLUMNS):
        return FaceTrack(
            feat_frames(table, _feat_times(table, fps, path)), "py-feat-csv", AU_SCALE_PROBABILITY
        )
    if {"frame", "confidence", "success"} <= columns and any(
        re.fullmatch(r"AU\d\d_[rc]", c) for c in columns
    ):
        return FaceTrack(_openface_frames(table, fps, path), "openface-csv", AU_SCALE_INTENSITY)
    shown = ", ".join(list(table.columns)[:12]) + (" ..." if len(table.columns) > 12 else "")
    raise FaceTableError(
        f"{path} is neither a py-feat result table (expected columns {', '.join(FEAT_REQUIRED)}) "
        f"nor an OpenFace 2.x table (expected {', '.join(OPENFACE_REQUIRED)}); it has: {shown}"
    )


def feat_frames(results: pd.DataFrame, times: np.ndarray) -> pd.DataFrame:
    """Canonical per-frame table from py-feat results (one row per face, a ``frame`` column).

    ``times[i]`` is the time of frame ``i``; every frame gets a row, those without a face too.
    """
    results = results.reset_index(drop=True)
    frame = _frame_numbers(results)
    face = _feat_has_face(results)
    best = _most_confident(frame, results["FaceScore"].where(face))
    best = best[(best.index >= 0) & (best.index < len(times))]
    out = _empty_frames(times)
    chosen = results.loc[best.to_numpy()]
    at = best.index.to_numpy()
    out.loc[at, "face"] = True
    out.loc[at, "face_score"] = chosen["FaceScore"].to_numpy(dtype=float)
    for source, target in [(au, au) for au in AU_COLUMNS] + list(FEAT_EMOTION_NAMES.items()):
        if source in chosen.columns:
            out.loc[at, target] = chosen[source].to_numpy(dtype=float)
    return out


def _empty_frames(times: np.ndarray) -> pd.DataFrame:
    out = pd.DataFrame(np.nan, index=range(len(times)), columns=FACE_FRAME_COLUMNS)
    out["time"] = np.asarray(times, dtype=float)
    out["face"] = False
    return out


def _frame_numbers(results: pd.DataFrame) -> pd.Series:
    if "frame" in results.columns:
        return results["frame"].astype(int)
    return pd.Series(np.arange(len(results)), index=results.index)


def _feat_has_face(results: pd.DataFrame) -> pd.Series:
    """py-feat keeps one placeholder row for a frame without a face: NaN box, score 0."""
    score = pd.to_numeric(results["FaceScore"], errors="coerce")
    face = score.notna() & (score > 0)
    if "FaceRectX" in results.columns:
        face &= results["FaceRectX"].notna()
    return face


def _most_confident(frame: pd.Series, score: pd.Series) -> pd.Series:
    """Row label of the highest-scoring face per frame number (frames without a face left out)."""
    valid = score.notna()
    if not valid.any():
        return pd.Series(dtype=int)
    return score[valid].groupby(frame[valid]).idxmax()


def _feat_times(table: pd.DataFrame, fps: float | None, path: Path) -> np.ndarray:
    """One time per frame number 0..max(frame) of a py-feat table."""
    frame = _frame_numbers(table)
    n_frames = int(frame.max()) + 1 if len(frame) else 0
    if "approx_time" in table.columns:
        seconds = table["approx_time"].map(_clock_seconds).groupby(frame).first()
        return seconds.reindex(range(n_frames)).interpolate(limit_direction="both").to_numpy()
    if fps:
        return np.arange(n_frames) / float(fps)
    if n_frames <= 1:
        return np.zeros(n_frames)
    raise FaceTableError(
        f"{path} has {n_frames} frames but no approx_time column; pass fps= (the frame rate the "
        "table was computed at) so frame numbers can be turned into seconds"
    )


def _clock_seconds(value: object) -> float:
    """py-feat writes approx_time as 'MM:SS.ff' (or seconds); return seconds."""
    text = str(value).strip()
    try:
        if ":" in text:
            minutes, seconds = text.rsplit(":", 1)
            return int(minutes) * 60 + float(seconds)
        return float(text)
    except ValueError:
        return float("nan")


def _openface_frames(table: pd.DataFrame, fps: float | None, path: Path) -> pd.DataFrame:
    table = table.reset_index(drop=True)
    frame = table["frame"].astype(int)
    success = pd.to_numeric(table["success"], errors="coerce").fillna(0) >= 0.5
    confidence = pd.to_numeric(table["confidence"], errors="coerce")

    if "timestamp" in table.columns:
        times = table["timestamp"].astype(float).groupby(frame).first()
    elif fps:
        times = pd.Series((frame.unique() - frame.min()) / float(fps), index=frame.unique())
    else:
        raise FaceTableError(
            f"{path} has no timestamp column; pass fps= so OpenFace frame numbers become seconds"
        )
    times = times.sort_index()
    best = _most_confident(frame, confidence.where(success))

    out = _empty_frames(times.to_numpy())
    at = times.index.get_indexer(best.index)
    out.loc[at, "face"] = True
    out.loc[at, "face_score"] = confidence.loc[best.to_numpy()].to_numpy(dtype=float)
    out.loc[at, list(AU_COLUMNS)] = _openface_aus(table).loc[best.to_numpy()].to_numpy()
    presence = pd.DataFrame(np.nan, index=out.index, columns=list(AU_PRESENCE_COLUMNS))
    for au, column in zip(AU_COLUMNS, AU_PRESENCE_COLUMNS):
        if column in table.columns:
            called = pd.to_numeric(table[column], errors="coerce") >= 0.5
            presence.loc[at, column] = called.loc[best.to_numpy()].to_numpy(dtype=float)
    return pd.concat([out, presence], axis=1)


def _openface_aus(table: pd.DataFrame) -> pd.DataFrame:
    """All rows' AUs on the canonical 0-1 scale (NaN where OpenFace has no such AU)."""
    aus = pd.DataFrame(np.nan, index=table.index, columns=list(AU_COLUMNS))
    for au in AU_COLUMNS:
        intensity, presence = table.get(f"{au}_r"), table.get(f"{au}_c")
        if intensity is not None:
            value = (intensity.astype(float) / OPENFACE_MAX_INTENSITY).clip(0.0, 1.0)
            if presence is not None:
                value = value.where(presence.astype(float) >= 0.5, 0.0)
            aus[au] = value
        elif presence is not None:
            aus[au] = (presence.astype(float) >= 0.5).astype(float)
    return aus


__all__ = [
    "FEAT_EMOTION_NAMES",
    "FaceTableError",
    "feat_frames",
    "read_face_table",
]
