"""The prepared-output contract: a clip manifest, a splits table, a failures log and a report.

Every ``prepare_*`` function writes the same four files into its output folder (lhotse style,
predictable names) so that ``cer textualize`` and the trainers read any dataset the same way:

- ``manifest.parquet``: one row per clip; the first columns are the fields of
  ``textualize.records.Clip`` (``CLIP_COLUMNS``), then dataset-specific extras.
- ``splits.parquet``: ``clip_id, protocol, fold, role`` with role in train / val / test.
- ``failures.jsonl``: one JSON object per clip that could not be prepared, with its reason.
- ``prepare.json``: counts, the options used and what this run had to do.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_cards.errors import DataCardError

#: The fields of ``textualize.records.Clip``, in order (kept in sync by a test, not by import).
CLIP_COLUMNS = (
    "clip_id",
    "path",
    "start",
    "end",
    "label",
    "split",
    "speaker",
    "gold_text",
    "context",
)
FLOAT_COLUMNS = ("start", "end")
SPLIT_COLUMNS = ("clip_id", "protocol", "fold", "role")
ROLES = ("train", "val", "test")

MANIFEST_FILE = "manifest.parquet"
SPLITS_FILE = "splits.parquet"
FAILURES_FILE = "failures.jsonl"
REPORT_FILE = "prepare.json"


@dataclass(frozen=True)
class Failure:
    """A clip that was left out of the manifest, and why (``reason`` is a short keyword)."""

    clip_id: str
    reason: str  # missing | undecodable | bad_annotation | too_short | out_of_range | ...
    message: str
    path: str | None = None

    def to_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PreparedDataset:
    """Where a prepared dataset lives and what is in it; read the tables with the methods."""

    name: str
    output_dir: Path
    n_clips: int
    n_failures: int
    protocols: tuple[str, ...] = ()
    report: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def manifest_path(self) -> Path:
        return self.output_dir / MANIFEST_FILE

    @property
    def splits_path(self) -> Path:
        return self.output_dir / SPLITS_FILE

    @property
    def failures_path(self) -> Path:
        return self.output_dir / FAILURES_FILE

    @property
    def report_path(self) -> Path:
        return self.output_dir / REPORT_FILE

    def manifest(self):
        return read_manifest(self.manifest_path)

    def splits(self):
        return read_splits(self.splits_path)

    def failures(self) -> list[Failure]:
        return read_failures(self.failures_path)


def _atomic_write_bytes(path: Path, write) -> None:
    """Write through a temporary file and rename, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def manifest_frame(rows: Iterable[dict[str, Any]]):
    """A DataFrame with the Clip columns first (in order, typed) and extras after them."""
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    for column in CLIP_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    extras = [c for c in frame.columns if c not in CLIP_COLUMNS]
    frame = frame[list(CLIP_COLUMNS) + extras]
    for column in FLOAT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="raise").astype("float64")
    for column in CLIP_COLUMNS:
        if column not in FLOAT_COLUMNS:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame.reset_index(drop=True)


def write_manifest(rows: Iterable[dict[str, Any]], path: str | Path):
    """Validate and write a manifest; returns the DataFrame that was written."""
    frame = manifest_frame(rows)
    _check_manifest(frame, Path(path))
    _atomic_write_bytes(Path(path), lambda tmp: frame.to_parquet(tmp, index=False))
    return frame


def _check_manifest(frame, path: Path) -> None:
    if frame["clip_id"].isna().any() or frame["path"].isna().any():
        raise DataCardError(f"manifest {path}: every row needs a clip_id and a path")
    duplicated = frame.loc[frame["clip_id"].duplicated(), "clip_id"].tolist()
    if duplicated:
        raise DataCardError(
            f"manifest {path}: clip_id must be unique; repeated: "
            + ", ".join(map(str, duplicated[:5]))
        )


