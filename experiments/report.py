"""The study report: ``STUDY/report/report.md``, a document to hand a reviewer, with figures
(``figures/*.png`` + ``*.svg``) built from ``experiments.stats``.

It reads top to bottom: title and date, a summary table (each arm in words, what it saw, its model,
runs and headline scores with 95% intervals), the dataset and protocol, one example prompt per arm,
then scores, pairwise comparisons, per-class F1, confusion matrices, the modality ablation and the
method. ``report_sections`` returns it as blocks (Markdown or a captioned figure) so the report
notebook shows the same content cell by cell; ``write_report(study_dir)`` is what
``cer experiment report STUDY`` runs. Arms without results and pairs that could not be compared are
stated in the report rather than raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.figures import chance_scores, write_figures
from experiments.stats import MetricSummary, StudyResults, study_results, write_results
from experiments.study_facts import (
    arm_specs,
    dataset_lines,
    example_lines,
    short_model,
    study_config,
    written_model,
)
from experiments.study_facts import markdown_table as _markdown

if TYPE_CHECKING:
    import pandas as pd

CLIP_LEVELS = {"clips_vote": "majority vote", "clips_mean_prob": "mean probability"}


@dataclass(frozen=True)
class Report:
    markdown: Path
    figures: dict[str, Path]  # figure name -> PNG (an SVG lies beside it)


def comparison_table(results: StudyResults, level: str = "rows") -> pd.DataFrame:
    """One row per arm with results at ``level``: description, runs and mean ± std scores."""
    import pandas as pd

    specs = arm_specs(study_config(results.study_dir))
    rows = []
    for arm in results.arms:
        if level not in arm.levels:
            continue
        scores = arm.levels[level].metrics
        rows.append(
            {
                "arm": arm_label(arm),
                "kind": arm.info.kind,
                "model": short_model(arm.info.model, written_model(specs.get(arm.name, {}))),
                "modalities": arm.info.modalities,
                "runs": arm.runs,
                "split": arm.split,
                "accuracy": _pm(scores["accuracy"]),
                "macro F1": _pm(scores["macro_f1"]),
                "macro F1 95% CI": _ci(scores["macro_f1"]),
                "weighted F1": _pm(scores["weighted_f1"]),
            }
        )
    return pd.DataFrame(rows)


def pairwise_table(results: StudyResults) -> pd.DataFrame:
    """One row per paired comparison (difference = A − B), p-values raw and Holm-adjusted over
    the report's comparisons."""
    import pandas as pd

    thin = {arm.name: "".join(c.letter for c in arm.info.thin_modalities()) for arm in results.arms}
    random = {arm.name for arm in results.arms if arm.info.random_weights}
    return pd.DataFrame(
        [
            {
                "arm A": c.arm_a,
                "arm B": c.arm_b,
                "paired rows": c.examples,
                "macro F1 A": f"{c.macro_f1_a:.3f}",
                "macro F1 B": f"{c.macro_f1_b:.3f}",
                "Δ macro F1 (A − B)": f"{c.difference:+.3f}",
                "95% CI": f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}]",
                "bootstrap p": _p(c.p_value),
                "bootstrap p (Holm)": _p(c.p_value_holm),
                "only A right": c.a_only_correct,
                "only B right": c.b_only_correct,
                "McNemar p": _p(c.mcnemar_p),
                "McNemar p (Holm)": _p(c.mcnemar_p_holm),
                "pairing": c.pairing,
                "caution": "; ".join(
                    [
                        f"{arm}: {thin[arm]} mostly missing"
                        for arm in (c.arm_a, c.arm_b)
                        if thin.get(arm)
                    ]
                    + [
                        f"{arm}: random weights, not a result"
                        for arm in (c.arm_a, c.arm_b)
                        if arm in random
                    ]
                ),
            }
            for c in results.comparisons
        ]
    )


def per_class_table(results: StudyResults) -> pd.DataFrame:
    """Per-class F1 (mean ± std over runs), arms down and labels across."""
    import pandas as pd

    labels = results.labels
    rows = []
    for arm in results.arms:
        spread = arm.runs > 1
        cells = {
            c.label: f"{c.f1:.3f} ± {c.f1_std:.3f}" if spread else f"{c.f1:.3f}"
            for c in arm.levels["rows"].per_class
        }
        rows.append({"arm": arm.name, **{label: cells.get(label, "–") for label in labels}})
    return pd.DataFrame(rows)


