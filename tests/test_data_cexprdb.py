"""Preparing C-EXPR-DB: segment cutting, failures with reasons, both protocols, the leakage check."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from data_cards import CexprdbOptions, check_leakage, find_leakage, load_card, prepare_cexprdb
from data_cards.cexprdb import parse_timestamp, read_annotation
from data_cards.errors import AnnotationError, LeakageError

FPS = 25
CLASSES = load_card("cexprdb").classes
HEADER = "Begin Time - hh:mm:ss.ms,End Time - hh:mm:ss.ms," + ",".join(CLASSES)


def make_video(path: Path, seconds: float) -> Path:
    """A real source video: moving test pattern (every frame differs) and a tone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size=96x72:rate={FPS}",
         "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000",
         "-t", str(seconds), "-c:v", "libx264", "-g", "250", "-pix_fmt", "yuv420p",
         "-c:a", "aac", str(path)],
        check=True,
    )  # fmt: skip
    return path


def row(begin: str, end: str, label: str | list[str]) -> str:
    labels = [label] if isinstance(label, str) else label
    return ",".join([begin, end] + ["1" if c in labels else "" for c in CLASSES])


def write_annotation(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def source_video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("media") / "source.mp4", 6.0)


@pytest.fixture
def release(tmp_path, source_video) -> Path:
    """Four annotated 6 s videos, one annotation without video, one video without annotation."""
    root = tmp_path / "C-EXPR-DB"
    for name in ("01", "02", "03", "04", "99"):
        (root / "videos").mkdir(parents=True, exist_ok=True)
        shutil.copy(source_video, root / "videos" / f"{name}.mp4")
    write_annotation(root / "annotation/01.csv", [
        row("00:00:00.520", "00:00:02.000", "Happily Surprised"),
        row("00:00:02.000", "00:00:03.500", "Sadly Fearful"),
        row("00:00:04.000", "00:00:04.100", "Happily Surprised"),  # too short
        row("00:00:07.000", "00:00:08.000", "Other"),  # starts after the video ends
    ])  # fmt: skip
    write_annotation(root / "annotation/02.csv", [
        row("00:00:01.000", "00:00:02.000", "Sadly Angry"),
        row("00:00:05.000", "00:00:06.400", "Happily Surprised"),  # end clamped to 6 s
        row("00:00:01.000", "00:00:02.000", ["Sadly Angry", "Other"]),  # two classes
        row("1:2", "00:00:03.000", "Other"),  # unreadable time
    ])  # fmt: skip
    write_annotation(root / "annotation/03.csv", [
        row("00:00:00.000", "00:00:01.000", "Other"),
        row("00:00:01.000", "00:00:02.500", "Sadly Angry"),
        row("00:00:03.000", "00:00:04.000", "Happily Surprised"),
    ])  # fmt: skip
    write_annotation(root / "annotation/04.csv", [
        row("00:00:00.000", "00:00:01.000", "Sadly Fearful"),
        row("00:00:02.000", "00:00:03.000", "Other"),
    ])  # fmt: skip
    write_annotation(root / "annotation/05.csv", [row("00:00:00.000", "00:00:01.000", "Other")])
    return root


OPTIONS = CexprdbOptions(folds=2, val_fraction=0.5, reference_folds=2)


def decoded_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray").astype(float) for f in container.decode(video=0)]


