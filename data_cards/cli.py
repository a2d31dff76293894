"""``cer data``: prepare MELD, C-EXPR-DB, RAVDESS or a clip folder; print cards; check splits."""

from __future__ import annotations

import argparse
import sys

from cer.config import ConfigError, add_options, resolve
from data_cards.cexprdb import CexprdbOptions
from data_cards.meld import MeldOptions
from data_cards.ravdess import RavdessOptions

_OUTPUT_FILES = "manifest.parquet, splits.parquet, failures.jsonl and prepare.json"


def add_parser(subparsers) -> None:
    data = subparsers.add_parser(
        "data",
        help="prepare datasets (MELD, C-EXPR-DB, RAVDESS, your own) and read their cards",
        description="Check a dataset release, write a clip manifest and splits that "
        "`cer textualize` "
        "and the trainers read directly, print a dataset card, or check splits for leakage.",
        examples=[
            "cer data card meld",
            "cer data prepare meld /data/MELD.Raw runs/meld-prepared",
            "cer data check runs/meld-prepared",
        ],
    )
    sub = data.add_commands(dest="data_command")

    prepare = sub.add_parser(
        "prepare",
        help="prepare a dataset release into an output folder",
        description=f"Writes {_OUTPUT_FILES} into OUTPUT. Re-running does only "
        "new work (clips added, segments changed).",
        examples=[
            "cer data prepare meld /data/MELD.Raw runs/meld-prepared",
            "cer data prepare cexprdb /data/C-EXPR-DB runs/cexprdb-prepared --folds 5",
            "cer data prepare folder runs/mine --clips my_videos/ --labels labels.csv",
        ],
    )
    which = prepare.add_commands(dest="dataset", metavar="DATASET")

    meld = which.add_parser(
        "meld",
        help="MELD (7 emotions, official splits)",
        description="Pair each utterance of the MELD CSVs with its clip, repair the "
        "text, keep speaker and dialogue context. Missing and undecodable clips are "
        "listed in failures.jsonl. The card: `cer data card meld`.",
        examples=[
            "cer data prepare meld /data/MELD.Raw runs/meld-prepared",
            "cer data prepare meld /data/MELD.Raw runs/meld-text --text-only --context-turns 5",
            "cer data prepare meld /data/MELD.Raw runs/meld-prepared --clips-dir dev=/data/dev",
        ],
    )
    meld.add_argument("release_dir", metavar="RELEASE", help="unpacked MELD.Raw folder")
    meld.add_argument("output_dir", metavar="OUTPUT", help="folder for the prepared dataset")
    meld.add_argument("--config", help="YAML file with the options below (flags win)")
    add_options(meld, MeldOptions)
    meld.set_defaults(func=_run_prepare, options_class=MeldOptions)

    cexpr = which.add_parser(
        "cexprdb",
        help="C-EXPR-DB (7 compound classes + Other, segment cuts)",
        description="Cut the annotated segments of each video into clips "
        "(re-encoded, frame-accurate, audio kept) and write the reference 5-fold "
        "and the video-disjoint protocols. The card: `cer data card cexprdb`.",
        examples=[
            "cer data prepare cexprdb /data/C-EXPR-DB runs/cexprdb-prepared",
            "cer data prepare cexprdb /data/C-EXPR-DB runs/cexprdb-prepared --folds 4 --seed 1",
        ],
    )
    cexpr.add_argument("release_dir", metavar="RELEASE", help="folder with videos/ and annotation/")
    cexpr.add_argument("output_dir", metavar="OUTPUT", help="folder for the prepared dataset")
    cexpr.add_argument("--config", help="YAML file with the options below (flags win)")
    add_options(cexpr, CexprdbOptions)
    cexpr.set_defaults(func=_run_prepare, options_class=CexprdbOptions)

    ravdess = which.add_parser(
        "ravdess",
        help="RAVDESS speech (8 emotions, HiCMAE's speaker-independent 6 folds)",
        description="Read labels from the RAVDESS file names (Actor_XX/MM-VV-EE-II-SS-RR-AA) "
        "of an audio-only (03-) or audio-video (01-) folder and write the speaker-independent "
        "protocol hicmae-6fold: the published test actors of each fold, restricted to the actors "
        "present (a fold without any is dropped, with a note), and validation actors taken from "
        "the training actors. The card: `cer data card ravdess`.",
        examples=[
            "cer data prepare ravdess /data/ravdess runs/ravdess-prepared",
            "cer data prepare ravdess /data/RAVDESS-video runs/ravdess-av --modality audiovisual",
        ],
    )
    ravdess.add_argument("release_dir", metavar="FOLDER", help="folder with Actor_XX/ folders")
    ravdess.add_argument("output_dir", metavar="OUTPUT", help="folder for the prepared dataset")
    ravdess.add_argument("--config", help="YAML file with the options below (flags win)")
    add_options(ravdess, RavdessOptions)
    ravdess.set_defaults(func=_run_prepare, options_class=RavdessOptions)

    folder = which.add_parser(
        "folder",
        help="any folder of clips + labels CSV",
        description="Prepare your own dataset: a folder of clips and a CSV with "
        "at least file and label columns, optionally described by a card. "
        "The format: `cer data card folder`. Folds, validation share and seed of the "
        "protocol come from the card (folds:, val_fraction:, seed:).",
        examples=[
            "cer data prepare folder runs/mine --clips my_videos/ --labels labels.csv",
            "cer data prepare folder runs/mine --card my_dataset.md --name mine",
        ],
    )
    folder.add_argument("output_dir", metavar="OUTPUT", help="folder for the prepared dataset")
    folder.add_argument("--clips", help="folder of clips (default: the card's clips_dir)")
    folder.add_argument("--labels", help="labels CSV (default: the card's labels_csv)")
    folder.add_argument("--card", help="your dataset card (.md)")
    folder.add_argument("--name", help="dataset name written in the manifest")
    folder.set_defaults(func=_run_prepare_folder)

    card = sub.add_parser(
        "card",
        help="print a dataset card",
        description="Print a dataset card: "
        "what the data is, its layout, licence, citation, known problems and "
        "protocols. NAME is meld, cexprdb, ravdess, folder or the path of your own card.",
        examples=[
            "cer data card                  # list the cards",
            "cer data card meld",
            "cer data card cexprdb --front-matter",
        ],
    )
    card.add_argument(
        "name", metavar="NAME", nargs="?", help="card name or path (omit to list cards)"
    )
    card.add_argument(
        "--front-matter",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="print only the machine-readable part as JSON",
    )
    card.set_defaults(func=_run_card)

    check = sub.add_parser(
        "check",
        help="fail when a source video is on both sides of a split",
        description="Check the splits of a prepared folder: exit status 1 and a "
        "list of folds when any source video (or clip) appears in two of train, "
        "val and test. The reference C-EXPR-DB protocol fails by design.",
        examples=[
            "cer data check runs/cexprdb-prepared",
            "cer data check runs/cexprdb-prepared --protocol video-disjoint",
        ],
    )
    check.add_argument(
        "prepared_dir", metavar="PREPARED", help="output folder of `cer data prepare`"
    )
    check.add_argument("--protocol", help="check only this protocol (default: all)")
    check.add_argument(
        "--group-column",
        default="source_video",
        help="manifest column naming the recording a clip comes from (default: source_video)",
    )
    check.set_defaults(func=_run_check)


