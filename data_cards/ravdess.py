"""RAVDESS speech: labels from the file names and HiCMAE's speaker-independent 6-fold protocol.

A RAVDESS file name is seven two-digit fields, ``MM-VV-EE-II-SS-RR-AA``: modality (01 audio-video,
02 video-only, 03 audio-only), vocal channel (01 speech, 02 song), emotion, intensity, statement,
repetition and actor (odd: male, even: female). Everything the manifest needs is in the name; the
card (``ravdess.md``) explains the codes and the protocol.

The protocol ``hicmae-6fold`` tests each fold on the actors of one of HiCMAE's published split files
(``ravdess_folds.csv``, actor -> fold, derived from sunlicai/HiCMAE). A folder with only some actors
keeps the folds whose test actors it holds, restricted to them; a fold with none of its test actors
is dropped and said so in ``prepare.json`` ("notes"). Validation actors come from the training
actors, actor-disjoint from train and test: ``val_actors`` actors taken from the next kept fold's
test group (cyclically), alternating male and female, so the choice is fixed by the folder alone.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_cards.errors import AnnotationError, DataCardError, ReleaseLayoutError
from data_cards.manifest import Failure, PreparedDataset, finish
from data_cards.media import CHECKS_FILE, ProbeCache

DATASET = "ravdess"
PROTOCOL = "hicmae-6fold"
FOLDS_FILE = Path(__file__).resolve().parent / "ravdess_folds.csv"
ACTORS = range(1, 25)
EMOTIONS = {
    1: "neutral",
    2: "calm",
    3: "happy",
    4: "sad",
    5: "angry",
    6: "fearful",
    7: "disgust",
    8: "surprised",
}
INTENSITIES = {1: "normal", 2: "strong"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
MODALITIES = {1: "audiovisual", 2: "video", 3: "audio"}  # the MM field of a file name
VOCAL_CHANNELS = {1: "speech", 2: "song"}
SUFFIXES = {"audio": (".wav", ".flac"), "audiovisual": (".mp4",), "video": (".mp4",)}
MEDIA_SUFFIXES = (".wav", ".flac", ".mp4")
_NAME = re.compile(r"^\d\d-\d\d-\d\d-\d\d-\d\d-\d\d-\d\d$")
_ACTOR_DIR = re.compile(r"^Actor_(\d\d)$")


@dataclass(frozen=True)
class RavdessName:
    """The seven fields of a RAVDESS file name, decoded."""

    modality: str  # audiovisual | video | audio
    vocal_channel: str  # speech | song
    emotion: str
    intensity: str
    statement: int
    repetition: int
    actor: int

    @property
    def speaker(self) -> str:
        return f"actor{self.actor:02d}"

    @property
    def sex(self) -> str:
        return "male" if self.actor % 2 else "female"

    @property
    def take(self) -> str:
        """The recording, whatever file format it came in (the name without its modality field)."""
        codes = (
            {v: k for k, v in VOCAL_CHANNELS.items()}[self.vocal_channel],
            {v: k for k, v in EMOTIONS.items()}[self.emotion],
            {v: k for k, v in INTENSITIES.items()}[self.intensity],
            self.statement,
            self.repetition,
            self.actor,
        )
        return "-".join(f"{c:02d}" for c in codes)


def parse_name(stem: str) -> RavdessName:
    """Decode ``03-01-05-02-01-01-07`` (a file name without suffix); a bad field is an error."""
    if not _NAME.match(stem):
        raise AnnotationError(f"{stem!r} is not a RAVDESS name (MM-VV-EE-II-SS-RR-AA)")
    mm, vv, ee, ii, ss, rr, aa = (int(part) for part in stem.split("-"))
    checks = (
        ("modality", mm, MODALITIES),
        ("vocal channel", vv, VOCAL_CHANNELS),
        ("emotion", ee, EMOTIONS),
        ("intensity", ii, INTENSITIES),
        ("statement", ss, STATEMENTS),
    )
    for what, code, known in checks:
        if code not in known:
            raise AnnotationError(f"{stem}: {what} code {code:02d} is not one of {sorted(known)}")
    if rr not in (1, 2) or aa not in ACTORS:
        raise AnnotationError(f"{stem}: repetition {rr:02d} or actor {aa:02d} is out of range")
    if ee == 1 and ii == 2:
        raise AnnotationError(f"{stem}: neutral has no strong intensity in RAVDESS")
    return RavdessName(
        MODALITIES[mm], VOCAL_CHANNELS[vv], EMOTIONS[ee], INTENSITIES[ii], ss, rr, aa
    )


@dataclass(frozen=True)
class RavdessOptions:
    """How to prepare RAVDESS (also the flags of ``cer data prepare ravdess``)."""

    modality: str | None = field(
        default=None,
        metadata={
            "help": "audio: the audio-only (03-) files; audiovisual: the audio-video (01-) .mp4 "
            "files. Unset: audiovisual when the folder holds 01- files, else audio",
            "choices": ("audio", "audiovisual"),
        },
    )
    val_actors: int = field(
        default=2,
        metadata={"help": "validation actors per fold, taken from the training actors"},
    )

    def __post_init__(self) -> None:
        if self.val_actors < 1:
            raise ValueError(f"val_actors must be 1 or more, got {self.val_actors}")


def read_published_folds(path: str | Path = FOLDS_FILE) -> dict[int, int]:
    """Actor -> fold of HiCMAE's protocol; every one of the 24 actors must be tested exactly once."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(line for line in handle if not line.startswith("#")))
    fold_of: dict[int, int] = {}
    for row in rows:
        actor = int(row["actor"])
        if actor in fold_of:
            raise DataCardError(f"{path}: actor {actor} is listed twice")
        fold_of[actor] = int(row["fold"])
    if set(fold_of) != set(ACTORS):
        raise DataCardError(f"{path}: actors {sorted(set(ACTORS) - set(fold_of))} have no fold")
    return fold_of


