"""VAEmo's visual-audio encoder, shaped for its released checkpoint, as a frozen feature extractor.

VAEmo (Cheng et al. 2025, "VAEmo: Efficient Representation Learning for Visual-Audio Emotion with
Knowledge Injection", arXiv 2505.02331, ACM MM 2025) pre-trains one *unified, lightweight*
representation network on speaker-centric visual-audio corpora with masked reconstruction and
contrastive objectives (Stage 1), then aligns it with text embeddings of MLLM-written emotion
descriptions by dual-path contrastive learning (Stage 2). Only that encoder is built here; the
reconstruction decoders and the Stage-2 text heads are dropped when a checkpoint is read.

What each part rests on:

- **The paper (its abstract, arXiv v1/v2; the body could not be read here):** one network shared
  by both modalities, rather than the modality-specific encoders of earlier audio-visual MAEs;
  masked reconstruction plus contrastive pre-training; a text-knowledge stage whose heads are not
  part of the encoder.
- **The release (github.com/MSA-LMC/VAEmo, README, every stored version):** nothing beyond "The
  code and models will be available soon" and the MIT licence. No file name, URL, input size or
  key layout is published, so ``RELEASE`` names no file and the key layout below is
  **unconfirmed**; nor is it known whether the Stage-1 or the Stage-2 weights will be released. A
  real checkpoint that differs stops with ``EncoderUnavailable`` listing the differing keys; it
  never loads partly.
- **HiCMAE (sunlicai/HiCMAE, the audio-visual MAE VAEmo is reported to build on):** the layers
  and their key names (``vit_blocks``), the inputs (``av_windows``: 2.56 s of Kaldi log-mel
  audio, runs of 16 face crops at 160 x 160), the base width (512, 8 heads), the ``model``
  wrapper of saved checkpoints, the decoder names dropped here.
- **Assumed:** the unified encoder is HiCMAE's pieces arranged as the abstract describes: the two
  HiCMAE patch embeddings (``encoder.patch_embed`` for video, ``encoder.patch_embed_audio``) feed
  one stack of 12 shared blocks (``encoder.blocks``; HiCMAE-base has 10 modality-specific plus 2
  fusion layers, so 12 layers of width 512 per token path), closed by one LayerNorm per modality
  (``encoder.norm``, ``encoder.norm_audio``, unshared as in HiCMAE's fusion encoder). No learned
  modality embedding. Each modality is encoded on its own (the encoder's unimodal use). The
  Stage-2 head names (``text_*``, ``logit_scale``) are guesses too.

Features: the last layer's tokens after the modality's norm, as ``av_windows`` pools them (one
row per 160 ms of audio, or per 2 face crops).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from featurebaseline.av_windows import AUDIO_TOKENS, VIDEO_TOKENS, audio_table, face_table
from featurebaseline.checkpoints import Release, load_released
from featurebaseline.vit_blocks import (
    PATCH,
    TUBELET,
    Block,
    audio_patch_embed,
    layer_norm,
    sinusoid_table,
    video_patch_embed,
)

RELEASE = Release(
    system="VAEmo",
    file="VAEmo pre-trained encoder checkpoint (.pth; file name not yet published)",
    source=(
        "https://github.com/MSA-LMC/VAEmo, whose README says 'The code and models will be "
        "available soon'; the key layout expected here is HiCMAE-style and unconfirmed"
    ),
)

# Architecture (see the module docstring for what is published and what is assumed).
EMBED_DIM = 512
DEPTH = 12
NUM_HEADS = 8

#: Checkpoint parts that are not the encoder: MAE decoders, the Stage-2 text-knowledge heads.
DROPPED_PREFIXES = (
    "decoder.",
    "decoder_audio.",
    "encoder_to_decoder",
    "mask_token",
    "text_",
    "logit_scale",
)


class UnifiedEncoder(nn.Module):
    """Modality-specific tokenizers feeding one shared transformer (see the module docstring)."""

    def __init__(self, dim: int = EMBED_DIM, depth: int = DEPTH, heads: int = NUM_HEADS):
        super().__init__()
        self.patch_embed = video_patch_embed(dim)
        self.patch_embed_audio = audio_patch_embed(dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = layer_norm(dim)
        self.norm_audio = layer_norm(dim)
        # Fixed tables, not parameters: the MAE lineage never saves them in checkpoints.
        self.register_buffer("pos_video", sinusoid_table(VIDEO_TOKENS, dim), persistent=False)
        self.register_buffer("pos_audio", sinusoid_table(AUDIO_TOKENS, dim), persistent=False)

    def _run(self, tokens: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        for block in self.blocks:
            tokens = block(tokens)
        return norm(tokens)

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """(batch, 3, 16, 160, 160) normalised clips -> (batch, 800 tokens, dim)."""
        return self._run(self.patch_embed(clips) + self.pos_video, self.norm)

    def encode_audio(self, spectrograms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, 256, 128) normalised log-mels -> (batch, 128 tokens, dim)."""
        return self._run(self.patch_embed_audio(spectrograms) + self.pos_audio, self.norm_audio)


