"""Preparing MELD: a synthetic release with the real layout and the real release's damage."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from data_cards import load_card, prepare_meld
from data_cards.errors import ReleaseLayoutError
from data_cards.meld import MeldOptions, read_meld_csv

SHARED_MELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "meld"
HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
          "Season", "Episode", "StartTime", "EndTime"]  # fmt: skip


def make_clip(path: Path, seconds: float = 1.0) -> Path:
    """A real, tiny H.264 + AAC clip (64x48, 10 fps, 440 Hz tone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000",
         "-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)],
        check=True,
    )  # fmt: skip
    return path


def write_csv(path: Path, rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def clip_template(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("media") / "clip.mp4")


@pytest.fixture
def release(tmp_path, clip_template) -> Path:
    """MELD.Raw in miniature: U+0092 apostrophes, a missing dev clip, a broken test clip."""
    root = tmp_path / "MELD.Raw"
    t = "00:00:01,000"
    write_csv(root / "train" / "train_sent_emo.csv", [
        [1, "Oh my God, he\x92s lost it.", "Phoebe", "sadness", "negative", 0, 0, 4, 7, t, "00:00:02,500"],
        [2, "What?", "Monica", "surprise", "negative", 0, 1, 4, 7, "00:00:03,000", "00:00:03,600"],
        [3, "So\x85 here\x92s a key.", "Chandler", "joy", "positive", 0, 2, 4, 7, "00:00:04,000", "00:00:05,000"],
        [4, "You\x92re a genius!", "Ross", "joy", "positive", 1, 0, 4, 4, "00:12:32,334", "00:12:33,960"],
    ])  # fmt: skip
    write_csv(root / "dev_sent_emo.csv", [
        [1, "Yeah, right.\xa0 Sure!", "Joey", "neutral", "neutral", 110, 6, 2, 3, t, "00:00:02,000"],
        [2, "I\x92m not here.", "Joey", "fear", "negative", 110, 7, 2, 3, t, "00:00:02,000"],
    ])  # fmt: skip
    write_csv(root / "test_sent_emo.csv", [
        [1, "Hi.", "Rachel", "neutral", "neutral", 0, 0, 1, 1, t, "00:00:01,500"],
        [2, "Bye.", "Rachel", "anger", "negative", 0, 1, 1, 1, t, "00:00:01,500"],
    ])  # fmt: skip
    for split, folder, names in [
        ("train", "train/train_splits", ["dia0_utt0", "dia0_utt1", "dia0_utt2", "dia1_utt0"]),
        (
            "dev",
            "dev/dev_splits_complete",
            ["dia110_utt6", "dia66_utt9"],
        ),  # 110_7 missing, 66_9 extra
        ("test", "test/output_repeated_splits_test", ["dia0_utt0"]),
    ]:
        for name in names:
            (root / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(clip_template, root / folder / f"{name}.mp4")
    (root / "test/output_repeated_splits_test/dia0_utt1.mp4").write_bytes(
        b"\x00\x00\x00\x18ftypmp42" * 40
    )
    (root / "test/output_repeated_splits_test/._dia0_utt0.mp4").write_bytes(b"mac resource fork")
    return root


def test_prepare_meld_pairs_utterances_with_clips_and_reports_what_is_wrong(release, tmp_path):
    prepared = prepare_meld(release, tmp_path / "out")

    manifest = prepared.manifest()
    assert list(manifest.columns[:9]) == ["clip_id", "path", "start", "end", "label", "split",
                                          "speaker", "gold_text", "context"]  # fmt: skip
    assert prepared.n_clips == 6 and len(manifest) == 6
    first = manifest.set_index("clip_id").loc["train/dia0_utt0"]
    assert first["gold_text"] == "Oh my God, he's lost it."  # U+0092 repaired
    assert first["label"] == "sadness" and first["sentiment"] == "negative"
    assert first["speaker"] == "Phoebe" and first["split"] == "train"
    assert Path(first["path"]).is_file() and first["has_audio"]
    assert pd.isna(first["context"])  # first utterance of its dialogue
    third = manifest.set_index("clip_id").loc["train/dia0_utt2"]
    assert third["gold_text"] == "So... here's a key."
    assert third["context"] == "Phoebe: Oh my God, he's lost it.\nMonica: What?"
    dev = manifest.set_index("clip_id").loc["dev/dia110_utt6"]
    assert dev["gold_text"] == "Yeah, right. Sure!"
    assert not any("\x92" in t for t in manifest["gold_text"])

    inputs = pytest.importorskip("textualize.inputs")  # what `cer textualize` sees
    clip = {c.clip_id: c for c in inputs.read_manifest(prepared.manifest_path)}["train/dia0_utt2"]
    assert clip.gold_text == "So... here's a key." and clip.speaker == "Chandler"
    assert clip.context.endswith("Monica: What?") and clip.split == "train"

    failures = {f.clip_id: f for f in prepared.failures()}
    assert failures["dev/dia110_utt7"].reason == "missing"
    assert "dia110_utt7.mp4" in failures["dev/dia110_utt7"].message
    assert "known problem" in failures["dev/dia110_utt7"].message  # the card lists it
    assert failures["test/dia0_utt1"].reason == "undecodable"
    assert set(failures) == {"dev/dia110_utt7", "test/dia0_utt1"}

    splits = prepared.splits()
    roles = dict(zip(splits["clip_id"], splits["role"]))
    assert roles["train/dia0_utt0"] == "train" and roles["dev/dia110_utt6"] == "val"
    assert roles["test/dia0_utt0"] == "test" and set(splits["protocol"]) == {"official"}

    report = json.loads(prepared.report_path.read_text())
    assert report["splits"]["dev"]["unannotated_examples"] == ["dia66_utt9.mp4"]
    assert report["splits"]["train"]["text_repaired"] == 3
    assert report["splits"]["train"]["matches_official_count"] is False  # 4 rows, not 9,989
    assert report["failures_by_reason"] == {"missing": 1, "undecodable": 1}


def test_rerun_checks_only_new_clips_and_picks_up_a_clip_that_appeared(
    release, tmp_path, clip_template
):
    out = tmp_path / "out"
    first = prepare_meld(release, out)
    assert first.report["work"]["clips_checked"] == 7
    again = prepare_meld(release, out)
    assert again.report["work"] == {"clips_checked": 0, "checks_reused": 7}
    pd.testing.assert_frame_equal(first.manifest(), again.manifest())

    shutil.copy(clip_template, release / "dev/dev_splits_complete/dia110_utt7.mp4")
    third = prepare_meld(release, out)
    assert third.report["work"] == {"clips_checked": 1, "checks_reused": 7}
    assert "dev/dia110_utt7" in set(third.manifest()["clip_id"])
    assert third.n_failures == 1


def test_context_turns_and_split_selection(release, tmp_path):
    prepared = prepare_meld(
        release, tmp_path / "out", MeldOptions(splits=("train",), context_turns=1)
    )
    manifest = prepared.manifest().set_index("clip_id")
    assert set(manifest["split"]) == {"train"}
    assert manifest.loc["train/dia0_utt2", "context"] == "Monica: What?"


def test_missing_clip_folder_names_the_fix(release, tmp_path):
    shutil.rmtree(release / "test")
    with pytest.raises(ReleaseLayoutError, match="--clips-dir test=FOLDER"):
        prepare_meld(release, tmp_path / "out")
    elsewhere = tmp_path / "my_test_clips"
    elsewhere.mkdir()
    prepared = prepare_meld(
        release, tmp_path / "out", MeldOptions(clips_dir=(f"test={elsewhere}",))
    )
    assert {f.reason for f in prepared.failures() if f.clip_id.startswith("test/")} == {"missing"}


@pytest.mark.skipif(
    not SHARED_MELD.is_dir(), reason=f"official MELD CSVs not present at {SHARED_MELD}"
)
def test_official_csvs_match_the_card_and_repair_cleanly():
    card = load_card("meld")
    for split, facts in card.meta["splits"].items():
        frame = read_meld_csv(SHARED_MELD / facts["csv"], card)
        assert len(frame) == facts["utterances"], split
        assert set(frame["Emotion"]) == set(card.classes)
        assert set(frame["Sentiment"]) == set(card.meta["sentiments"])
        texts = "".join(frame["Utterance"]) + "".join(frame["Speaker"])
        assert not any(0x80 <= ord(ch) <= 0x9F for ch in texts)
        assert "\u2019" not in texts and "\xa0" not in texts
    dev = read_meld_csv(SHARED_MELD / "dev_sent_emo.csv", card).set_index("Sr No.")
    assert dev.loc[1, "Utterance"] == "Oh my God, he's lost it. He's totally lost it."


@pytest.mark.skipif(
    not SHARED_MELD.is_dir(), reason=f"official MELD CSVs not present at {SHARED_MELD}"
)
def test_official_csvs_with_a_partial_clip_folder(tmp_path, clip_template):
    """All 13,708 utterances are read; only the clips present end up in the manifest."""
    root = tmp_path / "MELD.Raw"
    root.mkdir()
    for name in ("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv"):
        (root / name).symlink_to(SHARED_MELD / name)
    for folder in ("train_splits", "dev_splits_complete", "output_repeated_splits_test"):
        (root / folder).mkdir()
    shutil.copy(clip_template, root / "dev_splits_complete/dia0_utt0.mp4")
    prepared = prepare_meld(root, tmp_path / "out")
    assert prepared.n_clips == 1
    assert prepared.n_failures == 9989 + 1109 + 2610 - 1
    row = prepared.manifest().iloc[0]
    assert row["clip_id"] == "dev/dia0_utt0" and row["gold_text"].startswith("Oh my God, he's")
    assert all(
        prepared.report["splits"][s]["matches_official_count"] for s in ("train", "dev", "test")
    )


def test_prepare_from_the_csvs_alone_gives_text_only_rows(tmp_path):
    """No clip folder anywhere: every utterance is kept for a text-only study, marked as such."""
    root = tmp_path / "csvs"
    t = "00:00:01,000"
    write_csv(root / "train_sent_emo.csv", [
        [1, "Oh my God, he\x92s lost it.", "Phoebe", "sadness", "negative", 0, 0, 4, 7, t, t],
        [2, "What?", "Monica", "surprise", "negative", 0, 1, 4, 7, t, t],
    ])  # fmt: skip
    write_csv(
        root / "dev_sent_emo.csv", [[1, "Hey.", "Joey", "neutral", "neutral", 3, 0, 2, 3, t, t]]
    )
    write_csv(
        root / "test_sent_emo.csv", [[1, "Hi.", "Rachel", "joy", "positive", 0, 0, 1, 1, t, t]]
    )

    prepared = prepare_meld(root, tmp_path / "out")  # no --text-only needed: no clip folders

    manifest = prepared.manifest().set_index("clip_id")
    assert prepared.n_clips == 4 and prepared.n_failures == 0
    assert manifest["text_only"].all() and set(manifest["path"]) == {""}
    second = manifest.loc["train/dia0_utt1"]
    assert second["gold_text"] == "What?" and second["speaker"] == "Monica"
    assert second["context"] == "Phoebe: Oh my God, he's lost it."
    assert not second["has_audio"] and pd.isna(second["clip_duration"])
    assert prepared.report["text_only"] is True and prepared.report["text_only_rows"] == 4
    assert prepared.report["splits"]["dev"]["clip_dir"] is None
    roles = dict(zip(prepared.splits()["clip_id"], prepared.splits()["role"]))
    assert roles == {"train/dia0_utt0": "train", "train/dia0_utt1": "train",
                     "dev/dia3_utt0": "val", "test/dia0_utt0": "test"}  # fmt: skip

    with pytest.raises(ReleaseLayoutError, match="--text-only"):  # clips demanded, none there
        prepare_meld(root, tmp_path / "strict", MeldOptions(text_only=False))


def test_text_only_keeps_utterances_without_a_clip_and_attaches_the_clips_present(
    release, tmp_path
):
    prepared = prepare_meld(release, tmp_path / "out", MeldOptions(text_only=True))

    manifest = prepared.manifest().set_index("clip_id")
    assert prepared.n_failures == 0 and prepared.n_clips == 8  # every utterance of the CSVs
    with_clip = manifest.loc["train/dia0_utt0"]
    assert not with_clip["text_only"] and Path(with_clip["path"]).is_file()
    missing = manifest.loc["dev/dia110_utt7"]  # the release's missing clip
    assert (
        missing["text_only"] and missing["path"] == "" and missing["gold_text"] == "I'm not here."
    )
    assert "dia110_utt7.mp4 not in" in missing["issue"]
    broken = manifest.loc["test/dia0_utt1"]  # undecodable: kept as text, and said why
    assert broken["text_only"] and broken["issue"].startswith("text-only row: dia0_utt1.mp4")
    assert prepared.report["splits"]["test"] == {**prepared.report["splits"]["test"],
                                                 "clips": 1, "text_only_rows": 1}  # fmt: skip


def test_prepare_command_takes_text_only(tmp_path):
    root = tmp_path / "csvs"
    t = "00:00:01,000"
    for name in ("train", "dev", "test"):
        write_csv(
            root / f"{name}_sent_emo.csv", [[1, "Hi.", "Ross", "joy", "positive", 0, 0, 1, 1, t, t]]
        )
    result = subprocess.run(
        [sys.executable, "-m", "cer", "data", "prepare", "meld", str(root), str(tmp_path / "out"),
         "--text-only",
         "--context-turns", "3"],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "3 clips prepared" in result.stdout and "3 text-only" in result.stdout


@pytest.mark.skipif(
    not SHARED_MELD.is_dir(), reason=f"official MELD CSVs not present at {SHARED_MELD}"
)
def test_official_csvs_alone_give_every_utterance_as_a_text_only_row(tmp_path):
    prepared = prepare_meld(SHARED_MELD, tmp_path / "out")
    assert prepared.n_clips == 9989 + 1109 + 2610 and prepared.n_failures == 0
    manifest = prepared.manifest().set_index("clip_id")
    assert manifest["text_only"].all()
    row = manifest.loc["dev/dia0_utt1"]
    assert row["context"] == "Phoebe: Oh my God, he's lost it. He's totally lost it."


def test_a_manifest_of_clips_and_text_only_rows_textualizes_both(release, tmp_path):
    from textualize.config import TextualizeConfig
    from textualize.pipeline import textualize

    prepared = prepare_meld(release, tmp_path / "out", MeldOptions(text_only=True))
    cfg = TextualizeConfig(
        cache_dir=str(tmp_path / "cache"),
        face="off",
        transcript=False,
        template="dialogue",
        modalities="TA",
        transcript_source="gold",
        workers=1,
        progress=False,
    )
    summary = textualize(prepared.manifest_path, tmp_path / "prompts", cfg)

    assert summary.text_only == 2 and summary.failed == 0  # dev/dia110_utt7, test/dia0_utt1
    rows = pd.read_parquet(tmp_path / "prompts" / "prompts.parquet").set_index("clip_id")
    assert rows.loc["train/dia0_utt2", "prosody_status"] == "ok"  # its clip was analysed
    assert rows.loc["dev/dia110_utt7", "prosody_status"] == "no_stream"
    assert rows.loc["dev/dia110_utt7", "prompt"] == (
        "Previous turns:\nJoey: Yeah, right. Sure!\nCurrent turn (Joey):\n"
        "Transcription: I'm not here.\nProsody characteristics: no audio."
    )
