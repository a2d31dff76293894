"""C-EXPR-DB: cut the annotated segments out of the source videos and write manifest and folds.

The annotation format (one CSV per video: begin/end ``hh:mm:ss.ms`` and a one-hot column per
class), the classes and the protocol defaults come from the card ``cexprdb.md``. Each segment is
re-encoded into ``clips/<clip_id>.mp4`` (frame-accurate, audio kept); a segment that is too
short, out of range or badly annotated is reported in ``failures.jsonl`` and skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_cards.cards import Card, load_card
from data_cards.errors import (
    AnnotationError,
    DataCardError,
    LeakageError,
    MediaToolError,
    ReleaseLayoutError,
)
from data_cards.manifest import FAILURES_FILE, Failure, PreparedDataset, finish, write_failures
from data_cards.media import CHECKS_FILE, ProbeCache, cut_segment, require_ffmpeg
from data_cards.protocols import (
    REFERENCE,
    VIDEO_DISJOINT,
    find_leakage,
    reference_folds,
    reference_folds_from_lists,
    video_disjoint_folds,
)

DATASET = "cexprdb"
CLIPS_DIR = "clips"
CUTS_FILE = "cuts.jsonl"
_TIME = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})(?:[.,](\d+))?\s*$")


@dataclass(frozen=True)
class CexprdbOptions:
    """How to prepare C-EXPR-DB (also the flags of ``cer data prepare cexprdb``)."""

    min_duration: float = field(default=0.2, metadata={"help": "shortest segment kept, in seconds"})
    end_tolerance: float = field(
        default=1.0, metadata={"help": "an end at most this far past the video end is clamped (s)"}
    )
    folds: int = field(default=5, metadata={"help": "folds of the video-disjoint protocol"})
    val_fraction: float = field(
        default=0.2, metadata={"help": "share of a training fold's videos used for validation"}
    )
    seed: int = field(default=0, metadata={"help": "seed of both protocols' shuffles"})
    reference_folds: int = field(default=5, metadata={"help": "folds of the reference protocol"})
    reference_folds_dir: str | None = field(
        default=None,
        metadata={"help": "folds/C-EXPR-DB of the reference repository, to use its exact lists"},
    )


@dataclass(frozen=True)
class Segment:
    """One annotated segment of a source video (times in seconds from the video start)."""

    video: str
    row: int  # line number in the annotation CSV (header is line 1)
    start: float
    end: float
    label: str
    index: int  # k-th segment of this label in this video
    clip_id: str  # the card's clip_id pattern filled in, e.g. 24_Sadly-Fearful_0


def label_slug(label: str) -> str:
    return label.replace(" ", "-")


def parse_timestamp(text: str) -> float:
    """``hh:mm:ss.ms`` (``,`` also accepted; fraction optional) in seconds."""
    match = _TIME.match(str(text))
    if not match:
        raise AnnotationError(f"time {text!r} is not hh:mm:ss.ms")
    hours, minutes, seconds, fraction = match.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        raise AnnotationError(f"time {text!r} has minutes or seconds above 59")
    frac = int(fraction) / 10 ** len(fraction) if fraction else 0.0
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + frac


def read_annotation(
    path: str | Path, card: Card | None = None
) -> tuple[list[Segment], list[Failure]]:
    """Segments of one annotation CSV and a failure for every row that breaks the format.

    A header without the begin, end and class columns is an ``AnnotationError`` for the file.
    """
    card = card or load_card(DATASET)
    path = Path(path)
    video = path.stem
    begin_col, end_col = (
        card.require("annotation.begin_column"),
        card.require("annotation.end_column"),
    )
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as err:
        raise AnnotationError(f"cannot read annotation {path}: {err}") from err
    if not rows:
        raise AnnotationError(f"annotation {path} is empty; expected a header row")
    header = [h.strip() for h in rows[0]]
    lowered = [h.lower() for h in header]
    needed = [begin_col, end_col, *card.classes]
    missing = [n for n in needed if n.lower() not in lowered]
    if missing:
        raise AnnotationError(
            f"annotation {path} lacks column(s) {', '.join(missing)}; the header must be: "
            + ",".join(needed)
        )
    at = {name: lowered.index(name.lower()) for name in needed}
    pattern = card.require("clip_id")
    segments: list[Segment] = []
    failures: list[Failure] = []
    counts: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path.name} line {line}"
        row = row + [""] * (len(header) - len(row))
        hot = [c for c in card.classes if row[at[c]].strip() not in ("", "0", "0.0")]
        try:
            start, end = parse_timestamp(row[at[begin_col]]), parse_timestamp(row[at[end_col]])
            bad_cells = [c for c in hot if row[at[c]].strip() not in ("1", "1.0")]
            if bad_cells:
                raise AnnotationError(
                    f"class cells must be 1 or empty, got {row[at[bad_cells[0]]]!r}"
                )
            if len(hot) != 1:
                raise AnnotationError(
                    f"expected exactly one class marked 1, found {len(hot)}: {hot}"
                )
            if end <= start:
                raise AnnotationError(
                    f"segment ends ({end:.3f} s) before it starts ({start:.3f} s)"
                )
        except AnnotationError as err:
            failures.append(
                Failure(f"{video}#line{line}", "bad_annotation", f"{where}: {err}", str(path))
            )
            continue
        label = hot[0]
        index = counts.get(label, 0)
        clip_id = pattern.format(video=video, label_slug=label_slug(label), index=index)
        segments.append(Segment(video, line, start, end, label, index, clip_id))
        counts[label] = counts.get(label, 0) + 1
    return segments, failures


def locate_release(release_dir: Path, card: Card) -> tuple[dict[str, Path], dict[str, Path]]:
    """Source videos and annotation files under ``release_dir``, each keyed by file stem."""
    if not release_dir.is_dir():
        raise ReleaseLayoutError(f"C-EXPR-DB release folder {release_dir} does not exist")
    extensions = {e.lower() for e in card.require("layout.video_extensions")}

    def collect(dir_names, keep) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for name in dir_names:
            for folder in sorted(p for p in release_dir.rglob(name) if p.is_dir()):
                for file in sorted(folder.rglob("*")):
                    if file.is_file() and keep(file) and not file.name.startswith("."):
                        if file.stem in found and found[file.stem] != file:
                            raise ReleaseLayoutError(
                                f"two files for video {file.stem!r}: {found[file.stem]} and "
                                f"{file}; video names must be unique"
                            )
                        found[file.stem] = file
        return found

    videos = collect(card.require("layout.video_dirs"), lambda f: f.suffix.lower() in extensions)
    annotations = collect(
        card.require("layout.annotation_dirs"), lambda f: f.suffix.lower() == ".csv"
    )
    if not annotations:
        raise ReleaseLayoutError(
            f"no annotation CSVs under {release_dir} (looked in folders named "
            f"{', '.join(card.require('layout.annotation_dirs'))}); see `cer data card cexprdb`"
        )
    return videos, annotations


def _load_cuts(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as handle:
        return {e["clip_id"]: e for e in map(json.loads, filter(str.strip, handle))}


def prepare_cexprdb(
    release_dir: str | Path, output_dir: str | Path, options: CexprdbOptions = CexprdbOptions()
) -> PreparedDataset:
    """Cut every annotated segment, write manifest, both protocols' splits, failures and report."""
    card = load_card(DATASET)
    release_dir, output_dir = Path(release_dir).resolve(), Path(output_dir)
    videos, annotations = locate_release(release_dir, card)
    require_ffmpeg()
    output_dir.mkdir(parents=True, exist_ok=True)
    probes = ProbeCache(output_dir / CHECKS_FILE)
    cuts_path = output_dir / CUTS_FILE
    cuts = _load_cuts(cuts_path)
    work = {"segments_cut": 0, "cuts_reused": 0}

    rows: list[dict[str, Any]] = []
    failures: list[Failure] = []
    for video in sorted(annotations):
        annotation = annotations[video]
        try:
            segments, bad_rows = read_annotation(annotation, card)
        except AnnotationError as err:
            failures.append(Failure(video, "bad_annotation", str(err), str(annotation)))
            continue
        failures.extend(bad_rows)
        source = videos.get(video)
        source_probe = probes.probe(source) if source else None
        for seg in segments:
            where = (
                f"{seg.clip_id} ({annotation.name} line {seg.row}, {seg.start:.3f}-{seg.end:.3f} s)"
            )
            checked = _check_segment(seg, source, source_probe, options, where)
            if isinstance(checked, Failure):
                failures.append(checked)
                continue
            end, issue = checked
            target = output_dir / CLIPS_DIR / f"{seg.clip_id}.mp4"
            recipe = {
                "clip_id": seg.clip_id,
                "source": str(source),
                "start": seg.start,
                "end": end,
                "source_size": source.stat().st_size,
            }
            if target.is_file() and cuts.get(seg.clip_id) == recipe:
                work["cuts_reused"] += 1
            else:
                try:
                    cut_segment(source, target, seg.start, end)
                except MediaToolError as err:
                    failures.append(
                        Failure(seg.clip_id, "cut_failed", f"{where}: {err}", str(source))
                    )
                    continue
                cuts[seg.clip_id] = recipe
                with cuts_path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(recipe) + "\n")
                work["segments_cut"] += 1
            clip_probe = probes.probe(target)
            if not clip_probe.ok:
                failures.append(
                    Failure(
                        seg.clip_id,
                        "cut_failed",
                        f"{where}: the cut clip does not decode: {clip_probe.reason}",
                        str(target),
                    )
                )
                continue
            rows.append(
                {
                    "clip_id": seg.clip_id,
                    "path": f"{CLIPS_DIR}/{target.name}",
                    "start": None,
                    "end": None,
                    "label": seg.label,
                    "split": None,
                    "speaker": None,
                    "gold_text": None,
                    "context": None,
                    "dataset": DATASET,
                    "source_video": video,
                    "source_path": str(source),
                    "source_start": seg.start,
                    "source_end": end,
                    "clip_duration": clip_probe.duration,
                    "has_audio": clip_probe.has_audio,
                    "issue": issue,
                }
            )
    if not rows:
        write_failures(failures, output_dir / FAILURES_FILE)
        raise DataCardError(
            f"no segment of {release_dir} could be prepared ({len(failures)} failure(s), listed in "
            f"{output_dir / FAILURES_FILE}); the first: "
            + (failures[0].message if failures else "no annotated segments")
        )
    split_rows, protocol_report = _protocols(rows, options)
    unannotated = sorted(set(videos) - set(annotations))
    report = {
        "release_dir": str(release_dir),
        "card": str(card.path),
        "options": dataclasses.asdict(options),
        "source_videos": len(videos),
        "annotated_videos": len(annotations),
        "videos_without_annotation": unannotated,
        "clips_per_class": {c: sum(r["label"] == c for r in rows) for c in card.classes},
        "protocols_detail": protocol_report,
        "work": {**work, "files_checked": probes.checked, "checks_reused": probes.reused},
    }
    return finish(DATASET, output_dir, rows, split_rows, failures, report)