def test_prepare_cuts_each_segment_frame_accurately_with_audio(release, tmp_path):
    prepared = prepare_cexprdb(release, tmp_path / "out", OPTIONS)
    manifest = prepared.manifest().set_index("clip_id")
    assert sorted(manifest.index) == [
        "01_Happily-Surprised_0", "01_Sadly-Fearful_0", "02_Happily-Surprised_0", "02_Sadly-Angry_0",
        "03_Happily-Surprised_0", "03_Other_0", "03_Sadly-Angry_0", "04_Other_0", "04_Sadly-Fearful_0",
    ]  # fmt: skip
    clip = manifest.loc["01_Happily-Surprised_0"]
    assert clip["label"] == "Happily Surprised" and clip["source_video"] == "01"
    assert (clip["source_start"], clip["source_end"]) == (0.52, 2.0)
    assert clip["path"] == "clips/01_Happily-Surprised_0.mp4"  # relative to the manifest folder
    assert clip["has_audio"] and abs(clip["clip_duration"] - 1.48) < 0.1

    # Frame-accurate: the clip's first frame is the source frame at 0.52 s (frame 13), although
    # the nearest keyframe is frame 0; a stream copy would start there.
    source = decoded_frames(release / "videos/01.mp4")
    cut = decoded_frames(prepared.output_dir / clip["path"])
    distances = [np.abs(frame - cut[0]).mean() for frame in source]
    assert int(np.argmin(distances)) == round(0.52 * FPS)
    assert abs(len(cut) - round(1.48 * FPS)) <= 1

    # `cer textualize` reads the manifest as it is: relative clip paths resolve to the cuts.
    inputs = pytest.importorskip("textualize.inputs")
    clips = {c.clip_id: c for c in inputs.read_manifest(prepared.manifest_path)}
    assert clips["01_Happily-Surprised_0"].label == "Happily Surprised"
    assert all(Path(c.path).is_file() and c.start is None for c in clips.values())

    clamped = manifest.loc["02_Happily-Surprised_0"]
    assert clamped["source_end"] == pytest.approx(6.0, abs=0.05)
    assert "end clamped from 6.400 s" in clamped["issue"]


def test_bad_segments_are_reported_with_reasons_and_the_rest_continues(release, tmp_path):
    prepared = prepare_cexprdb(release, tmp_path / "out", OPTIONS)
    failures = {f.clip_id: f for f in prepared.failures()}
    assert failures["01_Happily-Surprised_1"].reason == "too_short"
    assert (
        "lasts 0.100 s, shorter than --min-duration 0.2 s"
        in failures["01_Happily-Surprised_1"].message
    )
    assert failures["01_Other_0"].reason == "out_of_range"
    assert "starts at 7.000 s but 01.mp4 is only 6." in failures["01_Other_0"].message
    assert failures["02#line4"].reason == "bad_annotation"
    assert "exactly one class" in failures["02#line4"].message
    assert "is not hh:mm:ss.ms" in failures["02#line5"].message
    assert failures["05_Other_0"].reason == "source_missing"
    assert prepared.report["videos_without_annotation"] == ["99"]
    assert prepared.report["clips_per_class"]["Sadly Angry"] == 2


def test_protocols_reference_leaks_by_design_and_video_disjoint_does_not(release, tmp_path):
    prepared = prepare_cexprdb(release, tmp_path / "out", OPTIONS)
    splits = prepared.splits()
    assert set(splits["protocol"]) == {"reference-5fold", "video-disjoint"}

    reference = splits[splits["protocol"] == "reference-5fold"]
    for _, fold in reference.groupby("fold"):
        val = set(fold.loc[fold["role"] == "val", "clip_id"])
        assert val == set(fold.loc[fold["role"] == "test", "clip_id"])  # val is test

    with pytest.raises(LeakageError, match="reference-5fold fold 0: .*source video"):
        check_leakage(prepared.output_dir, protocol="reference-5fold")
    check_leakage(prepared.output_dir, protocol="video-disjoint")  # passes

    disjoint = splits[splits["protocol"] == "video-disjoint"]
    manifest = prepared.manifest().set_index("clip_id")
    tested = disjoint[disjoint["role"] == "test"]
    assert sorted(tested["clip_id"]) == sorted(manifest.index)  # every clip tested exactly once
    for _, fold in disjoint.groupby("fold"):
        assert set(fold["role"]) == {"train", "val", "test"}
        assert len(fold) == len(manifest)


