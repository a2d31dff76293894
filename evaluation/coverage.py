"""Modality coverage: on how many rows each modality a model uses was present, absent or missing.

A score says nothing about a modality the model never saw. ``cer textualize`` gives every row a
status per modality (``face_status``, ``prosody_status``, ``transcript_status``; values in
``textualize.records``), and ``modality_coverage`` counts them for the modalities a model uses,
by letter: T (text), V (face), A (voice). Finetune and baseline runs record the counts in
``summary.json`` (``coverage``, per split), studies check them before training an arm, and the
study report shows them. Three groups matter when reading a result:

* present (``ok``): the model saw the modality;
* absent (``absent``, ``no_stream``): the clip has none: no face in view, no speech, no video or
  audio track. A real property of the data;
* missing (``unavailable``, ``disabled``, ``failed``): the toolkit did not look: a model is not
  installed, the modality was turned off, or extraction failed. The result is silent about it.

Counts use the status names themselves, plus ``unknown`` for rows without a status (a table made
elsewhere).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textualize.records import ABSENT, DISABLED, FAILED, NO_STREAM, OK, UNAVAILABLE

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

#: Modality letter -> the textualize modality whose status column says whether it is there.
STATUS_OF = {"T": "transcript", "V": "face", "A": "prosody"}
#: Modality letter -> the word a reader knows it by.
NAMES = {"T": "text", "V": "face", "A": "voice"}
UNKNOWN = "unknown"
STATUSES = (OK, ABSENT, NO_STREAM, UNAVAILABLE, DISABLED, FAILED, UNKNOWN)
ABSENT_STATUSES = (ABSENT, NO_STREAM)
MISSING_STATUSES = (UNAVAILABLE, DISABLED, FAILED)
#: A modality missing on more than this share of rows is reported as not seen by the model.
MOSTLY_MISSING = 0.5

FACE_FIX = (
    "install py-feat's face weights (README, 'Face weights (py-feat)': the `hf download` "
    "commands its error message prints) or import precomputed py-feat/OpenFace CSVs with the "
    "textualize option `face_tables` (a folder of <clip_id>.csv)"
)


@dataclass(frozen=True)
class ModalityCoverage:
    """One modality over a set of rows: rows per status and the commonest reason of each."""

    letter: str
    rows: int
    clips: int
    counts: dict[str, int]  # every status of STATUSES, zeros included
    reasons: dict[str, str]  # status -> its most common reason, for statuses other than ok

    @property
    def name(self) -> str:
        return NAMES.get(self.letter, self.letter)

    @property
    def unit(self) -> str:
        """What a row is: ``clips``, or ``windows`` when clips were cut into several."""
        return "clips" if self.rows == self.clips else "windows"

    @property
    def present(self) -> int:
        return self.counts.get(OK, 0)

    @property
    def absent(self) -> int:
        return sum(self.counts.get(s, 0) for s in ABSENT_STATUSES)

    @property
    def missing(self) -> int:
        return sum(self.counts.get(s, 0) for s in MISSING_STATUSES)

    @property
    def mostly_missing(self) -> bool:
        return self.rows > 0 and self.missing > MOSTLY_MISSING * self.rows

    @property
    def mostly_not_present(self) -> bool:
        """Present on at most half the rows: the score is mostly about the other modalities."""
        return self.rows > 0 and self.present <= MOSTLY_MISSING * self.rows

    @property
    def main_gap(self) -> str | None:
        """The commonest status other than ok, or None when the modality is present everywhere."""
        gaps = {s: n for s, n in self.counts.items() if s != OK and n}
        return max(gaps, key=gaps.get) if gaps else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.name,
            "rows": self.rows,
            "clips": self.clips,
            **self.counts,
            "reasons": self.reasons,
        }

    @classmethod
    def from_dict(cls, letter: str, values: Mapping[str, Any]) -> ModalityCoverage:
        return cls(
            letter=letter,
            rows=int(values.get("rows", 0)),
            clips=int(values.get("clips", values.get("rows", 0))),
            counts={s: int(values.get(s, 0)) for s in STATUSES},
            reasons=dict(values.get("reasons") or {}),
        )

    def describe(self, unit: str | None = None) -> str:
        """E.g. ``V (face): present on 0 of 32 clips, unavailable on 32 (<the reason>)``."""
        unit = unit or self.unit
        text = f"{self.letter} ({self.name}): present on {self.present} of {self.rows} {unit}"
        for status in STATUSES[1:]:
            if self.counts.get(status):
                reason = self.reasons.get(status)
                text += f", {status} on {self.counts[status]}" + (f" ({reason})" if reason else "")
        return text


def prompt_modalities(rows: pd.DataFrame) -> str:
    """The modality letters a prompts table was rendered with (its ``modalities`` column)."""
    if "modalities" not in rows:
        return ""
    letters = set("".join(rows["modalities"].dropna().astype(str)).upper())
    return "".join(k for k in STATUS_OF if k in letters)


def modality_coverage(
    rows: pd.DataFrame,
    modalities: str,
    *,
    present: Mapping[str, np.ndarray] | None = None,
) -> dict[str, ModalityCoverage]:
    """Coverage of each modality letter in ``modalities`` (T, V, A order) over ``rows``.

    Statuses come from the rows' ``<modality>_status`` columns (reasons from ``_reason``). Text
    counts as present on a row whose ``transcript`` column holds words, whatever their source
    (gold text leaves the transcript stage ``disabled``). ``present`` (letter -> bool per row)
    overrides presence with what a model's inputs actually hold: a row it marks False whose
    status says ok counts as ``absent``.
    """
    out = {}
    clips = int(rows["clip_id"].nunique()) if "clip_id" in rows else len(rows)
    for letter in (k for k in STATUS_OF if k in modalities.upper()):
        status, reason = _statuses(rows, letter)
        if present is not None and letter in present:
            seen = _series(present[letter], rows.index).astype(bool)
            reason = reason.where(seen | (status != OK), "no usable features")
            status = status.where(~seen, OK).where(seen | (status != OK), ABSENT)
        counts = {s: int((status == s).sum()) for s in STATUSES}
        counts[UNKNOWN] += int((~status.isin(STATUSES)).sum())
        reasons = {
            s: str(reason[(status == s) & (reason != "")].value_counts().index[0])
            for s in STATUSES[1:]
            if ((status == s) & (reason != "")).any()
        }
        out[letter] = ModalityCoverage(letter, len(rows), clips, counts, reasons)
    return out


def split_coverage(
    rows: pd.DataFrame, modalities: str, *, present: Mapping[str, np.ndarray] | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``coverage`` block of a run's ``summary.json``: split -> letter -> counts."""
    block = {}
    splits = rows["split"].fillna("none").astype(str) if "split" in rows else None
    for split in sorted(splits.unique()) if splits is not None else ["all"]:
        mask = (splits == split).to_numpy() if splits is not None else slice(None)
        chosen = None if present is None else {k: v[mask] for k, v in present.items()}
        coverage = modality_coverage(rows[mask], modalities, present=chosen)
        block[split] = {letter: c.to_dict() for letter, c in coverage.items()}
    return block