def read_manifest(path: str | Path):
    """Read a manifest and check that it has the Clip columns and unique clip ids."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataCardError(f"no manifest at {path}; run `cer data prepare ...` first")
    frame = pd.read_parquet(path)
    missing = [c for c in CLIP_COLUMNS if c not in frame.columns]
    if missing:
        raise DataCardError(f"manifest {path} lacks column(s) {', '.join(missing)}")
    _check_manifest(frame, path)
    return frame


def write_splits(rows: Iterable[dict[str, Any]], path: str | Path):
    """Write the splits table (clip_id, protocol, fold, role); returns the DataFrame."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(SPLIT_COLUMNS))
    bad_roles = sorted(set(frame["role"]) - set(ROLES))
    if bad_roles:
        raise DataCardError(f"splits {path}: roles must be one of {ROLES}, got {bad_roles}")
    frame["fold"] = frame["fold"].astype("int64")
    frame = frame.sort_values(["protocol", "fold", "role", "clip_id"], kind="stable")
    frame = frame.reset_index(drop=True)
    _atomic_write_bytes(Path(path), lambda tmp: frame.to_parquet(tmp, index=False))
    return frame


def read_splits(path: str | Path):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataCardError(f"no splits file at {path}; run `cer data prepare ...` first")
    frame = pd.read_parquet(path)
    missing = [c for c in SPLIT_COLUMNS if c not in frame.columns]
    if missing:
        raise DataCardError(f"splits file {path} lacks column(s) {', '.join(missing)}")
    return frame


def write_failures(failures: Iterable[Failure], path: str | Path) -> None:
    lines = "".join(json.dumps(f.to_row(), ensure_ascii=False) + "\n" for f in failures)
    _atomic_write_bytes(Path(path), lambda tmp: tmp.write_text(lines, encoding="utf-8"))


def read_failures(path: str | Path) -> list[Failure]:
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return [Failure(**json.loads(line)) for line in handle if line.strip()]


def write_report(report: dict[str, Any], path: str | Path) -> None:
    text = json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"
    _atomic_write_bytes(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def load_prepared(output_dir: str | Path) -> PreparedDataset:
    """Open a folder written by ``prepare_*`` (reads its report; the tables stay on disk)."""
    output_dir = Path(output_dir)
    report_path = output_dir / REPORT_FILE
    if not report_path.is_file():
        raise DataCardError(
            f"{output_dir} is not a prepared dataset (no {REPORT_FILE}); "
            "run `cer data prepare ...` to create it"
        )
    report = json.loads(report_path.read_text(encoding="utf-8"))
    return PreparedDataset(
        name=report["dataset"],
        output_dir=output_dir,
        n_clips=int(report["clips"]),
        n_failures=int(report["failures"]),
        protocols=tuple(report.get("protocols", ())),
        report=report,
    )


def finish(
    name: str,
    output_dir: Path,
    rows: list[dict[str, Any]],
    split_rows: list[dict[str, Any]],
    failures: list[Failure],
    report: dict[str, Any],
) -> PreparedDataset:
    """Write the four output files and return the handle that describes them."""
    write_manifest(rows, output_dir / MANIFEST_FILE)
    splits = write_splits(split_rows, output_dir / SPLITS_FILE)
    write_failures(failures, output_dir / FAILURES_FILE)
    protocols = tuple(sorted(set(splits["protocol"])))
    by_reason: dict[str, int] = {}
    for failure in failures:
        by_reason[failure.reason] = by_reason.get(failure.reason, 0) + 1
    full_report = {
        "dataset": name,
        "clips": len(rows),
        "failures": len(failures),
        "failures_by_reason": dict(sorted(by_reason.items())),
        "protocols": list(protocols),
        **report,
    }
    write_report(full_report, output_dir / REPORT_FILE)
    return PreparedDataset(
        name=name,
        output_dir=output_dir,
        n_clips=len(rows),
        n_failures=len(failures),
        protocols=protocols,
        report=full_report,
    )
