"""Assemble model inputs from what ``cer textualize`` cached: time-aligned sequences, functionals.

Per example (a clip, or a window of one) and modality there are up to two inputs:

* a frame sequence on a common time grid: face frames (AUs + emotions, only frames with a face,
  plus face-crop image embeddings when configured) and openSMILE LLD frames (plus speech-encoder
  frames when configured) are each averaged into grid cells by their ``time`` column, so two
  streams of different rates land on the same steps. A cell without any frame is masked out,
  never zero-filled as if it were data. Text may have a sequence too: its token states
  (``text_pooling`` tokens/both), masked past each text's last token;
* an utterance-level vector: eGeMAPS functionals, face mean/std, a sentence embedding.

A modality that is missing for an example (no face, silence, no words) has ``present`` False.
Nothing is re-extracted: stage results are read with ``textualize.extract.read_cached``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from featurebaseline.config import BaselineConfig
from textualize.records import AU_COLUMNS, EMOTION_COLUMNS, OK

if TYPE_CHECKING:
    import pandas as pd

FACE_COLUMNS = (*AU_COLUMNS, *EMOTION_COLUMNS)
ROW_COLUMNS = ("clip_id", "unit_id", "split", "label")


class FeatureError(ValueError):
    """Features cannot be assembled as configured; the message says what to change."""


@dataclass(frozen=True)
class ModalityFeatures:
    """One modality of N examples. Masked entries hold 0 and must be read through the masks."""

    present: np.ndarray  # (N,) bool: the modality exists for the example
    sequence: np.ndarray | None = None  # (N, T, D) float32 on the common grid
    steps: np.ndarray | None = None  # (N, T) bool: grid cell holds at least one frame
    vector: np.ndarray | None = None  # (N, E) float32 utterance-level features
    sequence_columns: tuple[str, ...] = ()
    vector_columns: tuple[str, ...] = ()

    def take(self, index: np.ndarray) -> ModalityFeatures:
        pick = lambda a: None if a is None else a[index]
        return replace(
            self,
            present=self.present[index],
            sequence=pick(self.sequence),
            steps=pick(self.steps),
            vector=pick(self.vector),
        )

    @property
    def dims(self) -> dict[str, int]:
        return {
            "sequence": 0 if self.sequence is None else int(self.sequence.shape[-1]),
            "vector": 0 if self.vector is None else int(self.vector.shape[-1]),
        }


@dataclass(frozen=True)
class FeatureSet:
    """Rows (clip_id, unit_id, split, label) and per-modality features, in the same order."""

    rows: pd.DataFrame
    modalities: dict[str, ModalityFeatures]
    step_seconds: float  # the finest grid step (longer spans use coarser steps)

    def take(self, index) -> FeatureSet:
        index = np.asarray(index)
        return FeatureSet(
            self.rows.iloc[index].reset_index(drop=True),
            {k: m.take(index) for k, m in self.modalities.items()},
            self.step_seconds,
        )

    def dims(self) -> dict[str, dict[str, int]]:
        return {name: m.dims for name, m in self.modalities.items()}

    def digest(self) -> str:
        """Content digest of the rows (ids, splits, labels) and every feature array: what a run
        trained on these features records in its fingerprint."""
        import hashlib

        import pandas as pd

        hasher = hashlib.blake2b(digest_size=8)
        hasher.update(",".join(map(str, self.rows.columns)).encode())
        hasher.update(pd.util.hash_pandas_object(self.rows.astype(str), index=False).to_numpy())
        for name in sorted(self.modalities):
            m = self.modalities[name]
            hasher.update(f"{name}:{m.sequence_columns}:{m.vector_columns}".encode())
            for array in (m.present, m.sequence, m.steps, m.vector):
                if array is not None:
                    hasher.update(f"{array.dtype}{array.shape}".encode())
                    hasher.update(np.ascontiguousarray(array).tobytes())
        hasher.update(f"{self.step_seconds}".encode())
        return hasher.hexdigest()

    def __len__(self) -> int:
        return len(self.rows)


def align_to_grid(
    table: np.ndarray, begin: float, end: float, step_seconds: float, max_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Average frames (column 0 = time in s) into grid cells over [begin, end), by time.

    Returns ``(values (max_steps, D), mask (max_steps,))``. The grid has ``step_seconds`` cells,
    made coarser when the span would need more than ``max_steps``; NaN values do not count.
    """
    width = table.shape[1] - 1
    values = np.zeros((max_steps, width), np.float32)
    counts = np.zeros((max_steps, width), np.float32)
    span = max(end - begin, 1e-6)
    step = max(step_seconds, span / max_steps)
    used = min(max_steps, int(np.ceil(span / step - 1e-9)))
    if len(table):
        # a frame exactly on a cell boundary belongs to the later cell, whatever the rounding
        cell = np.floor((table[:, 0] - begin) / step + 1e-6).astype(int)
        inside = (cell >= 0) & (cell < used)
        data = table[inside, 1:]
        finite = np.isfinite(data)
        np.add.at(values, cell[inside], np.where(finite, data, 0.0))
        np.add.at(counts, cell[inside], finite.astype(np.float32))
    mask = counts.sum(axis=1) > 0
    values = np.divide(values, counts, out=np.zeros_like(values), where=counts > 0)
    return values, mask


