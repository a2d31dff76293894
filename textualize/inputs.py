"""Turn what the user points at (a folder, a manifest, one file) into ``Clip`` records.

A folder gives one clip per regular file, whatever it is: a file that is not media still gets a
row with its reason, so a user sees every file they gave. A manifest (Parquet, CSV or JSONL, as
written by ``cer data prepare``) carries labels, splits, spans and gold transcripts; a row with
an empty path (or ``text_only`` true) is a text-only clip, rendered from its gold transcript and
dialogue context with no extractor run and no media read. A labels CSV adds those columns, each
row naming its clip by clip id, relative path (with or without suffix), file name or stem. How
rows met clips is checked before any work: a row that could mean several clips, or a file that
matches nothing, is an error; clips left without a row are a warning (an error with
``--strict``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from textualize.records import Clip

MANIFEST_SUFFIXES = (".parquet", ".csv", ".jsonl")
CLIP_FIELDS = tuple(f.name for f in dataclasses.fields(Clip))

log = logging.getLogger(__name__)


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
    """None for a missing cell: null, NaN, or a blank string (an empty label is no label)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def is_text_only(clip: Clip) -> bool:
    """A clip without media (its path is empty): rendered from its gold text and context only."""
    return not clip.path


def _clip_from_row(row: dict, base: Path) -> Clip:
    values = {k: _value(row.get(k)) for k in CLIP_FIELDS if k in row}
    marked = str(_value(row.get("text_only"))).strip().lower() in ("true", "1")
    if values.get("path") is None or marked:
        values["path"] = ""  # a text-only row (e.g. `cer data prepare meld --text-only`)
    else:
        path = Path(str(values["path"]))
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
        raise InputError(
            f"manifest {path} lacks column(s) {sorted(missing)}; it needs clip_id and path"
        )
    duplicated = table["clip_id"][table["clip_id"].duplicated()].tolist()
    if duplicated:
        raise InputError(f"manifest {path} repeats clip ids: {duplicated[:5]}")
    return [_clip_from_row(row, path.parent) for row in table.to_dict("records")]


def scan_folder(folder: str | Path) -> list[Clip]:
    """One clip per regular, non-hidden file under ``folder``; id = relative path without suffix."""
    folder = Path(folder)
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    stems = [p.relative_to(folder).with_suffix("").as_posix() for p in files]
    clashes = {s for s in stems if stems.count(s) > 1}
    clips = []
    for path, stem in zip(files, stems):
        clip_id = path.relative_to(folder).as_posix() if stem in clashes else stem
        clips.append(Clip(clip_id=clip_id, path=str(path)))
    return clips


def _key(value) -> str | None:
    """A labels-file key as a comparable string: trimmed, forward slashes, no leading ``./``."""
    value = _value(value)
    if value is None:
        return None
    text = str(value).strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text or None


def _clip_keys(clip: Clip, base: Path) -> tuple[set[str], ...]:
    """What a labels row may call a clip, most specific first: its id; its path (relative to the
    input folder, or as given); that path without suffix; its file name; its stem."""
    if is_text_only(clip):
        return ({clip.clip_id}, set(), set(), set(), set())
    path = Path(clip.path)
    try:
        relative = path.relative_to(base)
    except ValueError:
        relative = path
    return (
        {clip.clip_id},
        {relative.as_posix(), path.as_posix()},
        {relative.with_suffix("").as_posix()},
        {path.name},
        {path.stem},
    )


@dataclass(frozen=True)
class LabelsMatch:
    """How the rows of a labels file met the clips (keys trimmed, with forward slashes)."""

    labels_path: str
    clips: int
    rows: int
    matched: dict[str, int]  # clip id -> index of its labels row
    unmatched_clips: tuple[str, ...]
    unmatched_rows: tuple[str, ...]
    ambiguous_rows: tuple[tuple[str, tuple[str, ...]], ...]  # key -> the clip ids it could mean
    contested_clips: tuple[tuple[str, tuple[str, ...]], ...]  # clip id -> keys of its rows


def match_labels(
    clips: list[Clip], keys: list[str | None], base: Path, labels_path: str
) -> LabelsMatch:
    """Pair labels rows with clips; a key that fits several clips at its most specific level,
    or a clip that several rows fit, is kept apart instead of being guessed."""
    levels: list[dict[str, list[int]]] = [{} for _ in range(5)]
    for i, clip in enumerate(clips):
        for level, names in zip(levels, _clip_keys(clip, base)):
            for name in names:
                level.setdefault(name, []).append(i)
    claims: dict[int, list[int]] = {}
    unmatched_rows, ambiguous = [], []
    for row, key in enumerate(keys):
        hits = next((level[key] for level in levels if key in level), []) if key else []
        if len(hits) == 1:
            claims.setdefault(hits[0], []).append(row)
        elif hits:
            ambiguous.append((key, tuple(clips[i].clip_id for i in hits)))
        else:
            unmatched_rows.append(key if key else f"(row {row + 1}: empty key)")
    contested = tuple(
        (clips[i].clip_id, tuple(str(keys[r]) for r in rows))
        for i, rows in sorted(claims.items())
        if len(rows) > 1
    )
    matched = {clips[i].clip_id: rows[0] for i, rows in claims.items() if len(rows) == 1}
    return LabelsMatch(
        labels_path=str(labels_path),
        clips=len(clips),
        rows=len(keys),
        matched=matched,
        unmatched_clips=tuple(c.clip_id for c in clips if c.clip_id not in matched),
        unmatched_rows=tuple(unmatched_rows),
        ambiguous_rows=tuple(ambiguous),
        contested_clips=contested,
    )


