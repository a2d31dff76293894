"""Do the voice words keep what the acoustics know? A fixed probe on RAVDESS, speaker-disjoint.

    python -m benchmarks.bench_ravdess_prosody [--cache-dir DIR] [--out runs/bench_ravdess]

Textualizes ../shared/data/ravdess (see its README) with `cer textualize` itself, once per fold and
describer: 4 folds of 4 held-out actors (fold 4 = actors 01-12 for training, 13-16 held out). In
each fold the highest-numbered male and female training actors are the validation split, so the
textualizer is fitted on the other 10 actors only; held-out actors are rendered in the same run as
split ``test`` (their speaker baselines are medians over their own clips: no labels). Then the same
probe (standardised features, logistic regression, C fixed at 1, no tuning) is trained on train+val
and scored on the held-out actors, on (a) the words (TF-IDF of 1-3-grams of ``audio_text``), (b)
the numbers they come from (``voice_*``; and all ``prosody_*`` summaries), (c) the 88 eGeMAPS
functionals (raw, and z-scored per speaker over all their clips as the words are). Writes
benchmarks/results/bench_ravdess_prosody.json; the prompts stay in OUT/<describer>/fold<k>/ for
`cer finetune` / `cer baseline` (A-only prompts with train/val/test splits).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and pandas load inside the functions, so that --help is instant
    import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ravdess"
RESULTS = ROOT / "benchmarks" / "results" / "bench_ravdess_prosody.json"
FOLDS = {k + 1: set(range(4 * k + 1, 4 * k + 5)) for k in range(4)}  # held-out actors
HOLDOUT_FOLD = 4  # actors 01-12 train, 13-16 held out
C = 1.0


def fold_labels(labels: pd.DataFrame, fold: int) -> pd.DataFrame:
    import numpy as np

    actor = labels["speaker"].str[-2:].astype(int)
    train = sorted(set(actor) - FOLDS[fold])
    val = {max(a for a in train if a % 2), max(a for a in train if not a % 2)}
    split = np.where(actor.isin(FOLDS[fold]), "test", np.where(actor.isin(val), "val", "train"))
    return labels.assign(split=split)


def textualize_fold(labels: pd.DataFrame, fold: int, describer: str, out: Path, args) -> Path:
    from textualize.config import TextualizeConfig
    from textualize.pipeline import textualize
    from textualize.speech import bundled_whisper_model

    folder = out / describer / f"fold{fold}"
    roles = out / describer / f"fold{fold}_labels.csv"  # beside the output: a run replaces it whole
    roles.parent.mkdir(parents=True, exist_ok=True)
    fold_labels(labels, fold).to_csv(roles, index=False)
    cfg = TextualizeConfig(
        cache_dir=args.cache_dir,
        labels=str(roles),
        face="off",
        whisper_model=bundled_whisper_model() or "tiny.en",
        language="en",
        workers=args.workers,
        modalities="A",
        describer=describer,
        progress=False,
    )
    textualize(DATA, folder, cfg)
    return folder / "prompts.parquet"


def probe(train: pd.DataFrame, test: pd.DataFrame, columns: list[str] | str) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(columns, str):  # a text column
        features = TfidfVectorizer(ngram_range=(1, 3), sublinear_tf=True, min_df=2)
        model = make_pipeline(features, LogisticRegression(C=C, max_iter=5000))
        x_train, x_test = train[columns].fillna(""), test[columns].fillna("")
    else:
        scaler = [SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()]
        model = make_pipeline(*scaler, LogisticRegression(C=C, max_iter=5000))
        x_train, x_test = train[columns].astype(float), test[columns].astype(float)
    model.fit(x_train, train["label"])
    return float(f1_score(test["label"], model.predict(x_test), average="macro"))


def speaker_z(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Each speaker's features z-scored over all of their clips (no labels used)."""
    grouped = frame.groupby("speaker")[columns]
    z = (frame[columns] - grouped.transform("mean")) / grouped.transform("std").replace(0, 1)
    return frame.assign(**{c: z[c] for c in columns})


def score_fold(prompts: pd.DataFrame) -> dict[str, float]:
    prompts = prompts[prompts["label"].notna()]  # the folder's README and labels.csv are no clips
    train, test = prompts[prompts["split"] != "test"], prompts[prompts["split"] == "test"]
    egemaps = [c for c in prompts.columns if c.startswith("egemaps_")]
    prosody = [
        c
        for c in prompts.columns
        if c.startswith("prosody_")
        and c not in ("prosody_status", "prosody_reason", "prosody_silent")
    ]
    voice = [c for c in prompts.columns if c.startswith("voice_")]
    z = speaker_z(prompts, egemaps)
    out = {
        "words": probe(train, test, "audio_text"),
        "prosody_numbers": probe(train, test, prosody),
        "egemaps": probe(train, test, egemaps),
        "egemaps_speaker_z": probe(z[z["split"] != "test"], z[z["split"] == "test"], egemaps),
    }
    if voice:
        out["voice_numbers"] = probe(train, test, voice)
    return out


def main(argv: list[str] | None = None) -> None:
    from textualize.config import TextualizeConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", default=TextualizeConfig().cache_dir)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_ravdess")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--describers", nargs="*", default=["graded", "paper2024"])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd

    if not (DATA / "labels.csv").is_file():
        raise SystemExit(f"RAVDESS not found at {DATA}: see ../shared/data/ravdess/README.md")
    labels = pd.read_csv(DATA / "labels.csv")
    results: dict = {
        "data": "shared/data/ravdess (960 clips, actors 01-16)",
        "probe": (
            f"LogisticRegression(C={C}), standardised numbers (median-imputed) or TF-IDF 1-3-grams "
            "(sublinear tf, min_df 2); trained on train+val actors, macro-F1 on held-out actors"
        ),
        "folds": {str(k): sorted(v) for k, v in FOLDS.items()},
        "describers": {},
    }
    started = time.perf_counter()
    for describer in args.describers:
        per_fold, examples = {}, {}
        for fold in FOLDS:
            prompts = pd.read_parquet(textualize_fold(labels, fold, describer, args.out, args))
            per_fold[fold] = score_fold(prompts)
            print(describer, fold, {k: round(v, 3) for k, v in per_fold[fold].items()}, flush=True)
            if fold == HOLDOUT_FOLD:
                test = prompts[prompts["split"] == "test"]
                examples = {
                    "distinct_audio_texts": int(prompts["audio_text"].nunique()),
                    "clips": len(prompts),
                    "held_out_examples": test.groupby("label")
                    .head(1)[["clip_id", "label", "audio_text"]]
                    .to_dict("records"),
                }
        names = per_fold[HOLDOUT_FOLD]
        mean = {n: float(np.mean([per_fold[f][n] for f in FOLDS])) for n in names}
        results["describers"][describer] = {
            "holdout_01_12_to_13_16": per_fold[HOLDOUT_FOLD],
            "leave_4_actors_out_mean": mean,
            "per_fold": per_fold,
            "words_over_egemaps": {
                "holdout": per_fold[HOLDOUT_FOLD]["words"] / per_fold[HOLDOUT_FOLD]["egemaps"],
                "folds_mean": mean["words"] / mean["egemaps"],
            },
            **examples,
        }
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
