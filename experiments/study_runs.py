"""Read the arms of a study folder back: arm descriptions and every run's evaluation predictions.

``STUDY/arms/<arm>/`` is one run folder (``predictions.parquet`` at its top) or holds run folders
``fold<F>_seed<S>/`` / ``seed<S>/``, as ``cer finetune train`` and ``cer baseline train`` write
them. A run is evaluated on its ``test`` rows when it has any, else on its ``val`` rows. An arm's
modality coverage is that of its runs' evaluation rows (``summary.json``), counted once per fold.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from evaluation.coverage import ModalityCoverage

RUN_FOLDER = re.compile(r"^(?:fold(?P<fold>\d+)_)?seed(?P<seed>\d+)$")
EVALUATION_SPLITS = ("test", "val")


class StudyFolderError(Exception):
    """A study or arm folder is missing or does not hold what the runner writes."""


@dataclass(frozen=True)
class ArmInfo:
    """``arm.json``: what the arm is (missing fields read as empty), and what it saw."""

    name: str
    kind: str = ""
    model: str = ""
    family: str = ""
    modalities: str = ""
    description: str = ""
    allow_unavailable: bool = False  # the study let it train without most of a modality
    # letter -> counts (``evaluation.coverage.ModalityCoverage.to_dict``) over ``coverage_of``
    coverage: dict[str, dict[str, Any]] = field(default_factory=dict)
    coverage_of: str = ""  # "evaluated clips", "all clips" (arm.json only) or "" (not recorded)
    # encoder field -> value, for encoders with random weights: the arm's scores are not results
    random_weights: dict[str, str] = field(default_factory=dict)

    @property
    def random_note(self) -> str:
        """ "random weights: not a result (audio_encoder random:wav2vec2)", or "" for real
        weights."""
        from featurebaseline.random_encoders import NOTE

        if not self.random_weights:
            return ""
        return f"{NOTE} ({', '.join(f'{k} {v}' for k, v in self.random_weights.items())})"

    def modality_coverage(self) -> dict[str, ModalityCoverage]:
        from evaluation.coverage import ModalityCoverage

        return {k: ModalityCoverage.from_dict(k, v) for k, v in self.coverage.items()}

    def thin_modalities(self) -> tuple[ModalityCoverage, ...]:
        """Modalities of the arm present on at most half its clips (missing or absent): its
        scores are mostly about the others, and the report marks it."""
        return tuple(c for c in self.modality_coverage().values() if c.mostly_not_present)


@dataclass(frozen=True, eq=False)
class RunPredictions:
    """One run's evaluation rows (clip_id, unit_id, split, gold, predicted, prob_*, run_id)."""

    run_dir: Path
    run_id: str
    fold: int | None
    seed: int | None
    split: str
    labels: tuple[str, ...]
    frame: pd.DataFrame
    coverage: dict[str, Any] = field(default_factory=dict)  # summary.json's block, this split


