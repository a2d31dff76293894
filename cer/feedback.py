"""What a user sees while a long step runs: progress bars with an ETA, and no library noise.

``quiet_libraries()`` is called once by each long-running entry point (and by ``cer`` itself).
It hides warnings a user cannot act on: the DataLoader's ``pin_memory`` notice on machines
without a GPU, bitsandbytes' optional ``kernels`` package notice, and the transformers loading
report (whose "MISSING ... consider training" lines are expected when a classification head is
put on a base model before its trained adapter is loaded), coloured with ANSI codes in logs. Set
``CER_VERBOSE=1`` (or pass ``verbose=True``) to see everything again.

``progress_bar`` is the one tqdm bar every loop of ours uses (stderr, rate and ETA); bars are on
unless ``CER_PROGRESS=0``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

VERBOSE_ENV = "CER_VERBOSE"
PROGRESS_ENV = "CER_PROGRESS"

#: Warning messages (regular expressions, matched at the start) that are filtered.
NOISE = (
    r".*'pin_memory' argument is set as true but no accelerator",
    r"`is_gradient_checkpointing` is deprecated",  # peft asking transformers, not our code
)
#: Loggers whose warnings are notices, not problems: shown only at ERROR.
NOISY_LOGGERS = ("bitsandbytes", "transformers.utils.loading_report", "transformers.modeling_utils")


def verbose_requested() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def progress_enabled() -> bool:
    """Progress bars on stderr, unless ``CER_PROGRESS=0``."""
    return os.environ.get(PROGRESS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def progress_bar(total: int, desc: str, unit: str = "row") -> Any:
    """A tqdm bar on stderr (count, rate, ETA); a silent one when bars are off. Use as a
    context manager or call ``close()``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress_enabled())


def quiet_libraries(verbose: bool | None = None) -> None:
    """Filter the library noise named in ``NOISE`` and ``NOISY_LOGGERS`` (not with verbose)."""
    if verbose if verbose is not None else verbose_requested():
        return
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # transformers sets its own level from this variable when it configures its logger; if it
    # is already imported, ask it directly.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
