"""The real arms on the voice alone: MiniLM + LoRA on A-only prompts against the unimodal-A fusion arm.

    python -m benchmarks.bench_ravdess_arms [--prompts runs/bench_ravdess/graded] [--folds 1 2 3 4]

Reads the A-only prompts that ``python -m benchmarks.bench_ravdess_prosody`` wrote with
``cer textualize`` (``PROMPTS/fold<k>/``: train/val/test by actor, the textualizer fitted on the
training actors; fold 4 = actors 01-12 train, 13-16 held out) and trains, on each fold,
``cer finetune`` (MiniLM-L6 + LoRA on the words) and ``cer baseline`` (unimodal-A fusion arm on the
openSMILE features from the same clips' cache), both selecting on the fold's validation actors and
scored on the held-out actors. Writes benchmarks/results/bench_ravdess_arms.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_ravdess_arms.json"

#: MiniLM + LoRA on the words (the MELD recipe with room for ~130-token voice descriptions).
TEXT_ARM = {
    "model": "bundled-minilm",
    "method": "lora",
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_target_modules": ["query", "key", "value", "dense"],
    "max_length": 192,
    "early_stopping_metric": "macro_f1",
    "early_stopping_patience": 0,
    "learning_rate": 1.0e-3,
    "num_train_epochs": 12,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 64,
    "warmup_steps": 0.06,
    "save_total_limit": 1,
    "logging_steps": 50,
}
#: The unimodal-A fusion arm: openSMILE LLD sequences and eGeMAPS functionals.
FUSION_ARM = {"arm": "unimodal", "modalities": "A", "epochs": 60, "patience": 12}


def text_arm(prompts: Path, out: Path, seed: int):
    from featurebaseline.encoders import resolve_model
    from finetune.config import config_from_mapping
    from finetune.runner import run_finetune

    values = {**TEXT_ARM, "model": resolve_model(TEXT_ARM["model"])}
    config = config_from_mapping(
        {
            **values,
            "prompts": str(prompts / "prompts.parquet"),
            "output_dir": str(out),
            "seeds": [seed],
        }
    )
    return run_finetune(config).runs[0]


def fusion_arm(prompts: Path, out: Path, seed: int):
    from featurebaseline.config import BaselineConfig
    from featurebaseline.runner import run_baseline

    config = BaselineConfig(source=str(prompts), output_dir=str(out), seeds=(seed,), **FUSION_ARM)
    return run_baseline(config).runs[0]


def labelled_only(prompts: Path) -> None:
    """Drop rows without a label (the folder's README and labels.csv are rows too)."""
    import pandas as pd

    table = pd.read_parquet(prompts / "prompts.parquet")
    keep = table["label"].notna() & (table["label"].astype(str) != "")
    if not keep.all():
        table[keep].reset_index(drop=True).to_parquet(prompts / "prompts.parquet", index=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=Path, default=ROOT / "runs" / "bench_ravdess" / "graded")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_ravdess_arms")
    parser.add_argument("--folds", type=int, nargs="*", default=[1, 2, 3, 4])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    folds = {}
    for fold in args.folds:
        prompts = args.prompts / f"fold{fold}"
        if not (prompts / "prompts.parquet").is_file():
            raise SystemExit(
                f"{prompts} has no prompts: run python -m benchmarks.bench_ravdess_prosody"
            )
        labelled_only(prompts)
        scores = {}
        for name, train in (("minilm_lora_words", text_arm), ("fusion_unimodal_A", fusion_arm)):
            started = time.perf_counter()
            run = train(prompts, args.out / name / f"fold{fold}", args.seed)
            rows = run.metrics["test"]["rows"]
            scores[name] = {
                "macro_f1": rows["macro_f1"],
                "accuracy": rows["accuracy"],
                "test_clips": rows["examples"],
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(f"fold {fold} {name}: macro F1 {rows['macro_f1']:.3f}", flush=True)
        folds[fold] = scores
    summary = {
        name: sum(f[name]["macro_f1"] for f in folds.values()) / len(folds)
        for name in ("minilm_lora_words", "fusion_unimodal_A")
    }
    result = {
        "what": "RAVDESS speech (actors 01-16), voice only, speaker-disjoint folds of 4 held-out "
        "actors; macro-F1 on the held-out actors (chance 0.125)",
        "command": "python -m benchmarks.bench_ravdess_arms",
        "text_arm": TEXT_ARM,
        "fusion_arm": FUSION_ARM,
        "seed": args.seed,
        "folds": folds,
        "mean_macro_f1": summary,
        "text_over_fusion": summary["minilm_lora_words"] / summary["fusion_unimodal_A"],
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"mean_macro_f1": summary, "ratio": result["text_over_fusion"]}, indent=2))


if __name__ == "__main__":
    main()