def _check_segment(
    seg: Segment, source: Path | None, probe, options: CexprdbOptions, where: str
) -> Failure | tuple[float, str | None]:
    """The segment's (end, issue) after clamping, or the Failure that says why it is skipped."""
    if source is None:
        return Failure(seg.clip_id, "source_missing", f"{where}: no video named {seg.video}.*")
    if not probe.ok or not probe.duration:
        reason = f"{where}: source {source.name} cannot be read: {probe.reason}"
        return Failure(seg.clip_id, "source_missing", reason, str(source))
    length, end, issue = probe.duration, seg.end, None
    if seg.start >= length:
        reason = (
            f"{where}: starts at {seg.start:.3f} s but {source.name} is only {length:.3f} s "
            "long; fix the annotation"
        )
        return Failure(seg.clip_id, "out_of_range", reason, str(source))
    if end > length:
        if end - length > options.end_tolerance:
            reason = (
                f"{where}: ends at {end:.3f} s, {end - length:.3f} s past the end of "
                f"{source.name} ({length:.3f} s; --end-tolerance {options.end_tolerance} s); "
                "fix the annotation"
            )
            return Failure(seg.clip_id, "out_of_range", reason, str(source))
        issue = f"end clamped from {end:.3f} s to the video end {length:.3f} s"
        end = length
    if end - seg.start < options.min_duration:
        reason = (
            f"{where}: lasts {end - seg.start:.3f} s, shorter than --min-duration "
            f"{options.min_duration} s"
        )
        return Failure(seg.clip_id, "too_short", reason, str(source))
    return end, issue