def test_rerun_cuts_only_new_or_changed_segments(release, tmp_path):
    out = tmp_path / "out"
    first = prepare_cexprdb(release, out, OPTIONS)
    assert first.report["work"]["segments_cut"] == 9
    again = prepare_cexprdb(release, out, OPTIONS)
    assert again.report["work"]["segments_cut"] == 0 and again.report["work"]["cuts_reused"] == 9
    assert again.manifest().equals(first.manifest())

    with (release / "annotation/04.csv").open("a", encoding="utf-8") as handle:
        handle.write(row("00:00:04.000", "00:00:05.000", "Angrily Surprised") + "\n")
    third = prepare_cexprdb(release, out, OPTIONS)
    assert third.report["work"]["segments_cut"] == 1
    assert "04_Angrily-Surprised_0" in set(third.manifest()["clip_id"])


def test_annotation_format_errors_name_the_expected_header(tmp_path):
    bad = tmp_path / "07.csv"
    bad.write_text("start,end,happy\n00:00:01.000,00:00:02.000,1\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match="Begin Time - hh:mm:ss.ms"):
        read_annotation(bad)
    assert parse_timestamp("00:01:02.250") == pytest.approx(62.25)
    assert parse_timestamp("01:00:00") == 3600.0
    with pytest.raises(AnnotationError):
        parse_timestamp("00:61:00.000")


def test_five_fold_protocols_on_a_realistic_number_of_videos():
    """56 videos like the challenge set: the recommended protocol is video-disjoint and stratified."""
    import random

    import pandas as pd

    from data_cards.protocols import reference_folds, video_disjoint_folds

    rng = random.Random(1)
    clips = [(f"{v:02d}_{c}_{k}", c, f"{v:02d}") for v in range(56)
             for k, c in enumerate(rng.sample(CLASSES, rng.randint(1, 3)))]  # fmt: skip
    manifest = pd.DataFrame(clips, columns=["clip_id", "label", "source_video"])
    disjoint = pd.DataFrame(video_disjoint_folds(clips, n_folds=5, seed=0))
    reference = pd.DataFrame(reference_folds([(c, lab) for c, lab, _ in clips], n_folds=5, seed=0))
    assert find_leakage(manifest, disjoint) == []
    assert len(find_leakage(manifest, reference)) >= 5  # every fold leaks videos (and val = test)
    assert disjoint.equals(pd.DataFrame(video_disjoint_folds(clips, n_folds=5, seed=0)))
    assert not disjoint.equals(pd.DataFrame(video_disjoint_folds(clips, n_folds=5, seed=1)))
    sizes = disjoint[disjoint["role"] == "test"].groupby("fold").size()
    assert sizes.max() - sizes.min() <= 3  # folds are balanced
    tests = disjoint[disjoint["role"] == "test"].merge(manifest, on="clip_id")
    assert tests.groupby("fold")["label"].nunique().min() >= 6  # each fold sees most classes


def test_an_interrupted_run_resumes_where_it_stopped(release, tmp_path, monkeypatch):
    from data_cards import cexprdb

    real_cut, calls = cexprdb.cut_segment, []

    def cut_then_crash(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the fourth cut
        calls.append(args)
        real_cut(*args, **kwargs)

    monkeypatch.setattr(cexprdb, "cut_segment", cut_then_crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_cexprdb(release, tmp_path / "out", OPTIONS)
    assert not (tmp_path / "out" / "manifest.parquet").exists()
    assert len(list((tmp_path / "out" / "clips").glob("*.mp4"))) == 3

    monkeypatch.setattr(cexprdb, "cut_segment", real_cut)
    resumed = prepare_cexprdb(release, tmp_path / "out", OPTIONS)
    assert (
        resumed.report["work"]["cuts_reused"] == 3 and resumed.report["work"]["segments_cut"] == 6
    )
    assert resumed.n_clips == 9