def _rows(frame: pd.DataFrame, label_column: str, labels_required: bool = True) -> pd.DataFrame:
    """Rows with ``label`` (None where unknown), ``unit_id`` and a normalised ``split``."""
    if label_column not in frame.columns and labels_required:
        raise FeatureError(
            f"table lacks the label column {label_column!r}; it has "
            f"{list(frame.columns)[:12]} ... (set --label-column)"
        )
    if label_column in frame.columns:
        gold = frame[label_column]
        known = gold.notna() & (gold.astype(str).str.strip() != "")
        rows = frame.assign(label=gold.astype(str).where(known, None))
    else:
        rows = frame.assign(label=None)
    if "unit_id" not in rows:
        rows["unit_id"] = rows["clip_id"].astype(str)
    if "split" not in rows:
        rows["split"] = None
    else:
        split = rows["split"]
        normal = (
            split.astype(str)
            .str.lower()
            .replace({"dev": "val", "valid": "val", "validation": "val"})
        )
        rows["split"] = normal.where(split.notna(), None)
    return rows.reset_index(drop=True)


def _texts(rows: pd.DataFrame, source: str) -> list[str]:
    def col(name):
        return rows[name].fillna("").astype(str) if name in rows else None

    gold, heard = col("gold_text"), col("transcript")
    if source == "gold" or (source == "auto" and heard is None):
        chosen = gold
    elif source == "transcript" or gold is None:
        chosen = heard
    else:
        chosen = gold.where(gold.str.strip() != "", heard)
    if chosen is None:
        raise FeatureError(
            f"text_source {source!r} needs a gold_text or transcript column; "
            "drop T from --modalities or add the column"
        )
    return chosen.str.strip().tolist()


def text_features(rows: pd.DataFrame, config: BaselineConfig, cache) -> ModalityFeatures:
    """Sentence vectors and/or token-state sequences (``config.text_pooling``) of every row."""
    from featurebaseline.encoders import TextEncoder

    texts = _texts(rows, config.text_source)
    present = np.array([bool(t) for t in texts])
    said = [t for t in texts if t]
    encoder = TextEncoder(config.text_encoder, cache)
    vector = sequence = steps = None
    if config.text_pooling in ("mean", "both"):
        vectors = encoder.encode(said)
        vector = np.zeros((len(texts), vectors.shape[1] if len(vectors) else 1), np.float32)
        vector[present] = vectors
    if config.text_pooling in ("tokens", "both") and config.temporal != "none":
        sequence, steps = _pad_tokens(encoder.encode_tokens(said), present, config.text_max_tokens)
    return ModalityFeatures(
        present,
        sequence=sequence,
        steps=steps,
        vector=vector,
        sequence_columns=_numbered("token", sequence),
        vector_columns=_numbered("text", vector),
    )


def _numbered(kind: str, values: np.ndarray | None) -> tuple[str, ...]:
    return () if values is None else tuple(f"{kind}_{i}" for i in range(values.shape[-1]))


