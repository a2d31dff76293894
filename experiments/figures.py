"""Figures of a study report, drawn on matplotlib's Agg canvas (no display) and saved as PNG + SVG.

Each ``*_figure`` function takes ``experiments.stats`` results and returns a ``Figure`` (or None
when there is nothing to draw), so a notebook can show it and ``write_figures`` can save it.
Bars of an arm that lacked one of its modalities on most clips (``ArmInfo.thin_modalities``) are
hatched and explained in a footnote: such a score is not evidence about that modality.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from experiments.stats import ArmResult, StudyResults

MODALITY_ORDER = "TVA"
PAGE_WIDTH = 9.0  # inches: a figure this wide shows at page width without scaling text down
PNG_DPI = 160  # text, video (face), audio (prosody)
THIN_HATCH = "//"


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot state, safe without a display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, stem: Path) -> tuple[Path, Path]:
    """Write ``stem.png`` (``PNG_DPI``) and ``stem.svg``; returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    figure.savefig(png, dpi=PNG_DPI)
    figure.savefig(svg)
    return png, svg


def chance_scores(results: StudyResults) -> dict[str, float]:
    """Scores of guessing every label equally often, at the class shares of the evaluated rows
    (pooled over arms): accuracy 1/K; per class, precision is the class share and recall 1/K."""
    support: dict[str, int] = {}
    for arm in results.arms:
        for c in arm.levels["rows"].per_class:
            support[c.label] = support.get(c.label, 0) + c.support
    total = sum(support.values())
    if not total:
        return {}
    guess = 1 / len(support)
    shares = np.array([n / total for n in support.values()])
    f1 = np.divide(2 * shares * guess, shares + guess, out=np.zeros_like(shares), where=shares > 0)
    return {"accuracy": guess, "macro_f1": float(f1.mean()), "weighted_f1": float(shares @ f1)}


def score_figure(results: StudyResults) -> Figure | None:
    """Macro F1 and accuracy per arm: bars at the mean over runs, whiskers the bootstrap 95%
    interval, a dashed line at chance (uniform guessing)."""
    if not results.arms:
        return None
    arms = list(reversed(results.arms))  # first arm on top
    y = np.arange(len(arms))
    chance = chance_scores(results)
    figure = new_figure(PAGE_WIDTH, 0.42 * len(arms) + 1.5)
    axes = figure.subplots(1, 2, sharey=True)
    for ax, (metric, title), colour in zip(
        axes, (("macro_f1", "macro F1"), ("accuracy", "accuracy")), ("C0", "C1")
    ):
        scores = [arm.score(metric) for arm in arms]
        bars = ax.barh(y, [s.mean for s in scores], 0.6, xerr=_interval(scores), capsize=3,
                       color=colour, error_kw={"elinewidth": 1.2})  # fmt: skip
        _hatch_thin(bars, arms)
        for yi, s in zip(y, scores):
            ax.text(min(s.ci_high, 1.0) + 0.015, yi, f"{s.mean:.2f}", va="center", fontsize=8)
        _chance_line(ax, chance.get(metric), vertical=True)
        ax.set_xlim(0, 1.12)
        ax.set_xlabel(f"{title} (mean; whiskers: 95% CI)")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(
        y,
        [f"{arm.name}\n(random weights)" if arm.info.random_weights else arm.name for arm in arms],
    )
    if any(arm.info.thin_modalities() for arm in arms):
        _legend(axes[1], arms)
    _footnote(figure, arms)
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
    width = min(PAGE_WIDTH, max(5.5, 0.9 * len(labels) + 3.5))
    figure = new_figure(width, max(2.5, 0.42 * len(results.arms) + 1.8))
    ax = figure.add_subplot()
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    _annotate(ax, matrix)
    ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 5 else 0,
                  ha="right" if len(labels) > 5 else "center")  # fmt: skip
    ax.set_yticks(range(len(results.arms)), [arm.name for arm in results.arms])
    ax.set_xlabel("gold label")
    figure.colorbar(image, ax=ax, shrink=0.8, label="F1 (mean over runs)")
    return figure


def confusion_figure(arm: ArmResult, level: str = "rows") -> Figure:
    """One arm's confusion matrix summed over runs: counts and row percentages."""
    figure = new_figure(*_confusion_size(len(arm.levels[level].labels), 1))
    _draw_confusion(figure.add_subplot(), arm, level)
    return figure


