"""Vectorised bootstrap of classification scores, resampling examples jointly over the runs that
share them; bootstrap intervals and p-values, McNemar's exact test and Holm's correction.

Examples are encoded as ``gold * K + predicted`` (K classes) and counted into one confusion matrix
per resample, from which accuracy, macro F1 and weighted F1 follow with the conventions of
``evaluation.metrics.score`` (sklearn, ``zero_division=0``: a class with no gold and no predicted
example has F1 0 and still counts in the macro mean).

Every example carries a key, the unit the bootstrap draws (a clip id, so that the windows of one
clip stay together). Runs that evaluated the same keys (several seeds on one test set; two arms on
the same clips) are resampled jointly, a cluster bootstrap: each replicate draws the keys once,
with replacement, and every run that evaluated a drawn key counts all its examples of that key as
many times as the key was drawn. Runs linked by shared keys form a stratum; strata with disjoint
keys (cross-validation folds) are drawn separately, each to its own number of keys. Giving every
run keys of its own turns this back into the per-run bootstrap, which is too narrow when runs share
a test set: seeds that agree on which examples are hard carry less information than independent
test sets, up to sqrt(number of seeds) too narrow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SCORES = ("accuracy", "macro_f1", "weighted_f1")
DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95
_CHUNK_ELEMENTS = 4_000_000  # drawn key indices held at once (~32 MB of int64)


def encode(gold: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """One integer per example: ``gold * n_classes + predicted`` (class ids)."""
    return np.asarray(gold, dtype=np.int64) * n_classes + np.asarray(predicted, dtype=np.int64)


def scores_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro F1 and weighted F1 of confusion matrices (shape resamples x K x K,
    rows gold, columns predicted; counts may be floats)."""
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


