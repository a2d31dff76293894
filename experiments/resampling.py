"""Vectorised bootstrap of classification scores: all resamples of a set of examples at once.

Examples are encoded as ``gold * K + predicted`` (K classes); one ``np.bincount`` over every
resample gives a confusion matrix per resample, from which accuracy, macro F1 and weighted F1
follow with the conventions of ``finetune.metrics.score`` (sklearn, ``zero_division=0``: a class
with no gold and no predicted example has F1 0 and still counts in the macro mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SCORES = ("accuracy", "macro_f1", "weighted_f1")
DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95
_CHUNK_ELEMENTS = 4_000_000  # resampled indices held at once (~32 MB of int64)


def encode(gold: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """One integer per example: ``gold * n_classes + predicted`` (class ids)."""
    return np.asarray(gold, dtype=np.int64) * n_classes + np.asarray(predicted, dtype=np.int64)


def scores_from_codes(codes: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Accuracy, macro F1 and weighted F1 of each row of ``codes`` (shape resamples x examples)."""
    codes = np.atleast_2d(codes)
    resamples, cells = codes.shape[0], n_classes * n_classes
    offsets = (np.arange(resamples, dtype=np.int64) * cells)[:, None]
    counts = np.bincount((codes + offsets).ravel(), minlength=resamples * cells)
    counts = counts.reshape(resamples, n_classes, n_classes)  # rows: gold, columns: predicted
    hits = np.diagonal(counts, axis1=1, axis2=2)
    support, predicted = counts.sum(axis=2), counts.sum(axis=1)
    denominator = support + predicted  # 2 TP + FP + FN
    f1 = np.divide(2.0 * hits, denominator, out=np.zeros(hits.shape), where=denominator > 0)
    total = np.maximum(support.sum(axis=1), 1)
    return {
        "accuracy": hits.sum(axis=1) / total,
        "macro_f1": f1.mean(axis=1),
        "weighted_f1": (f1 * support).sum(axis=1) / total,
    }


def bootstrap_scores(
    code_sets: Sequence[np.ndarray],
    n_classes: int,
    *,
    resamples: int,
    rng: np.random.Generator,
) -> list[dict[str, np.ndarray]]:
    """Scores of ``resamples`` bootstrap resamples of the examples, one dict per code array.

    Every array in ``code_sets`` describes the same examples (e.g. two arms' predictions of the
    same clips), and each resample draws the same example indices for all of them: with one array
    this is the ordinary bootstrap, with two the paired bootstrap.
    """
    size = len(code_sets[0])
    if size == 0:
        raise ValueError("cannot bootstrap an empty set of examples")
    if any(len(codes) != size for codes in code_sets):
        raise ValueError("paired code arrays must describe the same examples (equal lengths)")
    chunk = max(1, _CHUNK_ELEMENTS // size)
    parts: list[list[dict[str, np.ndarray]]] = []
    for start in range(0, resamples, chunk):
        index = rng.integers(0, size, size=(min(chunk, resamples - start), size))
        parts.append([scores_from_codes(codes[index], n_classes) for codes in code_sets])
    return [
        {key: np.concatenate([part[i][key] for part in parts]) for key in SCORES}
        for i in range(len(code_sets))
    ]


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of bootstrap values."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def two_sided_p(differences: np.ndarray) -> float:
    """Bootstrap p-value of "no difference": twice the smaller tail mass at zero, (1 + k)/(1 + B).

    The +1 keeps it above zero (the smallest reportable p is about 2/B); identical arms, whose
    every resampled difference is exactly zero, get 1.
    """
    n = len(differences)
    below = (1 + np.count_nonzero(differences <= 0)) / (n + 1)
    above = (1 + np.count_nonzero(differences >= 0)) / (n + 1)
    return float(min(1.0, 2.0 * min(below, above)))
