"""Turn what the user points at (a folder, a manifest, one file) into ``Clip`` records.

A folder gives one clip per regular file, whatever it is: a file that is not media still gets a
row with its reason, so a user sees every file they gave. What is not a regular file (hidden
files and folders, dangling symlinks, symlink loops, FIFOs, sockets, devices) is never opened; it
comes back as a ``SkippedInput`` with its reason, beside the clips (``discover``). A clip's id is
its path relative to the folder without the suffix (``Actor_01/x`` for ``Actor_01/x.wav``), or
with it where that short form is shared by several files or is another file's path: ``a.mp4``,
``a.wav`` and ``a.mp4.ogg`` are three clips of those ids, so ids are unique by construction.

A manifest (Parquet, CSV or JSONL, as written by ``cer data prepare``) carries labels, splits,
spans and gold transcripts; its ids are compared as text (``1`` and ``"1"`` clash); a row with
an empty path (or ``text_only`` true) is a text-only clip, rendered from its gold transcript and
dialogue context with no extractor run and no media read. A labels CSV adds those columns, each
row naming its clip by clip id, relative path (with or without suffix), file name or stem. How
rows met clips is checked before any work: a row that could mean several clips, a clip named by
rows that disagree, a time that is not seconds, or a file that matches nothing, is an error;
clips left without a row, rows without a clip and repeated rows are warnings (clips left without
a row are an error with ``--strict``).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from textualize.records import Clip

MANIFEST_SUFFIXES = (".parquet", ".csv", ".jsonl")
CLIP_FIELDS = tuple(f.name for f in dataclasses.fields(Clip))

log = logging.getLogger(__name__)


class InputError(ValueError):
    """The input folder, manifest or labels file is unusable; the message says what to fix."""


@dataclass(frozen=True)
class SkippedInput:
    """An entry of a source folder that is not read as a clip, and why (e.g. "hidden file")."""

    path: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    """What a source gave: its clips (labels attached) and the entries skipped, with reasons."""

    clips: list[Clip]
    skipped: list[SkippedInput]


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


def _seconds(value, name: str, where: str) -> float | None:
    """A start/end cell as seconds (None when empty); anything else is an error naming ``where``."""
    value = _value(value)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {name} {value!r} is not a number of seconds") from None
    if not math.isfinite(number):
        raise InputError(f"{where}: {name} {value!r} is not a finite number of seconds")
    if number < 0:
        raise InputError(f"{where}: {name} {number} is negative; times are seconds into the file")
    return number


def _check_span(start: float | None, end: float | None, where: str) -> None:
    if start is not None and end is not None and end <= start:
        raise InputError(f"{where}: end {end} is not after start {start}")


def is_text_only(clip: Clip) -> bool:
    """A clip without media (its path is empty): rendered from its gold text and context only."""
    return not clip.path


def _clip_from_row(row: dict, base: Path, where: str) -> Clip:
    values = {k: _value(row.get(k)) for k in CLIP_FIELDS if k in row}
    marked = str(_value(row.get("text_only"))).strip().lower() in ("true", "1")
    if values.get("path") is None or marked:
        values["path"] = ""  # a text-only row (e.g. `cer data prepare meld --text-only`)
    else:
        path = Path(str(values["path"]))
        values["path"] = str(path if path.is_absolute() else base / path)
    values["clip_id"] = _id_text(values["clip_id"])
    for key in ("start", "end"):
        if key in values:
            values[key] = _seconds(values[key], key, where)
    _check_span(values.get("start"), values.get("end"), where)
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
    records = table.to_dict("records")
    ids = [_value(r["clip_id"]) for r in records]
    blank = [i + 1 for i, clip_id in enumerate(ids) if clip_id is None]
    if blank:
        raise InputError(
            f"manifest {path}: {len(blank)} row(s) have no clip_id (rows {_examples(blank)}); "
            "give every row an id"
        )
    # ids are compared as text: 1 and "1" (JSONL) are the same clip id
    rows_of: dict[str, list[int]] = {}
    for row, clip_id in enumerate(ids, start=1):
        rows_of.setdefault(_id_text(clip_id), []).append(row)
    repeated = {k: rows for k, rows in rows_of.items() if len(rows) > 1}
    if repeated:
        clip_id, rows = next(iter(repeated.items()))
        raise InputError(
            f"manifest {path} repeats clip id(s) {_examples(list(repeated), 5)}: e.g. "
            f"{clip_id!r} on rows {', '.join(map(str, rows[:5]))} (rows counted from 1 after "
            "the header); give each clip its own id"
        )
    return [
        _clip_from_row(r, path.parent, f"manifest {path} row {n} (clip id {_id_text(i)!r})")
        for n, (r, i) in enumerate(zip(records, ids), start=1)
    ]


def _id_text(value) -> str:
    """A clip id as text; 3.0 read from a numeric column is the id "3"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "unknown kind"