def run_coverage(
    rows: pd.DataFrame, modalities: str, *, present: Mapping[str, np.ndarray] | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """``split_coverage`` of one training run, with a warning for every modality that its
    evaluation split (test, else val) mostly lacks. ``cer finetune train`` and ``cer baseline
    train`` warn and go on (the user chose the table); a study refuses such an arm instead."""
    block = split_coverage(rows, modalities, present=present)
    split = next((s for s in ("test", "val") if s in block), None)
    for letter, values in (block.get(split) or {}).items():
        coverage = ModalityCoverage.from_dict(letter, values)
        if coverage.mostly_missing:
            log.warning(
                "coverage: %s; this run's scores say nothing about the %s (to get it: %s)",
                coverage.describe(f"{split} rows"),
                coverage.name,
                missing_fix(coverage),
            )
    return block


def read_statuses(source: str | Path) -> pd.DataFrame:
    """The id, status and reason columns (and the shown transcript) of a prompts table: a
    ``cer textualize`` output folder, or a ``.parquet``/``.csv`` table."""
    import pandas as pd

    path = Path(source)
    path = path / "prompts.parquet" if path.is_dir() else path
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        return pd.read_parquet(path, columns=[c for c in names if _status_related(c)])
    frame = pd.read_csv(path)
    return frame[[c for c in frame.columns if _status_related(c)]]


def with_statuses(rows: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (with ``unit_id``) joined with the status columns ``table`` holds for them."""
    key = "unit_id" if "unit_id" in table else "clip_id"
    extra = [c for c in table.columns if c not in rows.columns or c == key]
    if key not in rows or key not in table or len(extra) < 2:
        return rows
    found = table[extra].drop_duplicates(key).astype({key: str})
    joined = rows.assign(**{key: rows[key].astype(str)}).merge(found, on=key, how="left")
    return joined.set_axis(rows.index)


def read_coverage(block: Mapping[str, Any] | None, split: str) -> dict[str, ModalityCoverage]:
    """One split of a ``summary.json`` coverage block (empty when the run recorded none)."""
    values = (block or {}).get(split) or {}
    return {letter: ModalityCoverage.from_dict(letter, v) for letter, v in values.items()}


def combine(coverages: Iterable[Mapping[str, ModalityCoverage]]) -> dict[str, ModalityCoverage]:
    """Counts summed over several row sets (e.g. the test folds of a cross-validation)."""
    out: dict[str, ModalityCoverage] = {}
    for coverage in coverages:
        for letter, c in coverage.items():
            if letter not in out:
                out[letter] = c
                continue
            old = out[letter]
            out[letter] = ModalityCoverage(
                letter,
                old.rows + c.rows,
                old.clips + c.clips,
                {s: old.counts.get(s, 0) + c.counts.get(s, 0) for s in STATUSES},
                {**c.reasons, **old.reasons},
            )
    return {k: out[k] for k in STATUS_OF if k in out}


def missing_cause(coverage: ModalityCoverage) -> str:
    """Why a modality is missing and how to get it, in words."""
    gap = coverage.main_gap
    defaults = {UNAVAILABLE: "its model is not installed", DISABLED: "turned off"}
    reason = coverage.reasons.get(gap or "") or defaults.get(gap or "", str(gap))
    return f"{reason}: {missing_fix(coverage)}"


def missing_fix(coverage: ModalityCoverage) -> str:
    """How to get a missing modality extracted."""
    gap = coverage.main_gap
    if gap == UNAVAILABLE and coverage.letter == "V":
        return FACE_FIX
    if gap == UNAVAILABLE:
        return "install its model (the reason column of the prompts names it)"
    if gap == DISABLED:
        return "turn it on in the textualize settings"
    if gap == FAILED:
        return "see failures.jsonl beside the prompts"
    return "check the prompts' status columns"


def _status_related(column: str) -> bool:
    return column in ("clip_id", "unit_id", "transcript", "transcript_source") or column.endswith(
        ("_status", "_reason")
    )


def _statuses(rows: pd.DataFrame, letter: str) -> tuple[pd.Series, pd.Series]:
    import pandas as pd

    modality = STATUS_OF[letter]
    column, why = f"{modality}_status", f"{modality}_reason"
    status = (
        rows[column].fillna(UNKNOWN).astype(str)
        if column in rows
        else pd.Series(UNKNOWN, index=rows.index, dtype=object)
    )
    reason = rows[why].fillna("").astype(str) if why in rows else pd.Series("", index=rows.index)
    if letter == "T" and "transcript" in rows:
        said = rows["transcript"].fillna("").astype(str).str.strip() != ""
        gold = (
            rows["transcript_source"].astype(str) == "gold"
            if "transcript_source" in rows
            else pd.Series(False, index=rows.index)
        )
        # no words: the dataset gave none (gold) or the transcriber heard none despite "ok"
        silent = ~said & (gold | (status == OK))
        reason = reason.where(~silent, "no words").where(~said, "")
        status = status.where(~said, OK).where(~silent, ABSENT)
    return status, reason


def _series(values, index) -> pd.Series:
    import numpy as np
    import pandas as pd

    return pd.Series(np.asarray(values), index=index)
