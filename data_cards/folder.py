"""Any dataset as a folder of clips plus a labels CSV, described by a card instead of code.

The defaults (column names, role names, fold settings) are the front matter of ``folder.md``;
a user card overrides any of them. Clips are decode-checked like MELD's; missing or broken clips
and labels outside the card's classes go to ``failures.jsonl``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from data_cards.cards import Card, load_card
from data_cards.errors import AnnotationError, ReleaseLayoutError
from data_cards.manifest import CLIP_COLUMNS, Failure, PreparedDataset, finish
from data_cards.media import CHECKS_FILE, ProbeCache
from data_cards.protocols import OFFICIAL, VIDEO_DISJOINT, video_disjoint_folds

STRATIFIED = "stratified-kfold"


def _merged(card: Card | None) -> tuple[dict[str, Any], Card]:
    """The generic card's front matter with the user card's values on top (columns merged)."""
    base = load_card("folder")
    meta = dict(base.meta)
    if card is not None:
        meta.update({k: v for k, v in card.meta.items() if k != "columns"})
        meta["columns"] = {**base.meta["columns"], **(card.meta.get("columns") or {})}
    return meta, card or base


def prepare_folder(
    clips_dir: str | Path | None,
    labels_csv: str | Path | None,
    output_dir: str | Path,
    *,
    card: str | Path | None = None,
    name: str | None = None,
) -> PreparedDataset:
    """Check every clip listed in ``labels_csv`` and write the prepared output.

    ``card`` is a user card (path); its ``clips_dir`` / ``labels_csv`` (relative to the card)
    are used when the first two arguments are None, and its ``columns`` rename CSV columns.
    """
    import pandas as pd

    user_card = load_card(card) if card else None
    meta, used_card = _merged(user_card)
    here = used_card.path.parent if user_card else Path.cwd()
    clips_dir = Path(clips_dir) if clips_dir else here / meta["clips_dir"]
    labels_csv = Path(labels_csv) if labels_csv else here / meta["labels_csv"]
    name = name or (user_card.name if user_card else clips_dir.resolve().parent.name)
    if not clips_dir.is_dir():
        raise ReleaseLayoutError(
            f"clip folder {clips_dir} does not exist; pass --clips or set clips_dir in the card"
        )
    if not labels_csv.is_file():
        raise ReleaseLayoutError(
            f"labels CSV {labels_csv} does not exist; pass --labels or set labels_csv in the card"
        )
    try:
        table = pd.read_csv(labels_csv, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise AnnotationError(f"cannot read {labels_csv}: {' '.join(str(err).split())}") from err
    columns: dict[str, str] = meta["columns"]
    for needed in ("file", "label"):
        if columns[needed] not in table.columns:
            raise AnnotationError(
                f"{labels_csv} has no {columns[needed]!r} column (the {needed} of each clip); its "
                f"columns are {', '.join(table.columns)}; map yours in the card's columns: block"
            )
    present = {f: c for f, c in columns.items() if c in table.columns}
    classes = set(meta.get("classes") or [])
    roles: dict[str, str] = meta["roles"]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    cache = ProbeCache(output_dir / CHECKS_FILE)
    extra_columns = [c for c in table.columns if c not in present.values()]

    rows, failures = [], []
    for line, record in enumerate(table.to_dict("records"), start=2):
        file = record[columns["file"]].strip()
        span = {
            f: _seconds(record, present.get(f), f"{labels_csv.name} line {line}")
            for f in ("start", "end")
        }
        if span["start"] is not None and span["end"] is not None and span["end"] <= span["start"]:
            raise AnnotationError(
                f"{labels_csv.name} line {line}: end {span['end']} is not after start "
                f"{span['start']}"
            )
        clip_id = Path(file).with_suffix("").as_posix()
        if "start" in present and record[present["start"]].strip():
            clip_id = f"{clip_id}@{record[present['start']].strip()}"
        path = clips_dir / file
        label = record[columns["label"]].strip() or None
        split = record.get(present.get("split", ""), "").strip() or None
        if classes and label not in classes:
            failures.append(
                Failure(
                    clip_id,
                    "bad_annotation",
                    f"{labels_csv.name} line {line}: label "
                    f"{label!r} is not one of the card's classes",
                    str(path),
                )
            )
            continue
        if split is not None and split not in roles:
            failures.append(
                Failure(
                    clip_id,
                    "bad_annotation",
                    f"{labels_csv.name} line {line}: split "
                    f"{split!r} is not one of {', '.join(roles)}",
                    str(path),
                )
            )
            continue
        if not path.is_file():
            failures.append(
                Failure(clip_id, "missing", f"clip {file} not in {clips_dir}", str(path))
            )
            continue
        probe = cache.probe(path)
        if not probe.ok:
            failures.append(Failure(clip_id, "undecodable", f"{file}: {probe.reason}", str(path)))
            continue
        row = {f: (record[c].strip() or None) for f, c in present.items() if f in CLIP_COLUMNS}
        row.update(clip_id=clip_id, path=str(path.resolve()), label=label, split=split)
        row.update(span)
        row.update(
            {
                "dataset": name,
                "source_video": record.get(present.get("source_video", ""), "").strip() or None,
                "clip_duration": probe.duration,
                "has_audio": probe.has_audio,
            }
        )
        row.update({c: record[c] for c in extra_columns if c not in row})
        rows.append(row)
    split_rows, protocol = _splits(rows, roles, meta) if rows else ([], None)
    report = {
        "clips_dir": str(clips_dir.resolve()),
        "labels_csv": str(labels_csv.resolve()),
        "card": str(used_card.path),
        "columns_used": present,
        "protocol": protocol,
        "work": {"clips_checked": cache.checked, "checks_reused": cache.reused},
    }
    return finish(name, output_dir, rows, split_rows, failures, report)


def _seconds(record: dict[str, str], column: str | None, where: str) -> float | None:
    """A start/end cell in seconds (None when absent or blank); otherwise an error naming it."""
    text = record.get(column, "").strip() if column else ""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{where}: {column} {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise AnnotationError(f"{where}: {column} {text!r} is not a time in seconds (>= 0)")
    return value


def _splits(
    rows: list[dict[str, Any]], roles: dict[str, str], meta: dict[str, Any]
) -> tuple[list[dict], str]:
    if rows and all(r["split"] for r in rows):
        split_rows = [
            {"clip_id": r["clip_id"], "protocol": OFFICIAL, "fold": 0, "role": roles[r["split"]]}
            for r in rows
        ]
        return split_rows, OFFICIAL
    by_video = all(r["source_video"] for r in rows)
    protocol = VIDEO_DISJOINT if by_video else STRATIFIED
    triples = [
        (r["clip_id"], r["label"], r["source_video"] if by_video else r["clip_id"]) for r in rows
    ]
    split_rows = video_disjoint_folds(
        triples,
        n_folds=int(meta["folds"]),
        val_fraction=float(meta["val_fraction"]),
        seed=int(meta["seed"]),
        protocol=protocol,
    )
    return split_rows, protocol
