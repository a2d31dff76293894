"""ViT layers of the HiCMAE lineage, with the module names its checkpoints use.

Written from HiCMAE (``sunlicai/HiCMAE``, ``modeling_pretrain_av.py`` and
``modeling_finetune_av.py``, which follow VideoMAE/BEiT): a pre-norm block ``norm1``, ``attn``
(``qkv`` without bias plus ``q_bias`` and ``v_bias``, no key bias; ``proj``), ``norm2``, ``mlp``
(``fc1``, GELU, ``fc2``, ratio 4); LayerNorm eps 1e-6; no layer scale (pre-training uses
``init_values=0``); fixed sine-cosine positions, which checkpoints do not hold; patch embeddings
``patch_embed.proj``: 2 x 16 x 16 tubelets of RGB frames, 16 x 16 patches of a spectrogram.
HiCMAE and VAEmo build their encoders from these, so their state-dict keys stay the released ones.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

PATCH = 16  # pixels, and spectrogram frames x mel bins
TUBELET = 2  # frames per video token
MLP_RATIO = 4

layer_norm = partial(nn.LayerNorm, eps=1e-6)


def sinusoid_table(positions: int, width: int) -> torch.Tensor:
    """Fixed sine-cosine positions, (1, positions, width): sin on even, cos on odd channels."""
    exponent = 2 * (np.arange(width) // 2) / width
    angles = np.arange(positions)[:, None] / np.power(10000.0, exponent)[None]
    table = np.where(np.arange(width) % 2 == 0, np.sin(angles), np.cos(angles))
    return torch.tensor(table, dtype=torch.float32)[None]


def attend(q, k, v, heads: int):
    """Multi-head scaled dot-product attention over (batch, tokens, width) projections."""
    split = [t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v)]
    return F.scaled_dot_product_attention(*split).transpose(1, 2).flatten(2)


class Attention(nn.Module):
    """Self-attention; one qkv matrix without bias, separate q and v biases (no k bias)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        q, k, v = F.linear(x, self.qkv.weight, bias).chunk(3, -1)
        return self.proj(attend(q, k, v, self.heads))


class Mlp(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, MLP_RATIO * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(MLP_RATIO * dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = layer_norm(dim), Attention(dim, heads)
        self.norm2, self.mlp = layer_norm(dim), Mlp(dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """A strided convolution ``proj`` that cuts its input into non-overlapping patches (tokens)."""

    def __init__(self, proj: nn.Module):
        super().__init__()
        self.proj = proj

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (batch, tokens, width), time-major


def video_patch_embed(width: int) -> PatchEmbed:
    """(batch, 3, frames, H, W) -> tokens of 2-frame x 16 x 16-pixel tubelets."""
    size = (TUBELET, PATCH, PATCH)
    return PatchEmbed(nn.Conv3d(3, width, size, stride=size))


def audio_patch_embed(width: int) -> PatchEmbed:
    """(batch, 1, frames, mel bins) -> tokens of 16 x 16 spectrogram patches."""
    return PatchEmbed(nn.Conv2d(1, width, PATCH, stride=PATCH))
