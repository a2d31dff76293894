"""The run folder: what a fine-tuning run leaves behind, and how to read it back.

::

    RUN/config.yaml          resolved configuration (flat, same shape as a config file)
    RUN/versions.json        library versions
    RUN/labels.json          label names in class-id order
    RUN/summary.json         timings, truncation counts, seed, fold, model family
    RUN/metrics.json         per split: rows (and clip-level when windows share a clip)
    RUN/predictions.parquet  clip_id, unit_id, split, gold, predicted, prob_<label>..., run_id
    RUN/adapter/             peft adapter (PeftModel.from_pretrained) or full model, + tokenizer
    RUN/merged/              with save_merged: adapter merged into the base (plain from_pretrained)
    RUN/checkpoints/         Trainer checkpoints, used to resume an interrupted run

A run is finished when metrics, predictions and summary are all there (the summary is written
last). ``train_jobs`` reads finished runs back instead of training them again, so an interrupted
cross-validation only trains the folds that are missing. Under a distributed launch
(``accelerate launch``, ``torchrun``) every process trains, but only the main one writes here.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finetune.config import FinetuneConfig, config_from_mapping, save_resolved
from finetune.metrics import evaluate_predictions, probability_columns

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    import pandas as pd

VERSIONED = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes")
#: Files that make a run folder finished; summary.json is written last.
FINISHED_FILES = ("predictions.parquet", "metrics.json", "summary.json")
#: Config keys that say how to run, not what the run is: ignored when comparing configs.
RUN_CONTROL_KEYS = ("resume", "retrain")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """Where a run was written and its headline numbers."""

    run_dir: Path
    run_id: str
    metrics: dict[str, Any]
    summary: dict[str, Any]
    reused: bool = False  # read back from a finished run folder instead of trained


def is_main_process() -> bool:
    """False in all but the global rank 0 of a distributed launch (torchrun, accelerate launch,
    mpirun); read from the environment, so it holds before the process group exists."""
    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        if name in os.environ:
            return os.environ[name] == "0"
    return True


def wait_for_other_processes() -> None:
    """A barrier across processes when training is distributed; nothing otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def start_run(config: FinetuneConfig, run_dir: Path, labels: tuple[str, ...]) -> None:
    if not is_main_process():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(config, run_dir / "config.yaml")
    _write_json(run_dir / "versions.json", library_versions())
    _write_json(run_dir / "labels.json", list(labels))


def prediction_frame(
    rows: pd.DataFrame,
    probabilities: np.ndarray,
    labels: tuple[str, ...],
    *,
    run_id: str,
    label_column: str,
) -> pd.DataFrame:
    """One row per example: ids, gold (if known), argmax prediction, class probabilities."""
    import pandas as pd

    out = pd.DataFrame(
        {
            "clip_id": rows["clip_id"].astype(str).to_numpy(),
            "unit_id": rows["unit_id"].astype(str).to_numpy(),
            "split": rows["split"].to_numpy() if "split" in rows else "predict",
            "gold": rows[label_column].astype(str).to_numpy() if label_column in rows else None,
            "predicted": [labels[i] for i in probabilities.argmax(axis=1)],
        }
    )
    for j, column in enumerate(probability_columns(labels)):
        out[column] = probabilities[:, j].astype(np.float32)
    out["run_id"] = run_id
    return out


def finish_run(
    run_dir: Path, predictions: pd.DataFrame, labels: tuple[str, ...], summary: dict[str, Any]
) -> RunResult:
    """Score predictions per split and write metrics, predictions and summary (main process)."""
    metrics = {
        split: evaluate_predictions(part, labels)
        for split, part in predictions.groupby("split", sort=True)
        if part["gold"].notna().all()
    }
    if not is_main_process():
        return RunResult(run_dir, summary["run_id"], metrics, summary)
    predictions.to_parquet(run_dir / "predictions.parquet", index=False)
    _write_json(run_dir / "metrics.json", metrics)
    _write_json(run_dir / "summary.json", summary)
    return RunResult(run_dir, summary["run_id"], metrics, summary)


def read_run(run_dir: str | Path) -> tuple[FinetuneConfig, tuple[str, ...]]:
    """The resolved config and label names of a finished run."""
    from cer.config import load_yaml

    run_dir = Path(run_dir)
    if not (run_dir / "labels.json").exists() or not (run_dir / "adapter").exists():
        raise FileNotFoundError(
            f"{run_dir} is not a finished finetune run (no labels.json/adapter); "
            "point at the folder `cer finetune train` wrote"
        )
    config = config_from_mapping(load_yaml(run_dir / "config.yaml"), source=str(run_dir))
    labels = tuple(json.loads((run_dir / "labels.json").read_text(encoding="utf-8")))
    return config, labels


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")


