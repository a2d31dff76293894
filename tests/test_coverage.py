"""Modality coverage: what a result saw of each modality, counted from the prompts' status columns,
recorded with every run, shown in the study report, and marked in its figures."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from conftest import EXAMPLES

from evaluation.coverage import (
    combine,
    missing_cause,
    modality_coverage,
    read_coverage,
    run_coverage,
    split_coverage,
)
from evaluation.runs import finish_run, prediction_frame, start_run
from experiments import figures, report, stats

UNAVAILABLE_FACE = "face model unavailable (py-feat Detectorv2 weights are not on disk)"


def prompts_table() -> pd.DataFrame:
    """Eight clips as `cer textualize` describes them: faces found, not found, not filmed or not
    looked for; voices heard; words from the dataset's own transcript (Whisper turned off)."""
    face = ["ok", "ok", "absent", "no_stream", *["unavailable"] * 3, "failed"]
    why = {
        "absent": "no face visible",
        "no_stream": "no video stream",
        "unavailable": UNAVAILABLE_FACE,
        "failed": "decoder crashed",
    }
    return pd.DataFrame(
        {
            "clip_id": [f"c{i}" for i in range(8)],
            "unit_id": [f"c{i}" for i in range(8)],
            "split": ["train"] * 4 + ["test"] * 4,
            "modalities": "TVA",
            "transcript": ["Hello there."] * 7 + [""],
            "transcript_source": "gold",
            "transcript_status": "disabled",
            "transcript_reason": "transcript turned off",
            "face_status": face,
            "face_reason": [why.get(s, "") for s in face],
            "prosody_status": ["ok"] * 6 + ["absent", "no_stream"],
            "prosody_reason": [""] * 6 + ["silence", "no audio stream"],
        }
    )


def test_coverage_counts_each_status_of_the_modalities_used():
    coverage = modality_coverage(prompts_table(), "VT")

    assert list(coverage) == ["T", "V"]  # the letters asked for, in T, V, A order
    face = coverage["V"]
    assert (face.rows, face.present, face.absent, face.missing) == (8, 2, 2, 4)
    assert face.counts == {
        "ok": 2,
        "absent": 1,
        "no_stream": 1,
        "unavailable": 3,
        "disabled": 0,
        "failed": 1,
        "unknown": 0,
    }
    assert face.reasons["unavailable"] == UNAVAILABLE_FACE
    assert not face.mostly_missing  # 4 of 8 is not more than half
    assert face.mostly_not_present
    assert face.describe() == (
        "V (face): present on 2 of 8 clips, absent on 1 (no face visible), no_stream on 1 "
        f"(no video stream), unavailable on 3 ({UNAVAILABLE_FACE}), failed on 1 (decoder crashed)"
    )
    # gold words are text the model saw, though Whisper was off; a row without them has none
    text = coverage["T"]
    assert (text.present, text.counts["absent"], text.counts["disabled"]) == (7, 1, 0)


def test_a_modality_missing_on_most_rows_names_its_cause():
    test_rows = prompts_table().iloc[4:]
    face = modality_coverage(test_rows, "V")["V"]
    assert (face.present, face.missing, face.mostly_missing) == (0, 4, True)
    cause = missing_cause(face)
    assert UNAVAILABLE_FACE in cause and "face_tables" in cause and "Face weights" in cause


def test_feature_presence_overrides_an_ok_status():
    rows = prompts_table()
    seen = np.array([True, False, False, False, False, False, False, False])
    face = modality_coverage(rows, "V", present={"V": seen})["V"]
    assert face.present == 1 and face.counts["absent"] == 2  # c1: ok, but no usable features
    assert face.counts["unavailable"] == 3


def test_run_coverage_is_per_split_and_warns_about_the_evaluated_one(caplog):
    rows = prompts_table()
    with caplog.at_level(logging.WARNING, logger="evaluation.coverage"):
        block = run_coverage(rows, "TVA")
    assert set(block) == {"train", "test"} and set(block["test"]) == {"T", "V", "A"}
    assert block["test"]["V"]["unavailable"] == 3 and block["train"]["V"]["ok"] == 2
    assert block["test"]["V"]["modality"] == "face"
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1  # the face of the test rows; the voice is present on half of them
    assert "V (face): present on 0 of 4 test rows" in warned[0] and "face_tables" in warned[0]
    # read back and summed over two folds
    folds = combine([read_coverage(block, "test"), read_coverage(block, "train")])
    assert folds["V"].rows == 8 and folds["V"].present == 2 and folds["A"].present == 6


