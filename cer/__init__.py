"""Shared command line and configuration plumbing for the `cer` toolkit.

The domain packages (`data_cards`, `textualize`, `finetune`, `featurebaseline`) each own
their subcommand; this package only dispatches to them and turns dataclasses into options.
"""