def _summary(prepared) -> str:
    by_reason = prepared.report.get("failures_by_reason", {})
    reasons = ", ".join(f"{n} {r}" for r, n in by_reason.items())
    text_only = prepared.report.get("text_only_rows", 0)
    lines = [
        f"{prepared.name}: {prepared.n_clips} clips prepared in {prepared.output_dir}"
        + (f" ({text_only} text-only: no clip, gold text and context only)" if text_only else ""),
        f"failures: {prepared.n_failures}"
        + (f" ({reasons}); see {prepared.failures_path}" if reasons else ""),
        f"protocols in {prepared.splits_path.name}: {', '.join(prepared.protocols) or 'none'}",
        *(f"note: {note}" for note in prepared.report.get("notes", [])),
    ]
    return "\n".join(lines)


def _run_prepare(args: argparse.Namespace) -> int:
    from data_cards.errors import DataCardError

    try:
        options = resolve(args.options_class, args, config_file=args.config)
    except ConfigError as err:
        print(f"cer data prepare: error: {err}", file=sys.stderr)
        return 2
    try:
        if args.dataset == "meld":
            from data_cards.meld import prepare_meld

            prepared = prepare_meld(args.release_dir, args.output_dir, options)
        elif args.dataset == "ravdess":
            from data_cards.ravdess import prepare_ravdess

            prepared = prepare_ravdess(args.release_dir, args.output_dir, options)
        else:
            from data_cards.cexprdb import prepare_cexprdb

            prepared = prepare_cexprdb(args.release_dir, args.output_dir, options)
    except DataCardError as err:
        print(f"cer data prepare: error: {_one_line(err)}", file=sys.stderr)
        return 2
    return _report(prepared)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def _report(prepared) -> int:
    """Print the summary; a run that kept no clip at all is a failure (exit 1), said on stderr."""
    print(_summary(prepared))
    if prepared.n_clips:
        return 0
    by_reason = prepared.report.get("failures_by_reason", {})
    reasons = ", ".join(f"{n} {r}" for r, n in by_reason.items()) or "no rows"
    print(
        f"cer data prepare: error: no usable clip in {prepared.output_dir} ({reasons}); see {prepared.failures_path}",
        file=sys.stderr,
    )
    return 1


def _run_prepare_folder(args: argparse.Namespace) -> int:
    from data_cards.errors import DataCardError
    from data_cards.folder import prepare_folder

    try:
        prepared = prepare_folder(
            args.clips, args.labels, args.output_dir, card=args.card, name=args.name
        )
    except DataCardError as err:
        print(f"cer data prepare folder: error: {_as_card_keys(_one_line(err))}", file=sys.stderr)
        return 2
    return _report(prepared)


def _as_card_keys(message: str) -> str:
    """The folder command reads its protocol settings from the card, not from flags."""
    if "lower --folds" not in message:
        return message
    message = message.replace("lower --folds", "lower folds:")
    return message.replace("--val-fraction", "val_fraction:") + " in your card (--card)"


def _run_card(args: argparse.Namespace) -> int:
    import json

    from data_cards.cards import list_cards, load_card
    from data_cards.errors import CardError

    if not args.name:
        print("\n".join(f"{name}: {load_card(name).title}" for name in list_cards()))
        return 0
    try:
        card = load_card(args.name)
    except CardError as err:
        print(f"cer data card: error: {_one_line(err)}", file=sys.stderr)
        return 2
    print(json.dumps(card.meta, indent=2, ensure_ascii=False) if args.front_matter else card.text())
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from data_cards.errors import DataCardError, LeakageError
    from data_cards.protocols import check_leakage

    try:
        check_leakage(args.prepared_dir, protocol=args.protocol, group_column=args.group_column)
    except LeakageError as err:
        print(f"LEAKAGE: {err}", file=sys.stderr)
        return 1
    except DataCardError as err:
        print(f"cer data check: error: {_one_line(err)}", file=sys.stderr)
        return 2
    scope = f"protocol {args.protocol}" if args.protocol else "all protocols"
    print(f"no leakage in {scope} of {args.prepared_dir}")
    return 0