def walk_folder(folder: str | Path) -> tuple[list[PurePosixPath], list[SkippedInput]]:
    """Regular files under ``folder`` (relative paths, sorted) and every entry skipped, with why.

    Symlinks are followed (a folder link too, unless it leads back into the folders above it);
    nothing is opened, so a FIFO cannot block.
    """
    folder = Path(folder)
    files: list[PurePosixPath] = []
    skipped: list[SkippedInput] = []

    def skip(relative: PurePosixPath, reason: str) -> None:
        skipped.append(SkippedInput(str(folder / relative), reason))

    def visit(relative: PurePosixPath, above: tuple[tuple[int, int], ...]) -> None:
        try:
            with os.scandir(folder / relative) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            skip(relative, f"folder cannot be listed ({err.strerror or err})")
            return
        for entry in entries:
            path = relative / entry.name
            is_link = entry.is_symlink()
            try:
                info = os.stat(entry.path)  # follows a symlink
            except FileNotFoundError:
                if is_link:
                    skip(path, f"dangling symlink (its target {os.readlink(entry.path)} is gone)")
                continue  # removed while listing: nothing to say
            except OSError as err:
                loop = is_link and err.errno == errno.ELOOP
                skip(path, "symlink loop" if loop else f"cannot be read ({err.strerror or err})")
                continue
            if entry.name.startswith("."):
                kind = "folder (not searched)" if stat.S_ISDIR(info.st_mode) else "file"
                skip(path, f"hidden {kind}")
            elif stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if key in above:
                    skip(path, "symlink loop (leads back to a folder above it)")
                else:
                    visit(path, (*above, key))
            elif stat.S_ISREG(info.st_mode):
                files.append(path)
            else:
                skip(path, f"not a regular file ({_file_kind(info.st_mode)}); never opened")

    root = os.stat(folder)
    visit(PurePosixPath(), ((root.st_dev, root.st_ino),))
    return sorted(files, key=lambda p: p.parts), skipped


def folder_clip_ids(files: list[PurePosixPath]) -> list[str]:
    """Clip ids of files relative to their folder: the path without suffix, unless another file
    has the same short form or that short form is another file's path; then the path itself."""
    full = [p.as_posix() for p in files]
    short = [p.with_suffix("").as_posix() for p in files]
    shared = Counter(short)
    names = set(full)
    ids = [f if shared[s] > 1 or (s != f and s in names) else s for f, s in zip(full, short)]
    if len(set(ids)) != len(ids):  # cannot happen by the rule above; never lose a clip to it
        clash = next(i for i in ids if ids.count(i) > 1)
        same = [f for f, i in zip(full, ids) if i == clash]
        raise InputError(f"files {_examples(same)} would share the clip id {clash!r}")
    return ids


def scan_folder(folder: str | Path) -> list[Clip]:
    """One clip per regular, non-hidden file under ``folder`` (see ``folder_clip_ids``)."""
    return _scan(Path(folder))[0]


def _scan(folder: Path) -> tuple[list[Clip], list[SkippedInput]]:
    files, skipped = walk_folder(folder)
    clips = [
        Clip(clip_id=clip_id, path=str(folder / relative))
        for relative, clip_id in zip(files, folder_clip_ids(files))
    ]
    return clips, skipped


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
    contested_rows: tuple[tuple[int, ...], ...] = ()  # the row indices of each contested clip


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
    several = [(i, rows) for i, rows in sorted(claims.items()) if len(rows) > 1]
    contested = tuple((clips[i].clip_id, tuple(str(keys[r]) for r in rows)) for i, rows in several)
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
        contested_rows=tuple(tuple(rows) for _, rows in several),
    )


