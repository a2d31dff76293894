"""Dialogue context: the previous turns in the prompt, and MELD as a text-only study from its CSVs."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from data_cards import prepare_meld
from data_cards.meld import MeldOptions
from textualize.config import TextualizeConfig
from textualize.pipeline import textualize
from textualize.prompts import ModalityText, PromptRenderer, dialogue_turns

SHARED_MELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "meld"
HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
          "Season", "Episode", "StartTime", "EndTime"]  # fmt: skip
T = "00:00:01,000"
#: One dialogue of four turns, written out of order (the CSVs need not be sorted), and another.
DIALOGUE = [
    [3, "So... here's a key.", "Chandler", "joy", "positive", 0, 2, 4, 7, T, T],
    [1, "Oh my God, he's lost it.", "Phoebe", "sadness", "negative", 0, 0, 4, 7, T, T],
    [4, "A key? To what?", "Monica", "surprise", "positive", 0, 3, 4, 7, T, T],
    [2, "What?", "Monica", "surprise", "negative", 0, 1, 4, 7, T, T],
    [5, "You're a genius!", "Ross", "joy", "positive", 1, 0, 4, 4, T, T],
]
SAYS = ModalityText(True, text="So... here's a key.")


def write_csvs(root: Path) -> Path:
    """train/dev/test CSVs with MELD's column layout and no clip folders."""
    root.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", DIALOGUE), ("dev", DIALOGUE[:2]), ("test", DIALOGUE[4:])):
        with (root / f"{split}_sent_emo.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            writer.writerows(rows)
    return root


def render(template: str, context: str | None, modalities: str = "T") -> str:
    clip = {"clip_id": "c", "speaker": "Chandler", "context": context, "start": 0.0, "end": 1.0}
    no_video = ModalityText(False, missing="no video")
    return PromptRenderer(template, modalities).render(
        transcript=SAYS, visual=no_video, audio=ModalityText(False, missing="no audio"), clip=clip
    )


def test_dialogue_template_puts_the_previous_turns_before_the_utterance():
    context = "Phoebe: Oh my God, he's lost it.\nMonica: What?"
    assert render("dialogue", context) == (
        "Previous turns:\n"
        "Phoebe: Oh my God, he's lost it.\n"
        "Monica: What?\n"
        "Current turn (Chandler):\n"
        "Transcription: So... here's a key."
    )
    chat = render("instruction_dialogue", context)
    assert (
        "The conversation before the clip:\nPhoebe: Oh my God, he's lost it.\nMonica: What?" in chat
    )
    assert 'What they say: "So... here\'s a key."' in chat


def test_without_context_the_dialogue_templates_render_as_their_plain_versions():
    for dialogue, plain in (("dialogue", "paper"), ("instruction_dialogue", "instruction")):
        for context in (None, ""):
            assert render(dialogue, context, "TVA") == render(plain, context, "TVA")
    assert "Previous turns" not in render("dialogue", None)


def test_templates_get_the_turns_with_speaker_and_text():
    turns = dialogue_turns("Phoebe: Oh: my God.\nMonica: What?")
    assert [(t.speaker, t.text) for t in turns] == [("Phoebe", "Oh: my God."), ("Monica", "What?")]
    assert turns[-1].line == "Monica: What?" and dialogue_turns(None) == ()


def test_context_holds_only_earlier_turns_of_the_same_dialogue(tmp_path):
    prepared = prepare_meld(
        write_csvs(tmp_path / "csvs"), tmp_path / "out", MeldOptions(context_turns=2)
    )
    context = prepared.manifest().set_index("clip_id")["context"]
    assert pd.isna(context["train/dia0_utt0"]) and pd.isna(context["train/dia1_utt0"])
    assert context["train/dia0_utt1"] == "Phoebe: Oh my God, he's lost it."
    assert context["train/dia0_utt3"] == "Monica: What?\nChandler: So... here's a key."  # last 2
    for clip_id, text in context.dropna().items():  # never the turn itself or a later one
        assert "A key? To what?" not in text and "genius" not in text
        assert not (clip_id == "train/dia0_utt2" and "key" in text)


def test_text_only_manifest_textualizes_without_media_or_models(tmp_path):
    """No clip, no Whisper, no openSMILE, no face model: the words and the context only."""
    prepared = prepare_meld(write_csvs(tmp_path / "csvs"), tmp_path / "prepared")
    cfg = TextualizeConfig(
        cache_dir=str(tmp_path / "cache"),
        whisper_model="no-such-model",  # would fail its up-front check if anything were extracted
        face="on",  # likewise: py-feat's weights are not needed
        template="dialogue",
        modalities="TA",
        transcript_source="gold",
        progress=False,
    )
    summary = textualize(prepared.manifest_path, tmp_path / "prompts", cfg)

    assert summary.text_only == 8 and summary.failed == 0 and summary.exit_code(False) == 0
    rows = pd.read_parquet(tmp_path / "prompts" / "prompts.parquet").set_index("clip_id")
    key = rows.loc["train/dia0_utt2"]
    assert key["prompt"] == (
        "Previous turns:\n"
        "Phoebe: Oh my God, he's lost it.\n"
        "Monica: What?\n"
        "Current turn (Chandler):\n"
        "Transcription: So... here's a key.\n"
        "Prosody characteristics: no audio."
    )
    assert key["transcript_source"] == "gold" and key["source_path"] == ""
    for modality in ("face", "prosody", "transcript", "speech_emotion"):
        assert key[f"{modality}_status"] == "no_stream"
        assert key[f"{modality}_reason"] == "text-only row: no clip"
    assert rows.loc["train/dia0_utt0", "prompt"] == (
        "Transcription: Oh my God, he's lost it.\nProsody characteristics: no audio."
    )
    assert not list((tmp_path / "cache").rglob("*.json"))  # nothing was extracted


def test_text_only_path_from_the_command_line(tmp_path):
    csvs, prepared, prompts = write_csvs(tmp_path / "csvs"), tmp_path / "prepared", tmp_path / "p"
    commands = [
        ["data", "prepare", "meld", str(csvs), str(prepared), "--text-only"],
        ["textualize", str(prepared / "manifest.parquet"), str(prompts), "--template", "dialogue",
         "--modalities", "T", "--transcript-source", "gold", "--cache-dir", str(tmp_path / "c"),
         "--progress", "false"],
    ]  # fmt: skip
    for args in commands:
        result = subprocess.run(
            [sys.executable, "-m", "cer", *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
    assert "8 text-only" in result.stdout + result.stderr
    row = pd.read_parquet(prompts / "prompts.parquet").set_index("clip_id").loc["dev/dia0_utt2"]
    assert row["prompt"].startswith("Previous turns:\nPhoebe: Oh my God, he's lost it.\n")
    assert row["prompt"].endswith("Current turn (Chandler):\nTranscription: So... here's a key.")


@pytest.mark.skipif(
    not SHARED_MELD.is_dir(), reason=f"official MELD CSVs not present at {SHARED_MELD}"
)
def test_official_csvs_context_is_the_previous_turns_and_never_leaks(tmp_path):
    prepared = prepare_meld(SHARED_MELD, tmp_path / "out", MeldOptions(context_turns=3))
    manifest = prepared.manifest()
    assert manifest["text_only"].all() and len(manifest) == 13708
    for (split, dialogue), turns in manifest.groupby(["split", "dialogue_id"]):
        turns = turns.sort_values("utterance_id")
        lines = [f"{s}: {t}" for s, t in zip(turns["speaker"], turns["gold_text"])]
        for i, context in enumerate(turns["context"]):
            expected = "\n".join(lines[max(0, i - 3) : i]) or None
            assert (None if pd.isna(context) else context) == expected, (split, dialogue, i)
