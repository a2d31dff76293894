"""Face and audio features of a ``cer textualize`` run, read from its cache clip by clip.

Every row (a clip or a window of it) gets its span cut out of the clip's tracks; face frames and
audio frames are averaged onto the same time grid (``align_to_grid``), so a 5-fps face track and
a 100-fps LLD track share steps by time. Stages the cache lacks are reported and left missing.
With an image encoder, the face crops located by the face stage are embedded frame by frame
(``ImageEncoder``, or a seed system's video encoder: ``released_encoders``) and join the visual
frames on the same grid.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from featurebaseline.config import BaselineConfig
from featurebaseline.features import FACE_COLUMNS, FeatureError, ModalityFeatures, align_to_grid
from textualize.records import OK

if TYPE_CHECKING:
    import pandas as pd

    from textualize.records import ClipDescriptors

log = logging.getLogger(__name__)


def _number(value) -> float | None:
    return None if value is None or not np.isfinite(float(value)) else float(value)


def _span(row: dict) -> tuple[float, float]:
    """The row's [start, end) in seconds from its clip's start; empty for an unreadable clip."""
    offset = _number(row.get("clip_start")) or 0.0
    start, end = _number(row.get("start")), _number(row.get("end"))
    if start is None or end is None:
        return 0.0, 0.0
    return start - offset, end - offset


def _face_table(desc: ClipDescriptors) -> np.ndarray | None:
    if desc.face is None or desc.status_of("face").status != OK:
        return None
    frames = desc.face.frames[desc.face.frames["face"].astype(bool)]
    return frames[["time", *FACE_COLUMNS]].to_numpy(np.float64)


def _audio_tables(desc: ClipDescriptors, encoder) -> list[np.ndarray] | None:
    if desc.prosody is None or desc.status_of("prosody").status != OK:
        return None
    lld = desc.prosody.lld
    tables = [lld[["time", *[c for c in lld.columns if c != "time"]]].to_numpy(np.float64)]
    if encoder is not None:
        tables.append(encoder.frames(desc.clip, desc.content_hash).astype(np.float64))
    return tables


def _functionals(table: np.ndarray, begin: float, end: float) -> np.ndarray:
    inside = table[(table[:, 0] >= begin) & (table[:, 0] < end), 1:]
    if not len(inside):
        return np.full(2 * (table.shape[1] - 1), np.nan)
    with warnings.catch_warnings():  # AUs a source cannot measure are all-NaN columns
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.concatenate([np.nanmean(inside, 0), np.nanstd(inside, 0)])


def clip_sequences(
    source: Path, rows: pd.DataFrame, wanted: list[str], config: BaselineConfig, cache
) -> dict[str, ModalityFeatures]:
    """Visual and/or audio features of every row, from the run's cached stage results."""
    from textualize.cache import StageCache
    from textualize.extract import read_cached
    from textualize.pipeline import load_run

    if config.temporal == "none" and not config.functionals:
        raise FeatureError("temporal none and functionals false leave no feature; enable one")
    run_cfg, plan, clips = load_run(source)
    by_id = {c.clip_id: c for c in clips}
    stage_cache = StageCache(run_cfg.cache_dir)
    encoder = image = None
    if "audio" in wanted and config.audio_encoder:
        from featurebaseline.released_encoders import audio_encoder

        encoder = audio_encoder(config.audio_encoder, cache)  # HF model, hicmae: or vaemo:
    if "visual" in wanted and config.image_encoder:
        from featurebaseline.released_encoders import image_encoder

        image = image_encoder(config.image_encoder, cache)
    boxless: set[str] = set()  # clips whose face track predates face boxes
    step, steps = 1.0 / config.grid_hz, config.max_steps
    n = len(rows)
    out: dict[str, dict] = {
        m: {"present": np.zeros(n, bool), "seq": [], "mask": [], "vec": []} for m in wanted
    }
    described: dict[str, ClipDescriptors] = {}
    lld_columns: list[str] = []
    functional_names: list[str] = []
    uncached = 0
    for i, row in enumerate(rows.to_dict("records")):
        clip_id = str(row["clip_id"])
        if clip_id not in described:
            desc = read_cached(by_id[clip_id], run_cfg, plan, stage_cache)
            uncached += any("not cached" in s.reason for s in desc.status.values())
            described = {clip_id: desc}  # windows of a clip are consecutive rows
        desc = described[clip_id]
        begin, end = _span(row)
        for modality in wanted:
            if modality == "visual":
                table = _face_table(desc)
                tables = None if table is None else [table]
                if tables and image is not None:
                    if not desc.face.has_boxes:
                        boxless.add(clip_id)
                    crops = image.frames(desc.clip, desc.content_hash, desc.face, run_cfg.fps)
                    tables.append(crops.astype(np.float64))
            else:
                tables = _audio_tables(desc, encoder)
                if tables and not lld_columns:
                    lld_columns = [c for c in desc.prosody.lld.columns if c != "time"]
                    functional_names = sorted(desc.prosody.functionals)
            slot = out[modality]
            if tables is None:
                slot["seq"].append(None)
                slot["mask"].append(np.zeros(steps, bool))
                slot["vec"].append(None)
                continue
            aligned = [align_to_grid(t, begin, end, step, steps) for t in tables]
            mask = np.logical_or.reduce([m for _, m in aligned])
            slot["seq"].append(np.concatenate([v for v, _ in aligned], axis=1))
            slot["mask"].append(mask)
            if modality == "visual":
                vector = _functionals(tables[0], begin, end)
            else:
                vector = np.array(
                    [desc.prosody.functionals.get(k, np.nan) for k in functional_names], np.float64
                )
            slot["vec"].append(vector)
            slot["present"][i] = bool(mask.any())
    if boxless:
        log.warning(
            "%d face track(s) have no face boxes (cached by an older face stage, or imported "
            "tables): no image embeddings for them; textualize again with a new cache_dir",
            len(boxless),
        )
    if uncached:
        log.warning(
            "%d clip(s) lack cached stages; run `cer textualize` on %s again to fill the "
            "cache (they are treated as missing modalities)",
            uncached,
            source,
        )
    return {m: _stack(out[m], m, config, lld_columns, functional_names) for m in wanted}


