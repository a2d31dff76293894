"""Evaluation: accuracy, macro/weighted F1, per-class scores, confusion matrix, clip aggregation.

Window-level prompts (several rows per ``clip_id``) are scored per row and again per clip, by
majority vote over rows and by the mean of their class probabilities. Cross-validation results
are summarised as mean and standard deviation over folds and seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ClassScores:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationMetrics:
    """Scores of predicted against gold labels over one set of examples."""

    examples: int
    accuracy: float
    macro_f1: float
    weighted_f1: float
    per_class: tuple[ClassScores, ...]
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows: gold, columns: predicted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(gold: list[int] | np.ndarray, predicted: list[int] | np.ndarray, labels: tuple[str, ...]):
    """Metrics over integer class ids; labels absent from gold still get a row."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    ids = list(range(len(labels)))
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    p, r, f, s = precision_recall_fscore_support(gold, predicted, labels=ids, zero_division=0)
    return ClassificationMetrics(
        examples=len(gold),
        accuracy=float(accuracy_score(gold, predicted)),
        macro_f1=float(f1_score(gold, predicted, labels=ids, average="macro", zero_division=0)),
        weighted_f1=float(
            f1_score(gold, predicted, labels=ids, average="weighted", zero_division=0)
        ),
        per_class=tuple(
            ClassScores(labels[i], float(p[i]), float(r[i]), float(f[i]), int(s[i])) for i in ids
        ),
        labels=tuple(labels),
        confusion=tuple(
            tuple(int(v) for v in row) for row in confusion_matrix(gold, predicted, labels=ids)
        ),
    )


def probability_columns(labels: tuple[str, ...]) -> list[str]:
    return [f"prob_{label}" for label in labels]


def clip_level(predictions: pd.DataFrame, labels: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Aggregate row predictions per clip: ``vote`` (majority, ties to the higher mean
    probability) and ``mean_prob`` (argmax of the mean probabilities)."""
    cols = probability_columns(labels)
    index = {name: i for i, name in enumerate(labels)}
    grouped = predictions.groupby("clip_id", sort=True)
    mean = grouped[cols].mean()
    gold = grouped["gold"].first()
    votes = (
        predictions.assign(_p=predictions["predicted"].map(index))
        .groupby("clip_id")["_p"]
        .apply(lambda s: np.bincount(s, minlength=len(labels)))
    )
    vote_ids = [
        int(np.lexsort((mean.loc[clip].to_numpy(), counts))[-1]) for clip, counts in votes.items()
    ]
    return {
        "vote": mean.assign(gold=gold, predicted=[labels[i] for i in vote_ids])[
            ["gold", "predicted"]
        ],
        "mean_prob": mean.assign(
            gold=gold, predicted=[labels[i] for i in mean.to_numpy().argmax(axis=1)]
        )[["gold", "predicted"]],
    }


def evaluate_predictions(predictions: pd.DataFrame, labels: tuple[str, ...]) -> dict[str, Any]:
    """Row-level metrics, plus clip-level ones when some clip has several rows."""
    index = {name: i for i, name in enumerate(labels)}
    result: dict[str, Any] = {
        "rows": score(
            predictions["gold"].map(index), predictions["predicted"].map(index), labels
        ).to_dict()
    }
    if predictions["clip_id"].duplicated().any():
        for name, clips in clip_level(predictions, labels).items():
            result[f"clips_{name}"] = score(
                clips["gold"].map(index), clips["predicted"].map(index), labels
            ).to_dict()
    return result


def aggregate_runs(runs: list[dict[str, Any]], keys=("accuracy", "macro_f1", "weighted_f1")):
    """Mean and standard deviation (ddof=0) of headline metrics over runs (folds x seeds).

    Each run is ``{"fold": f, "seed": s, "metrics": evaluate_predictions(...)}``.
    """
    levels = sorted({level for run in runs for level in run["metrics"]})
    summary: dict[str, Any] = {"runs": len(runs)}
    for level in levels:
        summary[level] = {}
        for key in keys:
            values = [run["metrics"][level][key] for run in runs if level in run["metrics"]]
            summary[level][key] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values)),
                "values": [float(v) for v in values],
            }
    return summary


def has_label(values: pd.Series) -> pd.Series:
    """Which rows have a gold label: not null and not blank (textualize leaves "" or None)."""
    return values.notna() & (values.astype(str).str.strip() != "")


@dataclass(frozen=True)
class PredictionOutcome:
    """Predictions of a trained run on new rows; metrics only where every gold label is known."""

    predictions: pd.DataFrame  # the columns of a run's predictions.parquet
    metrics: dict[str, Any] | None
    note: str  # which rows the metrics cover, or why there are none


def score_if_labelled(
    predictions: pd.DataFrame, labels: tuple[str, ...], source: str
) -> tuple[dict[str, Any] | None, str]:
    """Metrics of predictions against their ``gold`` column, and a note saying what they cover.

    There are no metrics unless every row has a gold label among the run's ``labels``: scores
    over part of the rows, or with classes the model cannot predict, would not be the scores of
    ``source``. A blank gold label counts as none.
    """
    gold = predictions["gold"]
    known = has_label(gold)
    missing = int((~known).sum())
    unknown = sorted(set(gold[known].astype(str)) - set(labels))
    if missing == len(gold):
        return None, f"{source} has no gold labels: predictions only, no metrics"
    if missing:
        return None, (
            f"{missing} of {len(gold)} rows have no gold label: no metrics (score the labelled "
            "rows on their own to get them)"
        )
    if unknown:
        return None, (
            f"gold label(s) {unknown} are not among the run's labels {list(labels)}: no metrics"
        )
    return evaluate_predictions(predictions, labels), f"metrics over {len(gold)} labelled rows"
