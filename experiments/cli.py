"""``cer experiment``: run a whole study from one YAML file, rebuild its report, list shipped studies.

cer experiment run configs/studies/synthetic.yaml
cer experiment run configs/studies/meld.yaml --arms bert_T fusion_early
cer experiment report runs/studies/synthetic --notebook
cer experiment list
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

#: Shipped study configs: data in the source checkout (``configs/studies``), not installed.
STUDIES_DIR = Path(__file__).resolve().parents[1] / "configs" / "studies"

_RUN_EPILOG = """\
A second run skips every stage whose inputs did not change (prepared data, prompt variants,
finished arms, report), so an interrupted study resumes and a new arm costs only its training.
Relative paths in the YAML are resolved against the current directory.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="run a study (data -> prompts -> models -> report) from one YAML file",
        description="A study names a dataset and protocol, textualization settings, the arms to "
        "compare (fine-tuned text models, feature-fusion baselines, a zero-shot floor) and the "
        "seeds; `run` does every stage and writes a comparative report.",
        examples=[
            "cer experiment list",
            "cer experiment run configs/studies/synthetic.yaml",
            "cer experiment report runs/studies/synthetic --notebook",
        ],
    )
    sub = parser.add_commands(dest="experiment_command")
    run = sub.add_parser(
        "run",
        help="run or resume a study",
        description="Prepare the data, textualize each prompt variant once (one shared "
        "extraction cache), train every arm, then write statistics and the report.",
        epilog=_RUN_EPILOG,
        examples=[
            "cer experiment run configs/studies/synthetic.yaml        # offline, 40 s on 2 cores",
            "cer experiment run configs/studies/meld.yaml --arms bert_T zeroshot_floor",
            "cer experiment run my_study.yaml --output-dir runs/studies/try2 --force",
        ],
    )
    run.add_argument("study", metavar="STUDY.yaml", help="study file (see `cer experiment list`)")
    run.add_argument(
        "--arms",
        nargs="+",
        metavar="ARM",
        help="train only these arms (space-separated; see the study's arms:)",
    )
    run.add_argument(
        "--force",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="redo every stage and arm (the per-clip extraction cache is still reused)",
    )
    run.add_argument("--output-dir", metavar="DIR", help="study folder (overrides output_dir)")
    run.set_defaults(func=run_command, default_log_level=logging.INFO)

    report = sub.add_parser(
        "report",
        help="rebuild the statistics and report of a study folder",
        description="Recompute STUDY/results and write STUDY/report/report.md with figures; "
        "--notebook also executes the analysis notebook into report.html.",
        examples=[
            "cer experiment report runs/studies/synthetic",
            "cer experiment report runs/studies/synthetic --notebook   # also report.html",
        ],
    )
    report.add_argument("study_dir", metavar="STUDY_DIR", help="folder written by `run`")
    report.add_argument(
        "--notebook",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also run the notebook (HTML)",
    )
    report.set_defaults(func=report_command)

    listing = sub.add_parser(
        "list",
        help="list the shipped studies",
        description=f"Studies shipped in {STUDIES_DIR}, with their first comment line.",
        examples=["cer experiment list", "cer experiment list | grep meld"],
    )
    listing.set_defaults(func=list_command)


def run_command(args: argparse.Namespace) -> int:
    from cer.config import ConfigError
    from data_cards.errors import DataCardError
    from experiments.runner import StudyError, run_study
    from experiments.study import load_study

    # Commas too: `--arms a,b` was the spelling before lists became space-separated.
    arms = [a for arg in args.arms for a in arg.split(",") if a] if args.arms else None
    try:
        study = load_study(args.study, output_dir=args.output_dir)
        outcome = run_study(study, only_arms=arms, force=args.force)
    except (ConfigError, StudyError, DataCardError) as err:
        print(f"cer experiment run: error: {err}", file=sys.stderr)
        return 2
    for name, result in outcome.arms.items():
        note = " (unchanged, skipped)" if result.skipped else f" in {result.seconds:.0f} s"
        print(f"arm {name}: {result.status}{note if result.status == 'done' else ''}")
    if outcome.report:
        print(f"report: {outcome.report}")
    print(f"study folder: {outcome.study_dir} (status in status.json)")
    return 1 if outcome.failed else 0


def report_command(args: argparse.Namespace) -> int:
    study_dir = Path(args.study_dir)
    if not (study_dir / "status.json").is_file():
        print(
            f"cer experiment report: error: {study_dir} is not a study folder (no status.json); "
            "run `cer experiment run STUDY.yaml` first",
            file=sys.stderr,
        )
        return 2
    from experiments.notebook import NotebookError, run_notebook
    from experiments.report import write_report

    print(f"report: {write_report(study_dir)}")  # also rewrites STUDY/results
    if args.notebook:
        try:
            print(f"notebook: {run_notebook(study_dir)}")
        except NotebookError as err:
            print(f"cer experiment report: error: {err}", file=sys.stderr)
            return 1
    return 0


def list_command(args: argparse.Namespace) -> int:
    if not STUDIES_DIR.is_dir():
        print(
            f"cer experiment list: error: no shipped studies at {STUDIES_DIR}; they live in the "
            "source checkout's configs/studies (an installed wheel does not carry them)",
            file=sys.stderr,
        )
        return 2
    for path in sorted(STUDIES_DIR.glob("*.yaml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        about = next((ln.lstrip("# ").strip() for ln in lines[1:] if ln.startswith("#")), "")
        print(f"{path.stem:<24} {about}")
        print(f"{'':<24} {lines[0].lstrip('# ').strip()}")
    return 0
