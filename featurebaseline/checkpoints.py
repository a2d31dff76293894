"""Released pre-trained checkpoints, loaded from a local file and checked against the architecture.

The seed systems' encoders (HiCMAE, VAEmo) publish their weights as PyTorch checkpoint files
that cannot be downloaded on an offline machine. ``load_released`` reads such a file (tensors
only: ``weights_only=True``), takes its state dict from the usual wrappers (``model``,
``module``, ``state_dict``), and loads it into the architecture only when every key and shape
matches; anything else stops with ``EncoderUnavailable`` naming the file, what differs and where
the right file comes from. A wrong file never loads partially. Training scripts in the VideoMAE
line also save their ``argparse.Namespace`` of options beside the weights; that one class is
allowed besides tensors (it only holds attribute values), nothing else that a pickle could run.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from featurebaseline.encoders import EncoderUnavailable

#: Wrapper keys under which training scripts save the weights (tried in this order).
WRAPPERS = ("model", "module", "state_dict", "model_state")


@dataclass(frozen=True)
class Release:
    """Where a released checkpoint comes from, for the messages that ask for it."""

    system: str  # e.g. "HiCMAE"
    file: str  # the released file name, e.g. "checkpoint-99.pth"
    source: str  # URL or paper section where the file is published

    def where(self) -> str:
        return f"the {self.system} release {self.file!r} ({self.source})"


def checkpoint_file(path: str | Path, release: Release) -> Path:
    """``path`` when it is a file, else ``EncoderUnavailable`` saying where the release comes from."""
    path = Path(path)
    if not path.is_file():
        raise EncoderUnavailable(
            f"{release.system} checkpoint {str(path)!r} not found: download {release.where()} "
            "on a machine with internet access and give its local path"
        )
    return path


def checkpoint_digest(path: str | Path, release: Release) -> str:
    """SHA-256 of the checkpoint file's content (what its features are cached under)."""
    digest = hashlib.sha256()
    with checkpoint_file(path, release).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_dict_of(loaded: object) -> dict:
    """The tensor mapping inside a loaded checkpoint (unwrapping ``model``/``module``/...)."""
    import torch

    current = loaded
    for _ in range(3):
        if (
            isinstance(current, Mapping)
            and current
            and all(isinstance(v, torch.Tensor) for v in current.values())
        ):
            return dict(current)
        if not isinstance(current, Mapping):
            break
        inner = next((current[k] for k in WRAPPERS if k in current), None)
        if inner is None:
            break
        current = inner
    raise ValueError("no tensor state dict found (looked under " + ", ".join(WRAPPERS) + ")")


def load_released(
    model,
    path: str | Path,
    release: Release,
    rename: Callable[[str], str | None] = lambda key: key,
):
    """``model`` with the weights of the checkpoint at ``path``, or ``EncoderUnavailable``.

    ``rename`` maps a checkpoint key to the model's key (None drops it: e.g. the pre-training
    decoder, which the encoder does not use). Missing keys, unexpected keys and shape mismatches
    are all reported (the first few of each) before anything is loaded.
    """
    import torch

    path = checkpoint_file(path, release)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        state = state_dict_of(loaded)
    except Exception as err:  # pickle, zip and format errors come in many types
        raise EncoderUnavailable(
            f"{path} is not a readable {release.system} checkpoint "
            f"({type(err).__name__}: {' '.join(str(err).split())[:200]}); expected "
            f"{release.where()}"
        ) from err
    renamed = {}
    for key, tensor in state.items():
        target = rename(key)
        if target is not None:
            renamed[target] = tensor
    expected = model.state_dict()
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    shapes = sorted(
        f"{k} {tuple(renamed[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(renamed)
        if tuple(renamed[k].shape) != tuple(expected[k].shape)
    )
    problems = [
        f"{len(items)} {what} (e.g. {', '.join(items[:3])})"
        for what, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        )
        if items
    ]
    if problems:
        raise EncoderUnavailable(
            f"{path} does not match the {release.system} architecture: {'; '.join(problems)}. "
            f"Expected {release.where()}"
        )
    model.load_state_dict(renamed, strict=True)
    return model.eval()