def attach_labels(
    clips: list[Clip], labels_path: str | Path, base: str | Path, *, strict: bool = False
) -> list[Clip]:
    """Add label/split/speaker/gold_text/context/start/end columns from a labels table to clips.

    Each row names its clip in a ``clip_id`` (or ``file``) column by clip id, path relative to
    ``base`` (with or without suffix), file name or stem. A row that fits several clips, or a
    clip that several rows with different values fit, is an error; so is a file that matches no
    clip at all, a start or end that is not a time in seconds (or an end not after its start),
    and with ``strict`` one that leaves any clip without a row. Otherwise clips without a row,
    rows without a clip and rows repeated word for word are logged as warnings.
    """
    table = _read_table(Path(labels_path))
    columns = [c for c in ("clip_id", "file") if c in table.columns]
    if not columns:
        raise InputError(f"labels file {labels_path} needs a clip_id or file column")
    extra = [c for c in CLIP_FIELDS if c in table.columns and c not in ("clip_id", "path")]
    records = table.to_dict("records")
    keys = [next((k for k in (_key(r[c]) for c in columns) if k), None) for r in records]
    match = match_labels(clips, keys, Path(base), str(labels_path))
    match, repeated = _settle_repeated_rows(match, records, extra)
    check_labels_match(match, Path(base), strict=strict)
    if repeated:
        clip_id, rows = repeated[0]
        log.warning(
            f"labels file {labels_path}: {len(repeated)} clip(s) named by several identical rows "
            f"(e.g. {clip_id!r} by {_examples(rows, 5)}); each is used once"
        )
    out = []
    for clip in clips:
        if clip.clip_id not in match.matched:
            out.append(clip)
            continue
        index = match.matched[clip.clip_id]
        where = f"labels file {labels_path} row {index + 1} ({keys[index]!r})"
        row = records[index]
        update = {c: _value(row[c]) for c in extra}
        for c, v in update.items():
            if c in ("start", "end"):
                update[c] = _seconds(v, c, where)
            elif v is not None:
                update[c] = str(v)
        labelled = dataclasses.replace(clip, **update)
        _check_span(labelled.start, labelled.end, where)
        out.append(labelled)
    return out


def _settle_repeated_rows(
    match: LabelsMatch, records: list[dict], extra: list[str]
) -> tuple[LabelsMatch, list[tuple[str, tuple[str, ...]]]]:
    """A clip named by several rows that say the same thing takes the first; one whose rows
    differ stays contested (an error). -> (settled match, [(clip id, keys of its rows)])."""
    matched = dict(match.matched)
    contested, repeated = [], []
    for (clip_id, keys), rows in zip(match.contested_clips, match.contested_rows):
        values = {tuple(str(_value(records[r][c])) for c in extra) for r in rows}
        if len(values) == 1:
            matched[clip_id] = rows[0]
            repeated.append((clip_id, keys))
        else:
            contested.append(((clip_id, keys), rows))
    settled = dataclasses.replace(
        match,
        matched=matched,
        unmatched_clips=tuple(c for c in match.unmatched_clips if c not in matched),
        contested_clips=tuple(c for c, _ in contested),
        contested_rows=tuple(r for _, r in contested),
    )
    return settled, repeated


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
            f"{_examples(match.unmatched_rows, 5)}); {naming}"
        )


def discover(
    source: str | Path, labels: str | Path | None = None, *, strict: bool = False
) -> Discovery:
    """Clips from a folder, a manifest file or a single media file, with ``labels`` attached,
    and the entries of a folder that were skipped (hidden, dangling links, FIFOs ...) with why."""
    source = Path(source)
    skipped: list[SkippedInput] = []
    if source.is_dir():
        (clips, skipped), base = _scan(source), source
        if not clips:
            if not skipped:
                raise InputError(f"folder {source} holds no files")
            raise InputError(
                f"folder {source} holds no usable files: {len(skipped)} skipped "
                f"({_skip_counts(skipped)}, e.g. {_examples([s.path for s in skipped])})"
            )
        if skipped:
            log.warning(
                f"{source}: skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} "
                f"that are not clips ({_skip_counts(skipped)}; e.g. "
                f"{_examples([s.path for s in skipped])})"
            )
    elif source.is_file() and source.suffix in MANIFEST_SUFFIXES:
        clips, base = read_manifest(source), source.parent
    elif source.is_file():
        clips, base = [Clip(clip_id=source.stem, path=str(source))], source.parent
    elif source.exists():
        kind = _file_kind(source.stat().st_mode)
        raise InputError(f"input {source} is not a regular file ({kind}) nor a folder")
    else:
        raise InputError(f"input {source} does not exist")
    if labels:
        clips = attach_labels(clips, labels, base, strict=strict)
    return Discovery(clips=clips, skipped=skipped)


def _skip_counts(skipped: list[SkippedInput]) -> str:
    kinds = Counter(s.reason.split(" (")[0].split(";")[0] for s in skipped)
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())


def discover_clips(
    source: str | Path, labels: str | Path | None = None, *, strict: bool = False
) -> list[Clip]:
    """The clips of ``discover`` (for callers that do not report skipped entries)."""
    return discover(source, labels, strict=strict).clips
