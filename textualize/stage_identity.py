"""Pieces every stage's ``identity()`` is made of: package versions, the device, one-line text."""

from __future__ import annotations

import importlib.metadata


def package_version(name: str) -> str:
    """The installed version of ``name``, or ``absent``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def torch_device(device: str) -> str:
    """The torch device ``device`` means here: auto is cuda when torch sees a GPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def identity_text(identity: dict) -> str:
    """One line naming a stage identity, e.g. ``backend=faster-whisper==1.2.1 model=... ...``."""
    return " ".join(f"{key}={value}" for key, value in identity.items())
