"""The run folder: what a training run leaves behind, how it is fingerprinted and read back.

Shared by ``cer finetune`` and ``cer baseline``, so a text model and a fusion model write the same
files and are compared row by row::

    RUN/fingerprint.json     what the run was trained on: content digests of its data (prompts or
                             features, splits), the resolved config, the model's identity and
                             the toolkit's version; written before training starts
    RUN/config.yaml          resolved configuration (flat, same shape as a config file)
    RUN/versions.json        library versions
    RUN/labels.json          label names in class-id order
    RUN/summary.json         timings, seed, fold, model family, modality coverage
    RUN/metrics.json         per split: rows (and clip-level when windows share a clip)
    RUN/predictions.parquet  clip_id, unit_id, split, gold, predicted, prob_<label>..., run_id
    RUN/checkpoints/         checkpoints, used to resume an interrupted run of the same fingerprint

A run is finished when metrics, predictions and summary are all there (the summary is written
last). ``train_jobs`` reads a finished run back only when its fingerprint equals the job's, and
resumes checkpoints only under the same fingerprint: a folder that holds another run (other
prompts, other splits, another config or model) is cleared and trained afresh, or, when the user
asked to resume (``resume: true``), refused with ``RunMismatchError``. Under a distributed launch
(``accelerate launch``, ``torchrun``) every process trains, but only the main one writes here.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluation.metrics import evaluate_predictions, probability_columns

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    import pandas as pd

VERSIONED = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes")
#: Files that make a run folder finished; summary.json is written last.
FINISHED_FILES = ("predictions.parquet", "metrics.json", "summary.json")
#: Config keys that say how or where to run, not what the run is: left out of the fingerprint.
RUN_CONTROL_KEYS = ("resume", "retrain", "output_dir")
FINGERPRINT_FILE = "fingerprint.json"
FINGERPRINT_FORMAT = 1
#: Everything a run leaves in its folder: cleared before another run is trained there.
RUN_ARTIFACTS = (
    *FINISHED_FILES,
    FINGERPRINT_FILE,
    "config.yaml",
    "versions.json",
    "labels.json",
    "checkpoints",
    "adapter",
    "merged",
    "model",
)

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


def start_run(run_dir: Path, config: Mapping[str, Any], labels: tuple[str, ...]) -> None:
    """Write the run's resolved config (a flat mapping), library versions and label names."""
    import yaml

    if not is_main_process():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8"
    )
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


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")


class RunMismatchError(RuntimeError):
    """A run folder holds another run than the one asked for, and the user asked to resume it."""


@dataclass(frozen=True)
class RunFingerprint:
    """What a run is trained on. Two runs with equal fingerprints are the same experiment."""

    data: dict[str, str]  # name -> content digest (prompts, features, splits, ...)
    config: dict[str, Any]  # resolved config, without RUN_CONTROL_KEYS
    model: dict[str, str | None]  # role -> identity (name, plus file fingerprint when local)
    toolkit: str
    format: int = FINGERPRINT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    def differences(self, other: Mapping[str, Any] | None) -> list[str]:
        """What differs from a recorded fingerprint, in words (empty when the same run)."""
        if other is None:
            return ["no fingerprint recorded"]
        mine = self.to_dict()
        found = []
        for part in ("data", "model"):
            theirs = other.get(part) or {}
            found += [
                f"{part} {name}"
                for name in sorted(set(mine[part]) | set(theirs))
                if mine[part].get(name) != theirs.get(name)
            ]
        if mine["config"] != other.get("config"):
            theirs = other.get("config") or {}
            keys = sorted(
                k
                for k in set(mine["config"]) | set(theirs)
                if mine["config"].get(k) != theirs.get(k)
            )
            found.append(
                "config (" + ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "") + ")"
            )
        for part in ("toolkit", "format"):
            if mine[part] != other.get(part):
                found.append(f"{part} {other.get(part)} -> {mine[part]}")
        return found


