"""What ``cer experiment run`` tells the user about arms: a score line as each one finishes,
and a table of every arm at the end (stderr; the report has the full analysis).

Scores are read from what the trainers wrote: ``cv_metrics.json`` (mean and standard deviation
over folds and seeds) or the one run's ``metrics.json``; test split, else val.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from experiments.runner import StudyOutcome
    from experiments.study import StudyConfig


def arm_score(arm_dir: Path) -> dict[str, Any] | None:
    """Headline scores of a finished arm: test (else val) macro F1 and accuracy, as mean and
    standard deviation over its runs (``cv_metrics.json``) or of its one run."""
    cv = arm_dir / "cv_metrics.json"
    if cv.is_file():
        values = json.loads(cv.read_text(encoding="utf-8"))
        split = (values.get("per_run") or [{}])[0].get("split", "test")
        rows = values.get("rows", {})
        if "macro_f1" not in rows:
            return None
        return {
            "split": split,
            "runs": values.get("runs", 0),
            **{k: (rows[k]["mean"], rows[k]["std"]) for k in ("macro_f1", "accuracy")},
        }
    singles = sorted(arm_dir.glob("*/metrics.json"))
    if len(singles) != 1:
        return None
    metrics = json.loads(singles[0].read_text(encoding="utf-8"))
    split = "test" if "test" in metrics else "val"
    rows = metrics.get(split, {}).get("rows", {})
    if "macro_f1" not in rows:
        return None
    return {"split": split, "runs": 1, **{k: (rows[k], 0.0) for k in ("macro_f1", "accuracy")}}


def describe_score(score: dict[str, Any] | None) -> str:
    if score is None:
        return "no scores"
    f1, acc = score["macro_f1"], score["accuracy"]
    spread = f" ± {f1[1]:.3f}" if score["runs"] > 1 else ""
    return (
        f"{score['split']} macro F1 {f1[0]:.3f}{spread}, accuracy {acc[0]:.3f} "
        f"({score['runs']} run{'s' if score['runs'] != 1 else ''})"
    )


def _random(study: StudyConfig, name: str) -> bool:
    """Whether the arm's ``arm.json`` records an encoder with random weights."""
    path = study.study_dir / "arms" / name / "arm.json"
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("random_weights"))
    except (OSError, ValueError, AttributeError):
        return False


def score_table(study: StudyConfig, outcome: StudyOutcome) -> str:
    """Every arm of the study with its status and scores, best macro F1 first."""
    rows = []
    for arm in study.arms:
        result = outcome.arms.get(arm.name)
        status = result.status if result else "not run now"
        score = arm_score(study.study_dir / "arms" / arm.name)
        name = arm.name + (" (random weights)" if _random(study, arm.name) and score else "")
        rows.append((name, arm.kind, arm.modalities, status.split(":")[0], score))
    rows.sort(key=lambda r: -(r[4]["macro_f1"][0] if r[4] else -1.0))
    width = max([len("arm"), *(len(r[0]) for r in rows)])
    lines = [f"{'arm':<{width}}  {'kind':<9} {'mod':<4} {'status':<11} {'macro F1':>15} {'acc':>6}"]
    for name, kind, modalities, status, score in rows:
        f1 = (
            f"{score['macro_f1'][0]:.3f} ± {score['macro_f1'][1]:.3f}"
            if score and score["runs"] > 1
            else (f"{score['macro_f1'][0]:.3f}" if score else "-")
        )
        acc = f"{score['accuracy'][0]:.3f}" if score else "-"
        lines.append(f"{name:<{width}}  {kind:<9} {modalities:<4} {status:<11} {f1:>15} {acc:>6}")
    return "\n".join(lines)
