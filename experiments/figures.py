"""Figures of a study report, drawn on matplotlib's Agg canvas (no display) and saved as PNG + SVG.

Each ``*_figure`` function takes ``experiments.stats`` results and returns a ``Figure`` (or None
when there is nothing to draw), so a notebook can show it and ``write_figures`` can save it.
Bars of an arm that lacked one of its modalities on most clips (``ArmInfo.thin_modalities``) are
hatched and explained in a footnote: such a score is not evidence about that modality.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from experiments.stats import ArmResult, StudyResults

MODALITY_ORDER = "TVA"  # text, video (face), audio (prosody)
THIN_HATCH = "//"


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot state, safe without a display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, stem: Path) -> tuple[Path, Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.svg``; returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    figure.savefig(png, dpi=150)
    figure.savefig(svg)
    return png, svg


def score_figure(results: StudyResults) -> Figure | None:
    """Macro and weighted F1 per arm, bars at the mean, error bars one std over runs."""
    if not results.arms:
        return None
    names = [arm.name for arm in results.arms]
    x = np.arange(len(names))
    figure = new_figure(max(4.0, 1.1 * len(names) + 1.5), 3.6)
    ax = figure.add_subplot()
    for offset, metric, title in (
        (-0.2, "macro_f1", "macro F1"),
        (0.2, "weighted_f1", "weighted F1"),
    ):
        scores = [arm.score(metric) for arm in results.arms]
        bars = ax.bar(x + offset, [s.mean for s in scores], 0.4, yerr=[s.std for s in scores],
                      capsize=3, label=title)  # fmt: skip
        _hatch_thin(bars, results.arms)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (mean ± std over runs)")
    _legend(ax, results.arms)
    ax.set_title("F1 per arm")
    _footnote(figure, results.arms)
    return figure


def per_class_figure(results: StudyResults) -> Figure | None:
    """Heatmap of mean per-class F1: arms down, labels across."""
    labels = results.labels
    if not results.arms or not labels:
        return None
    matrix = np.full((len(results.arms), len(labels)), np.nan)
    for i, arm in enumerate(results.arms):
        for row in arm.levels["rows"].per_class:
            matrix[i, labels.index(row.label)] = row.f1
    figure = new_figure(max(4.0, 0.9 * len(labels) + 2.5), max(2.5, 0.5 * len(results.arms) + 1.5))
    ax = figure.add_subplot()
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    _annotate(ax, matrix)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(results.arms)), [arm.name for arm in results.arms])
    ax.set_title("per-class F1 (mean over runs)")
    figure.colorbar(image, ax=ax, shrink=0.8)
    return figure


def confusion_figure(arm: ArmResult, level: str = "rows") -> Figure:
    """Confusion matrix summed over runs, each gold row normalised to sum to 1."""
    summary = arm.levels[level]
    counts = np.asarray(summary.confusion, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = 0.6 * len(summary.labels) + 2.0
    figure = new_figure(size + 0.8, size)
    ax = figure.add_subplot()
    image = ax.imshow(normalised, vmin=0, vmax=1, cmap="Blues")
    _annotate(ax, normalised, dark_high=True)
    ax.set_xticks(range(len(summary.labels)), summary.labels, rotation=30, ha="right")
    ax.set_yticks(range(len(summary.labels)), summary.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(f"{arm.name} ({arm.runs} run{'s' * (arm.runs > 1)}, row-normalised)")
    figure.colorbar(image, ax=ax, shrink=0.8)
    return figure


def modality_figure(results: StudyResults) -> Figure | None:
    """Macro F1 by modality subset (T, TA, TV, TVA ...), one bar per model family.

    When a family has several arms on the same subset, the best one (by mean macro F1) is shown.
    """
    best: dict[tuple[str, str], ArmResult] = {}
    for arm in results.arms:
        if not arm.info.modalities:
            continue
        key = (arm.info.family or arm.info.kind or "?", modality_subset(arm.info.modalities))
        if key not in best or arm.score().mean > best[key].score().mean:
            best[key] = arm
    if not best:
        return None
    families = sorted({family for family, _ in best})
    subsets = sorted({subset for _, subset in best}, key=_subset_order)
    width = 0.8 / len(families)
    figure = new_figure(max(4.0, 1.0 * len(subsets) * max(1, len(families) / 2) + 2), 3.6)
    ax = figure.add_subplot()
    for j, family in enumerate(families):
        positions, means, stds, arms = [], [], [], []
        for i, subset in enumerate(subsets):
            if (family, subset) in best:
                arm = best[(family, subset)]
                positions.append(i + (j - (len(families) - 1) / 2) * width)
                means.append(arm.score().mean)
                stds.append(arm.score().std)
                arms.append(arm)
        bars = ax.bar(positions, means, width, yerr=stds, capsize=3, label=family)
        _hatch_thin(bars, arms)
    ax.set_xticks(range(len(subsets)), subsets)
    ax.set_xlabel("modalities (T text, V video/face, A audio/prosody)")
    ax.set_ylabel("macro F1 (mean ± std)")
    ax.set_ylim(0, 1.05)
    _legend(ax, list(best.values()), title="family")
    ax.set_title("modality ablation")
    _footnote(figure, list(best.values()))
    return figure


def modality_subset(modalities: str) -> str:
    """Canonical spelling of a subset of T, V, A: letters in T, V, A order ("AVT" -> "TVA")."""
    letters = set(modalities.upper())
    return "".join(c for c in MODALITY_ORDER if c in letters) + "".join(
        sorted(letters - set(MODALITY_ORDER))
    )


def _subset_order(subset: str) -> tuple:
    """Fewer modalities first, then text before video before audio: T, V, A, TV, TA, ..., TVA."""
    rank = {c: i for i, c in enumerate(MODALITY_ORDER)}
    return len(subset), [rank.get(c, len(rank)) for c in subset]


def write_figures(results: StudyResults, folder: Path) -> dict[str, tuple[Path, Path]]:
    """Save every figure there is something to draw for; name -> (PNG, SVG)."""
    drawn = {
        "scores": score_figure(results),
        "per_class_f1": per_class_figure(results),
        "modalities": modality_figure(results),
    }
    for arm in results.arms:
        drawn[f"confusion_{file_name(arm.name)}"] = confusion_figure(arm)
    return {
        name: save_figure(figure, folder / name)
        for name, figure in drawn.items()
        if figure is not None
    }


def _hatch_thin(bars, arms: list[ArmResult]) -> None:
    for patch, arm in zip(bars.patches, arms):
        if arm.info.thin_modalities():
            patch.set_hatch(THIN_HATCH)
            patch.set_edgecolor("0.15")


def _legend(ax, arms: list[ArmResult], **options) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if any(arm.info.thin_modalities() for arm in arms):
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor="white", edgecolor="0.15", hatch=THIN_HATCH))
        labels.append("a modality present\non ≤ half the clips")
    ax.legend(handles, labels, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0),
              **options)  # fmt: skip


def _footnote(figure: Figure, arms: list[ArmResult]) -> None:
    """Under the axes: which hatched arm lacked which modality, on how many clips, and why."""
    lines = []
    for arm in arms:
        for c in arm.info.thin_modalities():
            gap = c.main_gap or "?"
            unit = f"evaluated {c.unit}" if arm.info.coverage_of.startswith("evaluated") else c.unit
            lines.append(
                f"{arm.name}: {c.letter} ({c.name}) present on {c.present} of {c.rows} {unit}; "
                f"{gap} on {c.counts.get(gap, 0)}"
                + (f" ({c.reasons[gap]})" if c.reasons.get(gap) else "")
            )
    if lines:
        import textwrap

        title = "hatched: scores that say nothing about a modality the arm lacked"
        width = int(figure.get_figwidth() * 16)  # characters of x-small text per line
        text = "\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines)
        figure.supxlabel(f"{title}\n{text}", fontsize="x-small", x=0.0, ha="left")


def file_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


def _annotate(ax, matrix: np.ndarray, *, dark_high: bool = False) -> None:
    """Write each cell's value, in white on the dark end of the colour map."""
    if matrix.size > 400:  # unreadable anyway
        return
    for (i, j), value in np.ndenumerate(matrix):
        if not np.isnan(value):
            colour = "white" if (value > 0.55) == dark_high else "black"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