def coverage_table(results: StudyResults) -> pd.DataFrame:
    """Per arm and modality it uses: on how many evaluated clips it was present, and why not."""
    import pandas as pd

    from evaluation.coverage import NAMES

    used = [k for k in NAMES if any(k in arm.info.modalities for arm in results.arms)]
    rows = []
    for arm in results.arms:
        coverage = arm.info.modality_coverage()
        row = {
            "arm": arm.name,
            "modalities": arm.info.modalities,
            "counted on": arm.info.coverage_of,
        }
        for letter in used:
            c = coverage.get(letter)
            if letter not in arm.info.modalities:
                row[f"{letter} ({NAMES[letter]})"] = "–"
            elif c is None:
                row[f"{letter} ({NAMES[letter]})"] = "not recorded"
            else:
                gaps = [f"{s} {n}" for s, n in c.counts.items() if s != "ok" and n]
                cell = f"{c.present}/{c.rows} present" + (f" ({', '.join(gaps)})" if gaps else "")
                row[f"{letter} ({NAMES[letter]})"] = cell
        thin = arm.info.thin_modalities()
        note = "modality mostly missing: " + "".join(c.letter for c in thin) if thin else ""
        if thin and arm.info.allow_unavailable:
            note += " (allow_unavailable: true)"
        rows.append({**row, "note": note})
    return pd.DataFrame(rows)


def coverage_lines(results: StudyResults) -> list[str]:
    """The report's coverage subsection: the table, then one line per arm it marks."""
    lines = ["### Modality coverage", "", COVERAGE, "", _markdown(coverage_table(results)), ""]
    for arm in results.arms:
        for c in arm.info.thin_modalities():
            allowed = (
                "; trained anyway because the study sets `allow_unavailable: true` on it"
                if arm.info.allow_unavailable
                else ""
            )
            lines.append(
                f"- **{arm.name}**: {c.describe()}{allowed}. Its scores, and its comparisons, say "
                f"nothing about the {c.name}; its bars are hatched in the figures."
            )
    return lines + [""] if lines[-1] else lines


COVERAGE = """\
For each modality an arm uses, on how many of its evaluated clips (each fold's test clips once)
the modality was present, absent (the clip has none: no face in view, no speech, no audio or
video track: `absent`, `no_stream`) or not extracted (`unavailable`: a model is missing,
`disabled`, `failed`), from the status columns of the prompts. A study refuses to train an arm
whose modality was not extracted on more than half its clips, unless the arm sets
`allow_unavailable: true`."""


@dataclass(frozen=True)
class FigureBlock:
    """A figure of the report: its PNG (an SVG beside it), its number and caption."""

    name: str
    png: Path
    number: int
    caption: str


Block = str | FigureBlock  # Markdown text, or a figure