def test_a_table_without_statuses_counts_as_unknown():
    rows = pd.DataFrame({"clip_id": ["a", "b"], "split": ["test", "test"]})
    face = split_coverage(rows, "V")["test"]["V"]
    assert face["unknown"] == 2 and face["ok"] == 0


# ------------------------------------------------------------------ runs, report and figure

LABELS = ("bright", "dark")


def _arm(study, name, modalities, prompts, *, allow=False, accuracy=0.75):
    """An arm folder with one run folder whose summary records coverage as a trainer does."""
    arm_dir = study / "arms" / name
    arm_dir.mkdir(parents=True)
    info = {"name": name, "kind": "finetune", "model": "m", "family": "bert"}
    info |= {"modalities": modalities, "allow_unavailable": allow}
    (arm_dir / "arm.json").write_text(json.dumps(info))
    run_dir = arm_dir / "fold0_seed0"
    rows = prompts.assign(label=[LABELS[i % 2] for i in range(len(prompts))])
    start_run(run_dir, {"output_dir": str(run_dir)}, LABELS)
    truth = rows["label"].map({"bright": 0, "dark": 1}).to_numpy()
    right = np.arange(len(rows)) % 4 < 4 * accuracy
    chosen = np.where(right, truth, 1 - truth)
    probabilities = np.eye(2)[chosen] * 0.8 + 0.1
    frame = prediction_frame(rows, probabilities, LABELS, run_id=name, label_column="label")
    summary = {"run_id": name, "seed": 0, "coverage": split_coverage(rows, modalities)}
    finish_run(run_dir, frame, LABELS, summary)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    study = tmp_path_factory.mktemp("study")
    (study / "study.yaml").write_text("name: coverage\noutput_dir: somewhere\n")
    clips = [f"c{i}" for i in range(8)]
    prompts = pd.DataFrame(
        {
            "clip_id": clips,
            "unit_id": clips,
            "split": "test",
            "transcript": "Hello there.",
            "face_status": "unavailable",
            "face_reason": UNAVAILABLE_FACE,
            "prosody_status": "ok",
        }
    )
    _arm(study, "words_voice", "TA", prompts)
    _arm(study, "words_face_voice", "TVA", prompts, allow=True, accuracy=0.5)
    return stats.study_results(study)


def test_the_report_states_coverage_per_arm_and_marks_the_arm_without_faces(results, tmp_path):
    allowed = results.arm("words_face_voice").info
    assert allowed.coverage_of == "evaluated clips" and allowed.coverage["V"]["unavailable"] == 8
    assert [c.letter for c in allowed.thin_modalities()] == ["V"]
    assert not results.arm("words_voice").info.thin_modalities()

    markdown = report.build_report(results, tmp_path / "report").markdown.read_text()
    section = markdown.split("### Modality coverage")[1].split("\n## ")[0].splitlines()
    row = next(line for line in section if line.startswith("| words_face_voice |"))
    assert "0/8 present (unavailable 8)" in row and "allow_unavailable: true" in row
    row = next(line for line in section if line.startswith("| words_voice |"))
    assert "8/8 present" in row and "| – |" in row  # no V column for an arm without V
    note = next(line for line in section if line.startswith("- **words_face_voice**"))
    assert "V (face): present on 0 of 8 clips, unavailable on 8" in note
    assert "allow_unavailable: true" in note and "say nothing about the face" in note


def test_the_ablation_chart_hatches_the_arm_without_faces(results):
    figure = figures.modality_figure(results)
    ax = figure.axes[0]
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1  # the TVA bar; the TA bar is plain
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("half the clips" in label for label in labels)
    assert "words_face_voice: V (face) present on 0 of 8 evaluated clips" in figure.get_supxlabel()


@pytest.mark.slow
def test_textualize_run_json_counts_every_status_per_modality(tmp_path):
    from textualize.config import TextualizeConfig
    from textualize.pipeline import format_summary, textualize

    cfg = TextualizeConfig(
        cache_dir=str(tmp_path / "cache"), transcript=False, workers=1, progress=False
    )
    summary = textualize(EXAMPLES, tmp_path / "out", cfg)
    counts = json.loads((tmp_path / "out" / "run.json").read_text())["summary"]["status_counts"]
    # two videos without py-feat weights, one voicemail without a picture
    assert counts["face"] == {
        "ok": 0,
        "absent": 0,
        "no_stream": 1,
        "unavailable": 2,
        "disabled": 0,
        "failed": 0,
    }
    assert counts["prosody"]["ok"] == 3 and counts["transcript"]["disabled"] == 3
    assert "face no_stream 1, unavailable 2" in format_summary(summary)