def _validation_actors(fold: int, order: list[int], groups: dict[int, list[int]], n: int):
    """``n`` actors from the test groups of the folds after ``fold`` (cyclic), sexes alternating."""
    start = order.index(fold)
    candidates = [a for g in order[start + 1 :] + order[:start] for a in groups[g]]
    by_sex = [[a for a in candidates if a % 2 == 1], [a for a in candidates if a % 2 == 0]]
    chosen: list[int] = []
    turn = 0
    while len(chosen) < n and (by_sex[0] or by_sex[1]):
        pool = by_sex[turn] or by_sex[1 - turn]
        chosen.append(pool.pop(0))
        turn = 1 - turn
    return chosen


def hicmae_folds(
    actor_of: dict[str, int], *, val_actors: int = 2, folds_file: str | Path = FOLDS_FILE
) -> tuple[list[dict], dict[int, dict[str, list[int]]], list[str]]:
    """Split rows of ``hicmae-6fold`` for clips -> actor; also the actors per fold and the notes."""
    published = read_published_folds(folds_file)
    groups_all: dict[int, list[int]] = {}
    for actor, fold in sorted(published.items()):
        groups_all.setdefault(fold, []).append(actor)
    present = set(actor_of.values())
    groups = {f: [a for a in actors if a in present] for f, actors in groups_all.items()}
    order = [f for f in sorted(groups) if groups[f]]
    notes = []
    for f in sorted(groups_all):
        missing = [a for a in groups_all[f] if a not in present]
        span = ", ".join(f"{a:02d}" for a in groups_all[f])
        if not groups[f]:
            notes.append(
                f"fold {f} (HiCMAE split{f + 1:02d}, test actors {span}) dropped: none of its "
                "test actors is in the folder"
            )
        elif missing:
            notes.append(
                f"fold {f} (HiCMAE split{f + 1:02d}) tests only actors "
                f"{', '.join(f'{a:02d}' for a in groups[f])}: actors "
                f"{', '.join(f'{a:02d}' for a in missing)} are not in the folder"
            )
    rows, actors = [], {}
    for fold in order:
        test = set(groups[fold])
        val = set(_validation_actors(fold, order, groups, val_actors))
        train = present - test - val
        if not train or len(val) < val_actors:
            raise DataCardError(
                f"the folder holds {len(present)} actor(s) ({', '.join(map(str, sorted(present)))}); "
                f"fold {fold} tests {len(test)} of them and leaves too few for {val_actors} "
                "validation actor(s) and training: add actors of other folds or lower --val-actors"
            )
        actors[fold] = {"test": sorted(test), "val": sorted(val), "train": sorted(train)}
        for clip_id, actor in sorted(actor_of.items()):
            role = "test" if actor in test else "val" if actor in val else "train"
            rows.append({"clip_id": clip_id, "protocol": PROTOCOL, "fold": fold, "role": role})
    return rows, actors, notes