def build_report(results: StudyResults, output_dir: str | Path) -> Report:
    """Write figures and ``report.md`` under ``output_dir`` from computed results."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        name: png for name, (png, _) in write_figures(results, output_dir / "figures").items()
    }
    markdown = output_dir / "report.md"
    markdown.write_text(render_markdown(results, figures, output_dir), encoding="utf-8")
    return Report(markdown, figures)


def write_report(
    study_dir: str | Path,
    output_dir: str | Path | None = None,
    *,
    results: StudyResults | None = None,
) -> Path:
    """Compute the study's statistics, write ``STUDY/results/*.json`` and the report (default
    ``STUDY/report/``); returns the path of ``report.md``."""
    results = results or study_results(study_dir)
    write_results(study_dir, results)
    return build_report(results, output_dir or Path(study_dir) / "report").markdown


def render_markdown(results: StudyResults, figures: dict[str, Path], output_dir: Path) -> str:
    """The whole report as GitHub Markdown; figures link to their PNG relative to ``output_dir``."""
    lines = []
    for blocks in report_sections(results, figures).values():
        for block in blocks:
            if isinstance(block, FigureBlock):
                png = block.png.relative_to(output_dir).as_posix()
                label = f"Figure {block.number}. {block.caption}"
                lines += [f"![{label}]({png})", "", f"*{label}* ([SVG]({png[:-4]}.svg))", ""]
            else:
                lines += [block, ""]
    return "\n".join(lines).rstrip() + "\n"


def report_sections(results: StudyResults, figures: dict[str, Path]) -> dict[str, list[Block]]:
    """The report in order, section name -> blocks; the notebook shows them one cell each."""
    config = study_config(results.study_dir)
    numbered = iter(range(1, 100))

    def figure(name: str, caption: str) -> list[Block]:
        return (
            [FigureBlock(name, figures[name], next(numbered), caption)] if name in figures else []
        )

    sections: dict[str, list[Block]] = {"title": _title(results, config)}
    sections["summary"] = _summary(results)
    sections["dataset"] = ["## Dataset", "\n".join(dataset_lines(results.study_dir, config))]
    if results.arms:
        arms = [(arm.name, arm.info.kind) for arm in results.arms]
        sections["prompts"] = [
            "## Example prompts",
            "The first test clip of fold 0 as each arm read it.",
            "\n".join(example_lines(results.study_dir, arms)),
        ]
        chance = chance_scores(results)
        caption = (
            "Macro F1 and accuracy per arm on the test split: bars at the mean over runs, "
            "whiskers the 95% bootstrap interval over clips, dashed line chance (guessing every "
            f"label equally often: macro F1 {chance.get('macro_f1', 0):.2f}, accuracy "
            f"{chance.get('accuracy', 0):.2f})."
        )
        if any(arm.info.random_weights for arm in results.arms):
            caption += (
                " Arms labelled (random weights) read an encoder with random weights: not a result."
            )
        sections["scores"] = ["## Scores", *figure("scores", caption), *_detail(results)]
    sections["pairwise"] = _pairwise(results)
    if results.arms:
        caption = "Per-class F1 on the test split, mean over runs."
        sections["per_class"] = [
            "## Per-class F1",
            _markdown(per_class_table(results)),
            *figure("per_class_f1", caption),
        ]
        caption = (
            "Confusion matrices summed over runs: rows are the gold label, columns the "
            "prediction; each cell gives the count and the share of its gold row."
        )
        sections["confusion"] = ["## Confusion matrices", *figure("confusion", caption)]
        caption = (
            "Macro F1 by modality subset and model family (the best arm of a family per subset); "
            "whiskers: 95% bootstrap interval; dashed line: chance."
        )
        shown = figure("modalities", caption)
        sections["ablation"] = [
            "## Modality ablation",
            *(shown or ["No arm states its modalities in arm.json."]),
        ]
    sections["method"] = ["## Method", METHOD]
    return sections


def _title(results: StudyResults, config: dict) -> list[Block]:
    from datetime import date

    about = str(config.get("description") or "").strip()
    lines = [
        f"# {results.name}: study report, {date.today().isoformat()}",
        f"Study folder `{results.study_dir}`; {len(results.arms)} arm(s) with results"
        + (f", {len(results.missing)} without." if results.missing else "."),
    ]
    return lines + ([about] if about else [])


def _summary(results: StudyResults) -> list[Block]:
    lines: list[Block] = ["## Summary"]
    if results.arms:
        lines += [
            (
                "Mean over runs on each run's test split (its validation split when it has no test "
                "rows) and, in brackets, the 95% bootstrap interval over the evaluation clips."
            ),
            _markdown(summary_table(results)),
            *random_weights_caption(results),
        ]
    else:
        lines.append("No arm has results yet: run the study (`cer experiment run STUDY.yaml`).")
    if results.missing:
        missing = "\n".join(f"- **{m.name}**: {m.reason}" for m in results.missing)
        lines += ["Arms without results:", missing]
    return lines


def summary_table(results: StudyResults) -> pd.DataFrame:
    """The first table of the report: what each arm is, what it saw, and its headline scores."""
    import pandas as pd

    specs = arm_specs(study_config(results.study_dir))
    rows = []
    for arm in results.arms:
        spec = specs.get(arm.name, {})
        coverage = arm.info.modality_coverage()
        seen = [
            f"{letter} {coverage[letter].present}/{coverage[letter].rows}"
            if letter in coverage
            else letter
            for letter in arm.info.modalities
        ]
        rows.append(
            {
                "arm": arm_label(arm),
                "what it is": arm.info.description or spec.get("description") or arm.info.kind,
                "modalities (present/clips)": ", ".join(seen) or "–",
                "model": short_model(arm.info.model, written_model(spec)),
                "runs": arm.runs,
                "macro F1 [95% CI]": _with_ci(arm.score("macro_f1")),
                "accuracy [95% CI]": _with_ci(arm.score("accuracy")),
            }
        )
    return pd.DataFrame(rows)


def arm_label(arm) -> str:
    """The arm's name, followed by "(random weights: not a result)" when an encoder it reads has
    random weights."""
    from featurebaseline.random_encoders import NOTE

    return f"{arm.name} ({NOTE})" if arm.info.random_weights else arm.name


def random_weights_caption(results: StudyResults) -> list[Block]:
    """The warning under the summary table, one line per arm with random weights."""
    marked = [arm for arm in results.arms if arm.info.random_weights]
    if not marked:
        return []
    lines = "\n".join(
        f"- **{arm.name}**: " + ", ".join(f"{k} `{v}`" for k, v in arm.info.random_weights.items())
        for arm in marked
    )
    return [RANDOM_WEIGHTS, lines]


def _detail(results: StudyResults) -> list[Block]:
    lines: list[Block] = [
        "### Scores in detail",
        (
            "Mean ± standard deviation over runs (folds × seeds; no spread with one run) and the "
            "95% bootstrap interval of macro F1."
        ),
        _markdown(comparison_table(results)),
    ]
    for level, name in CLIP_LEVELS.items():
        table = comparison_table(results, level)
        if not table.empty:
            lines += [f"Clip level ({name} over each clip's windows):"]
            lines += [_markdown(table.drop(columns=["kind", "model"]))]
    return lines + ["\n".join(coverage_lines(results)).rstrip()]


def _pairwise(results: StudyResults) -> list[Block]:
    lines: list[Block] = ["## Pairwise comparisons"]
    if results.reference_source not in ("all pairs", "none"):
        reference = f"**{results.reference}** (B), chosen by {results.reference_source}"
        lines.append(f"Each arm (A) against the reference arm {reference}.")
    if results.comparisons:
        lines.append(
            "Difference = A − B in macro F1 on the rows both arms predicted, with its paired "
            "bootstrap 95% interval. p-values are shown raw and Holm-adjusted over the "
            f"{len(results.comparisons)} comparison(s) of this report (bootstrap and McNemar "
            "p-values corrected separately)."
        )
        lines.append(_markdown(pairwise_table(results)))
        if any(arm.info.thin_modalities() for arm in results.arms):
            lines.append(
                "A *caution* names an arm whose modality was missing on most clips (see Modality "
                "coverage): that difference says nothing about the modality."
            )
    else:
        lines.append("No pairwise comparison: fewer than two arms could be paired.")
    if results.skipped_pairs:
        skipped = "\n".join(f"- {a} vs {b}: {why}" for a, b, why in results.skipped_pairs)
        lines += ["Pairs not compared:", skipped]
    return lines


RANDOM_WEIGHTS = """\
**Random weights: not a result.** The arm(s) below read features from an encoder whose weights are
randomly initialised (no pretrained weights were available where the study ran). Their scores only
show that the arm runs end to end; they say nothing about the encoder and must not be read or cited
as results."""

METHOD = """\
- **Scores.** Each run (one fold and seed) is scored on its test clips: accuracy, macro F1 (the
  unweighted mean of the per-class F1) and weighted F1. When a clip is cut into several windows,
  clip-level scores are also given, by majority vote and by mean probability over its windows.
  Standard deviations are over runs, without correction (ddof = 0).
