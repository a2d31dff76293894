"""MELD: pair each utterance of the official CSVs with its clip and write the manifest.

The facts (classes, CSV names and columns, folder names, official counts, known problems) come
from the card ``meld.md``; this module only reads a release against them. Missing and
undecodable clips are reported by name in ``failures.jsonl`` and left out; the rest continues.
"""

from __future__ import annotations

import dataclasses
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
        frame = pd.read_csv(path, encoding="utf-8", dtype=str, keep_default_na=False)
    except UnicodeDecodeError:  # a re-saved CSV may be plain cp1252
        frame = pd.read_csv(path, encoding="cp1252", dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as err:
        raise AnnotationError(f"cannot read MELD CSV {path}: {err}") from err
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
        frame[column] = pd.to_numeric(frame[column], errors="raise").astype("int64")
    return frame


def _shallowest(paths) -> Path | None:
    found = sorted(paths, key=lambda p: (len(p.parts), str(p)))
    return found[0] if found else None


def locate_release(
    release_dir: Path, card: Card, options: MeldOptions
) -> dict[str, tuple[Path, Path]]:
    """For each split, the CSV and the clip folder, found anywhere under ``release_dir``."""
    if not release_dir.is_dir():
        raise ReleaseLayoutError(f"MELD release folder {release_dir} does not exist")
    overrides: dict[str, Path] = {}
    for item in options.clips_dir:
        split, sep, folder = item.partition("=")
        if not sep:
            raise ReleaseLayoutError(f"--clips-dir takes SPLIT=FOLDER, got {item!r}")
        overrides[split.strip()] = Path(folder).expanduser()
    layout = {}
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
        clip_dir = overrides.get(split) or _shallowest(
            p for name in facts["clip_dirs"] for p in release_dir.rglob(name) if p.is_dir()
        )
        if clip_dir is None or not clip_dir.is_dir():
            raise ReleaseLayoutError(
                f"no clip folder for MELD {split} under {release_dir} (looked for "
                f"{', '.join(facts['clip_dirs'])}); unpack {split}.tar.gz from the release or pass "
                f"--clips-dir {split}=FOLDER"
            )
        layout[split] = (csv_path, clip_dir)
    return layout


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
    layout = locate_release(release_dir, card, options)
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
        kept = 0
        previous: dict[int, list[tuple[str, str]]] = {}
        for record in frame.to_dict("records"):
            dialogue, utterance = record["Dialogue_ID"], record["Utterance_ID"]
            name = card.require("clip_name").format(Dialogue_ID=dialogue, Utterance_ID=utterance)
            annotated_names.add(name)
            clip_id = f"{split}/{Path(name).stem}"
            history = previous.setdefault(dialogue, [])
            context = _context(history, options.context_turns)
            history.append((record["Speaker"], record["Utterance"]))
            path = clip_dir / name
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
                        str(path),
                    )
                )
                continue
            if not path.is_file():
                failures.append(
                    Failure(clip_id, "missing", f"clip {name} not in {clip_dir}{note}", str(path))
                )
                continue
            probe = cache.probe(path)
            if not probe.ok:
                failures.append(
                    Failure(clip_id, "undecodable", f"{name}: {probe.reason}{note}", str(path))
                )
                continue
            start = parse_episode_time(record["StartTime"])
            end = parse_episode_time(record["EndTime"])
            issue = problem["note"] if problem else None
            span = max(end - start, 0.0)
            if probe.duration and probe.duration > ratio * span and probe.duration - span > excess:
                flag = (
                    f"clip is {probe.duration:.1f} s for a {span:.1f} s utterance: probably mis-cut"
                )
                issue = f"{issue}; {flag}" if issue else flag
            rows.append(
                {
                    "clip_id": clip_id,
                    "path": str(path),
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
                    "clip_duration": probe.duration,
                    "has_audio": probe.has_audio,
                    "issue": issue,
                }
            )
            split_rows.append(
                {"clip_id": clip_id, "protocol": "official", "fold": 0, "role": roles[split]}
            )
            kept += 1
        on_disk = {p.name for p in clip_dir.glob("*.mp4") if not p.name.startswith("._")}
        unannotated = sorted(on_disk - annotated_names)
        expected = int(card.require(f"splits.{split}.utterances"))
        per_split[split] = {
            "csv": str(csv_path),
            "clip_dir": str(clip_dir),
            "utterances": len(frame),
            "official_utterances": expected,
            "matches_official_count": len(frame) == expected,
            "clips": kept,
            "text_repaired": int(frame["text_was_damaged"].sum()),
            "unannotated_clips": len(unannotated),
            "unannotated_examples": unannotated[:20],
        }
    report = {
        "release_dir": str(release_dir),
        "card": str(card.path),
        "options": dataclasses.asdict(options),
        "splits": per_split,
        "flagged_clips": sum(1 for r in rows if r["issue"]),
        "work": {"clips_checked": cache.checked, "checks_reused": cache.reused},
    }
    return finish(DATASET, output_dir, rows, split_rows, failures, report)
