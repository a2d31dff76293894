"""Turn what the user points at (a folder, a manifest, one file) into ``Clip`` records.

A folder gives one clip per regular file, whatever it is: a file that is not media still gets a
row with its reason, so a user sees every file they gave. A manifest (Parquet, CSV or JSONL, as
written by ``cer data prepare``) carries labels, splits, spans and gold transcripts. A labels CSV
adds those columns to folder clips, matched by clip id or file name.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd

from textualize.records import Clip

MANIFEST_SUFFIXES = (".parquet", ".csv", ".jsonl")
CLIP_FIELDS = tuple(f.name for f in dataclasses.fields(Clip))


class InputError(ValueError):
    """The input folder, manifest or labels file is unusable; the message says what to fix."""


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as err:  # pandas raises many types for malformed tables
        raise InputError(f"cannot read table {path}: {err}") from err


def _value(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _clip_from_row(row: dict, base: Path) -> Clip:
    path = Path(str(row["path"]))
    values = {k: _value(row.get(k)) for k in CLIP_FIELDS if k in row}
    values["path"] = str(path if path.is_absolute() else base / path)
    values["clip_id"] = str(values["clip_id"])
    for key in ("start", "end"):
        if values.get(key) is not None:
            values[key] = float(values[key])
    for key in ("label", "split", "speaker", "gold_text", "context"):
        if values.get(key) is not None:
            values[key] = str(values[key])
    return Clip(**values)


def read_manifest(path: str | Path) -> list[Clip]:
    path = Path(path)
    table = _read_table(path)
    missing = {"clip_id", "path"} - set(table.columns)
    if missing:
        raise InputError(f"manifest {path} lacks column(s) {sorted(missing)}; it needs clip_id and path")
    duplicated = table["clip_id"][table["clip_id"].duplicated()].tolist()
    if duplicated:
        raise InputError(f"manifest {path} repeats clip ids: {duplicated[:5]}")
    return [_clip_from_row(row, path.parent) for row in table.to_dict("records")]


def scan_folder(folder: str | Path) -> list[Clip]:
    """One clip per regular, non-hidden file under ``folder``; id = relative path without suffix."""
    folder = Path(folder)
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    stems = [p.relative_to(folder).with_suffix("").as_posix() for p in files]
    clashes = {s for s in stems if stems.count(s) > 1}
    clips = []
    for path, stem in zip(files, stems):
        clip_id = path.relative_to(folder).as_posix() if stem in clashes else stem
        clips.append(Clip(clip_id=clip_id, path=str(path)))
    return clips


def attach_labels(clips: list[Clip], labels_path: str | Path) -> list[Clip]:
    """Add label/split/speaker/gold_text/context/start/end columns from a CSV to folder clips.

    Rows are matched on ``clip_id``, or on ``file`` (file name with or without its suffix).
    """
    table = _read_table(Path(labels_path))
    key = "clip_id" if "clip_id" in table.columns else "file" if "file" in table.columns else None
    if key is None:
        raise InputError(f"labels file {labels_path} needs a clip_id or file column")
    extra = [c for c in CLIP_FIELDS if c in table.columns and c not in ("clip_id", "path")]
    by_key = {str(r[key]): r for r in table.to_dict("records")}
    out = []
    for clip in clips:
        name = Path(clip.path).name
        row = by_key.get(clip.clip_id) or by_key.get(name) or by_key.get(Path(name).stem)
        if row is None:
            out.append(clip)
            continue
        update = {c: _value(row[c]) for c in extra}
        for c in ("start", "end"):
            if update.get(c) is not None:
                update[c] = float(update[c])
        out.append(dataclasses.replace(clip, **{k: (str(v) if v is not None and k not in ("start", "end") else v) for k, v in update.items()}))
    return out


def discover_clips(source: str | Path, labels: str | Path | None = None) -> list[Clip]:
    """Clips from a folder, a manifest file or a single media file."""
    source = Path(source)
    if source.is_dir():
        clips = scan_folder(source)
        if not clips:
            raise InputError(f"folder {source} holds no files")
    elif source.is_file() and source.suffix in MANIFEST_SUFFIXES:
        clips = read_manifest(source)
    elif source.is_file():
        clips = [Clip(clip_id=source.stem, path=str(source))]
    else:
        raise InputError(f"input {source} does not exist")
    return attach_labels(clips, labels) if labels else clips
