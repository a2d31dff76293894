"""Dataset cards, text repair, generic folders and the `cer data` command."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from cer.cli import main as cer
from data_cards import CLIP_COLUMNS, list_cards, load_card, prepare_folder
from data_cards.errors import CardError, DataCardError
from data_cards.manifest import read_manifest
from data_cards.protocols import reference_folds_from_lists
from data_cards.text_repair import repair_text


def test_shipped_cards_hold_the_facts_the_code_reads():
    assert set(list_cards()) >= {"meld", "cexprdb", "folder"}
    meld = load_card("meld")
    assert meld.classes == ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
    assert meld.get("sentiments") == ["negative", "neutral", "positive"]
    counts = {s: meld.get(f"splits.{s}.utterances") for s in ("train", "dev", "test")}
    assert counts == {"train": 9989, "dev": 1109, "test": 2610}
    assert meld.get("clip_name") == "dia{Dialogue_ID}_utt{Utterance_ID}.mp4"
    assert "dev/dia110_utt7" in {p["clip"] for p in meld.get("known_problems")}
    assert "poria2019meld" in meld.get("citation") and "GPL-3.0" in meld.get("licence")
    assert "U+0092" in meld.body and "silent" in meld.body.lower()

    cexpr = load_card("C-EXPR-DB")
    assert cexpr.classes[-1] == "Other" and len(cexpr.classes) == 8
    assert "Fearfully Surprised" in cexpr.get("challenge_classes") and "Other" not in cexpr.get(
        "challenge_classes"
    )
    assert cexpr.get("annotation.begin_column") == "Begin Time - hh:mm:ss.ms"
    assert cexpr.get("clip_id") == "{video}_{label_slug}_{index}"
    assert "EULA" in cexpr.get("access")
    assert "validation **and** as test" in cexpr.body and "share source videos" in cexpr.body


def test_card_errors_say_what_to_do(tmp_path):
    with pytest.raises(CardError, match="shipped cards are: cexprdb, folder, meld"):
        load_card("iemocap")
    broken = tmp_path / "broken.md"
    broken.write_text("# no front matter\n")
    with pytest.raises(CardError, match="must start with a '---' line"):
        load_card(broken)


def test_clip_columns_are_the_fields_of_textualize_clip():
    records = pytest.importorskip("textualize.records")
    assert CLIP_COLUMNS == tuple(f.name for f in dataclasses.fields(records.Clip))


def test_repair_text_undoes_meld_mojibake():
    assert repair_text("Oh my God, he\x92s lost it.") == "Oh my God, he's lost it."
    assert repair_text("So\x85 So\x85here\x92s a key") == "So... So...here's a key"
    assert repair_text("You have to\x97you go") == "You have to\u2014you go"
    assert repair_text("\x93Hi\x94\xa0 there") == '"Hi" there'
    assert repair_text("he\x92s", ascii_punctuation=False) == "he\u2019s"
    assert repair_text("Nestlé Toll House?") == "Nestlé Toll House?"


def make_clip(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=10",
            "-t",
            "0.5",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def my_data(tmp_path_factory) -> Path:
    """A user's dataset: clips/, a labels CSV with their own column names, and a card."""
    root = tmp_path_factory.mktemp("my_data")
    clip = make_clip(root / "clips" / "a.mp4")
    for name in ("b", "c", "d", "e", "f", "g", "h"):
        shutil.copy(clip, root / "clips" / f"{name}.mp4")
    (root / "clips" / "broken.mp4").write_bytes(b"not a video")
    rows = [
        ("a", "happy", "v1"),
        ("b", "sad", "v1"),
        ("c", "happy", "v2"),
        ("d", "sad", "v2"),
        ("e", "happy", "v3"),
        ("f", "sad", "v3"),
        ("g", "happy", "v4"),
        ("h", "sad", "v4"),
        ("broken", "happy", "v5"),
        ("gone", "sad", "v5"),
        ("a", "angry", "v1"),
    ]
    pd.DataFrame(
        {
            "clip": [f"{n}.mp4" for n, _, _ in rows],
            "emotion": [e for _, e, _ in rows],
            "recording": [v for _, _, v in rows],
            "said": ["hello"] * len(rows),
        }
    ).to_csv(root / "labels.csv", index=False)
    card = load_card("folder").text()
    card = card.replace("name: folder", "name: my-data").replace(
        "classes: []", "classes: [happy, sad]"
    )
    card = card.replace("  file: file ", "  file: clip ").replace(
        "  label: label", "  label: emotion"
    )
    card = card.replace("source_video: video", "source_video: recording").replace(
        "gold_text: text", "gold_text: said"
    )
    card = card.replace("folds: 5", "folds: 2").replace("val_fraction: 0.2", "val_fraction: 0.5")
    (root / "my_data.md").write_text(card, encoding="utf-8")
    return root


