"""MELD: pair each utterance of the official CSVs with its clip and write the manifest.

The facts (classes, CSV names and columns, folder names, official counts, known problems) come
from the card ``meld.md``; this module only reads a release against them. Missing and
undecodable clips are reported by name in ``failures.jsonl`` and left out; the rest continues.

Text-only studies need no clips: with ``text_only`` (or when no clip folder exists at all) every
utterance of the CSVs becomes a row, marked ``text_only`` with an empty ``path`` where its clip is
absent, so ``cer textualize`` renders it from the gold transcript and the dialogue context alone;
clips that are present are attached as usual. A row's ``context`` holds only earlier utterances
of its dialogue, never the utterance itself or later ones.
"""

from __future__ import annotations

import codecs
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_cards.cards import Card, load_card
from data_cards.errors import AnnotationError, ReleaseLayoutError
from data_cards.manifest import Failure, PreparedDataset, finish
from data_cards.media import CHECKS_FILE, ProbeCache
from data_cards.text_repair import needs_repair, repair_text

DATASET = "meld"


@dataclass(frozen=True)
class MeldOptions:
    """How to prepare MELD (also the flags of ``cer data prepare meld``)."""

    splits: tuple[str, ...] = field(
        default=("train", "dev", "test"), metadata={"help": "official splits to prepare"}
    )
    context_turns: int = field(
        default=5,
        metadata={"help": "previous utterances of the dialogue kept as context (0: none)"},
    )
    clips_dir: tuple[str, ...] = field(
        default=(), metadata={"help": "SPLIT=FOLDER for a clip folder not found under the release"}
    )
    ascii_punctuation: bool = field(
        default=True, metadata={"help": "write curly quotes and ellipses as ASCII in gold_text"}
    )
    text_only: bool | None = field(
        default=None,
        metadata={
            "help": "keep every utterance of the CSVs, marking those without a clip text_only "
            "(empty path), for text-only studies with gold transcripts; clips present are "
            "attached. Unset: text-only when no clip folder exists, else clips are required"
        },
    )

    def __post_init__(self) -> None:
        if self.context_turns < 0:
            raise ValueError(f"context_turns must be 0 or more, got {self.context_turns}")


def parse_episode_time(text: str) -> float:
    """MELD's ``hh:mm:ss,ms`` (episode time) in seconds."""
    try:
        clock, _, millis = str(text).strip().replace(".", ",").partition(",")
        hours, minutes, seconds = (int(part) for part in clock.split(":"))
        return hours * 3600 + minutes * 60 + seconds + (int(millis or 0) / 10 ** len(millis or "0"))
    except ValueError as err:
        raise AnnotationError(f"time {text!r} is not hh:mm:ss,ms") from err


def read_meld_csv(path: str | Path, card: Card | None = None, *, ascii_punctuation: bool = True):
    """Read one MELD CSV, check its columns against the card and repair the text columns.

    Adds ``text_was_damaged`` (bool) so the report can say how many rows were repaired.
    """
    import pandas as pd

    card = card or load_card(DATASET)
    path = Path(path)
    try:
        frame = pd.read_csv(
            io.StringIO(decode_csv(path)), dtype=str, keep_default_na=False, na_filter=False
        )
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise AnnotationError(f"cannot read MELD CSV {path}: {' '.join(str(err).split())}") from err
    if frame.empty:
        raise AnnotationError(f"MELD CSV {path} has a header but no rows")
    expected = list(card.require("csv_columns"))
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise AnnotationError(
            f"{path} lacks MELD column(s) {', '.join(missing)}; expected {', '.join(expected)} "
            "(is this the *_sent_emo.csv file of the release?)"
        )
    frame["text_was_damaged"] = frame["Utterance"].map(needs_repair)
    for column in ("Utterance", "Speaker"):
        frame[column] = frame[column].map(
            lambda t: repair_text(t, ascii_punctuation=ascii_punctuation)
        )
    for column in ("Dialogue_ID", "Utterance_ID", "Sr No.", "Season", "Episode"):
        numbers = pd.to_numeric(frame[column].str.strip(), errors="coerce")
        bad = numbers.isna() | (numbers % 1 != 0)
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise AnnotationError(
                f"{path} row {row + 1} (line {row + 2}): {column} {frame[column].iloc[row]!r} is "
                f"not a whole number ({int(bad.sum())} such row(s)); is this the *_sent_emo.csv "
                "file of the release?"
            )
        frame[column] = numbers.astype("int64")
    return frame