def _pad_tokens(
    tokens: list[np.ndarray], present: np.ndarray, max_tokens: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token states of the present rows -> (N, L, D) zero-padded and (N, L) mask, L <= max."""
    width = tokens[0].shape[1] if tokens else 1
    length = min(max_tokens, max((len(t) for t in tokens), default=1))
    sequence = np.zeros((len(present), length, width), np.float32)
    steps = np.zeros((len(present), length), bool)
    for row, states in zip(np.flatnonzero(present), tokens):
        kept = states[:length]
        sequence[row, : len(kept)] = kept
        steps[row, : len(kept)] = True
    return sequence, steps


def _table_functionals(rows: pd.DataFrame, modality: str) -> ModalityFeatures:
    """Utterance vectors from a prompts table's numeric columns (no frame sequences)."""
    if modality == "audio":
        columns = [c for c in rows.columns if c.startswith("egemaps_")]
        status = rows.get("prosody_status")
    else:
        columns = [f"face_{c}" for c in FACE_COLUMNS if f"face_{c}" in rows.columns]
        status = rows.get("face_status")
    if not columns:
        raise FeatureError(
            f"the table has no {modality} feature columns; drop "
            f"{'A' if modality == 'audio' else 'V'} from --modalities"
        )
    values = rows[columns].to_numpy(np.float32)
    present = np.isfinite(values).any(axis=1)
    if status is not None:
        present &= (status == OK).to_numpy()
    return ModalityFeatures(present, vector=np.nan_to_num(values), vector_columns=tuple(columns))


def _run_cache_dir(source: Path) -> str | None:
    """The cache folder a ``cer textualize`` output folder recorded in its run.json."""
    path = source / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
        return run["config"]["cache_dir"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise FeatureError(
            f"{path} is unreadable or incomplete ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:200]}); run `cer textualize` into that folder again"
        ) from err


def assemble_features(config: BaselineConfig, labels_required: bool = True) -> FeatureSet:
    """Features of every row of ``config.source`` for the configured modalities.

    Rows without a gold label get ``label`` None; with ``labels_required`` (training) a table
    without the label column is an error, while prediction accepts unlabelled prompts.
    """
    import pandas as pd

    from textualize.cache import StageCache

    source = Path(config.source)
    if not config.source or not source.exists():
        raise FeatureError(
            f"source {config.source!r} not found; give a `cer textualize` output "
            "folder or a features table"
        )
    is_run = source.is_dir()
    if is_run and not (source / "run.json").exists():
        raise FeatureError(f"{source} has no run.json: is it a `cer textualize` output folder?")
    run_cache_dir = _run_cache_dir(source) if is_run else None
    table = source / "prompts.parquet" if is_run else source
    try:
        frame = pd.read_parquet(table) if table.suffix == ".parquet" else pd.read_csv(table)
    except Exception as err:  # pyarrow and pandas raise many types for a damaged file
        raise FeatureError(
            f"cannot read the features table {table}: {type(err).__name__}: "
            f"{' '.join(str(err).split())[:300]}; is it a `cer textualize` prompts table?"
        ) from err
    rows = _rows(frame, config.label_column, labels_required)
    cache_dir = config.cache_dir
    if is_run and cache_dir is None:
        cache_dir = run_cache_dir
    if cache_dir is None:
        from textualize.config import TextualizeConfig

        cache_dir = TextualizeConfig().cache_dir
    cache = StageCache(cache_dir)
    modalities: dict[str, ModalityFeatures] = {}
    if "text" in config.modality_names:
        modalities["text"] = text_features(rows, config, cache)
    wanted = [m for m in config.modality_names if m != "text"]
    if wanted and is_run:
        from featurebaseline.sequences import clip_sequences

        modalities.update(clip_sequences(source, rows, wanted, config, cache))
    elif wanted:
        modalities.update({m: _table_functionals(rows, m) for m in wanted})
    keep = [c for c in (*ROW_COLUMNS, "start", "end") if c in rows.columns]
    return FeatureSet(rows[keep], modalities, 1.0 / config.grid_hz)