def _protocols(rows: list[dict[str, Any]], options: CexprdbOptions) -> tuple[list[dict], dict]:
    """Both protocols' split rows, the leakage facts, and per-fold class counts."""
    import pandas as pd

    labelled = [(r["clip_id"], r["label"]) for r in rows]
    if options.reference_folds_dir:
        reference = reference_folds_from_lists(
            options.reference_folds_dir, {c for c, _ in labelled}
        )
    else:
        reference = reference_folds(labelled, n_folds=options.reference_folds, seed=options.seed)
    recommended = video_disjoint_folds(
        [(r["clip_id"], r["label"], r["source_video"]) for r in rows],
        n_folds=options.folds,
        val_fraction=options.val_fraction,
        seed=options.seed,
    )
    manifest = pd.DataFrame(rows)
    splits = pd.DataFrame(reference + recommended)
    leaks = find_leakage(manifest, splits)
    own = [leak for leak in leaks if leak.protocol == VIDEO_DISJOINT]
    if own:  # a bug here, never a property of the data
        raise LeakageError(
            "the video-disjoint protocol leaks: " + "; ".join(leak.describe() for leak in own)
        )
    labels = manifest.set_index("clip_id")["label"]
    per_fold = {}
    for (protocol, fold, role), part in splits.groupby(["protocol", "fold", "role"]):
        per_fold.setdefault(protocol, {}).setdefault(int(fold), {})[role] = (
            labels.loc[part["clip_id"]].value_counts().sort_index().to_dict()
        )
    detail = {
        REFERENCE: {
            "source": options.reference_folds_dir or f"re-derived, seed {options.seed}",
            "val_is_test": True,
            "leaks": [leak.describe() for leak in leaks if leak.protocol == REFERENCE],
            "class_counts": per_fold.get(REFERENCE, {}),
        },
        VIDEO_DISJOINT: {"leaks": [], "class_counts": per_fold.get(VIDEO_DISJOINT, {})},
    }
    return reference + recommended, detail
