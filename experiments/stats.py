"""Statistics of a study: per-arm scores with spread and confidence, paired tests between arms.

Per arm, every run (fold x seed) is scored on its evaluation split by
``evaluation.metrics.evaluate_predictions`` (rows, and clips by vote / mean probability when
several windows share a clip). Headline scores are the mean and standard deviation (ddof=0, as
in ``cv_metrics.json``) over runs, with a bootstrap 95% confidence interval:

    each of ``resamples`` bootstrap replicates draws clip ids with replacement, once for all
    runs that evaluated the same clips (the seeds of one test set or of one fold), and every such
    run counts each drawn clip's rows (or the clip itself at clip level) as often as the clip
    was drawn; runs on disjoint clips (folds) are drawn separately, each to its own number of
    clips. The replicate's statistic is the mean over runs of the resampled scores; the interval
    is the 2.5th-97.5th percentile of the replicates (``evaluation.resampling.bootstrap_mean``).
    It measures how much the mean depends on which clips were drawn for evaluation; the spread
    over seeds and folds is the std.

Pairs of arms are compared on the evaluation rows both predicted (``experiments.paired``), with
Holm's correction over the comparisons of one study.
``write_results`` stores everything as ``STUDY/results/{arms,pairwise,per_class}.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.resampling import (
    DEFAULT_RESAMPLES,
    SCORES,
    bootstrap_mean,
    encode,
    joint_strata,
    percentile_interval,
)
from experiments.paired import PairedComparison, PairingError, compare_arms, holm_adjusted
from experiments.study_runs import (
    ArmInfo,
    ArmRuns,
    StudyFolderError,
    arm_folders,
    failure_reasons,
    load_arm,
    read_status,
    read_study_config,
    run_folders,
)

__all__ = [
    "ArmResult",
    "PairedComparison",
    "PairingError",
    "StudyFolderError",
    "StudyResults",
    "compare_arms",
    "load_arm",
    "study_results",
    "summarize_arm",
    "write_results",
]


@dataclass(frozen=True)
class MetricSummary:
    """One score over the runs of an arm: mean, std (ddof=0), bootstrap CI, per-run values."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    values: tuple[float, ...]


@dataclass(frozen=True)
class ClassSummary:
    """Per-class scores averaged over runs; support summed over runs."""

    label: str
    precision: float
    recall: float
    f1: float
    f1_std: float
    support: int


@dataclass(frozen=True)
class LevelSummary:
    """Scores at one level: ``rows`` (prompt units), ``clips_vote`` or ``clips_mean_prob``."""

    level: str
    examples: int  # summed over runs
    metrics: dict[str, MetricSummary]
    per_class: tuple[ClassSummary, ...]
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # summed over runs; rows gold, columns predicted
    clips: int  # distinct clip ids, the units the bootstrap draws
    strata: int  # disjoint clip sets drawn separately (folds); 1 for one shared test set


@dataclass(frozen=True)
class ArmResult:
    info: ArmInfo
    runs: int
    run_ids: tuple[str, ...]
    folds: tuple[int, ...]
    seeds: tuple[int, ...]
    split: str  # evaluation split(s), e.g. "test" or "test/val"
    levels: dict[str, LevelSummary]

    @property
    def name(self) -> str:
        return self.info.name

    def score(self, metric: str = "macro_f1", level: str = "rows") -> MetricSummary:
        return self.levels[level].metrics[metric]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MissingArm:
    name: str
    reason: str


@dataclass(frozen=True)
class StudyResults:
    """Everything the report shows; ``comparisons`` are (arm − reference) unless ``all_pairs``."""

    study_dir: Path
    name: str
    arms: tuple[ArmResult, ...]
    missing: tuple[MissingArm, ...]
    comparisons: tuple[PairedComparison, ...]
    skipped_pairs: tuple[tuple[str, str, str], ...]  # (arm a, arm b, why)
    reference: str | None
    reference_source: str  # "study.yaml", "best macro F1", "all pairs" or "none"
    resamples: int
    seed: int
    arm_runs: dict[str, ArmRuns] = field(default_factory=dict, repr=False, compare=False)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(
            dict.fromkeys(label for arm in self.arms for label in arm.levels["rows"].labels)
        )

    def arm(self, name: str) -> ArmResult:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"no arm {name!r}; arms: {', '.join(a.name for a in self.arms)}")


