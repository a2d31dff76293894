"""Evaluation protocols as data (rows of ``splits.parquet``) and the leakage check.

- ``reference_folds``: the 5-fold class-stratified protocol of Richet et al. (2024): per class,
  shuffle the segments with a seed and deal them into k chunks; fold i validates *and tests* on
  chunk i. Segments of one source video land on both sides, which inflates scores.
- ``video_disjoint_folds``: our recommended protocol: every source video sits in exactly one
  test fold (class-stratified over videos), and each training fold sets aside a video-disjoint
  validation split. Deterministic from the seed.
- ``check_leakage``: fails loudly when a source video (or a clip) is on both sides of a split.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data_cards.errors import DataCardError, LeakageError
from data_cards.manifest import MANIFEST_FILE, SPLITS_FILE, read_manifest, read_splits

REFERENCE = "reference-5fold"
VIDEO_DISJOINT = "video-disjoint"
OFFICIAL = "official"
_ROLE_PAIRS = (("train", "val"), ("train", "test"), ("val", "test"))


def reference_folds(
    clips: Sequence[tuple[str, str]], *, n_folds: int = 5, seed: int = 0, protocol: str = REFERENCE
) -> list[dict]:
    """Split rows for the reference protocol from ``(clip_id, label)`` pairs.

    Classes are visited in sorted order and clip ids sorted before a seeded shuffle, so the
    result does not depend on file-system listing order (the reference code's does; to use its
    exact published membership, see ``reference_folds_from_lists``). A class with fewer
    segments than folds is missing from the test chunk of some folds.
    """
    import numpy as np

    by_class: dict[str, list[str]] = {}
    for clip_id, label in clips:
        by_class.setdefault(label, []).append(clip_id)
    rng = random.Random(seed)
    chunks_per_fold: list[list[str]] = [[] for _ in range(n_folds)]
    for label in sorted(by_class):
        members = sorted(by_class[label])
        rng.shuffle(members)
        for fold, chunk in enumerate(np.array_split(np.arange(len(members)), n_folds)):
            chunks_per_fold[fold].extend(members[i] for i in chunk)
    return _rows_from_test_folds(chunks_per_fold, protocol, val_is_test=True)


def reference_folds_from_lists(folds_dir: str | Path, known_ids: set[str]) -> list[dict]:
    """Rows from the reference repository's ``folds/C-EXPR-DB/split-<i>/{val,test}.txt`` files.

    Their ids look like ``Sadly-Fearful/24_Sadly-Fearful_0``; the part after the slash is our
    clip id. Ids not in ``known_ids`` (segments that failed to prepare here) are an error.
    """
    folds_dir = Path(folds_dir)
    split_dirs = sorted(folds_dir.glob("split-*"), key=lambda p: int(p.name.split("-")[1]))
    if not split_dirs:
        raise DataCardError(f"no split-<i> folders in {folds_dir}; point at folds/C-EXPR-DB")
    chunks: list[list[str]] = []
    for split_dir in split_dirs:
        listing = next(
            (split_dir / n for n in ("test.txt", "val.txt") if (split_dir / n).is_file()), None
        )
        if listing is None:
            raise DataCardError(f"{split_dir} has neither test.txt nor val.txt")
        lines = listing.read_text(encoding="utf-8").splitlines()
        chunks.append([line.split(",", 1)[0].split("/")[-1] for line in lines if line.strip()])
    unknown = sorted({c for chunk in chunks for c in chunk} - known_ids)
    if unknown:
        raise DataCardError(
            f"{len(unknown)} clip id(s) in {folds_dir} are not in this manifest "
            f"(e.g. {unknown[0]}); "
            "see failures.jsonl for segments that could not be prepared"
        )
    return _rows_from_test_folds(chunks, REFERENCE, val_is_test=True, universe=known_ids)


def _rows_from_test_folds(
    test_folds: list[list[str]],
    protocol: str,
    *,
    val_is_test: bool,
    universe: set[str] | None = None,
) -> list[dict]:
    everything = universe if universe is not None else {c for fold in test_folds for c in fold}
    rows = []
    for fold, test in enumerate(test_folds):
        test_set = set(test)
        for clip_id in sorted(everything):
            if clip_id in test_set:
                rows.append(
                    {"clip_id": clip_id, "protocol": protocol, "fold": fold, "role": "test"}
                )
                if val_is_test:
                    rows.append(
                        {"clip_id": clip_id, "protocol": protocol, "fold": fold, "role": "val"}
                    )
            else:
                rows.append(
                    {"clip_id": clip_id, "protocol": protocol, "fold": fold, "role": "train"}
                )
    return rows


def _assign_groups(
    groups: dict[str, dict[str, int]], k: int, rng: random.Random
) -> list[list[str]]:
    """Deal groups (videos) into k parts so that each part's class mix is close to the whole.

    Greedy, like scikit-learn's StratifiedGroupKFold: big and class-pure groups first, each to
    the part where the spread of per-class shares across parts grows least (ties: smaller part).
    """
    import numpy as np

    classes = sorted({c for counts in groups.values() for c in counts})
    names = sorted(groups)
    rng.shuffle(names)
    vectors = {g: np.array([groups[g].get(c, 0) for c in classes], float) for g in names}
    totals = np.maximum(sum(vectors.values()), 1.0)
    names.sort(key=lambda g: (-vectors[g].sum(), -float(np.std(vectors[g] / totals))))
    per_part = np.zeros((k, len(classes)))
    parts: list[list[str]] = [[] for _ in range(k)]
    for g in names:
        costs = []
        for i in range(k):
            trial = per_part.copy()
            trial[i] += vectors[g]
            costs.append((float(np.mean(np.std(trial / totals, axis=0))), trial[i].sum(), i))
        best = min(costs)[2]
        per_part[best] += vectors[g]
        parts[best].append(g)
    return parts


def video_disjoint_folds(
    clips: Sequence[tuple[str, str, str]],
    *,
    n_folds: int = 5,
    val_fraction: float = 0.2,
    seed: int = 0,
    protocol: str = VIDEO_DISJOINT,
) -> list[dict]:
    """Split rows from ``(clip_id, label, source_video)``; no video is in two roles of a fold."""
    if not 0 < val_fraction < 1:
        raise DataCardError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    groups: dict[str, dict[str, int]] = {}
    members: dict[str, list[str]] = {}
    for clip_id, label, video in clips:
        groups.setdefault(video, {}).setdefault(label, 0)
        groups[video][label] += 1
        members.setdefault(video, []).append(clip_id)
    inner = max(2, round(1 / val_fraction))
    if len(groups) < n_folds + inner - 1:
        raise DataCardError(
            f"{len(groups)} source videos are too few for {n_folds} video-disjoint folds with a "
            f"validation split; lower --folds (or raise --val-fraction)"
        )
    test_parts = _assign_groups(groups, n_folds, random.Random(seed))
    rows = []
    for fold, test_videos in enumerate(test_parts):
        rest = {v: groups[v] for v in groups if v not in set(test_videos)}
        val_videos = set(_assign_groups(rest, inner, random.Random(seed * 1000 + fold + 1))[0])
        if not val_videos:
            raise DataCardError(f"fold {fold} has no videos left for validation; lower --folds")
        for video in sorted(groups):
            role = "test" if video in test_videos else "val" if video in val_videos else "train"
            rows.extend(
                {"clip_id": c, "protocol": protocol, "fold": fold, "role": role}
                for c in sorted(members[video])
            )
    return rows


@dataclass(frozen=True)
class Leak:
    """Source videos (and clips) found on both sides of one split."""

    protocol: str
    fold: int
    roles: tuple[str, str]
    videos: tuple[str, ...]
    clips: tuple[str, ...]

    def describe(self) -> str:
        what = []
        if self.videos:
            shown = ", ".join(self.videos[:5]) + (" ..." if len(self.videos) > 5 else "")
            what.append(f"{len(self.videos)} source video(s) ({shown})")
        if self.clips:
            what.append(f"{len(self.clips)} clip(s)")
        sides = f"{self.roles[0]} and {self.roles[1]}"
        return f"{self.protocol} fold {self.fold}: {' and '.join(what)} in both {sides}"


def _frames(manifest, splits):
    if isinstance(manifest, (str, Path)) and splits is None:
        folder = Path(manifest)
        return read_manifest(folder / MANIFEST_FILE), read_splits(folder / SPLITS_FILE)
    manifest = read_manifest(manifest) if isinstance(manifest, (str, Path)) else manifest
    splits = read_splits(splits) if isinstance(splits, (str, Path)) else splits
    return manifest, splits


def find_leakage(
    manifest, splits=None, *, protocol: str | None = None, group_column: str = "source_video"
) -> list[Leak]:
    """Every leak in the splits; ``manifest``: DataFrame, manifest path or prepared folder."""
    manifest, splits = _frames(manifest, splits)
    if group_column not in manifest.columns:
        raise DataCardError(
            f"the manifest has no {group_column!r} column, so leakage cannot be checked"
        )
    video_of = dict(zip(manifest["clip_id"], manifest[group_column]))
    if protocol is not None:
        if protocol not in set(splits["protocol"]):
            raise DataCardError(
                f"no protocol {protocol!r} in the splits; have {sorted(set(splits['protocol']))}"
            )
        splits = splits[splits["protocol"] == protocol]
    leaks = []
    for (name, fold), part in splits.groupby(["protocol", "fold"], sort=True):
        clips = {
            role: set(part.loc[part["role"] == role, "clip_id"])
            for role in ("train", "val", "test")
        }
        for a, b in _ROLE_PAIRS:
            shared_clips = clips[a] & clips[b]
            videos_a = {video_of.get(c) for c in clips[a]} - {None}
            videos_b = {video_of.get(c) for c in clips[b]} - {None}
            shared_videos = videos_a & videos_b
            if shared_clips or shared_videos:
                leaks.append(
                    Leak(
                        name,
                        int(fold),
                        (a, b),
                        tuple(sorted(map(str, shared_videos))),
                        tuple(sorted(shared_clips)),
                    )
                )
    return leaks


def check_leakage(
    manifest, splits=None, *, protocol: str | None = None, group_column: str = "source_video"
) -> None:
    """Raise ``LeakageError`` naming every fold where a source video is on both sides of a split."""
    leaks = find_leakage(manifest, splits, protocol=protocol, group_column=group_column)
    if leaks:
        raise LeakageError(
            f"{len(leaks)} leaking split(s):\n  "
            + "\n  ".join(leak.describe() for leak in leaks)
            + "\nUse a video-disjoint protocol (cer data prepare cexprdb writes one: "
            f"'{VIDEO_DISJOINT}') for results that generalise to unseen videos."
        )
