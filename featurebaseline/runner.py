"""Entry point of ``cer baseline train``/``predict``: features once, then one run per fold x seed.

Run folders, predictions, metrics and the cross-validation summary are those of ``cer finetune``
(``evaluation.runs``, ``evaluation.metrics``), so a text model and a fusion model can be compared
row by row: same ``predictions.parquet`` columns, same ``metrics.json`` levels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cer.config import to_mapping
from evaluation.metrics import PredictionOutcome
from evaluation.runs import (
    FOLD_FIELD,
    RunFingerprint,
    RunResult,
    fold_seed_jobs,
    per_fold_path,
    run_fingerprint,
    train_jobs,
)
from featurebaseline.config import BaselineConfig
from featurebaseline.encoders import resolve_model
from featurebaseline.features import FeatureError, FeatureSet, assemble_features


@dataclass(frozen=True)
class BaselineOutcome:
    runs: tuple[RunResult, ...]
    aggregate: dict[str, Any] | None
    feature_seconds: float


def run_config(config: BaselineConfig, run_dir: Path, seed: int) -> BaselineConfig:
    """The config one run folder records: its own folder and seed."""
    return replace(config, output_dir=str(run_dir), seeds=(seed,))


def job_fingerprint(config: BaselineConfig, features: FeatureSet) -> RunFingerprint:
    """What one job trains on: its assembled features (with their split roles), the splits
    file, its config and the frozen encoders."""
    return run_fingerprint(
        to_mapping(config),
        data={"splits": config.splits},
        digests={"features": features.digest()},
        models={
            "text_encoder": resolve_model(config.text_encoder)
            if "T" in config.modalities
            else None,
            "audio_encoder": config.audio_encoder,
            "image_encoder": config.image_encoder,
        },
    )


def train_one(config: BaselineConfig, features: FeatureSet, run_dir: Path, seed: int) -> RunResult:
    """Train, save and evaluate one arm on one split assignment; writes the run folder."""
    from evaluation.runs import finish_run, is_main_process, prediction_frame, start_run
    from featurebaseline.train import fit, predict_probabilities, save_model, to_tensors
    from finetune.data import label_set

    labels = label_set(features.rows, "label")
    main = is_main_process()  # under `accelerate launch`, only rank 0 writes the run folder
    run_dir.mkdir(parents=True, exist_ok=True)
    start_run(run_dir, to_mapping(run_config(config, run_dir, seed)), labels)
    model, scaler, summary = fit(config, features, labels, run_dir, seed)
    if main:
        save_model(model, scaler, labels, run_dir)
    device = summary["device"]
    probabilities = predict_probabilities(model, to_tensors(scaler.apply(features), device))
    run_id = f"{run_dir.name}-{config.arm}-{config.modalities}-seed{seed}"
    predictions = prediction_frame(
        features.rows, probabilities, labels, run_id=run_id, label_column="label"
    )
    summary = {
        "run_id": run_id,
        "seed": seed,
        "arm": config.arm,
        "modalities": config.modalities,
        "temporal": config.temporal,
        "model_family": "feature-fusion",
        "feature_dims": features.dims(),
        "coverage": feature_coverage(config, features),
        **summary,
    }
    return finish_run(run_dir, predictions, labels, summary)


def feature_coverage(config: BaselineConfig, features: FeatureSet) -> dict[str, Any]:
    """Per split and modality, on how many rows the features were present, absent or missing
    (statuses from the source table; presence from the features themselves)."""
    from evaluation.coverage import read_statuses, run_coverage, with_statuses
    from featurebaseline.config import MODALITY_NAMES

    rows = features.rows
    if config.source and Path(config.source).exists():
        rows = with_statuses(rows, read_statuses(config.source))
    present = {
        letter: features.modalities[name].present
        for letter, name in MODALITY_NAMES.items()
        if name in features.modalities
    }
    return run_coverage(rows, config.modalities, present=present)


def fold_features(features: FeatureSet, splits, protocol: str | None, fold: int) -> FeatureSet:
    """The rows of one fold of a splits table, with their role as ``split``."""
    from finetune.data import apply_splits

    rows = features.rows.assign(_row=np.arange(len(features)))
    chosen = apply_splits(rows, splits, protocol=protocol, fold=fold)
    subset = features.take(chosen["_row"].to_numpy())
    return FeatureSet(
        subset.rows.assign(split=chosen["split"].to_numpy()), subset.modalities, subset.step_seconds
    )


def labelled(features: FeatureSet) -> FeatureSet:
    """The features, if every row has a gold label (training needs one per row)."""
    unlabelled = features.rows["label"].isna()
    if unlabelled.any():
        examples = ", ".join(features.rows.loc[unlabelled, "clip_id"].astype(str).head(3))
        raise FeatureError(
            f"{int(unlabelled.sum())} of {len(features)} rows have no gold label (e.g. "
            f"{examples}); training needs one per row: fill the label column (or "
            "--label-column), or apply a trained run to unlabelled prompts with "
            "`cer baseline predict RUN SOURCE`"
        )
    return features


def run_baseline(config: BaselineConfig, features: FeatureSet | None = None) -> BaselineOutcome:
    """Assemble features (unless given) and train every configured fold x seed."""
    from cer.feedback import quiet_libraries

    quiet_libraries()
    if features is None:  # a missing checkpoint stops here, not after the features of a fold
        from featurebaseline.released_encoders import check_released

        check_released(config.audio_encoder, config.image_encoder)
    started = time.perf_counter()
    per_fold = features is None and FOLD_FIELD in config.source
    if per_fold and not config.splits:
        raise FeatureError(
            f"source {config.source} holds {FOLD_FIELD}: give the splits file it belongs to"
        )

    def features_of(fold: int | None) -> FeatureSet:
        return labelled(
            assemble_features(replace(config, source=per_fold_path(config.source, fold)))
        )

    if not per_fold:
        features = labelled(features) if features is not None else features_of(None)
    output = Path(config.output_dir)
    jobs = fold_seed_jobs(
        features,
        output,
        splits=config.splits,
        folds=config.folds,
        seeds=config.seeds,
        select_fold=lambda data, table, fold: fold_features(
            features_of(fold) if per_fold else data, table, config.protocol, fold
        ),
    )
    feature_seconds = time.perf_counter() - started
    runs, aggregate = train_jobs(
        jobs,
        lambda run_dir, data, seed: train_one(config, data, run_dir, seed),
        output,
        fingerprint=lambda run_dir, data, seed, fold: job_fingerprint(
            run_config(config, run_dir, seed), data
        ),
        resume=config.resume,
        retrain=config.retrain,
    )
    return BaselineOutcome(tuple(runs), aggregate, feature_seconds)


def default_prediction_path(run_dir: str | Path, source: str | Path) -> Path:
    """Where predictions go unless told: ``predictions/<run>_<source>.parquet`` under the
    working directory, outside the run folder (a run folder holds what training wrote)."""
    source_name = Path(source).stem if Path(source).suffix else Path(source).name
    return Path("predictions") / f"{Path(run_dir).name}_{source_name}.parquet"


def predict_source(
    run_dir: str | Path, source: str, output: str | Path | None = None
) -> PredictionOutcome:
    """Apply a trained run to another source, assembled with the run's own feature settings;
    written to ``output`` (default: ``default_prediction_path``).

    The source may lack gold labels (a new ``cer textualize`` run without ``--labels``): the
    predictions then have an empty ``gold`` and there are no metrics. Metrics are computed only
    when every row has a gold label the model knows, by the rule of ``cer finetune predict``.
    """
    from cer.config import from_mapping, load_yaml
    from cer.feedback import quiet_libraries
    from evaluation.metrics import score_if_labelled
    from evaluation.runs import prediction_frame
    from featurebaseline.train import load_model, predict_probabilities, to_tensors

    quiet_libraries()
    run_dir = Path(run_dir)
    saved = from_mapping(BaselineConfig, load_yaml(run_dir / "config.yaml"), source=str(run_dir))
    features = assemble_features(replace(saved, source=str(source)), labels_required=False)
    model, scaler, labels = load_model(run_dir, features)
    probabilities = predict_probabilities(model, to_tensors(scaler.apply(features), "cpu"))
    rows = features.rows
    if "split" not in rows or rows["split"].isna().all():
        rows = rows.assign(split="predict")
    predictions = prediction_frame(
        rows, probabilities, labels, run_id=run_dir.name, label_column="label"
    )
    gold = rows["label"]
    predictions["gold"] = gold.where(gold.notna(), None).to_numpy(dtype=object)
    output = Path(output) if output is not None else default_prediction_path(run_dir, source)
    output.parent.mkdir(parents=True, exist_ok=True)
    predictions.to_parquet(output, index=False)
    metrics, note = score_if_labelled(predictions, labels, str(source))
    return PredictionOutcome(predictions, metrics, note)