- **95% intervals of an arm** (cluster bootstrap on the clip): each of the resamples draws clip
  ids with replacement, once for all runs that evaluated the same clips (the seeds of one test
  set, or of one fold), and every such run counts each drawn clip (all its windows) as often as
  it was drawn; runs on disjoint clips (cross-validation folds) are drawn separately, each fold
  to its own number of clips. The resample's score is the mean over runs; the interval is the
  2.5th–97.5th percentile of the resamples. It reflects which clips happened to be in the test
  set; the standard deviation reflects the spread over folds and seeds.
- **Paired comparisons.** Two arms are joined on the clips (and windows, folds and seeds) both
  predicted; an arm with one seed is paired with each seed of the other. The paired bootstrap
  draws clips the same way, one draw for both arms; its two-sided p-value cannot go below about
  2 / resamples. McNemar's exact test counts, over all joined rows pooled, the rows only A gets
  right and those only B gets right; rows of one clip or of several seeds are not independent,
  so read it as descriptive.
- **Multiple comparisons.** Holm's step-down correction over all comparisons of this report,
  once for the bootstrap p-values and once for the McNemar ones; both raw and adjusted values are
  shown.
- **Chance** is guessing every label equally often: accuracy 1 / (number of labels); per class,
  precision equal to the class's share of the test examples and recall 1 / (number of labels).
- **Full numbers** are in `results/arms.json`, `results/pairwise.json` and
  `results/per_class.json` of the study folder."""


def _pm(summary: MetricSummary) -> str:
    if len(summary.values) == 1:  # a single run has no spread to show
        return f"{summary.mean:.3f}"
    return f"{summary.mean:.3f} ± {summary.std:.3f}"


def _with_ci(summary: MetricSummary) -> str:
    return f"{summary.mean:.3f} [{summary.ci_low:.3f}, {summary.ci_high:.3f}]"


def _ci(summary: MetricSummary) -> str:
    return f"[{summary.ci_low:.3f}, {summary.ci_high:.3f}]"


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"
