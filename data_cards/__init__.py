"""Dataset cards and preparation: MELD, C-EXPR-DB, RAVDESS and any clip folder into one format.

``prepare_meld``, ``prepare_cexprdb``, ``prepare_ravdess`` and ``prepare_folder`` write
``manifest.parquet``, ``splits.parquet``, ``failures.jsonl`` and ``prepare.json``; ``load_card``
reads a dataset card; ``check_leakage`` fails when a source video sits on both sides of a split.
This package is the lowest layer: it imports nothing from textualize, finetune or featurebaseline.
"""

from data_cards.cards import Card, list_cards, load_card
from data_cards.cexprdb import CexprdbOptions, prepare_cexprdb
from data_cards.folder import prepare_folder
from data_cards.manifest import CLIP_COLUMNS, Failure, PreparedDataset, load_prepared, read_manifest
from data_cards.meld import MeldOptions, prepare_meld
from data_cards.protocols import check_leakage, find_leakage
from data_cards.ravdess import RavdessOptions, prepare_ravdess

__all__ = [
    "CLIP_COLUMNS",
    "Card",
    "CexprdbOptions",
    "Failure",
    "MeldOptions",
    "PreparedDataset",
    "RavdessOptions",
    "check_leakage",
    "find_leakage",
    "list_cards",
    "load_card",
    "load_prepared",
    "prepare_cexprdb",
    "prepare_folder",
    "prepare_meld",
    "prepare_ravdess",
    "read_manifest",
]
