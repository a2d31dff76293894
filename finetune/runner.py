"""Entry point of ``cer finetune train``: one run, or one per fold x seed with a summary.

Without a splits file the ``split`` column of the prompts decides train/val/test. With one, each
selected fold of the protocol is a run (``OUTPUT/fold<F>_seed<S>/``) and
``OUTPUT/cv_metrics.json`` holds the mean and standard deviation over folds and seeds.

Each run folder's ``fingerprint.json`` records what that run alone was trained on (the prompts
and splits files' contents, its config with its seed and fold, the model), so a rerun with the
same inputs, or with more seeds or folds, reads finished runs back and trains only the missing
ones (``retrain: true`` trains everything again), while a rerun on other prompts trains afresh.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cer.bundled import resolve_model_name
from evaluation.runs import (
    FOLD_FIELD,
    RunFingerprint,
    RunResult,
    fold_seed_jobs,
    per_fold_path,
    run_fingerprint,
    train_jobs,
)
from finetune.config import FinetuneConfig, flat_mapping
from finetune.data import (
    PromptDataError,
    apply_splits,
    check_prompts,
    label_set,
    read_prompts,
)


@dataclass(frozen=True)
class FinetuneOutcome:
    """All runs of one invocation and, when there were several, their aggregate."""

    runs: tuple[RunResult, ...]
    aggregate: dict[str, Any] | None


def run_config(config: FinetuneConfig, run_dir: Path, seed: int, fold: int | None):
    """The config of one job, as written to its run folder."""
    return replace(
        config,
        output_dir=str(run_dir),
        seeds=(seed,),
        folds=(fold,) if fold is not None else config.folds,
    )


def job_fingerprint(config: FinetuneConfig) -> RunFingerprint:
    """What one job trains on: the prompts and splits files' contents, its config, the model."""
    fold = config.folds[0] if len(config.folds) == 1 else None
    return run_fingerprint(
        flat_mapping(config),
        data={"prompts": per_fold_path(config.prompts, fold), "splits": config.splits},
        models={"model": resolve_model_name(config.model)[0]},  # bundled: by its files
    )


def run_one(config: FinetuneConfig, frame: Any, run_dir: Path, seed: int) -> RunResult:
    labels = label_set(frame, config.label_column)
    if not frame["split"].isin(["val", "test"]).any():
        raise PromptDataError("no val or test rows to evaluate on; add them or use --splits")
    run_id = f"{run_dir.name}-{config.mode}-seed{seed}"
    if config.mode == "classify":
        from finetune.classify import train_classifier

        return train_classifier(config, frame, labels, run_dir, seed=seed, run_id=run_id)
    from finetune.generative import train_generative

    return train_generative(config, frame, labels, run_dir, seed=seed, run_id=run_id)


def run_finetune(config: FinetuneConfig) -> FinetuneOutcome:
    """Train and evaluate as configured; write every run folder and the aggregate."""
    from cer.feedback import quiet_libraries
    from finetune.models import model_source

    quiet_libraries()
    if not config.prompts:
        raise PromptDataError("no prompts file given; set `prompts:` or pass --prompts FILE")
    per_fold = FOLD_FIELD in config.prompts
    if per_fold and not config.splits:
        raise PromptDataError(
            f"prompts {config.prompts} holds {FOLD_FIELD}: give the splits file it belongs to"
        )

    def prompts_of(fold: int | None):
        return check_prompts(
            read_prompts(per_fold_path(config.prompts, fold)),
            text_column=config.text_column,
            label_column=config.label_column,
        )

    output = Path(config.output_dir)
    jobs = fold_seed_jobs(
        None if per_fold else prompts_of(None),
        output,
        splits=config.splits,
        folds=config.folds,
        seeds=config.seeds,
        select_fold=lambda data, table, fold: apply_splits(
            prompts_of(fold) if per_fold else data, table, protocol=config.protocol, fold=fold
        ),
    )
    model_source(config)  # an unreachable model fails now, not after a minute of Hub retries
    configs = {run_dir: run_config(config, run_dir, seed, fold) for run_dir, _, seed, fold in jobs}
    runs, aggregate = train_jobs(
        jobs,
        lambda run_dir, data, seed: run_one(configs[run_dir], data, run_dir, seed),
        output,
        fingerprint=lambda run_dir, data, seed, fold: job_fingerprint(configs[run_dir]),
        resume=config.resume,
        retrain=config.retrain,
    )
    return FinetuneOutcome(tuple(runs), aggregate)
