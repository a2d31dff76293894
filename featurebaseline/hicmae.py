"""HiCMAE's pre-trained audio-visual encoder as a frozen feature extractor.

HiCMAE (Sun et al. 2024, *Hierarchical Contrastive Masked Autoencoder for Self-Supervised
Audio-Visual Emotion Recognition*, Information Fusion 108) pre-trains a video ViT on face crops,
an audio ViT on log-mel spectrograms and a two-layer cross-modal fusion encoder on VoxCeleb2. The
architecture here is written from the paper and the public repository (``sunlicai/HiCMAE``,
``modeling_pretrain_av.py`` and ``modeling_finetune_av.py``); its module and parameter names
follow the repository, so the released VoxCeleb2 base checkpoint loads key for key. The
pre-training decoders are not built: ``rename`` drops their keys.

Base model (``pretrain_hicmae_dim512_patch16_160_a256`` with the depths of
``scripts/voxceleb2/audio_visual/hicmae_pretrain_base/pretrain_base.sh``):

- video: 16 face frames of 160 x 160 pixels, tubelets of 2 frames x 16 x 16 pixels (8 x 10 x 10
  = 800 tokens), 10 blocks of width 512 with 8 heads;
- audio: 256 Kaldi fbank frames (10 ms shift, 2.56 s) x 128 mel bins, 16 x 16 patches (16 x 8 =
  128 tokens), 10 blocks of width 512 with 8 heads;
- fusion: 2 cross+self attention blocks per modality; MLP ratio 4, q/v biases, LayerNorm eps 1e-6,
  fixed sine-cosine positions, no layer scale.

Features. Each window (``av_windows``: 2.56 s of log-mel audio, 16 face crops) is encoded, and
every encoder layer's output goes through the encoder's final norm and is averaged over the
layers: HiCMAE fine-tuning's hierarchical feature at its initial, uniform layer weights. The
fusion encoder is loaded (its keys are checked) but not run: the baseline's extractors see one
modality at a time and its fusion arms do the fusing. The shared layers are ``vit_blocks``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from featurebaseline.av_windows import AUDIO_TOKENS, VIDEO_TOKENS, audio_table, face_table
from featurebaseline.checkpoints import Release, load_released
from featurebaseline.vit_blocks import (
    PATCH,
    Block,
    attend,
    audio_patch_embed,
    layer_norm,
    sinusoid_table,
    video_patch_embed,
)

RELEASE = Release(
    system="HiCMAE",
    file="checkpoint-99.pth",
    source="VoxCeleb2 base model linked from the README of github.com/sunlicai/HiCMAE: "
    "https://drive.google.com/file/d/1mR2r-_LWmtTYl4pS_L3YlhKNCCnv_ZaE/view",
)

WIDTH = 512  # both encoders and the fusion encoder
HEADS = 8
DEPTH = 10  # video and audio encoders
FUSION_DEPTH = 2


def build():
    """The encoder (video, audio, fusion) with the released key names, base size, eval mode."""
    return HiCMAEEncoder().eval()


def rename(key: str) -> str | None:
    """Checkpoint key -> model key: encoder weights kept, decoders and mask tokens dropped."""
    key = key.removeprefix("module.")  # saved from a DistributedDataParallel wrapper
    if key.startswith(("encoder.", "encoder_audio.", "encoder_fusion.")):
        return key
    return None  # decoder*, encoder_to_decoder*, mask_token*: pre-training only


def load(path):
    """The released checkpoint at ``path`` in the encoder, or ``EncoderUnavailable``."""
    return load_released(build(), path, RELEASE, rename)


def random_checkpoint(path, seed: int = 0) -> None:
    """A randomly initialised checkpoint laid out as the release is, for tests.

    Like the release (VideoMAE-style ``utils.save_model``): the state dict under ``model``
    beside ``epoch`` and the training ``args`` namespace, and pre-training keys that ``rename``
    drops.
    """
    torch.manual_seed(seed)
    state = dict(build().state_dict())
    state["encoder_to_decoder.weight"] = torch.randn(384, WIDTH)
    state["decoder.head.weight"] = torch.randn(2 * 3 * PATCH * PATCH, 384)
    state["mask_token_audio"] = torch.zeros(1, 1, 384)
    args = argparse.Namespace(model="pretrain_hicmae_dim512_patch16_160_a256", input_size=160)
    torch.save({"model": state, "epoch": 99, "args": args}, Path(path))


def audio_frames(model, audio: np.ndarray) -> np.ndarray:
    """16 kHz mono float32 -> (steps, 1 + 512): the audio encoder's hierarchical feature, one row
    per 160 ms (``av_windows.audio_table``)."""
    return audio_table(model.encoder_audio.hierarchical, audio, WIDTH)


def face_frames(model, crops: list[np.ndarray], times: list[float]) -> np.ndarray:
    """H x W x 3 uint8 RGB face crops at ``times`` -> (steps, 1 + 512): the video encoder's
    hierarchical feature, one row per 2 crops (``av_windows.face_table``)."""
    return face_table(model.encoder.hierarchical, crops, times, WIDTH)


# --- the architecture: HiCMAE's arrangement of the shared layers -----------------------------


class CrossAttention(nn.Module):
    """Queries from one modality, keys and values from the other (``context``)."""

    def __init__(self, dim: int, context_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(context_dim, 2 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context):
        q = F.linear(x, self.q.weight, self.q_bias)
        kv_bias = torch.cat([torch.zeros_like(self.v_bias), self.v_bias])
        k, v = F.linear(context, self.kv.weight, kv_bias).chunk(2, -1)
        return self.proj(attend(q, k, v, self.heads))


class CrossSelfBlock(Block):
    """Fusion block: cross-attention to the other modality, then a pre-norm block."""

    def __init__(self, dim: int, context_dim: int, heads: int):
        super().__init__(dim, heads)
        self.cross_attn = CrossAttention(dim, context_dim, heads)
        self.cross_norm1, self.cross_norm2 = layer_norm(dim), layer_norm(context_dim)

    def forward(self, x, context):
        x = x + self.cross_attn(self.cross_norm1(x), self.cross_norm2(context))
        return super().forward(x)


class Encoder(nn.Module):
    """Patch embedding, fixed positions, blocks and a final norm (video or audio)."""

    def __init__(self, patch_embed: nn.Module, tokens: int):
        super().__init__()
        self.patch_embed = patch_embed
        self.register_buffer("pos_embed", sinusoid_table(tokens, WIDTH), persistent=False)
        self.blocks = nn.ModuleList(Block(WIDTH, HEADS) for _ in range(DEPTH))
        self.norm = layer_norm(WIDTH)

    def forward(self, x):
        """The last layer's tokens after the final norm (what enters the fusion encoder)."""
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def hierarchical(self, x):
        """Every layer's tokens through the final norm, averaged over the layers."""
        x = self.patch_embed(x) + self.pos_embed
        total = torch.zeros_like(x)
        for block in self.blocks:
            x = block(x)
            total = total + self.norm(x)
        return total / len(self.blocks)


