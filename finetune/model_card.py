"""Make a run's ``adapter/`` folder usable on its own: label names, a base model that resolves, a
model card, and no second copy of the weights in ``checkpoints/``.

``adapter/config.json`` (classify mode) carries ``id2label``/``label2id``;
``adapter_config.json``'s ``base_model_name_or_path`` is the Hub name, or the absolute folder the
weights were read from (a bundled ``bundled-*`` name resolved on this machine; the card and
``RUN/config.yaml`` keep the short name, which resolves on any machine with the package);
``README.md`` says what the model is for, what it was trained on, how it scored and which
command made it. Checkpoints exist to resume an interrupted run; once the run is finished they
only duplicate ``adapter/``, so they are removed.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig

SPLITS = ("train", "val", "test")


def base_model_reference(config: FinetuneConfig) -> str:
    """What ``base_model_name_or_path`` should say: a Hub name as given, a folder as an
    absolute path (so the adapter loads from any working directory)."""
    from cer.bundled import resolve_model_name

    path = resolve_model_name(config.model)[0]
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else path


def complete_adapter(
    folder: Path, config: FinetuneConfig, labels: tuple[str, ...], model: Any
) -> None:
    """Label names into ``config.json`` (classify) and a resolvable base into
    ``adapter_config.json``; called right after the trainer saved the folder."""
    adapter_config = folder / "adapter_config.json"
    if adapter_config.is_file():
        values = json.loads(adapter_config.read_text(encoding="utf-8"))
        values["base_model_name_or_path"] = base_model_reference(config)
        adapter_config.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
        if config.mode == "classify":
            base_config = getattr(model, "config", None)
            if base_config is not None:
                base_config.id2label = dict(enumerate(labels))
                base_config.label2id = {name: i for i, name in enumerate(labels)}
                base_config.save_pretrained(folder)  # head size and names for any loader


def invoking_command() -> str | None:
    """The ``cer`` command line of this process, if it was started as ``cer``."""
    program = Path(sys.argv[0]).name if sys.argv else ""
    if program in ("cer", "__main__.py", "cli.py") and len(sys.argv) > 1:
        return shlex.join(["cer", *sys.argv[1:]])
    return None


def write_model_card(
    folder: Path,
    config: FinetuneConfig,
    labels: tuple[str, ...],
    split_sizes: dict[str, int],
    metrics: dict[str, Any],
    summary: dict[str, Any],
) -> Path:
    """``folder/README.md``: model, labels, data, metrics and the command, in plain Markdown."""
    run_dir = folder.parent
    base = base_model_reference(config)
    lines = [
        "---",
        f"base_model: {base}",
        "library_name: " + ("peft" if config.method != "full" else "transformers"),
        "tags: [emotion-recognition, cer]",
        "---",
        "",
        f"# {run_dir.name}: emotion classifier on textualized prompts",
        "",
        (
            f"Trained by `cer finetune train` ({config.mode} mode, {config.method}) on prompts that "
            "describe a clip's face, voice and words in text."
        ),
        "",
        "## Model",
        "",
        f"- base model: `{config.model}`" + (f" (`{base}`)" if base != config.model else ""),
        f"- method: {config.method}; mode: {config.mode}; max_length: {config.max_length}",
        (
            "- load: `cer finetune predict RUN PROMPTS`; in Python: `PeftModel.from_pretrained("
            "AutoModelForSequenceClassification.from_pretrained(base, config=AutoConfig."
            "from_pretrained(adapter)), adapter)`, base as in `adapter_config.json`"
        ),
        "",
        "## Labels",
        "",
        ", ".join(f"{i}: {name}" for i, name in enumerate(labels)),
        "",
        "## Data",
        "",
        (
            f"- prompts: `{config.prompts}` (text column `{config.text_column}`, label column "
            f"`{config.label_column}`)"
        ),
    ]
    if config.splits:
        fold = ", ".join(str(f) for f in config.folds) or "all"
        lines.append(f"- splits: `{config.splits}`, protocol {config.protocol}, fold {fold}")
    lines.append(
        "- rows: " + ", ".join(f"{s} {split_sizes[s]}" for s in SPLITS if s in split_sizes)
    )
    lines += ["", "## Metrics", ""]
    if metrics:
        lines += [
            "| split | examples | accuracy | macro F1 | weighted F1 |",
            "|---|---|---|---|---|",
        ]
        for split, levels in sorted(metrics.items()):
            rows = levels.get("rows", {})
            lines.append(
                f"| {split} | {rows.get('examples', '')} | {rows.get('accuracy', 0):.3f} | "
                f"{rows.get('macro_f1', 0):.3f} | {rows.get('weighted_f1', 0):.3f} |"
            )
    else:
        lines.append("No labelled val/test rows: no metrics.")
    lines += [
        "",
        (
            f"Seed {summary.get('seed')}; {summary.get('global_step', 0)} optimizer steps in "
            f"{summary.get('train_seconds', 0):.0f} s. Per-class scores: `../metrics.json`."
        ),
        "",
        "## Command",
        "",
        "```",
        invoking_command() or "(called from Python: finetune.runner.run_finetune)",
        f"# to retrain exactly this run: cer finetune train --config {run_dir / 'config.yaml'}",
        "```",
        "",
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def drop_checkpoints(run_dir: Path) -> None:
    """Remove ``checkpoints/`` of a finished run: ``adapter/`` holds the selected weights."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
