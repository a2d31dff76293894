"""Run a study top to bottom: prepare data, textualize each prompt variant, train every arm, report.

Every stage leaves a fingerprint of its inputs in ``STUDY/status.json``; a stage whose
fingerprint is unchanged and whose outputs exist is skipped. An arm is finished when its
``arm.json`` carries the fingerprint of its resolved config and inputs and every run folder has
``metrics.json`` and ``predictions.parquet``; a changed config reruns it from scratch, while an
interrupted arm keeps its run folders so the trainers resume. A failing arm is recorded as
``failed: <reason>`` (traceback in ``STUDY/arms/<arm>/error.log``) and the others go on.
Before training, an arm whose modality was not extracted on most clips (``evaluation.coverage``:
a model missing, the modality turned off, extraction failed) fails with the cause, unless the
study allows it (``allow_unavailable: true`` on the arm); ``arm.json`` records the counts.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cer.config import ConfigError, to_mapping
from cer.fingerprints import file_digest, model_identity, toolkit_version
from cer.fingerprints import value_digest as digest
from experiments.arms import (
    arm_config,
    arm_coverage,
    arm_family,
    arm_model,
    arm_variant,
    coverage_refusal,
    fold_prompts,
    textualize_config,
    variants,
)
from experiments.scoreboard import arm_score, describe_score, score_table
from experiments.status import DONE, StageOutcome, StatusBook, write_json
from experiments.study import ArmSpec, StudyConfig, study_mapping

log = logging.getLogger(__name__)

STUDY_FILE = "study.yaml"
ARM_FILE = "arm.json"
RUN_FILES = ("metrics.json", "predictions.parquet")
#: Textualize options that do not change the prompts (left out of the fingerprint).
_NOT_CONTENT = ("progress", "workers", "force")


class StudyError(RuntimeError):
    """A study cannot go on (data missing, protocol absent); the message says what to fix."""


@dataclass(frozen=True)
class StudyOutcome:
    """What a ``run_study`` call did, stage by stage and arm by arm."""

    study_dir: Path
    stages: dict[str, StageOutcome] = field(default_factory=dict)
    arms: dict[str, StageOutcome] = field(default_factory=dict)
    report: Path | None = None

    @property
    def failed(self) -> tuple[str, ...]:
        items = {**self.stages, **{f"arm {k}": v for k, v in self.arms.items()}}
        return tuple(name for name, o in items.items() if o.status != DONE)


# ------------------------------------------------------------------ stages


def prepare_data(study: StudyConfig):
    """Prepare the dataset into ``STUDY/data`` (each prepare_* reuses its own checks and cuts)."""
    from cer.config import from_mapping
    from data_cards import prepare_cexprdb, prepare_folder, prepare_meld
    from data_cards.cexprdb import CexprdbOptions
    from data_cards.meld import MeldOptions

    data, out = study.data, study.study_dir / "data"
    if data.kind == "meld":
        options = from_mapping(MeldOptions, data.prepare, source="data.prepare")
        return prepare_meld(data.source, out, options)
    if data.kind == "cexprdb":
        options = from_mapping(CexprdbOptions, data.prepare, source="data.prepare")
        return prepare_cexprdb(data.source, out, options)
    if data.kind == "ravdess":
        from data_cards.ravdess import RavdessOptions, prepare_ravdess

        options = from_mapping(RavdessOptions, data.prepare, source="data.prepare")
        return prepare_ravdess(data.source, out, options)
    if data.kind == "synthetic":
        from experiments.synthetic import SyntheticOptions, make_synthetic_corpus

        options = from_mapping(SyntheticOptions, data.prepare, source="data.prepare")
        corpus = Path(data.source) if data.source else study.study_dir / "synthetic"
        labels = make_synthetic_corpus(corpus, options)
        return prepare_folder(corpus / "clips", labels, out, name=f"synthetic-{study.name}")
    return prepare_folder(
        data.source,
        data.prepare.get("labels"),
        out,
        card=data.prepare.get("card"),
        name=data.prepare.get("name"),
    )


def _data_key(study: StudyConfig) -> str:
    return digest(
        {"kind": study.data.kind, "source": study.data.source, "prepare": study.data.prepare}
    )


def study_folds(study: StudyConfig) -> tuple[int, ...]:
    """The folds this study runs: the ones it names, else every fold of its protocol."""
    import pandas as pd

    splits = pd.read_parquet(study.study_dir / "data" / "splits.parquet")
    available = sorted(
        int(f) for f in splits.loc[splits["protocol"] == study.data.protocol, "fold"].unique()
    )
    if not available:
        raise StudyError(
            f"the prepared data has no protocol {study.data.protocol!r} (it has "
            f"{', '.join(sorted(set(splits['protocol'])))}); change data.protocol"
        )
    missing = sorted(set(study.data.folds) - set(available))
    if missing:
        raise StudyError(
            f"data.folds {missing} not in protocol {study.data.protocol} (folds {available})"
        )
    return study.data.folds or tuple(available)


def _variant_key(study: StudyConfig, template: str, modalities: str, folds) -> str:
    cfg = to_mapping(textualize_config(study, template, modalities))
    content = {k: v for k, v in cfg.items() if k not in _NOT_CONTENT}
    data = study.study_dir / "data"
    return digest(
        {
            "config": content,
            "manifest": file_digest(data / "manifest.parquet"),
            "splits": file_digest(data / "splits.parquet"),
            "protocol": study.data.protocol,
            "folds": list(folds),
            "toolkit": toolkit_version(),
        }
    )


def fold_manifest(study: StudyConfig, fold: int) -> Path:
    """The manifest of one fold: its clips, with ``split`` set to their role in that fold, so
    the textualizer of that fold is fitted on its training clips only."""
    import pandas as pd

    data = study.study_dir / "data"
    splits = pd.read_parquet(data / "splits.parquet")
    chosen = splits[(splits["protocol"] == study.data.protocol) & (splits["fold"] == fold)]
    roles = dict(zip(chosen["clip_id"].astype(str), chosen["role"].astype(str)))
    manifest = pd.read_parquet(data / "manifest.parquet")
    manifest["split"] = manifest["clip_id"].astype(str).map(roles)
    path = data / "folds" / f"{study.data.protocol}_fold{fold}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest[manifest["split"].notna()].reset_index(drop=True).to_parquet(path, index=False)
    return path


def render_variant(study: StudyConfig, name: str, template: str, modalities: str, folds) -> None:
    """Render one prompt variant once per fold (extraction comes from the shared cache)."""
    from textualize.pipeline import format_summary, textualize

    cfg = textualize_config(study, template, modalities)
    for fold in folds:
        out = fold_prompts(study, name, fold)
        summary = textualize(fold_manifest(study, fold), out, cfg)
        log.info("prompts %s/%s: %s", name, out.name, format_summary(summary).replace("\n", "; "))


# ------------------------------------------------------------------ arms


def expected_runs(arm_dir: Path, folds: tuple[int, ...], seeds: tuple[int, ...]) -> list[Path]:
    """Run folders a finished arm has: ``fold<F>_seed<S>/`` for every fold and seed."""
    return [arm_dir / f"fold{f}_seed{s}" for f in folds for s in seeds]


def arm_finished(arm_dir: Path, key: str, runs: list[Path]) -> bool:
    info_path = arm_dir / ARM_FILE
    if not info_path.is_file():
        return False
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if info.get("fingerprint") != key:
        return False
    if len(runs) > 1 and not (arm_dir / "cv_metrics.json").is_file():
        return False
    return all((run / name).is_file() for run in runs for name in RUN_FILES)


def _arm_key(study: StudyConfig, arm: ArmSpec, config: Any, folds: tuple[int, ...]) -> str:
    inputs = [fold_prompts(study, arm_variant(study, arm), f) / "prompts.parquet" for f in folds]
    splits = study.study_dir / "data" / "splits.parquet"
    return digest(
        {
            "kind": arm.kind,
            "config": to_mapping(config),
            "folds": folds,
            "prompts": [file_digest(p) if p.is_file() else None for p in inputs],
            "splits": file_digest(splits),
            "model": model_identity(arm_model(arm, config)),
            "toolkit": toolkit_version(),
        }
    )


def train_arm(
    study: StudyConfig, arm: ArmSpec, config: Any, key: str, coverage: dict | None = None
) -> None:
    """Write ``arm.json`` (so partial run folders are known to be this config's) and train."""
    arm_dir = Path(config.output_dir)
    arm_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "name": arm.name,
        "kind": arm.kind,
        "model": arm_model(arm, config),
        "family": arm_family(arm, config),
        "modalities": arm.modalities,
        "description": arm.description,
        "variant": arm_variant(study, arm),
        "fingerprint": key,
        "config": to_mapping(config),
        "random_weights": random_weights(config),
        **_coverage_notes(arm, coverage or {}),
    }
    write_json(arm_dir / ARM_FILE, info)
    if arm.kind == "baseline":
        from featurebaseline.runner import run_baseline

        run_baseline(config)
    else:
        from finetune.runner import run_finetune

        run_finetune(config)