def decode_csv(path: Path) -> str:
    """The text of a CSV: UTF-8 (with or without BOM), UTF-16 with a BOM, else cp1252 (a
    re-saved MELD CSV); bytes that are none of these are an error naming the first bad one."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise AnnotationError(f"cannot read MELD CSV {path}: {err.strerror or err}") from err
    if not data.strip():
        raise AnnotationError(f"MELD CSV {path} is empty; unpack it again from the release")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ("utf-16",)
    else:
        encodings = ("utf-8-sig", "cp1252")
    failures = []
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as err:
            failures.append(err)
    first = failures[0]
    raise AnnotationError(
        f"MELD CSV {path} is not UTF-8, UTF-16 or cp1252 text (byte {data[first.start]:#04x} at "
        f"offset {first.start}); save it as UTF-8"
    ) from first


def _shallowest(paths) -> Path | None:
    found = sorted(paths, key=lambda p: (len(p.parts), str(p)))
    return found[0] if found else None


def locate_release(
    release_dir: Path, card: Card, options: MeldOptions
) -> tuple[dict[str, tuple[Path, Path | None]], bool]:
    """For each split, the CSV and the clip folder (None: none found), found anywhere under
    ``release_dir``; and whether rows without a clip are kept as text-only rows."""
    if not release_dir.is_dir():
        raise ReleaseLayoutError(f"MELD release folder {release_dir} does not exist")
    overrides: dict[str, Path] = {}
    for item in options.clips_dir:
        split, sep, folder = item.partition("=")
        if not sep:
            raise ReleaseLayoutError(f"--clips-dir takes SPLIT=FOLDER, got {item!r}")
        overrides[split.strip()] = Path(folder).expanduser()
    layout: dict[str, tuple[Path, Path | None]] = {}
    split_facts = card.require("splits")
    for split in options.splits:
        if split not in split_facts:
            raise ReleaseLayoutError(
                f"unknown MELD split {split!r}; choose from {', '.join(split_facts)}"
            )
        facts = split_facts[split]
        csv_path = _shallowest(release_dir.rglob(facts["csv"]))
        if csv_path is None:
            raise ReleaseLayoutError(
                f"{facts['csv']} not found under {release_dir}; unpack MELD.Raw.tar.gz there"
            )
        if split in overrides and not overrides[split].is_dir():
            raise ReleaseLayoutError(f"--clips-dir {split}={overrides[split]} is not a folder")
        clip_dir = overrides.get(split) or _shallowest(
            p for name in facts["clip_dirs"] for p in release_dir.rglob(name) if p.is_dir()
        )
        layout[split] = (csv_path, clip_dir)
    without = [split for split, (_, clip_dir) in layout.items() if clip_dir is None]
    text_only = options.text_only
    if text_only is None:  # the CSVs alone: a text-only study; some folders: clips are wanted
        text_only = len(without) == len(layout)
    if without and not text_only:
        split = without[0]
        raise ReleaseLayoutError(
            f"no clip folder for MELD {split} under {release_dir} (looked for "
            f"{', '.join(split_facts[split]['clip_dirs'])}); unpack {split}.tar.gz from the "
            f"release or pass --clips-dir {split}=FOLDER (or --text-only to keep the utterances "
            "without clips as text-only rows)"
        )
    return layout, text_only


def _context(previous: list[tuple[str, str]], turns: int) -> str | None:
    if turns == 0 or not previous:
        return None
    return "\n".join(f"{speaker}: {text}" for speaker, text in previous[-turns:])


def prepare_meld(
    release_dir: str | Path, output_dir: str | Path, options: MeldOptions = MeldOptions()
) -> PreparedDataset:
    """Check a MELD release and write manifest, splits, failures and report into ``output_dir``."""
    card = load_card(DATASET)
    release_dir, output_dir = Path(release_dir).resolve(), Path(output_dir)
    layout, text_only = locate_release(release_dir, card, options)
    output_dir.mkdir(parents=True, exist_ok=True)
    cache = ProbeCache(output_dir / CHECKS_FILE)
    known = {p["clip"]: p for p in card.get("known_problems", [])}
    classes, sentiments = set(card.classes), set(card.require("sentiments"))
    roles = card.require("roles")
    ratio, excess = float(card.require("miscut_ratio")), float(card.require("miscut_min_excess_s"))

    rows: list[dict[str, Any]] = []
    split_rows: list[dict[str, Any]] = []
    failures: list[Failure] = []
    per_split: dict[str, dict[str, Any]] = {}
    for split, (csv_path, clip_dir) in layout.items():
        frame = read_meld_csv(csv_path, card, ascii_punctuation=options.ascii_punctuation)
        frame = frame.sort_values(["Dialogue_ID", "Utterance_ID"], kind="stable")
        annotated_names = set()
        kept = text_rows = 0
        previous: dict[int, list[tuple[str, str]]] = {}
        for record in frame.to_dict("records"):
            dialogue, utterance = record["Dialogue_ID"], record["Utterance_ID"]
            name = card.require("clip_name").format(Dialogue_ID=dialogue, Utterance_ID=utterance)
            annotated_names.add(name)
            clip_id = f"{split}/{Path(name).stem}"
            history = previous.setdefault(dialogue, [])
            context = _context(history, options.context_turns)
            history.append((record["Speaker"], record["Utterance"]))
            path = clip_dir / name if clip_dir else None
            where = str(path) if path else None
            problem = known.get(clip_id)
            note = f" (known problem: {problem['note']}; {problem['source']})" if problem else ""
            if record["Emotion"] not in classes or record["Sentiment"] not in sentiments:
                failures.append(
                    Failure(
                        clip_id,
                        "bad_annotation",
                        f"{csv_path.name} Sr No. "
                        f"{record['Sr No.']}: emotion {record['Emotion']!r} / sentiment "
                        f"{record['Sentiment']!r} not in the card's classes",
                        where,
                    )
                )
                continue
            try:
                start = parse_episode_time(record["StartTime"])
                end = parse_episode_time(record["EndTime"])
            except AnnotationError as err:
                raise AnnotationError(
                    f"{csv_path} Sr No. {record['Sr No.']} (StartTime {record['StartTime']!r}, "
                    f"EndTime {record['EndTime']!r}): {err}"
                ) from err
            issue = problem["note"] if problem else None
            probe, lack = None, None  # lack: (failure reason, message) of an absent clip
            if path is not None and path.is_file():
                probe = cache.probe(path)
                if not probe.ok:
                    lack, probe = ("undecodable", f"{name}: {probe.reason}"), None
            elif path is not None:
                lack = ("missing", f"clip {name} not in {clip_dir}")
            if probe is None and not text_only:
                failures.append(Failure(clip_id, lack[0], f"{lack[1]}{note}", where))
                continue
            if lack:  # a text-only row where a clip was expected: say why it has none
                why = f"text-only row: {lack[1]}"
                issue = f"{issue}; {why}" if issue else why
            span = max(end - start, 0.0)
            if probe and probe.duration > ratio * span and probe.duration - span > excess:
                flag = (
                    f"clip is {probe.duration:.1f} s for a {span:.1f} s utterance: probably mis-cut"
                )
                issue = f"{issue}; {flag}" if issue else flag
            rows.append(
                {
                    "clip_id": clip_id,
                    "path": str(path) if probe else "",  # "": a text-only row
                    "start": None,
                    "end": None,
                    "label": record["Emotion"],
                    "split": split,
                    "speaker": record["Speaker"],
                    "gold_text": record["Utterance"],
                    "context": context,
                    "dataset": DATASET,
                    "sentiment": record["Sentiment"],
                    "dialogue_id": dialogue,
                    "utterance_id": utterance,
                    "sr_no": record["Sr No."],
                    "season": record["Season"],
                    "episode": record["Episode"],
                    "episode_start": start,
                    "episode_end": end,
                    "clip_duration": probe.duration if probe else None,
                    "has_audio": bool(probe and probe.has_audio),
                    "text_only": probe is None,
                    "issue": issue,
                }
            )
            split_rows.append(
                {"clip_id": clip_id, "protocol": "official", "fold": 0, "role": roles[split]}
            )
            kept += 1
            text_rows += probe is None
        on_disk = set()
        if clip_dir is not None:
            on_disk = {p.name for p in clip_dir.glob("*.mp4") if not p.name.startswith("._")}
        unannotated = sorted(on_disk - annotated_names)
        expected = int(card.require(f"splits.{split}.utterances"))
        per_split[split] = {
            "csv": str(csv_path),
            "clip_dir": str(clip_dir) if clip_dir else None,
            "utterances": len(frame),
            "official_utterances": expected,
            "matches_official_count": len(frame) == expected,
            "clips": kept - text_rows,
            "text_only_rows": text_rows,
            "text_repaired": int(frame["text_was_damaged"].sum()),
            "unannotated_clips": len(unannotated),
            "unannotated_examples": unannotated[:20],
        }
    report = {
        "release_dir": str(release_dir),
        "card": str(card.path),
        "options": dataclasses.asdict(options),
        "text_only": text_only,  # rows without a clip kept (marked text_only), not left out
        "text_only_rows": sum(1 for r in rows if r["text_only"]),
        "splits": per_split,
        "flagged_clips": sum(1 for r in rows if r["issue"]),
        "work": {"clips_checked": cache.checked, "checks_reused": cache.reused},
    }
    return finish(DATASET, output_dir, rows, split_rows, failures, report)