def _scan(folder: Path):
    """Every media file whose name is a RAVDESS name, decoded; other names are only counted."""
    found, failures, ignored = [], [], {}
    for path in sorted(folder.rglob("*")):
        if path.name.startswith(".") or path.suffix.lower() not in MEDIA_SUFFIXES:
            continue
        if not path.is_file():
            continue
        clip_id = path.relative_to(folder).with_suffix("").as_posix()
        if not _NAME.match(path.stem):
            ignored["not a RAVDESS file name"] = ignored.get("not a RAVDESS file name", 0) + 1
            continue
        try:
            name = parse_name(path.stem)
        except AnnotationError as err:
            failures.append(Failure(clip_id, "bad_annotation", str(err), str(path)))
            continue
        if path.suffix.lower() not in SUFFIXES[name.modality]:
            failures.append(
                Failure(
                    clip_id,
                    "bad_annotation",
                    f"{path.name}: modality {name.modality} but a {path.suffix} file",
                    str(path),
                )
            )
            continue
        folder_actor = _ACTOR_DIR.match(path.parent.name)
        if folder_actor and int(folder_actor.group(1)) != name.actor:
            failures.append(
                Failure(
                    clip_id,
                    "bad_annotation",
                    f"{path.name} names actor {name.actor:02d} but sits in {path.parent.name}",
                    str(path),
                )
            )
            continue
        found.append((clip_id, path, name))
    return found, failures, ignored


def prepare_ravdess(
    folder: str | Path, output_dir: str | Path, options: RavdessOptions | None = None
) -> PreparedDataset:
    """Write the manifest and the ``hicmae-6fold`` splits of a RAVDESS folder into ``output_dir``."""
    options = options or RavdessOptions()
    folder = Path(folder)
    if not folder.is_dir():
        raise ReleaseLayoutError(f"RAVDESS folder {folder} does not exist or is not a folder")
    found, failures, ignored = _scan(folder)
    if not found and not failures:
        raise ReleaseLayoutError(
            f"no RAVDESS files under {folder}: expected Actor_XX/MM-VV-EE-II-SS-RR-AA.wav, .flac "
            "or .mp4 (e.g. Actor_01/03-01-05-01-01-01-01.wav)"
        )
    holds = sorted({name.modality for _, _, name in found})
    modality = options.modality or ("audiovisual" if "audiovisual" in holds else "audio")
    if modality not in holds:
        other = "audiovisual" if modality == "audio" else "audio"
        fix = f"; pass --modality {other}" if other in holds else ""
        code = "03" if modality == "audio" else "01"
        raise ReleaseLayoutError(
            f"{folder} holds no {modality} ({code}-) RAVDESS files, only {', '.join(holds) or 'none'}"
            f" ({len(found)} file(s)){fix}. Video-only (02-) files carry no sound: use the "
            "audio-video (01-) or the audio-only (03-) release"
        )

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    cache = ProbeCache(output_dir / CHECKS_FILE)
    rows, seen = [], {}
    for clip_id, path, name in found:
        if name.modality != modality or name.vocal_channel != "speech":
            why = (
                f"{name.vocal_channel} files"
                if name.vocal_channel != "speech"
                else (f"{name.modality} files (not --modality {modality})")
            )
            ignored[why] = ignored.get(why, 0) + 1
            continue
        if name.take in seen:
            failures.append(
                Failure(
                    clip_id,
                    "duplicate",
                    f"the same take as {seen[name.take]} (another file format); kept that one",
                    str(path),
                )
            )
            continue
        probe = cache.probe(path)
        if not probe.ok:
            failures.append(
                Failure(clip_id, "undecodable", f"{path.name}: {probe.reason}", str(path))
            )
            continue
        seen[name.take] = clip_id
        rows.append(_row(clip_id, path, name, modality, probe))

    actor_of = {row["clip_id"]: row["actor"] for row in rows}
    split_rows, actors, notes = (
        hicmae_folds(actor_of, val_actors=options.val_actors) if rows else ([], {}, [])
    )
    report: dict[str, Any] = {
        "folder": str(folder.resolve()),
        "modality": modality,
        "options": {"modality": options.modality, "val_actors": options.val_actors},
        "protocol": PROTOCOL,
        "protocol_source": "github.com/sunlicai/HiCMAE saved/data/ravdess/audio_visual/"
        "split01..06 (data_cards/ravdess_folds.csv)",
        "folds": {str(f): a for f, a in actors.items()},
        "notes": notes,
        "ignored_files": dict(sorted(ignored.items())),
        "work": {"clips_checked": cache.checked, "checks_reused": cache.reused},
    }
    return finish(DATASET, output_dir, rows, split_rows, failures, report)


def _row(clip_id: str, path: Path, name: RavdessName, modality: str, probe) -> dict[str, Any]:
    return {
        "clip_id": clip_id,
        "path": str(path.resolve()),
        "label": name.emotion,
        "split": None,
        "speaker": name.speaker,
        "gold_text": STATEMENTS[name.statement],
        "dataset": DATASET,
        "source_video": name.take,
        "actor": name.actor,
        "sex": name.sex,
        "intensity": name.intensity,
        "statement": name.statement,
        "repetition": name.repetition,
        "media_modality": modality,
        "clip_duration": probe.duration,
        "has_audio": probe.has_audio,
    }