def _stack(
    slot: dict,
    modality: str,
    config: BaselineConfig,
    lld_columns: list[str],
    functional_names: list[str],
) -> ModalityFeatures:
    present = slot["present"]
    if not present.any():
        raise FeatureError(
            f"no example has the {modality} modality in the cache (face off, or "
            f"no audio?); drop {'V' if modality == 'visual' else 'A'} from "
            "--modalities or textualize with it"
        )
    first = next(s for s in slot["seq"] if s is not None)
    vec_width = len(next(v for v in slot["vec"] if v is not None))
    sequence = np.stack([np.zeros_like(first) if s is None else s for s in slot["seq"]])
    steps = np.stack(slot["mask"])
    vectors = np.stack([np.full(vec_width, np.nan) if v is None else v for v in slot["vec"]])
    vectors = np.nan_to_num(vectors.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if modality == "visual":
        extra = sequence.shape[-1] - len(FACE_COLUMNS)
        seq_cols = (*FACE_COLUMNS, *(f"image_{j}" for j in range(extra)))
        vec_cols = tuple(f"{c}_{s}" for s in ("mean", "std") for c in FACE_COLUMNS)
    else:
        extra = sequence.shape[-1] - len(lld_columns)
        seq_cols = (*lld_columns, *(f"encoder_{j}" for j in range(extra)))
        vec_cols = tuple(functional_names)
    keep_seq = config.temporal != "none"
    return ModalityFeatures(
        present,
        sequence=sequence.astype(np.float32) if keep_seq else None,
        steps=steps if keep_seq else None,
        vector=vectors if config.functionals else None,
        sequence_columns=tuple(seq_cols) if keep_seq else (),
        vector_columns=vec_cols if config.functionals else (),
    )