def confusion_grid(results: StudyResults, level: str = "rows") -> Figure | None:
    """Every arm's confusion matrix side by side, as many per row as fit at page width."""
    if not results.arms:
        return None
    labels = len(results.labels)
    columns = min(len(results.arms), 3 if labels <= 4 else 2 if labels <= 7 else 1)
    rows = -(-len(results.arms) // columns)
    figure = new_figure(*_confusion_size(labels, columns, rows))
    for i, arm in enumerate(results.arms):
        _draw_confusion(figure.add_subplot(rows, columns, i + 1), arm, level)
    return figure


def _confusion_size(labels: int, columns: int, rows: int = 1) -> tuple[float, float]:
    cell = min(0.75, (PAGE_WIDTH / columns - 1.6) / max(labels, 1))
    side = cell * labels + 1.6
    return min(PAGE_WIDTH, side * columns), (side + 0.3) * rows


def _draw_confusion(ax, arm: ArmResult, level: str) -> None:
    summary = arm.levels[level]
    counts = np.asarray(summary.confusion, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
    if counts.size <= 400:
        small = 9 if len(summary.labels) <= 4 else 7
        for (i, j), n in np.ndenumerate(counts):
            colour = "white" if share[i, j] > 0.55 else "black"
            ax.text(j, i, f"{int(n)}\n{share[i, j]:.0%}", ha="center", va="center",
                    fontsize=small, color=colour)  # fmt: skip
    ticks = range(len(summary.labels))
    ax.set_xticks(ticks, summary.labels, rotation=30 if len(summary.labels) > 3 else 0,
                  ha="right" if len(summary.labels) > 3 else "center", fontsize=8)  # fmt: skip
    ax.set_yticks(ticks, summary.labels, fontsize=8)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("gold", fontsize=8)
    runs = f"{arm.runs} run{'s' * (arm.runs > 1)}"
    ax.set_title(textwrap.fill(f"{arm.name} ({runs})", 28), fontsize=9)


def modality_figure(results: StudyResults) -> Figure | None:
    """Macro F1 by modality subset (T, TA, TV, TVA ...), one bar per model family, whiskers the
    bootstrap 95% interval, a dashed line at chance.

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
    figure = new_figure(min(PAGE_WIDTH, max(5.0, 1.1 * len(subsets) * len(families) + 3)), 3.8)
    ax = figure.add_subplot()
    for j, family in enumerate(families):
        positions, scores, arms = [], [], []
        for i, subset in enumerate(subsets):
            if (family, subset) in best:
                arm = best[(family, subset)]
                positions.append(i + (j - (len(families) - 1) / 2) * width)
                scores.append(arm.score())
                arms.append(arm)
        bars = ax.bar(positions, [s.mean for s in scores], width, yerr=_interval(scores),
                      capsize=3, label=family)  # fmt: skip
        _hatch_thin(bars, arms)
    _chance_line(ax, chance_scores(results).get("macro_f1"), vertical=False)
    ax.set_xticks(range(len(subsets)), subsets)
    ax.set_xlabel("modalities (T text, V video/face, A audio/voice)")
    ax.set_ylabel("macro F1 (mean; whiskers: 95% CI)")
    ax.set_ylim(0, 1.08)
    ax.grid(axis="y", alpha=0.3)
    _legend(ax, list(best.values()), title="family")
    _footnote(figure, list(best.values()))
    return figure


def _interval(scores) -> np.ndarray:
    """Asymmetric error bars from the bootstrap interval (never negative)."""
    means = np.array([s.mean for s in scores])
    low = np.clip(means - np.array([s.ci_low for s in scores]), 0, None)
    high = np.clip(np.array([s.ci_high for s in scores]) - means, 0, None)
    return np.vstack([low, high])


def _chance_line(ax, value: float | None, *, vertical: bool) -> None:
    if value is None:
        return
    style = {"color": "0.3", "linestyle": "--", "linewidth": 1}
    if vertical:
        ax.axvline(value, **style)
        ax.annotate("chance", (value, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(2, 2), textcoords="offset points", fontsize=7, color="0.3")  # fmt: skip
    else:
        ax.axhline(value, **style)
        ax.annotate("chance", (0.0, value), xycoords=("axes fraction", "data"),
                    xytext=(2, 2), textcoords="offset points", fontsize=7, color="0.3")  # fmt: skip


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
        "confusion": confusion_grid(results),
        "modalities": modality_figure(results),
    }
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
        title = "hatched: scores that say nothing about a modality the arm lacked"
        width = int(figure.get_figwidth() * 16)  # characters of x-small text per line
        text = "\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines)
        figure.supxlabel(f"{title}\n{text}", fontsize="x-small", x=0.0, ha="left")


def _annotate(ax, matrix: np.ndarray, *, dark_high: bool = False) -> None:
    """Write each cell's value, in white on the dark end of the colour map."""
    if matrix.size > 400:  # unreadable anyway
        return
    for (i, j), value in np.ndenumerate(matrix):
        if not np.isnan(value):
            colour = "white" if (value > 0.55) == dark_high else "black"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=9, color=colour)