def _arm_stage(
    study: StudyConfig, arm: ArmSpec, folds, book: StatusBook, force: bool
) -> StageOutcome:
    started = time.perf_counter()
    config = arm_config(study, arm, folds=folds)
    arm_dir = Path(config.output_dir)
    try:
        coverage = arm_coverage(study, arm)
        refusal = coverage_refusal(arm, coverage)
    except Exception as err:  # noqa: BLE001  (an unreadable prompts table fails this arm only)
        refusal = f"cannot count the modalities of its prompts: {type(err).__name__}: {err}"
    if refusal:  # checked on every run: the study file may have dropped allow_unavailable
        arm_dir.mkdir(parents=True, exist_ok=True)
        (arm_dir / "error.log").write_text(refusal + "\n", encoding="utf-8")
        log.error("arm %s failed: %s", arm.name, refusal)
        _say(f"arm {arm.name}: FAILED: {refusal}")
        return StageOutcome(f"failed: {refusal}", time.perf_counter() - started)
    for gap in (c for c in coverage.values() if c.mostly_missing):
        log.warning(
            "arm %s: %s; trained anyway (allow_unavailable: true), the report marks it",
            arm.name,
            gap.describe(),
        )
    key = _arm_key(study, arm, config, folds)
    runs = expected_runs(arm_dir, folds, study.seeds)
    if not force and arm_finished(arm_dir, key, runs):
        log.info("arm %s: finished earlier with the same config and inputs; skipped", arm.name)
        info = json.loads((arm_dir / ARM_FILE).read_text(encoding="utf-8"))
        write_json(arm_dir / ARM_FILE, {**info, **_coverage_notes(arm, coverage)})
        _say(f"arm {arm.name}: unchanged, skipped; {describe_score(arm_score(arm_dir))}")
        return StageOutcome(DONE, time.perf_counter() - started, skipped=True)
    previous = arm_dir / ARM_FILE
    if arm_dir.exists() and (
        force
        or not previous.is_file()
        or json.loads(previous.read_text()).get("fingerprint") != key
    ):
        log.info("arm %s: config or inputs changed (or --force); training from scratch", arm.name)
        shutil.rmtree(arm_dir)
    log.info("arm %s (%s, %s): training %d run(s)", arm.name, arm.kind, arm.modalities, len(runs))
    try:
        train_arm(study, arm, config, key, coverage)
        missing = [r.name for r in runs if not all((r / n).is_file() for n in RUN_FILES)]
        if missing:
            raise StudyError(f"the trainer left no metrics/predictions in {', '.join(missing)}")
    except Exception as err:  # noqa: BLE001  (the batch runner records a failing arm, goes on)
        arm_dir.mkdir(parents=True, exist_ok=True)
        (arm_dir / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
        reason = failure_reason(err)
        log.error("arm %s failed: %s (traceback in %s)", arm.name, reason, arm_dir / "error.log")
        _say(f"arm {arm.name}: FAILED: {reason}")
        return StageOutcome(f"failed: {reason}", time.perf_counter() - started)
    (arm_dir / "error.log").unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    log.info("arm %s: done in %.1f s", arm.name, seconds)
    _say(f"arm {arm.name}: done in {seconds:.0f} s; {describe_score(arm_score(arm_dir))}")
    return StageOutcome(DONE, seconds)


# ------------------------------------------------------------------ what the user sees


class RepeatedWarnings(logging.Filter):
    """Drops a warning already logged once: a study textualizes every fold of every variant,
    and a missing face model is the same news each time."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        text = record.getMessage()
        fresh = text not in self.seen
        self.seen.add(text)
        return fresh


def _say(line: str) -> None:
    """One line on stderr as an arm finishes, whatever the log level."""
    print(f"cer experiment: {line}", file=sys.stderr, flush=True)


def failure_reason(err: BaseException) -> str:
    """The line that status.json and the report give a failed arm. A missing model or checkpoint
    (``EncoderUnavailable``) keeps its whole message: it names the file and where it comes from."""
    from featurebaseline.encoders import EncoderUnavailable

    line = f"{type(err).__name__}: {err}".splitlines()[0]
    return line if isinstance(err, EncoderUnavailable) else line[:300]


def random_weights(config: Any) -> dict[str, str]:
    """Encoders of an arm whose weights are random (``featurebaseline.random_encoders``): what
    ``arm.json`` records so the report marks the arm "random weights: not a result"."""
    from featurebaseline.random_encoders import random_weight_encoders

    return random_weight_encoders(to_mapping(config))


def _coverage_notes(arm: ArmSpec, coverage: dict) -> dict[str, Any]:
    """What ``arm.json`` says about coverage: the check's counts over all clips of the arm's
    prompts, and whether the study allowed a modality missing on most of them."""
    return {
        "allow_unavailable": arm.allow_unavailable,
        "coverage": {letter: c.to_dict() for letter, c in coverage.items()},
    }


# ------------------------------------------------------------------ report


# ------------------------------------------------------------------ the study


def _stage(
    book: StatusBook, outcome: StudyOutcome, name: str, key: str, done_check, work, force: bool
) -> None:
    """Run one keyed stage unless it is finished with the same key; record it either way."""
    started = time.perf_counter()
    if not force and book.key("stages", name) == key and done_check():
        log.info("%s: unchanged since the last run; skipped", name)
        result = StageOutcome(DONE, time.perf_counter() - started, skipped=True)
    else:
        log.info("%s: running", name)
        try:
            work()
        except Exception as err:
            failed = StageOutcome(
                f"failed: {type(err).__name__}: {err}"[:300], time.perf_counter() - started
            )
            book.record("stages", name, failed, None)
            raise
        result = StageOutcome(DONE, time.perf_counter() - started)
        log.info("%s: done in %.1f s", name, result.seconds)
    outcome.stages[name] = result
    book.record("stages", name, result, key)


def _report_key(study: StudyConfig, book: StatusBook) -> str:
    """Changes whenever any arm's status or trained config changes."""
    state = {}
    for name in study.arm_names:
        info = study.study_dir / "arms" / name / ARM_FILE
        fingerprint = json.loads(info.read_text()).get("fingerprint") if info.is_file() else None
        state[name] = ((book.data["arms"].get(name) or {}).get("status"), fingerprint)
    return digest(state)


def run_study(
    study: StudyConfig, *, only_arms: tuple[str, ...] | list[str] | None = None, force: bool = False
) -> StudyOutcome:
    """Run (or resume) every stage of ``study``; ``only_arms`` limits the arms trained now."""

    from cer.feedback import quiet_libraries

    quiet_libraries()
    once = RepeatedWarnings()
    extraction_log = logging.getLogger("textualize.extract")
    extraction_log.addFilter(once)
    try:
        return _run_study(study, only_arms, force)
    finally:
        extraction_log.removeFilter(once)


def _run_study(
    study: StudyConfig, only_arms: tuple[str, ...] | list[str] | None, force: bool
) -> StudyOutcome:
    import yaml

    selected = tuple(study.arm(n) for n in only_arms) if only_arms else study.arms
    study_dir = study.study_dir
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / STUDY_FILE).write_text(
        yaml.safe_dump(study_mapping(study), sort_keys=False), encoding="utf-8"
    )
    book = StatusBook(study_dir, study.name)
    outcome = StudyOutcome(study_dir)
    log.info("study %s: %d arm(s) to run in %s", study.name, len(selected), study_dir)

    data_dir = study_dir / "data"
    _stage(
        book,
        outcome,
        "prepare",
        _data_key(study),
        lambda: (data_dir / "prepare.json").is_file() and (data_dir / "splits.parquet").is_file(),
        lambda: _log_prepared(prepare_data(study)),
        force,
    )
    folds = study_folds(study)

    for name, (template, modalities) in variants(study, selected).items():
        rendered = [fold_prompts(study, name, f) / "prompts.parquet" for f in folds]
        _stage(
            book,
            outcome,
            f"textualize:{name}",
            _variant_key(study, template, modalities, folds),
            lambda r=rendered: all(p.is_file() for p in r),
            lambda n=name, t=template, m=modalities: render_variant(study, n, t, m, folds),
            force,
        )

    for arm in selected:
        result = _arm_stage(study, arm, folds, book, force)
        outcome.arms[arm.name] = result
        book.record("arms", arm.name, result, None)
    if selected:
        print(f"\nstudy {study.name}: scores\n{score_table(study, outcome)}\n", file=sys.stderr)

    report_key = _report_key(study, book)
    report_md = study_dir / "report" / "report.md"
    started = time.perf_counter()
    if not force and book.key("stages", "report") == report_key and report_md.is_file():
        log.info("report: no arm changed since the last report; skipped")
        result = StageOutcome(DONE, time.perf_counter() - started, skipped=True)
        outcome.stages["report"] = result
        book.record("stages", "report", result, report_key)
        return _finish(outcome, report_md, book)
    try:
        from experiments.report import write_report

        report = Path(write_report(study_dir))
    except Exception as err:  # noqa: BLE001  (a failing report must not lose the arms)
        (study_dir / "report_error.log").write_text(traceback.format_exc(), encoding="utf-8")
        result = StageOutcome(
            f"failed: {type(err).__name__}: {err}"[:300], time.perf_counter() - started
        )
        log.error("report failed: %s (traceback in %s)", err, study_dir / "report_error.log")
        outcome.stages["report"] = result
        book.record("stages", "report", result, None)
        return _finish(outcome, None, book)
    result = StageOutcome(DONE, time.perf_counter() - started)
    outcome.stages["report"] = result
    book.record("stages", "report", result, report_key)
    log.info("report: %s", report)
    return _finish(outcome, report, book)


def _finish(outcome: StudyOutcome, report: Path | None, book: StatusBook) -> StudyOutcome:
    final = StudyOutcome(outcome.study_dir, outcome.stages, outcome.arms, report)
    if final.failed:
        log.warning("study finished with failures: %s (see %s)", ", ".join(final.failed), book.path)
    else:
        log.info("study finished: %s", outcome.study_dir)
    return final


def _log_prepared(prepared) -> None:
    log.info(
        "data: %d clips prepared (%d failures; protocols %s) in %s",
        prepared.n_clips,
        prepared.n_failures,
        ", ".join(prepared.protocols),
        prepared.output_dir,
    )
    if prepared.n_clips == 0:
        raise StudyError(f"no clip could be prepared; see {prepared.failures_path}")


__all__ = ["ConfigError", "StageOutcome", "StudyError", "StudyOutcome", "run_study"]
