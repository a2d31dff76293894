"""Intervals that cover what they claim: bootstrap clips jointly over the runs that share them.

The simulated classifier gets clip i right with probability p_i, where the p_i of the clip
population average 0.7 and vary a lot (Beta(0.7, 0.3): some clips are hard for every seed, some
easy). A test set of 200 clips is drawn from the population; the seeds of an arm share it, each
seed getting clip i right with probability p_i independently of the other seeds. The arm's score
is the mean accuracy over seeds, and a 95% interval should contain the population accuracy 0.7
for about 95% of test sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from evaluation.resampling import (
    bootstrap_mean,
    bootstrap_runs,
    encode,
    holm,
    joint_strata,
    mcnemar_exact,
    paired_bootstrap,
    percentile_interval,
)
from experiments.paired import compare_arms
from experiments.stats import summarize_arm
from experiments.study_runs import ArmInfo, ArmRuns, RunPredictions

POPULATION_ACCURACY = 0.7
DIFFICULTY = (0.7, 0.3)  # Beta parameters of p_i: mean 0.7
TEST_CLIPS = 200
REPEATS = 300  # simulated test sets per coverage figure
RESAMPLES = 400


def simulated_seeds(rng: np.random.Generator, seeds: int) -> list[np.ndarray]:
    """Encoded (gold, predicted) of ``seeds`` runs on one freshly drawn test set (2 classes)."""
    p = rng.beta(*DIFFICULTY, TEST_CLIPS)
    gold = rng.integers(0, 2, TEST_CLIPS)
    return [
        encode(gold, np.where(rng.random(TEST_CLIPS) < p, gold, 1 - gold), 2) for _ in range(seeds)
    ]


def coverage(seeds: int, *, shared_test_set: bool) -> float:
    """How often the arm's 95% accuracy interval contains the population accuracy.

    ``shared_test_set=False`` gives every seed clip ids of its own: the per-run bootstrap that
    resamples each seed independently, as if each had its own test set.
    """
    rng = np.random.default_rng(seeds)
    covered = 0
    for _ in range(REPEATS):
        codes = simulated_seeds(rng, seeds)
        clip_ids = [
            np.arange(TEST_CLIPS) + (0 if shared_test_set else s * TEST_CLIPS) for s in range(seeds)
        ]
        drawn = bootstrap_mean(codes, clip_ids, 2, resamples=RESAMPLES, rng=rng)
        low, high = percentile_interval(drawn["accuracy"])
        covered += low <= POPULATION_ACCURACY <= high
    return covered / REPEATS


def test_one_seed_interval_covers_the_population_accuracy():
    assert 0.90 <= coverage(1, shared_test_set=True) <= 0.99


def test_three_seeds_on_one_test_set_cover_when_clips_are_drawn_jointly():
    assert 0.90 <= coverage(3, shared_test_set=True) <= 0.99


def test_resampling_each_seed_on_its_own_under_covers():
    # the seeds agree on which clips are hard, so they are not three test sets' worth of evidence
    assert coverage(3, shared_test_set=False) < 0.88


def _arm(name: str, frames: dict[int, pd.DataFrame]) -> ArmRuns:
    """An arm whose runs (one per seed) predicted the given rows."""
    runs = tuple(
        RunPredictions(
            run_dir=Path(name),
            run_id=f"{name}-seed{seed}",
            fold=None,
            seed=seed,
            split="test",
            labels=("neg", "pos"),
            frame=frame.assign(run_id=f"{name}-seed{seed}"),
        )
        for seed, frame in frames.items()
    )
    return ArmRuns(info=ArmInfo(name=name), arm_dir=Path(name), runs=runs)


def _predictions(accuracy: float, seed: int) -> pd.DataFrame:
    """120 clips, one row each, with the same gold labels for every seed."""
    gold = np.random.default_rng(0).choice(["neg", "pos"], 120)
    rng = np.random.default_rng(seed)
    wrong = np.where(gold == "neg", "pos", "neg")
    clip_ids = [f"clip{i:03d}" for i in range(120)]
    return pd.DataFrame(
        {
            "clip_id": clip_ids,
            "unit_id": clip_ids,
            "gold": gold,
            "predicted": np.where(rng.random(120) < accuracy, gold, wrong),
        }
    )


def test_copies_of_a_seed_on_the_same_test_set_do_not_narrow_the_arm_interval():
    frame = _predictions(0.7, seed=1)
    one = summarize_arm(_arm("one", {1: frame}), resamples=500).score("accuracy")
    three = summarize_arm(_arm("three", {1: frame, 2: frame, 3: frame}), resamples=500)
    copies = three.score("accuracy")
    assert (copies.ci_low, copies.ci_high) == pytest.approx((one.ci_low, one.ci_high))
    assert three.levels["rows"].clips == 120 and three.levels["rows"].strata == 1


def test_windows_of_a_clip_are_drawn_together():
    rng = np.random.default_rng(0)
    codes = encode(rng.integers(0, 3, 50), rng.integers(0, 3, 50), 3)
    clips = np.arange(50)
    per_clip = bootstrap_runs([codes], [clips], 3, resamples=300, rng=np.random.default_rng(5))
    two_windows = bootstrap_runs(
        [np.repeat(codes, 2)], [np.repeat(clips, 2)], 3, resamples=300, rng=np.random.default_rng(5)
    )
    assert np.allclose(per_clip[0]["macro_f1"], two_windows[0]["macro_f1"])


def test_seeds_share_draws_and_folds_are_drawn_apart():
    fold0, fold1 = np.array(["a", "b", "c"]), np.array(["d", "e"])
    # fold 0 seeds 1 and 2, fold 1 seeds 1 and 2
    assert joint_strata([fold0, fold0, fold1, fold1]) == [(0, 1), (2, 3)]
    codes = np.array([0, 1, 3])  # gold * 2 + predicted: right, wrong, right
    drawn = bootstrap_runs(
        [codes, codes, np.array([3, 2])],
        [fold0, fold0, fold1],
        2,
        resamples=200,
        rng=np.random.default_rng(1),
    )
    assert np.array_equal(drawn[0]["accuracy"], drawn[1]["accuracy"])  # same clips drawn
    assert not np.array_equal(drawn[0]["accuracy"], drawn[2]["accuracy"])
    # each fold keeps its size: 3 and 2 clips, so accuracies are multiples of 1/3 and 1/2
    assert set(np.round(drawn[0]["accuracy"] * 3, 9)) <= {0, 1, 2, 3}
    assert set(np.round(drawn[2]["accuracy"] * 2, 9)) <= {0, 1, 2}


def test_paired_bootstrap_draws_the_same_clips_for_both_arms_and_every_seed():
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 2, 80)
    a, b = encode(gold, rng.integers(0, 2, 80), 2), encode(gold, gold, 2)
    clips = np.arange(80)
    same_a, same_b = paired_bootstrap([a], [a], [clips], 2, resamples=300, rng=rng)
    assert np.array_equal(same_a["macro_f1"], same_b["macro_f1"])  # an arm against itself

    one = paired_bootstrap([a], [b], [clips], 2, resamples=300, rng=np.random.default_rng(3))
    two_seeds = paired_bootstrap(
        [a, a], [b, b], [clips, clips], 2, resamples=300, rng=np.random.default_rng(3)
    )
    for drawn_one, drawn_two in zip(one, two_seeds):
        assert np.allclose(drawn_one["macro_f1"], drawn_two["macro_f1"])


def test_compare_arms_with_repeated_seeds_matches_one_seed():
    a, b = _predictions(0.8, seed=4), _predictions(0.6, seed=5)
    single = compare_arms(_arm("a", {1: a}), _arm("b", {1: b}), resamples=500)
    repeated = compare_arms(_arm("a", {1: a, 2: a}), _arm("b", {1: b, 2: b}), resamples=500)
    assert repeated.groups == 2 and repeated.strata == 1 and repeated.clips == 120
    assert (repeated.ci_low, repeated.ci_high) == pytest.approx((single.ci_low, single.ci_high))
    assert repeated.p_value == pytest.approx(single.p_value)
    # McNemar pools every joined row: the two seeds count each clip twice
    assert repeated.a_only_correct == 2 * single.a_only_correct


def test_holm_on_known_p_values():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> kept at 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])  # a family of one is not adjusted
    assert holm([]) == []


def test_mcnemar_exact_is_the_two_sided_binomial_test_of_discordant_pairs():
    for a_only, b_only in [(3, 10), (0, 5), (7, 7), (40, 20)]:
        expected = binomtest(a_only, a_only + b_only, 0.5).pvalue
        assert mcnemar_exact(a_only, b_only) == pytest.approx(expected)
    assert mcnemar_exact(0, 0) == 1.0