def summarize_arm(arm: ArmRuns, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> ArmResult:
    """Mean ± std over runs, bootstrap CI, per-class scores and summed confusion, per level.

    The CI resamples clips jointly over the runs that share them (see the module docstring); each
    level starts from the same ``seed``, so rows and clip levels see the same clip draws.
    """
    from evaluation.metrics import aggregate_runs, evaluate_predictions

    labels = arm.labels
    records, codes, keys = [], {}, {}
    for run in arm.runs:
        metrics = evaluate_predictions(run.frame, labels)
        records.append({"fold": run.fold, "seed": run.seed, "metrics": metrics})
        for level, (level_codes, clip_ids) in _level_codes(run.frame, labels, metrics).items():
            codes.setdefault(level, []).append(level_codes)
            keys.setdefault(level, []).append(clip_ids)
    aggregate = aggregate_runs(records)
    levels = {}
    for level, level_codes in codes.items():
        scored = [record["metrics"][level] for record in records if level in record["metrics"]]
        drawn = bootstrap_mean(
            level_codes,
            keys[level],
            len(labels),
            resamples=resamples,
            rng=np.random.default_rng(seed),
        )
        summaries = {}
        for key in SCORES:
            low, high = percentile_interval(drawn[key])
            spread = aggregate[level][key]
            summaries[key] = MetricSummary(
                spread["mean"], spread["std"], low, high, tuple(spread["values"])
            )
        levels[level] = LevelSummary(
            level=level,
            examples=sum(m["examples"] for m in scored),
            metrics=summaries,
            per_class=_per_class(scored, labels),
            labels=labels,
            confusion=tuple(
                tuple(int(v) for v in row)
                for row in np.sum([np.asarray(m["confusion"]) for m in scored], axis=0)
            ),
            clips=len(np.unique(np.concatenate(keys[level]).astype(str))),
            strata=len(joint_strata(keys[level])),
        )
    return ArmResult(
        info=arm.info,
        runs=len(arm.runs),
        run_ids=tuple(run.run_id for run in arm.runs),
        folds=tuple(sorted({run.fold for run in arm.runs if run.fold is not None})),
        seeds=tuple(sorted({run.seed for run in arm.runs if run.seed is not None})),
        split="/".join(dict.fromkeys(run.split for run in arm.runs)),
        levels=levels,
    )


def study_results(
    study_dir: str | Path,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    all_pairs: bool = False,
) -> StudyResults:
    """Score every arm of a study and compare arms pairwise.

    Without ``all_pairs`` each arm is compared with a reference: ``reference_arm`` of
    ``STUDY/study.yaml`` when it names an arm that has results, else the arm with the best mean
    macro F1. Arms without results, arms that status.json marks failed (even when some of their
    runs finished) and pairs that cannot be paired are listed, not raised.
    """
    study_dir = Path(study_dir)
    config = read_study_config(study_dir)
    failed = failure_reasons(read_status(study_dir))
    loaded: dict[str, ArmRuns] = {}
    missing: list[MissingArm] = []
    for arm_dir in arm_folders(study_dir):
        if arm_dir.name in failed:  # finished folds of a failed arm would bias the comparison
            partial = len(run_folders(arm_dir))
            note = f" ({partial} finished run(s) not used)" if partial else ""
            missing.append(MissingArm(arm_dir.name, failed[arm_dir.name] + note))
            continue
        try:
            arm = load_arm(arm_dir)
        except StudyFolderError as err:
            missing.append(MissingArm(arm_dir.name, str(err)))
            continue
        loaded[arm.info.name] = arm
    known = set(loaded) | {m.name for m in missing}
    missing += [MissingArm(name, reason) for name, reason in failed.items() if name not in known]
    arms = tuple(summarize_arm(arm, resamples=resamples, seed=seed) for arm in loaded.values())

    reference, source = None, "none"
    if all_pairs:
        pairs, source = list(combinations([a.name for a in arms], 2)), "all pairs"
    else:
        wanted = config.get("reference_arm")
        if wanted and wanted in loaded:
            reference, source = str(wanted), "study.yaml"
        elif arms:
            reference = max(arms, key=lambda a: a.score("macro_f1").mean).name
            source = "best macro F1"
            if wanted:
                source += f" (reference_arm {wanted!r} has no results)"
        pairs = [(a.name, reference) for a in arms if a.name != reference]
    comparisons, skipped = [], []
    for a, b in pairs:
        try:
            comparisons.append(compare_arms(loaded[a], loaded[b], resamples=resamples, seed=seed))
        except PairingError as err:
            skipped.append((a, b, str(err)))
    comparisons = holm_adjusted(comparisons)  # one family per p-value kind: this report's pairs
    return StudyResults(
        study_dir=study_dir,
        name=str(config.get("name") or study_dir.name),
        arms=arms,
        missing=tuple(missing),
        comparisons=tuple(comparisons),
        skipped_pairs=tuple(skipped),
        reference=reference,
        reference_source=source,
        resamples=resamples,
        seed=seed,
        arm_runs=loaded,
    )


def write_results(study_dir: str | Path, results: StudyResults | None = None) -> Path:
    """Write ``STUDY/results/arms.json``, ``pairwise.json`` and ``per_class.json``; returns
    the results folder."""
    results = results or study_results(study_dir)
    folder = Path(study_dir) / "results"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"resamples": results.resamples, "seed": results.seed, "confidence": 0.95}
    arms = []
    for arm in results.arms:
        entry = arm.to_dict()
        for level in entry["levels"].values():
            del level["per_class"], level["confusion"]
        arms.append(entry)
    _write_json(
        folder / "arms.json",
        {**settings, "arms": arms, "missing": [asdict(m) for m in results.missing]},
    )
    _write_json(
        folder / "pairwise.json",
        {
            **settings,
            "reference": results.reference,
            "reference_source": results.reference_source,
            "multiple_comparisons": (
                f"Holm over the {len(results.comparisons)} comparisons below, separately for "
                "p_value (paired bootstrap) -> p_value_holm and mcnemar_p -> mcnemar_p_holm"
            ),
            "comparisons": [asdict(c) for c in results.comparisons],
            "skipped": [{"arm_a": a, "arm_b": b, "reason": r} for a, b, r in results.skipped_pairs],
        },
    )
    per_class = {
        arm.name: {
            level: {
                "labels": list(summary.labels),
                "per_class": [asdict(c) for c in summary.per_class],
                "confusion": [list(row) for row in summary.confusion],
            }
            for level, summary in arm.levels.items()
        }
        for arm in results.arms
    }
    _write_json(folder / "per_class.json", per_class)
    return folder