@dataclass(frozen=True, eq=False)
class ArmRuns:
    """An arm and all of its runs (folds x seeds)."""

    info: ArmInfo
    arm_dir: Path
    runs: tuple[RunPredictions, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """Union of the runs' label lists, in the order they first appear."""
        return tuple(dict.fromkeys(label for run in self.runs for label in run.labels))

    def evaluation_frame(self) -> pd.DataFrame:
        """All runs' evaluation rows with ``fold`` and ``seed`` columns (None when unknown)."""
        import pandas as pd

        columns = ["clip_id", "unit_id", "gold", "predicted", "run_id"]
        return pd.concat(
            [run.frame[columns].assign(fold=run.fold, seed=run.seed) for run in self.runs],
            ignore_index=True,
        )


def read_arm_info(arm_dir: Path) -> ArmInfo:
    path = arm_dir / "arm.json"
    if not path.exists():
        return ArmInfo(name=arm_dir.name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise StudyFolderError(f"{path} is not valid JSON ({err}); rewrite or delete it") from err
    fields = ("kind", "model", "family", "modalities", "description")
    coverage = data.get("coverage") if isinstance(data.get("coverage"), dict) else {}
    return ArmInfo(
        name=str(data.get("name") or arm_dir.name),
        **{key: str(data.get(key) or "") for key in fields},
        allow_unavailable=bool(data.get("allow_unavailable", False)),
        coverage=coverage,
        coverage_of="all clips" if coverage else "",
        random_weights=_random_weights(data.get("random_weights"), data.get("config")),
    )


def _random_weights(recorded: Any, config: Any) -> dict[str, str]:
    """What ``arm.json`` records, else what its (or a run's) config says: a ``random:`` encoder
    or a folder marked random is found either way, so the mark survives older arm folders."""
    from featurebaseline.random_encoders import random_weight_encoders

    found = random_weight_encoders(config if isinstance(config, dict) else {})
    if isinstance(recorded, dict):
        found.update({str(k): str(v) for k, v in recorded.items()})
    return found


def run_folders(arm_dir: Path) -> list[Path]:
    """The arm folder itself when it is one run, else its ``fold*_seed*``/``seed*`` run folders."""
    if (arm_dir / "predictions.parquet").exists():
        return [arm_dir]
    found = []
    for child in arm_dir.iterdir() if arm_dir.is_dir() else ():
        match = RUN_FOLDER.match(child.name)
        if match and (child / "predictions.parquet").exists():
            fold = int(match["fold"]) if match["fold"] is not None else -1
            found.append((fold, int(match["seed"]), child))
    return [path for *_, path in sorted(found)]


def read_run_predictions(run_dir: Path) -> RunPredictions:
    """The evaluation rows of one run folder, with its fold and seed."""
    import pandas as pd

    try:
        labels = tuple(json.loads((run_dir / "labels.json").read_text(encoding="utf-8")))
        summary = _read_json(run_dir / "summary.json")
        frame = pd.read_parquet(run_dir / "predictions.parquet")
    except (OSError, ValueError) as err:
        raise StudyFolderError(
            f"{run_dir} is not a complete run folder ({err}); rerun the arm with "
            "`cer experiment run` or remove the folder"
        ) from err
    splits = [name for name in EVALUATION_SPLITS if (frame["split"] == name).any()]
    if not splits:
        raise StudyFolderError(f"{run_dir}/predictions.parquet has no test or val rows to score")
    rows = frame[frame["split"] == splits[0]].reset_index(drop=True)
    if rows["gold"].isna().any():
        raise StudyFolderError(f"{run_dir}: {splits[0]} rows without a gold label cannot be scored")
    match = RUN_FOLDER.match(run_dir.name)
    fold = summary.get("fold", match["fold"] if match else None)
    seed = summary.get("seed", match["seed"] if match else None)
    return RunPredictions(
        run_dir=run_dir,
        run_id=str(summary.get("run_id") or rows["run_id"].iloc[0]),
        fold=None if fold is None else int(fold),
        seed=None if seed is None else int(seed),
        split=splits[0],
        labels=labels,
        frame=rows,
        coverage=((summary.get("coverage") or {}).get(splits[0]) or {}),
    )


def load_arm(arm_dir: str | Path) -> ArmRuns:
    """Every run of one arm; an arm without a finished run is a ``StudyFolderError``."""
    arm_dir = Path(arm_dir)
    folders = run_folders(arm_dir)
    if not folders:
        raise StudyFolderError(
            f"{arm_dir} holds no run (predictions.parquet, or fold*_seed*/ or seed*/ run "
            "folders): the arm did not finish; see STUDY/status.json and rerun it"
        )
    runs = tuple(read_run_predictions(folder) for folder in folders)
    info = read_arm_info(arm_dir)
    if not info.random_weights:  # an arm folder without arm.json: its runs' configs say it
        found = {}
        for folder in folders:
            found.update(_random_weights(None, _run_config(folder)))
        info = replace(info, random_weights=found)
    if runs and all(run.coverage for run in runs):
        info = replace(info, coverage=evaluated_coverage(runs), coverage_of="evaluated clips")
    return ArmRuns(info=info, arm_dir=arm_dir, runs=runs)


def evaluated_coverage(runs: tuple[RunPredictions, ...]) -> dict[str, dict[str, Any]]:
    """Coverage of the runs' evaluation rows, summed over folds; the seeds of a fold evaluate the
    same rows, so each fold counts once."""
    from evaluation.coverage import combine, read_coverage

    by_fold = {}
    for run in runs:
        by_fold.setdefault(run.fold, read_coverage({run.split: run.coverage}, run.split))
    return {letter: c.to_dict() for letter, c in combine(by_fold.values()).items()}


def arm_folders(study_dir: Path) -> list[Path]:
    arms = study_dir / "arms"
    if not arms.is_dir():
        raise StudyFolderError(
            f"{study_dir} has no arms/ folder: run the study first (`cer experiment run "
            "STUDY.yaml`) and point at its output_dir"
        )
    return sorted(path for path in arms.iterdir() if path.is_dir())


def read_status(study_dir: Path) -> dict[str, Any]:
    path = study_dir / "status.json"
    return _read_json(path) if path.exists() else {}


def failure_reasons(status: dict[str, Any]) -> dict[str, str]:
    """Arm name -> "failed: ..." for arms that status.json records as failed.

    Reads ``{"arms": {name: {"status": ...}}}`` as the study runner writes it (a state may also
    be a plain string).
    """
    arms = status.get("arms")
    reasons = {}
    for name, state in (arms if isinstance(arms, dict) else {}).items():
        text = state.get("status") if isinstance(state, dict) else state
        if isinstance(text, str) and text.startswith("failed"):
            reasons[str(name)] = text
    return reasons


def read_study_config(study_dir: Path) -> dict[str, Any]:
    """``STUDY/study.yaml`` as a mapping (empty when there is none)."""
    from cer.config import ConfigError, load_yaml

    path = study_dir / "study.yaml"
    if not path.exists():
        return {}
    try:
        return load_yaml(path)
    except ConfigError as err:
        raise StudyFolderError(f"cannot read {path}: {err}") from err


def _run_config(run_dir: Path) -> dict[str, Any]:
    """A run folder's ``config.yaml`` (empty when absent or unreadable)."""
    from cer.config import ConfigError, load_yaml

    try:
        return load_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else {}
    except ConfigError:
        return {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise StudyFolderError(f"{path} is not valid JSON ({err})") from err
    return value if isinstance(value, dict) else {}