class VAEmo(nn.Module):
    """The encoder under the checkpoint's ``encoder.`` prefix, so model keys are released keys."""

    def __init__(self):
        super().__init__()
        self.encoder = UnifiedEncoder()

    @property
    def width(self) -> int:
        return self.encoder.norm.normalized_shape[0]


def build() -> VAEmo:
    return VAEmo()


def rename(key: str) -> str | None:
    """Checkpoint key -> model key; None for the decoders and the text-knowledge heads."""
    key = key.removeprefix("module.")  # saved from DistributedDataParallel
    return None if key.startswith(DROPPED_PREFIXES) else key


def load(path: str | Path) -> VAEmo:
    """The encoder with the weights at ``path``; ``EncoderUnavailable`` if they do not fit."""
    return load_released(build(), path, RELEASE, rename)


def audio_frames(model: VAEmo, audio: np.ndarray) -> np.ndarray:
    """16 kHz mono float32 -> (steps, 1 + dim): one row per 160 ms (``av_windows.audio_table``)."""
    return audio_table(model.encoder.encode_audio, audio, model.width)


def face_frames(model: VAEmo, crops: list[np.ndarray], times: list[float]) -> np.ndarray:
    """Face crops at ``times`` -> (steps, 1 + dim): one row per 2 crops (``av_windows.face_table``)."""
    return face_table(model.encoder.encode_video, crops, times, model.width)


def random_checkpoint(path: str | Path, seed: int = 0) -> None:
    """Write randomly initialised weights in the assumed release layout, for tests.

    Wrapped as MAE training scripts save (``{"model": ..., "epoch": ...}``; their ``optimizer``,
    ``scaler`` and ``args`` entries are left out), with decoder parts and a text-knowledge head
    that ``rename`` drops.
    """
    generator = torch.Generator().manual_seed(seed)

    def noise(*shape: int) -> torch.Tensor:
        return 0.02 * torch.randn(*shape, generator=generator)

    with torch.device("meta"):  # shapes only: no weights initialised, no global RNG drawn
        layout = build().state_dict()
    state = {}
    for key, tensor in layout.items():
        is_norm_scale = key.endswith(".weight") and tensor.ndim == 1
        state[key] = noise(*tensor.shape) + (1.0 if is_norm_scale else 0.0)
    state["encoder_to_decoder.weight"] = noise(384, EMBED_DIM)
    state["mask_token"] = noise(1, 1, 384)
    state["decoder.head.weight"] = noise(TUBELET * 3 * PATCH * PATCH, 384)
    state["text_proj.weight"] = noise(EMBED_DIM, 768)
    torch.save({"model": state, "epoch": 99}, Path(path))
