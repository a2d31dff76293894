"""Paired comparison of two arms on the evaluation rows both of them predicted.

Rows are joined on ``clip_id`` and ``unit_id``, plus ``fold`` when both arms are cross-validated
and ``seed`` when both ran the same several seeds. An arm with a single seed is paired with each
seed of the other (its predictions are reused). Each joined (run of A, run of B) is a group; the
macro F1 difference is the mean over groups of (F1 of A − F1 of B) on the joined rows.

* Paired bootstrap (``evaluation.resampling.paired_bootstrap``): each replicate draws clip ids
  with replacement, once for all groups that share clips (the seeds of one test set or fold) and
  for both arms; every group counts each drawn clip's joined rows as often as the clip was drawn.
  Groups on disjoint clips (folds) are drawn separately, each to its own number of clips.
  CI = 2.5th-97.5th percentile of the replicated differences; p = two-sided bootstrap p-value of
  a zero difference.
* McNemar's exact test on the pooled pairs: every joined row of every group is one pair (A's and
  B's prediction of one window of one clip in one fold and seed pairing), counted as "A right,
  B wrong" or "A wrong, B right"; the p-value is the two-sided binomial test of those two counts
  at 1/2. Windows of one clip, and the seeds of one clip, are not independent pairs, so with
  several windows or seeds read this p-value as descriptive; the paired bootstrap accounts for
  them.
* ``holm_adjusted`` adds Holm's correction over a family of comparisons (a study's report),
  separately for the bootstrap and the McNemar p-values; ``compare_arms`` alone is a family of
  one (adjusted = raw).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from evaluation.resampling import (
    DEFAULT_RESAMPLES,
    encode,
    holm,
    joint_strata,
    mcnemar_exact,
    paired_bootstrap,
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
    clips: int  # distinct clip ids, the units the bootstrap draws
    strata: int  # disjoint clip sets drawn separately (folds)
    macro_f1_a: float
    macro_f1_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float  # paired bootstrap, two-sided, raw
    p_value_holm: float  # Holm-adjusted over the family of comparisons (raw for a family of one)
    a_only_correct: int  # pooled joined rows where only A is right
    b_only_correct: int
    mcnemar_p: float  # exact, on the pooled joined rows, raw
    mcnemar_p_holm: float
    resamples: int


def compare_arms(
    a: ArmRuns, b: ArmRuns, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> PairedComparison:
    """Macro F1 difference with paired bootstrap CI and p-value, and McNemar's exact test."""
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
    groups = [group for _, group in joined.groupby(["run_id_a", "run_id_b"], sort=True)]
    codes_a = [group["_code_a"].to_numpy() for group in groups]
    codes_b = [group["_code_b"].to_numpy() for group in groups]
    clip_ids = [group["clip_id"].to_numpy() for group in groups]
    points_arr = np.asarray(
        [
            [scores_from_codes(codes, len(labels))["macro_f1"][0] for codes in pair]
            for pair in zip(codes_a, codes_b)
        ]
    )
    drawn_a, drawn_b = paired_bootstrap(
        codes_a,
        codes_b,
        clip_ids,
        len(labels),
        resamples=resamples,
        rng=np.random.default_rng(seed),
    )
    differences = drawn_a["macro_f1"] - drawn_b["macro_f1"]
    low, high = percentile_interval(differences)

    right_a = (joined["predicted_a"] == joined["gold_a"]).to_numpy()
    right_b = (joined["predicted_b"] == joined["gold_a"]).to_numpy()
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    mcnemar = mcnemar_exact(only_a, only_b)
    p_value = two_sided_p(differences)
    return PairedComparison(
        arm_a=a.info.name,
        arm_b=b.info.name,
        paired_on=tuple(keys),
        pairing=pairing,
        groups=len(groups),
        examples=len(joined),
        clips=int(joined["clip_id"].nunique()),
        strata=len(joint_strata(clip_ids)),
        macro_f1_a=float(points_arr[:, 0].mean()),
        macro_f1_b=float(points_arr[:, 1].mean()),
        difference=float((points_arr[:, 0] - points_arr[:, 1]).mean()),
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        p_value_holm=p_value,
        a_only_correct=only_a,
        b_only_correct=only_b,
        mcnemar_p=mcnemar,
        mcnemar_p_holm=mcnemar,
        resamples=resamples,
    )


def holm_adjusted(comparisons: Sequence[PairedComparison]) -> list[PairedComparison]:
    """The comparisons with Holm-adjusted p-values over all of them: one family for the
    bootstrap p-values, another for the McNemar ones."""
    bootstrap = holm([c.p_value for c in comparisons])
    mcnemar = holm([c.mcnemar_p for c in comparisons])
    return [
        replace(c, p_value_holm=p, mcnemar_p_holm=q)
        for c, p, q in zip(comparisons, bootstrap, mcnemar)
    ]


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