def test_prepare_folder_from_a_user_card(my_data, tmp_path):
    prepared = prepare_folder(None, None, tmp_path / "out", card=my_data / "my_data.md")
    manifest = prepared.manifest().set_index("clip_id")
    assert sorted(manifest.index) == list("abcdefgh")
    assert manifest.loc["c", "label"] == "happy" and manifest.loc["c", "gold_text"] == "hello"
    assert manifest.loc["c", "source_video"] == "v2" and manifest.loc["c", "dataset"] == "my-data"
    assert Path(manifest.loc["c", "path"]).is_file()
    reasons = {f.clip_id: f.reason for f in prepared.failures()}
    assert reasons == {"broken": "undecodable", "gone": "missing", "a": "bad_annotation"}
    assert prepared.protocols == ("video-disjoint",)
    assert prepared.report["columns_used"]["label"] == "emotion"


def test_prepare_folder_with_a_split_column_and_no_card(tmp_path):
    clips = tmp_path / "clips"
    make_clip(clips / "x.mp4")
    shutil.copy(clips / "x.mp4", clips / "y.mp4")
    pd.DataFrame(
        {"file": ["x.mp4", "y.mp4"], "label": ["calm", "angry"], "split": ["train", "dev"]}
    ).to_csv(tmp_path / "labels.csv", index=False)
    prepared = prepare_folder(clips, tmp_path / "labels.csv", tmp_path / "out", name="tiny")
    splits = prepared.splits()
    assert dict(zip(splits["clip_id"], splits["role"])) == {"x": "train", "y": "val"}
    assert read_manifest(prepared.manifest_path)["split"].tolist() == ["train", "dev"]


def test_reference_fold_lists_from_the_reference_repository(tmp_path):
    for i, (name, ids) in enumerate(
        [("val.txt", ["01_Other_0", "02_Other_0"]), ("test.txt", ["03_Other_0"])]
    ):
        folder = tmp_path / "folds" / f"split-{i}"
        folder.mkdir(parents=True)
        (folder / name).write_text("".join(f"Other/{c},7,some words, with commas\n" for c in ids))
    rows = pd.DataFrame(
        reference_folds_from_lists(tmp_path / "folds", {"01_Other_0", "02_Other_0", "03_Other_0"})
    )
    fold0 = rows[rows["fold"] == 0]
    assert set(fold0.loc[fold0["role"] == "test", "clip_id"]) == {"01_Other_0", "02_Other_0"}
    assert set(fold0.loc[fold0["role"] == "train", "clip_id"]) == {"03_Other_0"}
    with pytest.raises(DataCardError, match="not in this manifest"):
        reference_folds_from_lists(tmp_path / "folds", {"01_Other_0"})


def test_cli_help_card_prepare_and_check(my_data, tmp_path, capsys):
    for argv in (
        ["data", "--help"],
        ["data", "prepare", "--help"],
        ["data", "prepare", "meld", "--help"],
        ["data", "prepare", "cexprdb", "--help"],
        ["data", "prepare", "folder", "--help"],
        ["data", "card", "--help"],
        ["data", "check", "--help"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            cer(argv)
        assert exit_info.value.code == 0
    capsys.readouterr()

    assert cer(["data", "card", "meld"]) == 0
    assert "dia{Dialogue_ID}_utt{Utterance_ID}.mp4" in capsys.readouterr().out
    assert cer(["data", "card", "cexprdb", "--front-matter"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"][0] == "Fearfully Surprised"

    out = tmp_path / "out"
    assert cer(["data", "prepare", "folder", str(out), "--card", str(my_data / "my_data.md")]) == 0
    printed = capsys.readouterr().out
    assert "8 clips prepared" in printed and "1 missing" in printed
    assert cer(["data", "check", str(out)]) == 0
    assert "no leakage" in capsys.readouterr().out

    splits = pd.read_parquet(out / "splits.parquet")
    leaky = splits.copy()
    leaky.loc[(leaky["clip_id"] == "b") & (leaky["fold"] == 0), "role"] = "test"
    leaky.loc[(leaky["clip_id"] == "a") & (leaky["fold"] == 0), "role"] = "train"
    leaky.to_parquet(out / "splits.parquet", index=False)
    assert cer(["data", "check", str(out)]) == 1
    err = capsys.readouterr().err
    assert "LEAKAGE" in err and "fold 0" in err and "(v1)" in err


def test_prepare_meld_cli_reports_a_missing_release(tmp_path, capsys):
    assert cer(["data", "prepare", "meld", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
