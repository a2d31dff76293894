"""Paired comparison of two arms on the evaluation rows both of them predicted.

Rows are joined on ``clip_id`` and ``unit_id``, plus ``fold`` when both arms are cross-validated
and ``seed`` when both ran the same several seeds. An arm with a single seed is paired with each
seed of the other (its predictions are reused). Each joined (run of A, run of B) is a group; the
macro F1 difference is the mean over groups of (F1 of A − F1 of B) on the joined rows.

* Paired bootstrap: each replicate draws, within every group, as many joined rows as it has,
  with replacement, the same rows for both arms; CI = 2.5th-97.5th percentile of the replicated
  differences; p = two-sided bootstrap p-value of a zero difference.
* McNemar's exact test on per-row correctness pooled over all joined rows: a binomial test of
  "A right, B wrong" against "A wrong, B right". Rows of several seeds of the same clip are not
  independent, so with many seeds read its p-value as descriptive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.resampling import (
    DEFAULT_RESAMPLES,
    bootstrap_scores,
    encode,
    percentile_interval,
    scores_from_codes,
    two_sided_p,
)
from experiments.study_runs import ArmRuns


class PairingError(Exception):
    """Two arms cannot be compared example by example."""


@dataclass(frozen=True)
class PairedComparison:
    """Arm A against arm B on their shared evaluation rows (difference = A − B)."""

    arm_a: str
    arm_b: str
    paired_on: tuple[str, ...]
    pairing: str  # in words, e.g. which seeds were paired with which
    groups: int  # (run of A, run of B) pairs
    examples: int  # joined rows, summed over groups
    macro_f1_a: float
    macro_f1_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float  # paired bootstrap, two-sided
    a_only_correct: int
    b_only_correct: int
    mcnemar_p: float
    resamples: int


def compare_arms(
    a: ArmRuns, b: ArmRuns, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> PairedComparison:
    """Macro F1 difference with paired bootstrap CI and p-value, and McNemar's exact test."""
    from scipy.stats import binomtest

    rows_a, rows_b = a.evaluation_frame(), b.evaluation_frame()
    keys, pairing = _join_keys(a, b, rows_a, rows_b)
    joined = rows_a.merge(rows_b, on=keys, suffixes=("_a", "_b"))
    if joined.empty:
        raise PairingError(
            f"arms {a.info.name!r} and {b.info.name!r} share no evaluation examples (joined on "
            f"{', '.join(keys)}): run both on the same prepared dataset, splits and folds"
        )
    if (joined["gold_a"] != joined["gold_b"]).any():
        raise PairingError(
            f"arms {a.info.name!r} and {b.info.name!r} disagree on gold labels of the same "
            "clips: they were built from different datasets or label columns"
        )
    labels = tuple(dict.fromkeys(a.labels + b.labels))
    index = {label: i for i, label in enumerate(labels)}
    gold = joined["gold_a"].map(index)
    joined = joined.assign(
        _code_a=encode(gold, joined["predicted_a"].map(index), len(labels)),
        _code_b=encode(gold, joined["predicted_b"].map(index), len(labels)),
    )
    rng = np.random.default_rng(seed)
    points, replicates = [], []
    for _, group in joined.groupby(["run_id_a", "run_id_b"], sort=True):
        codes = [group["_code_a"].to_numpy(), group["_code_b"].to_numpy()]
        points.append([scores_from_codes(c, len(labels))["macro_f1"][0] for c in codes])
        drawn = bootstrap_scores(codes, len(labels), resamples=resamples, rng=rng)
        replicates.append(drawn[0]["macro_f1"] - drawn[1]["macro_f1"])
    points_arr = np.asarray(points)
    differences = np.mean(replicates, axis=0)
    low, high = percentile_interval(differences)

    right_a = (joined["predicted_a"] == joined["gold_a"]).to_numpy()
    right_b = (joined["predicted_b"] == joined["gold_a"]).to_numpy()
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    discordant = only_a + only_b
    mcnemar = binomtest(only_a, discordant, 0.5).pvalue if discordant else 1.0
    return PairedComparison(
        arm_a=a.info.name,
        arm_b=b.info.name,
        paired_on=tuple(keys),
        pairing=pairing,
        groups=len(points),
        examples=len(joined),
        macro_f1_a=float(points_arr[:, 0].mean()),
        macro_f1_b=float(points_arr[:, 1].mean()),
        difference=float((points_arr[:, 0] - points_arr[:, 1]).mean()),
        ci_low=low,
        ci_high=high,
        p_value=two_sided_p(differences),
        a_only_correct=only_a,
        b_only_correct=only_b,
        mcnemar_p=float(mcnemar),
        resamples=resamples,
    )


def _join_keys(a: ArmRuns, b: ArmRuns, rows_a, rows_b) -> tuple[list[str], str]:
    """Join columns and a sentence saying what was paired with what."""
    keys, notes = ["clip_id", "unit_id"], []
    folds_a, folds_b = rows_a["fold"].notna().all(), rows_b["fold"].notna().all()
    if folds_a and folds_b:
        keys.append("fold")
    elif folds_a or folds_b:
        notes.append("fold ignored (only one arm is cross-validated)")
    seeds_a = set(rows_a["seed"].dropna().astype(int))
    seeds_b = set(rows_b["seed"].dropna().astype(int))
    if len(seeds_a) > 1 and seeds_a == seeds_b:
        keys.append("seed")
        notes.append(f"seeds {_listed(seeds_a)} paired seed by seed")
    elif len(seeds_a) > 1 and len(seeds_b) > 1:
        raise PairingError(
            f"arms {a.info.name!r} (seeds {_listed(seeds_a)}) and {b.info.name!r} (seeds "
            f"{_listed(seeds_b)}) ran different seeds: give both the same seeds, or one a "
            "single seed"
        )
    elif len(seeds_a) <= 1 and len(seeds_b) <= 1:
        notes.append(f"one run per fold each (seeds {_listed(seeds_a)} / {_listed(seeds_b)})")
    else:
        single, other = (a, b) if len(seeds_a) <= 1 else (b, a)
        many = seeds_b if single is a else seeds_a
        notes.append(
            f"{single.info.name} (one seed) paired with each seed of {other.info.name} "
            f"({_listed(many)})"
        )
    return keys, "; ".join(notes)


def _listed(seeds: set[int]) -> str:
    return ", ".join(str(s) for s in sorted(seeds)) or "unknown"