class FusionEncoder(nn.Module):
    """Video and audio tokens attend to each other, layer by layer."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(
            CrossSelfBlock(WIDTH, WIDTH, HEADS) for _ in range(FUSION_DEPTH)
        )
        self.blocks_audio = nn.ModuleList(
            CrossSelfBlock(WIDTH, WIDTH, HEADS) for _ in range(FUSION_DEPTH)
        )
        self.norm, self.norm_audio = layer_norm(WIDTH), layer_norm(WIDTH)

    def forward(self, video, audio):
        for block, block_audio in zip(self.blocks, self.blocks_audio):
            video, audio = block(video, audio), block_audio(audio, video)
        return self.norm(video), self.norm_audio(audio)


class HiCMAEEncoder(nn.Module):
    """``encoder`` (video), ``encoder_audio`` and ``encoder_fusion``, named as released."""

    def __init__(self):
        super().__init__()
        self.encoder = Encoder(video_patch_embed(WIDTH), VIDEO_TOKENS)
        self.encoder_audio = Encoder(audio_patch_embed(WIDTH), AUDIO_TOKENS)
        self.encoder_fusion = FusionEncoder()

    def forward(self, video, audio):
        """Fused (video tokens, audio tokens) of one aligned window of each."""
        return self.encoder_fusion(self.encoder(video), self.encoder_audio(audio))
