"""The shipped synthetic study end to end through `cer experiment run`: video -> prompts -> models.

Only the voice carries the label, so the arms that hear it beat chance and the arms that read only
the words cannot. A second run skips everything; a lost run folder or a new arm costs only itself.
Without py-feat weights no clip has a face: an arm that needs it is refused, unless the study
allows it, and then the report says so.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
import yaml

from cer.cli import main
from experiments.cli import STUDIES_DIR

pytestmark = pytest.mark.slow

SYNTHETIC = STUDIES_DIR / "synthetic.yaml"
HEARS_THE_VOICE = ("text_TA", "fusion_early_TA", "fusion_unimodal_A")
READS_THE_WORDS = ("text_T", "fusion_unimodal_T")


def accuracy_of(study, arm: str) -> float:
    return json.loads((study / "arms" / arm / "fold0_seed0" / "metrics.json").read_text())["test"][
        "rows"
    ]["accuracy"]


def status(study) -> dict:
    return json.loads((study / "status.json").read_text())


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study") / "synthetic"
    started = time.perf_counter()
    assert main(["experiment", "run", str(SYNTHETIC), "--output-dir", str(folder)]) == 0
    print(f"synthetic study: {time.perf_counter() - started:.0f} s")
    return folder


def test_the_study_folder_holds_data_prompts_arms_and_report(study):
    manifest = pd.read_parquet(study / "data" / "manifest.parquet")
    assert len(manifest) == 32 and manifest["path"].str.endswith(".mp4").all()
    prompts = pd.read_parquet(study / "prompts" / "paper-TA" / "fold0" / "prompts.parquet")
    assert prompts["prompt"].str.contains("Prosody characteristics:").all()
    # the extraction ran once into the shared cache; the face is recorded unavailable
    assert {p.name for p in (study / "prompts").iterdir()} == {"paper-T", "paper-TA", "paper-TVA"}
    tva = pd.read_parquet(study / "prompts" / "paper-TVA" / "fold0" / "prompts.parquet")
    assert tva["prompt"].str.contains("Visual: not available").all()
    # each fold's words come from a textualizer fitted on that fold's training clips only
    fitted = json.loads((study / "prompts" / "paper-TA" / "fold0" / "textualizer.json").read_text())
    train = prompts.loc[prompts["split"] == "train", "clip_id"].nunique()
    assert fitted["fitted_on"]["split"] == "train" and fitted["fitted_on"]["clips"] == train < 32

    info = json.loads((study / "arms" / "text_TA" / "arm.json").read_text())
    assert info["kind"] == "finetune" and info["family"] == "bert" and info["modalities"] == "TA"
    fusion = json.loads((study / "arms" / "fusion_unimodal_A" / "arm.json").read_text())
    assert (fusion["model"], fusion["family"]) == ("feature-fusion:unimodal", "fusion")
    predictions = pd.read_parquet(study / "arms" / "text_T" / "fold0_seed0" / "predictions.parquet")
    assert {"clip_id", "gold", "predicted", "prob_bright", "prob_dark"} <= set(predictions.columns)
    assert set(predictions.loc[predictions["split"] == "test", "clip_id"].str[:2]) == {"s6", "s7"}

    book = status(study)
    assert all(entry["status"] == "done" for entry in book["arms"].values())
    assert set(book["arms"]) == set(HEARS_THE_VOICE + READS_THE_WORDS)
    report = (study / "report" / "report.md").read_text()
    assert all(arm in report for arm in HEARS_THE_VOICE + READS_THE_WORDS)
    figures = {p.name for p in (study / "report" / "figures").iterdir()}
    assert any(name.endswith(".png") for name in figures)
    assert any(name.endswith(".svg") for name in figures)


def test_arms_that_hear_the_voice_beat_chance_and_word_arms_do_not(study):
    for arm in HEARS_THE_VOICE:
        assert accuracy_of(study, arm) >= 0.75, arm
    for arm in READS_THE_WORDS:
        # both voices of a sentence give the same input, so exactly one of each pair is right
        assert accuracy_of(study, arm) == pytest.approx(0.5), arm


def test_the_report_shows_the_voice_arms_above_chance(study):
    """What the report tables are drawn from: per-arm test accuracy, with its bootstrap interval."""
    arms = json.loads((study / "results" / "arms.json").read_text())["arms"]
    accuracy = {a["info"]["name"]: a["levels"]["rows"]["metrics"]["accuracy"] for a in arms}
    assert set(accuracy) == set(HEARS_THE_VOICE + READS_THE_WORDS)
    for arm in HEARS_THE_VOICE:
        assert accuracy[arm]["mean"] >= 0.75 and accuracy[arm]["ci_high"] > 0.5, arm
    for arm in READS_THE_WORDS:
        assert accuracy[arm]["mean"] == pytest.approx(0.5), arm
    lines = (study / "report" / "report.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| arm | kind"))
    column = [c.strip() for c in lines[start].strip("|").split("|")].index("accuracy")
    for arm in HEARS_THE_VOICE:
        row = next(line for line in lines[start:] if line.startswith(f"| {arm} |"))
        shown = float(row.strip("|").split("|")[column])
        assert shown == pytest.approx(accuracy[arm]["mean"], abs=5e-4) and shown >= 0.75, arm


def report_section(study, title: str) -> list[str]:
    markdown = (study / "report" / "report.md").read_text()
    return markdown.split(f"### {title}")[1].split("\n## ")[0].splitlines()


def test_runs_and_report_state_on_how_many_clips_each_modality_was_present(study):
    summary = json.loads((study / "arms" / "text_TA" / "fold0_seed0" / "summary.json").read_text())
    test = summary["coverage"]["test"]
    assert set(test) == {"T", "A"}
    assert (test["T"]["ok"], test["A"]["ok"], test["A"]["rows"]) == (8, 8, 8)
    assert summary["coverage"]["train"]["A"]["ok"] == 20
    fusion = study / "arms" / "fusion_unimodal_A" / "fold0_seed0" / "summary.json"
    assert set(json.loads(fusion.read_text())["coverage"]["test"]) == {"A"}
    # the face was never looked for: every clip of the full-modality prompts says so
    run = json.loads((study / "prompts" / "paper-TVA" / "fold0" / "run.json").read_text())
    assert run["summary"]["status_counts"]["face"]["unavailable"] == 32

    section = report_section(study, "Modality coverage")
    header = next(line for line in section if line.startswith("| arm |"))
    assert "T (text)" in header and "A (voice)" in header and "V (face)" not in header
    rows = {line.split("|")[1].strip(): line for line in section if line.startswith("| ")}
    assert "8/8 present" in rows["text_TA"] and "| – |" in rows["fusion_unimodal_A"]
    assert not any(line.startswith("- **") for line in section)  # no arm lacked a modality


def test_a_second_run_skips_every_finished_stage(study, capsys):
    started = time.perf_counter()
    assert main(["experiment", "run", str(SYNTHETIC), "--output-dir", str(study), "-q"]) == 0
    assert time.perf_counter() - started < 30
    book = status(study)
    assert all(entry["skipped"] for entry in book["arms"].values())
    assert all(entry["skipped"] for entry in book["stages"].values())
    assert "unchanged, skipped" in capsys.readouterr().out


def test_a_lost_run_and_a_new_failing_arm_cost_only_themselves(study, tmp_path, capsys):
    lost = study / "arms" / "fusion_unimodal_A" / "fold0_seed0"
    for item in lost.iterdir():
        if item.is_file():
            item.unlink()
    kept = study / "arms" / "text_TA" / "fold0_seed0" / "predictions.parquet"
    kept_mtime = kept.stat().st_mtime
    # two new arms that need the face, which no clip has without py-feat weights: one is
    # refused before training, the other is allowed by the study file and marked in the report
    values = yaml.safe_load(SYNTHETIC.read_text())
    minilm = values["arms"][0]["config"]
    values["arms"] += [
        {
            "name": "face_only",
            "kind": "baseline",
            "modalities": "V",
            "config": {"arm": "unimodal", "epochs": 2},
        },
        {
            "name": "text_TVA",
            "kind": "finetune",
            "modalities": "TVA",
            "allow_unavailable": True,
            "config": {**minilm, "num_train_epochs": 1},
        },
    ]
    changed = tmp_path / "with_face_arms.yaml"
    changed.write_text(yaml.safe_dump(values))

    assert main(["experiment", "run", str(changed), "--output-dir", str(study), "-q"]) == 1

    book = status(study)
    refused = book["arms"]["face_only"]["status"]
    assert refused.startswith("failed: arm 'face_only' uses V, but V (face) was unavailable on 32")
    assert "py-feat" in refused and "face_tables" in refused
    assert "set `allow_unavailable: true` on the arm" in refused  # the YAML key, not a flag
    assert "allow_unavailable" in (study / "arms" / "face_only" / "error.log").read_text()
    assert not list((study / "arms" / "face_only").glob("fold*"))  # refused before training
    assert book["arms"]["text_TVA"]["status"] == "done"
    assert book["arms"]["fusion_unimodal_A"]["skipped"] is False  # retrained: its run was lost
    assert (lost / "metrics.json").is_file() and accuracy_of(study, "fusion_unimodal_A") >= 0.75
    others = set(HEARS_THE_VOICE + READS_THE_WORDS) - {"fusion_unimodal_A"}
    assert all(book["arms"][arm]["skipped"] for arm in others)
    assert kept.stat().st_mtime == kept_mtime
    assert "arm face_only: failed: arm 'face_only' uses V" in capsys.readouterr().out

    section = report_section(study, "Modality coverage")
    row = next(line for line in section if line.startswith("| text_TVA |"))
    assert "0/8 present (unavailable 8)" in row and "allow_unavailable: true" in row
    note = next(line for line in section if line.startswith("- **text_TVA**"))
    assert "V (face): present on 0 of 8 clips, unavailable on 8" in note
    markdown = (study / "report" / "report.md").read_text()
    assert "**face_only**: failed: arm 'face_only' uses V" in markdown  # arms without results
    pairs = markdown.split("## Pairwise comparisons")[1].split("\n## ")[0].splitlines()
    with_face = [line for line in pairs if line.startswith("|") and "text_TVA" in line]
    assert with_face and all("text_TVA: V mostly missing" in line for line in with_face)