def attach_labels(
    clips: list[Clip], labels_path: str | Path, base: str | Path, *, strict: bool = False
) -> list[Clip]:
    """Add label/split/speaker/gold_text/context/start/end columns from a labels table to clips.

    Each row names its clip in a ``clip_id`` (or ``file``) column by clip id, path relative to
    ``base`` (with or without suffix), file name or stem. A row that fits several clips, or a
    clip that several rows fit, is an error; so is a file that matches no clip at all, and with
    ``strict`` one that leaves any clip without a row. Otherwise clips without a row and rows
    without a clip are logged as warnings.
    """
    table = _read_table(Path(labels_path))
    columns = [c for c in ("clip_id", "file") if c in table.columns]
    if not columns:
        raise InputError(f"labels file {labels_path} needs a clip_id or file column")
    extra = [c for c in CLIP_FIELDS if c in table.columns and c not in ("clip_id", "path")]
    records = table.to_dict("records")
    keys = [next((k for k in (_key(r[c]) for c in columns) if k), None) for r in records]
    match = match_labels(clips, keys, Path(base), str(labels_path))
    check_labels_match(match, Path(base), strict=strict)
    out = []
    for clip in clips:
        if clip.clip_id not in match.matched:
            out.append(clip)
            continue
        row = records[match.matched[clip.clip_id]]
        update = {c: _value(row[c]) for c in extra}
        for c, v in update.items():
            if v is not None:
                update[c] = float(v) if c in ("start", "end") else str(v)
        out.append(dataclasses.replace(clip, **update))
    return out


def _examples(items, shown: int = 3) -> str:
    text = ", ".join(repr(str(x)) for x in list(items)[:shown])
    return text + (", ..." if len(items) > shown else "")


def check_labels_match(match: LabelsMatch, base: Path, *, strict: bool = False) -> None:
    """Raise (one line) for what would attach labels wrongly or not at all; warn for the rest."""
    where = f"labels file {match.labels_path}"
    naming = (
        f"name each clip by its clip id, its path relative to {base} (with or without suffix), "
        "its file name or its stem"
    )
    if match.ambiguous_rows:
        key, ids = match.ambiguous_rows[0]
        raise InputError(
            f"{where}: {len(match.ambiguous_rows)} row(s) fit several clips, e.g. {key!r} fits "
            f"{_examples(ids)}; name those clips by their path relative to {base} (e.g. "
            f"{ids[0]!r}) so each row means one clip"
        )
    if match.contested_clips:
        clip_id, keys = match.contested_clips[0]
        raise InputError(
            f"{where}: {len(match.contested_clips)} clip(s) are named by several rows, e.g. "
            f"{clip_id!r} by {_examples(keys)}; keep one row per clip"
        )
    if not match.matched:
        raise InputError(
            f"{where} matches none of the {match.clips} clip(s) of {base} (its rows name e.g. "
            f"{_examples(match.unmatched_rows) or 'nothing'}; the clips are e.g. "
            f"{_examples(match.unmatched_clips)}); {naming}"
        )
    missing = len(match.unmatched_clips)
    if missing and strict:
        raise InputError(
            f"{where} has no row for {missing} of {match.clips} clips (e.g. "
            f"{_examples(match.unmatched_clips)}); --strict makes this an error: add rows for "
            "them, or drop --strict to give them no label"
        )
    if missing:
        log.warning(
            f"{where} has no row for {missing} of {match.clips} clips (e.g. "
            f"{_examples(match.unmatched_clips)}): they get no label, split or speaker "
            "(--strict makes this an error)"
        )
    if match.unmatched_rows:
        log.warning(
            f"{where}: {len(match.unmatched_rows)} of {match.rows} rows match no clip (e.g. "
            f"{_examples(match.unmatched_rows)}); {naming}"
        )


def discover_clips(
    source: str | Path, labels: str | Path | None = None, *, strict: bool = False
) -> list[Clip]:
    """Clips from a folder, a manifest file or a single media file, with ``labels`` attached."""
    source = Path(source)
    if source.is_dir():
        clips, base = scan_folder(source), source
        if not clips:
            raise InputError(f"folder {source} holds no files")
    elif source.is_file() and source.suffix in MANIFEST_SUFFIXES:
        clips, base = read_manifest(source), source.parent
    elif source.is_file():
        clips, base = [Clip(clip_id=source.stem, path=str(source))], source.parent
    else:
        raise InputError(f"input {source} does not exist")
    return attach_labels(clips, labels, base, strict=strict) if labels else clips