def finished_run(run_dir: str | Path, written_config: Mapping[str, Any]) -> RunResult | None:
    """The result of a finished run folder whose config.yaml equals ``written_config`` (the
    mapping its train function writes, compared as YAML and without ``RUN_CONTROL_KEYS``)."""
    import yaml

    from cer.config import ConfigError, load_yaml

    run_dir = Path(run_dir)
    if not all((run_dir / name).is_file() for name in (*FINISHED_FILES, "config.yaml")):
        return None
    try:
        saved = load_yaml(run_dir / "config.yaml")
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (ConfigError, json.JSONDecodeError):
        return None
    expected = yaml.safe_load(yaml.safe_dump(dict(written_config), sort_keys=False))
    for key in RUN_CONTROL_KEYS:
        saved.pop(key, None)
        expected.pop(key, None)
    if saved != expected:
        return None
    return RunResult(run_dir, summary["run_id"], metrics, summary, reused=True)


def fold_seed_jobs(
    data: Any,
    output: Path,
    *,
    splits: str | None,
    folds: tuple[int, ...],
    seeds: tuple[int, ...],
    select_fold: Callable[[Any, Any, int], Any],
) -> list[tuple[Path, Any, int, int | None]]:
    """The (run_dir, data, seed, fold) jobs of one invocation, for ``train_jobs``.

    With a splits file: ``OUTPUT/fold<F>_seed<S>/`` for each selected fold (all by default), data
    from ``select_fold(data, splits_table, fold)``. Without: ``OUTPUT`` itself for one seed, else
    ``OUTPUT/seed<S>/``.
    """
    if splits:
        import pandas as pd

        table = pd.read_parquet(splits)
        chosen = folds or tuple(sorted(int(f) for f in table["fold"].unique()))
        jobs = []
        for fold in chosen:
            part = select_fold(data, table, fold)
            jobs += [(output / f"fold{fold}_seed{s}", part, s, fold) for s in seeds]
        return jobs
    if len(seeds) == 1:
        return [(output, data, seeds[0], None)]
    return [(output / f"seed{s}", data, s, None) for s in seeds]


def train_jobs(
    jobs: Iterable[tuple[Path, Any, int, int | None]],
    train: Callable[[Path, Any, int], RunResult],
    output: Path,
    *,
    written_config: Callable[[Path, int, int | None], Mapping[str, Any]] | None = None,
    retrain: bool = False,
) -> tuple[list[RunResult], dict | None]:
    """Run ``train(run_dir, data, seed)`` for each (run_dir, data, seed, fold) job.

    Shared by ``cer finetune`` and ``cer baseline`` so both write the same ``cv_metrics.json``
    (mean and standard deviation over folds and seeds) when there is more than one run.

    With ``written_config(run_dir, seed, fold)`` (the config mapping ``train`` writes to
    ``run_dir/config.yaml``), a job whose folder already holds a finished run with that config is
    read back instead of trained, unless ``retrain``. A folder that is retrained first loses its
    old metrics, predictions and summary, so a crash can never leave them beside a new config.
    """
    from finetune.metrics import aggregate_runs

    runs, records = [], []
    for run_dir, data, seed, fold in jobs:
        run_dir = Path(run_dir)
        result = None
        if written_config is not None and not retrain:
            result = finished_run(run_dir, written_config(run_dir, seed, fold))
        if result is not None:
            log.info(
                "skipping finished run %s (same config; retrain: true trains it again)", run_dir
            )
        else:
            if is_main_process():
                for name in FINISHED_FILES:
                    (run_dir / name).unlink(missing_ok=True)
            result = train(run_dir, data, seed)
            wait_for_other_processes()
        runs.append(result)
        split = "test" if "test" in result.metrics else "val"
        records.append(
            {"fold": fold, "seed": seed, "split": split, "metrics": result.metrics[split]}
        )
    aggregate = None
    if len(runs) > 1:
        aggregate = {"per_run": records, **aggregate_runs(records)}
        if is_main_process():
            _write_json(output / "cv_metrics.json", aggregate)
    return runs, aggregate


def results_summary(runs: Iterable[RunResult], aggregate: dict | None) -> str:
    """What ``cer finetune train`` and ``cer baseline train`` print: one line per run, then the
    mean over runs when there were several."""
    lines = []
    for run in runs:
        split = "test" if "test" in run.metrics else "val"
        rows = run.metrics[split]["rows"]
        line = (
            f"{run.run_dir}: {split} accuracy {rows['accuracy']:.3f} "
            f"macro F1 {rows['macro_f1']:.3f} weighted F1 {rows['weighted_f1']:.3f}"
        )
        if run.reused:
            line += " (finished earlier, not retrained)"
        elif "train_seconds" in run.summary:
            line += f" ({run.summary['train_seconds']:.1f}s training)"
        lines.append(line)
    if aggregate:
        rows = aggregate["rows"]
        lines.append(
            f"mean over {aggregate['runs']} runs: macro F1 "
            f"{rows['macro_f1']['mean']:.3f} ± {rows['macro_f1']['std']:.3f}"
        )
    return "\n".join(lines)
