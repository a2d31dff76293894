"""Fit the graded describer's built-in voice reference on a corpus of real speech.

Run from the project root on a `cer textualize` output folder whose clips have speakers, e.g. RAVDESS:

    cer textualize ../shared/data/ravdess runs/ravdess-ref --labels ../shared/data/ravdess/labels.csv \\
        --face off --transcript true --language en
    python -m benchmarks.fit_prosody_reference runs/ravdess-ref \\
        --labels ../shared/data/ravdess/labels.csv --json runs/ravdess-ref/voice_reference.json \\
        --write-module textualize/builtin_voice_reference.py

What it measures (textualize/voice_words.py explains how the words use it):
- register baselines: the median of every baseline measure over the ``--baseline-labels`` takes
  (default neutral and calm) of each value of ``--register-column`` (default sex: male -> the
  "lower" register, female -> "higher"), and the pitch halfway between them;
- cut points: quantiles of every clip's difference from its speaker's median voice (all takes,
  label-free) and from its register's baseline.
The JSON can be given to `cer textualize --voice-reference FILE`; ``--write-module`` regenerates the
Python constant that ships as the built-in reference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and pandas load inside the functions, so that --help is instant
    import pandas as pd

    from textualize.voice_words import GradedReference

PREFIX = "prosody_"


def summaries(prompts: pd.DataFrame) -> list[dict]:
    import pandas as pd

    columns = [c for c in prompts.columns if c.startswith(PREFIX) and c != "prosody_status"]
    rows = prompts[columns].rename(columns=lambda c: c[len(PREFIX) :])
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in rows.to_dict("records")]


def fit(
    prompts: pd.DataFrame,
    register_column: str,
    lower: str,
    higher: str,
    baseline_labels: list[str],
    quantiles: tuple[float, ...],
) -> GradedReference:
    from textualize.voice_words import (
        DEFAULT_DYNAMICS,
        GradedReference,
        fit_graded_reference,
        median_baseline,
        speaker_baselines,
    )

    voiced = prompts[
        (prompts["prosody_status"] == "ok") & ~prompts["prosody_silent"].fillna(True).astype(bool)
    ]
    rows = summaries(voiced)
    calm = voiced["label"].isin(baseline_labels).to_numpy()
    groups = voiced[register_column].to_numpy()
    registers = {
        name: median_baseline(r for r, g, c in zip(rows, groups, calm) if g == value and c)
        for name, value in (("lower", lower), ("higher", higher))
    }
    split = (registers["lower"]["pitch_median_st"] + registers["higher"]["pitch_median_st"]) / 2
    speakers = list(voiced["speaker"])
    start = GradedReference(quantiles, {}, registers, split, {}, dict(DEFAULT_DYNAMICS), "builtin")
    # Cut points against each speaker's own median voice (over all their takes, no labels) ...
    by_speaker = fit_graded_reference(
        zip(speakers, rows),
        _no_cuts(start),
        baselines=speaker_baselines(zip(speakers, rows)),
        quantiles=quantiles,
    )
    # ... and against the register, for clips of speakers without a baseline.
    by_register = fit_graded_reference(
        zip([None] * len(rows), rows), _no_cuts(start), quantiles=quantiles
    )
    cuts = {"speaker": by_speaker.cuts["speaker"], "register": by_register.cuts["register"]}
    return GradedReference(quantiles, cuts, registers, split, {}, dict(DEFAULT_DYNAMICS), "builtin")


def _no_cuts(reference: GradedReference) -> GradedReference:
    from textualize.voice_words import MEASURES, GradedReference

    zero = tuple(0.0 for _ in reference.quantiles)
    cuts = {kind: dict.fromkeys(MEASURES, zero) for kind in ("speaker", "register")}
    return GradedReference(
        reference.quantiles, cuts, reference.registers, reference.register_split_st
    )


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a `cer textualize` output folder (its prompts.parquet)")
    parser.add_argument(
        "--labels", help="CSV with clip_id and the register column, if prompts lack it"
    )
    parser.add_argument("--register-column", default="sex")
    parser.add_argument("--lower", default="male", help="register column value of lower voices")
    parser.add_argument("--higher", default="female", help="register column value of higher voices")
    parser.add_argument(
        "--baseline-labels", default="neutral,calm", help="takes the baselines come from"
    )
    parser.add_argument(
        "--quantiles",
        type=float,
        nargs="*",
        help="default: textualize.voice_words.DEFAULT_QUANTILES",
    )
    parser.add_argument("--json", required=True, help="where to write the reference")
    parser.add_argument("--write-module", help="also write it as a Python constant file")
    args = parser.parse_args(argv)

    import pandas as pd

    from textualize.voice_words import DEFAULT_QUANTILES

    prompts = pd.read_parquet(Path(args.run) / "prompts.parquet")
    if args.labels:
        extra = pd.read_csv(args.labels)[["clip_id", args.register_column]]
        prompts = prompts.drop(columns=[args.register_column], errors="ignore").merge(
            extra, on="clip_id"
        )
    reference = fit(
        prompts,
        args.register_column,
        args.lower,
        args.higher,
        args.baseline_labels.split(","),
        tuple(args.quantiles or DEFAULT_QUANTILES),
    )
    data = reference.to_dict()
    data["fitted_on"] = {
        "run": Path(args.run).name,
        "clips": len(prompts),
        "speakers": int(prompts["speaker"].nunique()),
        "registers": f"{args.register_column}: {args.lower} = lower, {args.higher} = higher",
        "baseline_labels": args.baseline_labels,
    }
    Path(args.json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    if args.write_module:
        body = json.dumps(_rounded(data), indent=1)  # JSON without true/false/null is Python
        Path(args.write_module).write_text(
            '"""The graded describer\'s built-in voice reference, measured on real speech.\n\n'
            "Generated by `python -m benchmarks.fit_prosody_reference` (see its docstring); do not edit by hand.\n"
            '"""\n\nBUILTIN_VOICE_REFERENCE = ' + body + "\n",
            encoding="utf-8",
        )
        print(f"wrote {args.write_module}")


if __name__ == "__main__":
    main()
