"""`cer data prepare ravdess`: labels from file names and HiCMAE's speaker-independent 6 folds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import media_factory
import pandas as pd
import pytest

from cer.cli import main as cer
from data_cards import check_leakage, load_card, prepare_ravdess
from data_cards.errors import AnnotationError
from data_cards.ravdess import RavdessOptions, parse_name, read_published_folds

SHARED_RAVDESS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ravdess"
# Emotion codes 01-08 of the file names, in order.
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
# HiCMAE's split01..06/test.csv, read actor by actor (see data_cards/ravdess_folds.csv).
PUBLISHED_TEST_ACTORS = {
    0: [1, 2, 3, 4],
    1: [5, 6, 7, 8],
    2: [9, 10, 11, 12],
    3: [13, 14, 15, 16],
    4: [17, 18, 19, 20],
    5: [21, 22, 23, 24],
}


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> dict[str, Path]:
    """One short real file per format, copied under RAVDESS names (copies are cheap, ffmpeg is not)."""
    folder = tmp_path_factory.mktemp("media")
    return {
        ".flac": media_factory.tone(folder / "tone.flac", seconds=0.3),
        ".wav": media_factory.tone(folder / "tone.wav", seconds=0.3),
        ".mp4": media_factory.video(folder / "clip.mp4", seconds=0.4),
    }


def fake_ravdess(root: Path, sounds, actors, modality: str = "03", suffix: str = ".flac") -> Path:
    """Actor_XX folders with an angry (strong) and a happy (normal) take per actor."""
    for actor in actors:
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for code in ("05-02-01-01", "03-01-02-02"):
            shutil.copy(sounds[suffix], folder / f"{modality}-01-{code}-{actor:02d}{suffix}")
    return root


def test_labels_come_from_the_file_names():
    name = parse_name("03-01-05-02-01-01-07")
    assert (name.modality, name.vocal_channel, name.emotion, name.intensity) == (
        "audio",
        "speech",
        "angry",
        "strong",
    )
    assert (name.actor, name.speaker, name.sex, name.statement) == (7, "actor07", "male", 1)
    assert parse_name("01-01-08-01-02-02-24").emotion == "surprised"
    assert parse_name("01-01-08-01-02-02-24").sex == "female"
    assert [parse_name(f"03-01-0{e}-01-01-01-01").emotion for e in range(1, 9)] == list(EMOTIONS)
    for bad in ("03-01-09-01-01-01-01", "03-01-05-01-01-01-25", "03-01-01-02-01-01-01", "x"):
        with pytest.raises(AnnotationError):
            parse_name(bad)


def test_the_shipped_fold_table_is_hicmaes_published_test_actors():
    fold_of = read_published_folds()
    assert sorted(fold_of) == list(range(1, 25))  # every actor tested exactly once
    by_fold = {f: sorted(a for a, g in fold_of.items() if g == f) for f in set(fold_of.values())}
    assert by_fold == PUBLISHED_TEST_ACTORS


def test_all_24_actors_give_six_speaker_independent_folds(tmp_path, sounds):
    folder = fake_ravdess(tmp_path / "RAVDESS", sounds, range(1, 25))
    (folder / "labels.csv").write_text("not,a,clip\n")
    shutil.copy(sounds[".flac"], folder / "Actor_01" / "03-02-05-01-01-01-01.flac")  # song
    prepared = prepare_ravdess(folder, tmp_path / "out")
    manifest, splits = prepared.manifest(), prepared.splits()
    assert prepared.n_clips == 48 and prepared.n_failures == 0
    row = manifest.set_index("clip_id").loc["Actor_07/03-01-05-02-01-01-07"]
    assert (row.label, row.speaker, row.sex, row.intensity) == (
        "angry",
        "actor07",
        "male",
        "strong",
    )
    assert row.gold_text == "Kids are talking by the door"
    assert set(manifest["label"]) == {"angry", "happy"}
    assert prepared.report["ignored_files"] == {"song files": 1}
    actor = dict(zip(manifest["clip_id"], manifest["actor"]))
    splits["actor"] = splits["clip_id"].map(actor)
    assert sorted(set(splits["fold"])) == list(range(6))
    for fold, part in splits.groupby("fold"):
        roles = {r: set(part.loc[part["role"] == r, "actor"]) for r in ("train", "val", "test")}
        assert sorted(roles["test"]) == PUBLISHED_TEST_ACTORS[fold]
        assert len(roles["val"]) == 2 and {a % 2 for a in roles["val"]} == {0, 1}  # one of each sex
        assert len(roles["train"]) == 18
    tested = splits[splits["role"] == "test"]
    assert tested["clip_id"].value_counts().eq(1).all() and len(tested) == 48
    check_leakage(prepared.output_dir, group_column="speaker")
    check_leakage(prepared.output_dir)  # source_video is the take: no take on two sides either


def test_a_folder_with_some_actors_keeps_their_folds_and_drops_the_rest(tmp_path, sounds):
    folder = fake_ravdess(tmp_path / "part", sounds, range(1, 11), suffix=".wav")
    prepared = prepare_ravdess(folder, tmp_path / "out", RavdessOptions(val_actors=1))
    splits = prepared.splits()
    splits["actor"] = splits["clip_id"].map(lambda c: int(c[-2:]))
    assert sorted(set(splits["fold"])) == [0, 1, 2]
    assert sorted(set(splits.query("fold == 2 and role == 'test'")["actor"])) == [9, 10]
    notes = prepared.report["notes"]
    assert any(n.startswith("fold 2 (HiCMAE split03) tests only actors 09, 10") for n in notes)
    assert [n.split(" (")[0] for n in notes if "dropped" in n] == ["fold 3", "fold 4", "fold 5"]
    check_leakage(prepared.output_dir, group_column="speaker")


def test_audiovisual_release_uses_the_01_files_and_skips_video_only(tmp_path, sounds, capsys):
    folder = fake_ravdess(tmp_path / "av", sounds, (1, 2, 5, 6, 9), modality="01", suffix=".mp4")
    fake_ravdess(folder, sounds, (1, 2), modality="02", suffix=".mp4")
    out = tmp_path / "out"
    assert cer(["data", "prepare", "ravdess", str(folder), str(out), "--val-actors", "1"]) == 0
    said = capsys.readouterr().out
    assert "10 clips prepared" in said and "note: fold 3 (HiCMAE split04" in said
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert set(manifest["media_modality"]) == {"audiovisual"} and manifest["has_audio"].all()
    report = json.loads((out / "prepare.json").read_text())
    assert report["ignored_files"] == {"video files (not --modality audiovisual)": 4}
    assert cer(["data", "check", str(out), "--group-column", "speaker"]) == 0


@pytest.mark.parametrize(
    "case, said",
    [
        ("missing", "does not exist"),
        ("empty", "no RAVDESS files under"),
        ("video-only", "holds no audio (03-) RAVDESS files, only video"),
        ("wrong-modality", "pass --modality audio"),
        ("one-fold", "too few"),
        ("bad-option", "val_actors must be 1 or more"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, sounds, capsys, case, said):
    folder = tmp_path / "in"
    extra = []
    if case == "empty":
        (folder / "Actor_01").mkdir(parents=True)
        (folder / "Actor_01" / "notes.wav").write_bytes(b"")
    elif case == "video-only":
        fake_ravdess(folder, sounds, (1, 5), modality="02", suffix=".mp4")
    elif case == "wrong-modality":
        fake_ravdess(folder, sounds, (1, 5))
        extra = ["--modality", "audiovisual"]
    elif case == "one-fold":
        fake_ravdess(folder, sounds, (1, 2, 3))
    elif case == "bad-option":
        fake_ravdess(folder, sounds, (1, 5))
        extra = ["--val-actors", "0"]
    code = cer(["data", "prepare", "ravdess", str(folder), str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("cer data prepare: error: ") and "\n" not in err
    assert said in err


def test_a_mislabelled_or_misplaced_file_is_a_failure_not_a_crash(tmp_path, sounds):
    folder = fake_ravdess(tmp_path / "in", sounds, (1, 5, 9))
    shutil.copy(sounds[".flac"], folder / "Actor_01" / "03-01-09-01-01-01-01.flac")
    shutil.copy(sounds[".flac"], folder / "Actor_01" / "03-01-04-01-01-01-05.flac")
    (folder / "Actor_05" / "03-01-04-01-01-01-05.flac").write_bytes(b"not audio")
    prepared = prepare_ravdess(folder, tmp_path / "out", RavdessOptions(val_actors=1))
    reasons = {f.clip_id: f.reason for f in prepared.failures()}
    assert reasons == {
        "Actor_01/03-01-09-01-01-01-01": "bad_annotation",
        "Actor_01/03-01-04-01-01-01-05": "bad_annotation",
        "Actor_05/03-01-04-01-01-01-05": "undecodable",
    }
    assert prepared.n_clips == 6


def test_the_card_is_shipped_and_names_the_protocol_and_sources():
    card = load_card("ravdess")
    assert card.classes == EMOTIONS
    assert card.get("protocols.hicmae-6fold.folds_file") == "ravdess_folds.csv"
    assert "github.com/sunlicai/HiCMAE" in card.text()


@pytest.mark.skipif(
    not SHARED_RAVDESS.is_dir(),
    reason=f"the shared RAVDESS audio is not at {SHARED_RAVDESS} (../shared beside the project)",
)
def test_shared_ravdess_actors_01_16_give_the_first_four_published_folds(tmp_path):
    prepared = prepare_ravdess(SHARED_RAVDESS, tmp_path / "out")
    assert prepared.n_clips == 960 and prepared.n_failures == 0
    assert prepared.report["modality"] == "audio"
    splits = prepared.splits()
    splits["actor"] = splits["clip_id"].map(lambda c: int(c[-2:]))
    assert sorted(set(splits["fold"])) == [0, 1, 2, 3]
    for fold in range(4):
        test = sorted(set(splits.query(f"fold == {fold} and role == 'test'")["actor"]))
        assert test == PUBLISHED_TEST_ACTORS[fold]
        assert splits.query(f"fold == {fold}")["clip_id"].nunique() == 960
    assert sum("dropped" in n for n in prepared.report["notes"]) == 2
    labels = pd.read_csv(SHARED_RAVDESS / "labels.csv")
    merged = prepared.manifest().merge(labels, on="clip_id", suffixes=("", "_csv"))
    assert len(merged) == 960 and (merged["label"] == merged["label_csv"]).all()
    check_leakage(prepared.output_dir, group_column="speaker")