def _level_codes(
    frame, labels: tuple[str, ...], metrics: dict[str, Any]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Encoded (gold, predicted) and clip id of every example, per scored level."""
    from evaluation.metrics import clip_level

    index = {label: i for i, label in enumerate(labels)}
    tables = {"rows": frame}
    if any(level.startswith("clips_") for level in metrics):
        tables.update({f"clips_{k}": v for k, v in clip_level(frame, labels).items()})
    clip_ids = {"rows": frame["clip_id"].to_numpy()}  # clip tables are indexed by clip_id
    return {
        level: (
            encode(table["gold"].map(index), table["predicted"].map(index), len(labels)),
            clip_ids.get(level, table.index.to_numpy()),
        )
        for level, table in tables.items()
        if level in metrics
    }


def _per_class(scored: list[dict[str, Any]], labels: tuple[str, ...]) -> tuple[ClassSummary, ...]:
    out = []
    for i, label in enumerate(labels):
        rows = [m["per_class"][i] for m in scored]
        f1 = [r["f1"] for r in rows]
        out.append(
            ClassSummary(
                label=label,
                precision=float(np.mean([r["precision"] for r in rows])),
                recall=float(np.mean([r["recall"] for r in rows])),
                f1=float(np.mean(f1)),
                f1_std=float(np.std(f1)),
                support=int(sum(r["support"] for r in rows)),
            )
        )
    return tuple(out)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")
