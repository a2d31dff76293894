"""Training time per epoch of every fusion arm on a synthetic MELD-sized feature set (CPU).

    python -m benchmarks.bench_baseline_arms [--examples 10000] [--epochs 2] [--threads 1]

The feature set has the shapes a textualized MELD run gives: visual 27 columns (20 AUs + 7
emotions) and audio 25 eGeMAPS LLD columns on a 64-step grid with partly masked steps, 54 face
and 88 eGeMAPS functionals, 384-d text embeddings; 10% of the examples have no face and 3% no
voice. Values are random (timing only). Writes benchmarks/results/baseline_arms_epoch_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = (
    ("early", "TVA", "conv"),
    ("late", "TVA", "conv"),
    ("attention", "TVA", "conv"),
    ("leader", "TVA", "conv"),
    ("early", "TVA", "gru"),
    ("leader", "TVA", "gru"),
    ("unimodal", "V", "conv"),
    ("unimodal", "A", "conv"),
    ("unimodal", "T", "conv"),
)
LABELS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


def synthetic_features(examples: int, steps: int = 64, seed: int = 0):
    import numpy as np
    import pandas as pd

    from featurebaseline.features import FeatureSet, ModalityFeatures

    rng = np.random.default_rng(seed)
    split = rng.choice(["train", "val", "test"], size=examples, p=[0.8, 0.1, 0.1])
    rows = pd.DataFrame(
        {
            "clip_id": [f"c{i}" for i in range(examples)],
            "split": split,
            "label": rng.choice(LABELS, size=examples),
        }
    )
    rows["unit_id"] = rows["clip_id"]
    used = rng.integers(8, steps + 1, size=examples)  # utterances of different lengths

    def sequence(width: int, functionals: int, missing: float) -> ModalityFeatures:
        present = rng.random(examples) > missing
        mask = (np.arange(steps)[None] < used[:, None]) & (rng.random((examples, steps)) > 0.1)
        values = rng.standard_normal((examples, steps, width), dtype=np.float32) * mask[..., None]
        vector = rng.standard_normal((examples, functionals), dtype=np.float32)
        return ModalityFeatures(present, values, mask, vector)

    visual, audio = sequence(27, 54, 0.10), sequence(25, 88, 0.03)
    text = ModalityFeatures(
        np.ones(examples, bool), vector=rng.standard_normal((examples, 384), dtype=np.float32)
    )
    return FeatureSet(rows, {"visual": visual, "audio": audio, "text": text}, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    parser.add_argument("--token-stride", type=int, default=4, help="attention/leader arms")
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "baseline_arms_epoch_time.json")
    )
    args = parser.parse_args()

    import torch

    from featurebaseline.config import MODALITY_NAMES, BaselineConfig
    from featurebaseline.features import FeatureSet
    from featurebaseline.runner import run_baseline

    features = synthetic_features(args.examples)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {
        "examples": args.examples,
        "epochs_timed": args.epochs,
        "grid_steps": 64,
        "batch_size": args.batch_size,
        "hidden": 64,
        "token_stride": args.token_stride,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg()[0],
        "note": "epoch time includes one validation pass; random values, timing only",
        "arms": [],
    }
    with tempfile.TemporaryDirectory() as work:
        for arm, modalities, temporal in ARMS:
            names = [MODALITY_NAMES[k] for k in "VAT" if k in modalities]
            subset = FeatureSet(features.rows, {m: features.modalities[m] for m in names}, 0.1)
            config = BaselineConfig(
                source="synthetic",
                output_dir=f"{work}/{arm}_{modalities}_{temporal}",
                arm=arm,
                modalities=modalities,
                temporal=temporal,
                epochs=args.epochs,
                patience=0,
                resume=False,
                batch_size=args.batch_size,
                token_stride=args.token_stride,
                threads=args.threads,
                leader="V" if "V" in modalities else modalities,
            )
            run = run_baseline(config, subset).runs[0]
            entry = {
                "arm": arm,
                "modalities": modalities,
                "temporal": temporal,
                "seconds_per_epoch": run.summary["seconds_per_epoch"],
                "parameters": run.summary["parameters"],
                "train_examples": run.summary["train_examples"],
                "device": run.summary["device"],
            }
            report["arms"].append(entry)
            report["load_average_at_end"] = os.getloadavg()[0]
            print(json.dumps(entry), flush=True)
            # written after every arm, so an interrupted benchmark still leaves its numbers
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