def run_fingerprint(
    config: Mapping[str, Any],
    *,
    data: Mapping[str, str | Path | None],
    models: Mapping[str, str | None],
    digests: Mapping[str, str] | None = None,
) -> RunFingerprint:
    """The fingerprint of a run: ``data`` names input files (hashed by content, ``None`` skipped),
    ``digests`` adds digests computed elsewhere (in-memory inputs), ``models`` names the models
    (identified by name and, for local folders, by their files)."""
    import yaml

    from cer.fingerprints import file_digest, model_identity, toolkit_version

    resolved = yaml.safe_load(yaml.safe_dump(dict(config), sort_keys=False))
    for key in RUN_CONTROL_KEYS:
        resolved.pop(key, None)
    found = {name: file_digest(path) for name, path in data.items() if path is not None}
    found.update(digests or {})
    identities = {role: model_identity(name) for role, name in models.items()}
    return RunFingerprint(found, resolved, identities, toolkit_version())


def read_fingerprint(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / FINGERPRINT_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def holds_run(run_dir: Path) -> bool:
    """True when the folder holds any run artifact."""
    return any((run_dir / name).exists() for name in RUN_ARTIFACTS)


def clear_run(run_dir: Path) -> None:
    """Remove every run artifact (not other files or sub-runs) from a run folder."""
    import shutil

    for name in RUN_ARTIFACTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def finished_run(run_dir: str | Path, fingerprint: RunFingerprint) -> RunResult | None:
    """The result of a finished run folder trained with this fingerprint, else None."""
    run_dir = Path(run_dir)
    if not all((run_dir / name).is_file() for name in FINISHED_FILES):
        return None
    if fingerprint.differences(read_fingerprint(run_dir)):
        return None
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return RunResult(run_dir, summary["run_id"], metrics, summary, reused=True)


def prepare_run_folder(
    run_dir: Path, fingerprint: RunFingerprint, *, resume: bool | None, retrain: bool
) -> None:
    """Make ``run_dir`` ready to train the run ``fingerprint`` describes (main process only).

    Under the same fingerprint, checkpoints stay for the trainer to resume (unless
    ``resume: false`` or ``retrain``). A folder holding another run is cleared, with one line
    saying so; when the user asked to resume (``resume: true``) it is an error instead.
    """
    if not is_main_process():
        return
    differs = fingerprint.differences(read_fingerprint(run_dir)) if holds_run(run_dir) else []
    if differs and resume is True and not retrain:
        raise RunMismatchError(
            f"{run_dir} holds a run of other inputs ({'; '.join(differs)}): resume: true only "
            "continues the same run; drop --resume to train afresh there, or choose another "
            "output folder"
        )
    if differs:
        log.warning(
            "%s held a run of other inputs (%s); starting fresh", run_dir, "; ".join(differs)
        )
    if differs or retrain or resume is False:
        clear_run(run_dir)
    else:
        for name in FINISHED_FILES:
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / FINGERPRINT_FILE, fingerprint.to_dict())


#: In a prompts/source path, stands for the fold: ``prompts/fold{fold}/prompts.parquet`` gives
#: each fold its own prompts (rendered with a textualizer fitted on that fold's training clips).
FOLD_FIELD = "{fold}"


def per_fold_path(path: str, fold: int | None) -> str:
    """``path`` with ``{fold}`` replaced by the fold (unchanged when it has none)."""
    if FOLD_FIELD not in path:
        return path
    if fold is None:
        raise ValueError(f"{path} holds {FOLD_FIELD}: it needs a splits file and a fold")
    return path.replace(FOLD_FIELD, str(fold))


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
    fingerprint: Callable[[Path, Any, int, int | None], RunFingerprint],
    resume: bool | None = None,
    retrain: bool = False,
) -> tuple[list[RunResult], dict | None]:
    """Run ``train(run_dir, data, seed)`` for each (run_dir, data, seed, fold) job.

    Shared by ``cer finetune`` and ``cer baseline`` so both write the same ``cv_metrics.json``
    (mean and standard deviation over folds and seeds) when there is more than one run.

    ``fingerprint(run_dir, data, seed, fold)`` says what the job is trained on. A folder that
    holds a finished run with that fingerprint is read back instead of trained, unless
    ``retrain``; any other folder goes through ``prepare_run_folder`` first, so a run never
    resumes or reuses what another run left.
    """
    from evaluation.metrics import aggregate_runs

    runs, records = [], []
    for run_dir, data, seed, fold in jobs:
        run_dir = Path(run_dir)
        wanted = fingerprint(run_dir, data, seed, fold)
        result = None if retrain else finished_run(run_dir, wanted)
        if result is not None:
            log.info("%s: finished earlier with the same fingerprint; read back", run_dir)
        else:
            prepare_run_folder(run_dir, wanted, resume=resume, retrain=retrain)
            wait_for_other_processes()
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
