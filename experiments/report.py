"""The study report: ``STUDY/report/report.md`` with comparison, pairwise and per-class tables and
figures (``figures/*.png`` + ``*.svg``), built from ``experiments.stats``.

``write_report(study_dir)`` is what ``cer experiment report STUDY`` runs; the table functions
return display-ready DataFrames for the report notebook. Arms without results and pairs that
could not be compared are stated in the report rather than raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.figures import file_name, write_figures
from experiments.stats import MetricSummary, StudyResults, study_results, write_results

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

    rows = []
    for arm in results.arms:
        if level not in arm.levels:
            continue
        scores = arm.levels[level].metrics
        rows.append(
            {
                "arm": arm.name,
                "kind": arm.info.kind,
                "model": _short_model(arm.info.model),
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
                    f"{arm}: {thin[arm]} mostly missing"
                    for arm in (c.arm_a, c.arm_b)
                    if thin.get(arm)
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
    def image(name: str, caption: str) -> list[str]:
        if name not in figures:
            return []
        png = figures[name].relative_to(output_dir).as_posix()
        return [f"![{caption}]({png})", "", f"*{caption}* ([SVG]({png[:-4]}.svg))", ""]

    intro = (
        f"Study folder `{results.study_dir}`. Scores are on each run's test split (val when a run "
        "has no test rows), as mean ± standard deviation over runs (folds × seeds); 95% CIs are "
        f"percentile intervals of {results.resamples} bootstrap resamples of the evaluation "
        "clips, drawn jointly for the runs that share them (see *Method*)."
    )
    lines = [f"# Study report: {results.name}", "", intro, "", "## Arms", ""]
    if results.arms:
        lines += [_markdown(comparison_table(results)), ""]
        for level, name in CLIP_LEVELS.items():
            table = comparison_table(results, level)
            if not table.empty:
                lines += [f"Clip level ({name} over each clip's windows):", ""]
                lines += [_markdown(table.drop(columns=["kind", "model"])), ""]
        lines += image("scores", "Macro and weighted F1 per arm; error bars: std over runs")
        lines += coverage_lines(results)
    else:
        lines += ["No arm has results yet: run the study (`cer experiment run STUDY.yaml`).", ""]
    if results.missing:
        lines += ["Arms without results:", ""]
        lines += [f"- **{m.name}**: {m.reason}" for m in results.missing] + [""]

    lines += ["## Pairwise comparisons", ""]
    if results.reference_source not in ("all pairs", "none"):
        reference = f"**{results.reference}** (B), chosen by {results.reference_source}"
        lines += [f"Each arm (A) against the reference arm {reference}.", ""]
    if results.comparisons:
        holm_note = (
            "p-values are shown raw and Holm-adjusted over the "
            f"{len(results.comparisons)} comparison(s) of this report (bootstrap and McNemar "
            "p-values corrected separately)."
        )
        lines += [holm_note, "", _markdown(pairwise_table(results)), ""]
        if any(arm.info.thin_modalities() for arm in results.arms):
            caution = (
                "A *caution* names an arm whose modality was missing on most clips (see Modality "
                "coverage): that difference says nothing about the modality."
            )
            lines += [caution, ""]
    else:
        lines += ["No pairwise comparison: fewer than two arms could be paired.", ""]
    if results.skipped_pairs:
        lines += ["Pairs not compared:", ""]
        lines += [f"- {a} vs {b}: {why}" for a, b, why in results.skipped_pairs] + [""]

    if results.arms:
        lines += ["## Per-class F1", "", _markdown(per_class_table(results)), ""]
        lines += image("per_class_f1", "Per-class F1, mean over runs")
        lines += ["## Confusion matrices", ""]
        for arm in results.arms:
            caption = f"{arm.name}: confusion summed over runs, rows normalised"
            lines += image(f"confusion_{file_name(arm.name)}", caption)
        lines += ["## Modality ablation", ""]
        caption = "Macro F1 by modality subset and model family (best arm of a family per subset)"
        lines += image("modalities", caption) or ["No arm states its modalities in arm.json.", ""]
    lines += ["## Method", "", METHOD, ""]
    return "\n".join(lines)


METHOD = """\
- Each run is scored with `evaluation.metrics.evaluate_predictions`; a level *clips* appears when
  several windows share a clip. Standard deviations use ddof=0, as `cv_metrics.json`.
- Arm CI (cluster bootstrap on the clip): each replicate draws clip ids with replacement, once
  for all runs that evaluated the same clips (the seeds of one test set, or of one fold), and
  every such run counts each drawn clip (all its windows at row level) as often as it was drawn;
  runs on disjoint clips (cross-validation folds) are drawn separately, each fold to its own
  number of clips. The replicate's score is the mean over runs; the interval is the
  2.5th–97.5th percentile of the replicates. It reflects which clips happened to be in the test
  set, the std the spread over folds and seeds. Resampling each seed separately would treat
  seeds sharing one test set as independent test sets and give too narrow an interval.
- Pairwise: rows joined on clip, unit and (when both arms have them) fold and seed; an arm with
  one seed is paired with each seed of the other. The paired bootstrap draws clips the same way,
  one draw for both arms and for every seed pairing on those clips; its two-sided p-value cannot
  go below about 2/resamples. McNemar's exact test counts, over all joined rows pooled (every
  window, seed pairing and fold), the rows only A gets right and those only B gets right; rows of
  one clip or of several seeds are not independent, so read it as descriptive.
- Multiple comparisons: Holm's step-down correction over all comparisons of this report, once for
  the bootstrap p-values and once for the McNemar ones; both raw and adjusted values are shown.
- Full numbers: `results/arms.json`, `results/pairwise.json`, `results/per_class.json`."""


def _markdown(table: pd.DataFrame) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _short_model(model: str) -> str:
    """A local checkpoint path shortened to its last two parts; hub ids stay as they are."""
    path = Path(model)
    return "…/" + "/".join(path.parts[-2:]) if path.is_absolute() and len(path.parts) > 3 else model


def _pm(summary: MetricSummary) -> str:
    if len(summary.values) == 1:  # a single run has no spread to show
        return f"{summary.mean:.3f}"
    return f"{summary.mean:.3f} ± {summary.std:.3f}"


def _ci(summary: MetricSummary) -> str:
    return f"[{summary.ci_low:.3f}, {summary.ci_high:.3f}]"


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"