def scores_from_codes(codes: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Accuracy, macro F1 and weighted F1 of each row of ``codes`` (shape resamples x examples)."""
    codes = np.atleast_2d(codes)
    resamples, cells = codes.shape[0], n_classes * n_classes
    offsets = (np.arange(resamples, dtype=np.int64) * cells)[:, None]
    counts = np.bincount((codes + offsets).ravel(), minlength=resamples * cells)
    return scores_from_counts(counts.reshape(resamples, n_classes, n_classes))


def joint_strata(keys: Sequence[np.ndarray]) -> list[tuple[int, ...]]:
    """Indices of the runs resampled together: runs linked by shared keys, directly or through
    other runs, form one stratum (seeds of one test set); disjoint key sets (folds) do not."""
    return _strata(*_key_ids(keys))


def bootstrap_runs(
    codes: Sequence[np.ndarray],
    keys: Sequence[np.ndarray],
    n_classes: int,
    *,
    resamples: int,
    rng: np.random.Generator,
) -> list[dict[str, np.ndarray]]:
    """Scores of every run in each of ``resamples`` cluster-bootstrap replicates, one dict per run.

    ``codes[r]`` are run r's encoded examples and ``keys[r]`` their keys (e.g. clip ids). Each
    stratum (``joint_strata``) draws its distinct keys once per replicate, and every run of the
    stratum is scored on the same draw.
    """
    if len(codes) != len(keys) or any(len(c) != len(k) for c, k in zip(codes, keys)):
        raise ValueError("every run needs one key per encoded example")
    if not codes or any(len(c) == 0 for c in codes):
        raise ValueError("cannot bootstrap a run without examples")
    cells = n_classes * n_classes
    n_keys, key_ids = _key_ids(keys)
    counts = [np.zeros((resamples, cells)) for _ in codes]
    for members in _strata(n_keys, key_ids):
        stratum = np.unique(np.concatenate([key_ids[run] for run in members]))
        size = len(stratum)
        tallies = {  # per run: examples of each (key, code) cell
            run: np.bincount(
                np.searchsorted(stratum, key_ids[run]) * cells + np.asarray(codes[run]),
                minlength=size * cells,
            )
            .reshape(size, cells)
            .astype(np.float64)
            for run in members
        }
        chunk = max(1, _CHUNK_ELEMENTS // size)
        for start in range(0, resamples, chunk):
            n = min(chunk, resamples - start)
            drawn = rng.integers(0, size, size=(n, size))
            offsets = (np.arange(n, dtype=np.int64) * size)[:, None]
            times = np.bincount((drawn + offsets).ravel(), minlength=n * size).reshape(n, size)
            times = times.astype(np.float64)  # how often each key was drawn, per replicate
            for run in members:
                counts[run][start : start + n] = times @ tallies[run]
    return [scores_from_counts(c.reshape(resamples, n_classes, n_classes)) for c in counts]


def bootstrap_mean(
    codes: Sequence[np.ndarray],
    keys: Sequence[np.ndarray],
    n_classes: int,
    *,
    resamples: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Replicates of the mean over runs of each run's score, the examples drawn jointly
    (``bootstrap_runs``): what an arm's interval is computed from."""
    return _mean(bootstrap_runs(codes, keys, n_classes, resamples=resamples, rng=rng))


def paired_bootstrap(
    codes_a: Sequence[np.ndarray],
    codes_b: Sequence[np.ndarray],
    keys: Sequence[np.ndarray],
    n_classes: int,
    *,
    resamples: int,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Replicates of the mean over run pairs of A's and of B's score, on the same draws.

    ``codes_a[g]``, ``codes_b[g]`` and ``keys[g]`` describe the examples that pair g (a run of A,
    a run of B) both predicted. Both arms and every pair evaluating a drawn key get the same draw.
    """
    if len(codes_a) != len(codes_b):
        raise ValueError("paired code lists must have one entry per run pair for both arms")
    every = list(codes_a) + list(codes_b)
    scores = bootstrap_runs(every, list(keys) * 2, n_classes, resamples=resamples, rng=rng)
    return _mean(scores[: len(codes_a)]), _mean(scores[len(codes_a) :])


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


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """McNemar's exact test: two-sided binomial test of ``a_only`` successes in the
    ``a_only + b_only`` discordant pairs at probability 1/2 (1.0 when there are none)."""
    from scipy.stats import binom

    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(a_only, b_only), discordant, 0.5)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest of m is
    multiplied by (m - i + 1), capped at 1 and kept non-decreasing. Rejecting the adjusted values
    below alpha keeps the family-wise error rate at alpha."""
    values = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    scaled = np.minimum(1.0, (len(values) - np.arange(len(values))) * values[order])
    adjusted = np.empty_like(values)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def _strata(n_keys: int, key_ids: list[np.ndarray]) -> list[tuple[int, ...]]:
    member = np.zeros((len(key_ids), n_keys))
    for run, ids in enumerate(key_ids):
        member[run, ids] = 1.0
    linked = member @ member.T > 0
    while True:  # transitive closure; doubles the path length each round
        wider = linked.astype(np.float64) @ linked > 0
        if (wider == linked).all():
            break
        linked = wider
    first = linked.argmax(axis=1)  # the smallest run index of each run's stratum
    return [tuple(np.flatnonzero(first == label).tolist()) for label in dict.fromkeys(first)]


def _key_ids(keys: Sequence[np.ndarray]) -> tuple[int, list[np.ndarray]]:
    """Number of distinct keys over all runs, and every run's keys as indices into them."""
    flat = np.concatenate([np.asarray(k) for k in keys])
    if flat.dtype == object:  # e.g. clip ids from pandas; numbers and strings sort apart
        flat = flat.astype(str)
    distinct, inverse = np.unique(flat, return_inverse=True)
    bounds = np.cumsum([0] + [len(k) for k in keys])
    return len(distinct), [inverse[bounds[i] : bounds[i + 1]] for i in range(len(keys))]


def _mean(per_run: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.mean([scores[key] for scores in per_run], axis=0) for key in SCORES}
