"""Per-modality encoders and the fusion arms that combine them (PyTorch modules).

A ``ModalityEncoder`` turns one modality into an utterance embedding plus a sequence of tokens:
a temporal convolution or bidirectional GRU over the grid steps (the step mask is an input
channel and the pooling ignores masked steps) and an MLP over the functionals. An absent
modality is replaced by a learned "missing" embedding and its tokens are masked out.

Arms: ``early`` (concatenation + MLP), ``late`` (per-modality classifiers mixed with learned
weights over the modalities present), ``attention`` (one transformer-encoder layer: multi-head
self-attention over a class token and the tokens of all modalities, with time and modality
embeddings; joint self-attention, not M2FNet's text-queried fusion), ``leader`` (LFAN-style: the
leading modality's tokens query each follower by cross-attention), ``m2fnet`` (M2FNet's fusion
idea: stacked multi-head attention fusion layers in which the text tokens are the queries and the
audio and visual tokens the keys and values; the fused text, pooled, is concatenated with the
audio and visual embeddings), ``unimodal`` (one modality, the early arm's head). How ``attention``
and ``m2fnet`` compare with the paper: ``featurebaseline/ARMS.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: saved with its weights."""

    arm: str
    temporal: str
    hidden: int
    heads: int
    dropout: float
    classes: int
    max_steps: int
    modalities: tuple[str, ...]
    dims: dict[str, dict[str, int]]  # modality -> {"sequence": D, "vector": E}
    leader: str = "visual"
    token_stride: int = 1  # steps pooled into one attention token (1 in models saved before it)

    def to_dict(self) -> dict:
        return asdict(self)


#: Stacked fusion layers of the ``m2fnet`` arm.
M2FNET_FUSION_LAYERS = 2


def _mlp(inputs: int, hidden: int, outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, outputs)
    )


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def pool_tokens(
    states: torch.Tensor, mask: torch.Tensor, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean of every ``stride`` consecutive steps: (B, T, H) -> (B, ceil(T/stride), H).

    Attention cost grows with the square of the token count, so the attention arms see one token
    per ``stride`` grid steps; a pooled token is masked when none of its steps holds a frame.
    """
    if stride <= 1:
        return states, mask
    batch, steps, width = states.shape
    pad = -steps % stride
    if pad:
        states = nn.functional.pad(states, (0, 0, 0, pad))
        mask = nn.functional.pad(mask, (0, pad))
    weights = mask.view(batch, -1, stride, 1).to(states.dtype)
    total = (states.view(batch, -1, stride, width) * weights).sum(2)
    count = weights.sum(2)
    return total / count.clamp(min=1.0), count.squeeze(-1) > 0


class ModalityEncoder(nn.Module):
    def __init__(
        self,
        seq_dim: int,
        vec_dim: int,
        hidden: int,
        temporal: str,
        dropout: float,
        token_stride: int = 1,
    ):
        super().__init__()
        self.temporal = temporal if seq_dim else "none"
        self.token_stride = token_stride
        if self.temporal == "conv":
            self.project = nn.Linear(seq_dim + 1, hidden)
            self.conv = nn.Sequential(
                nn.Conv1d(hidden, hidden, 3, padding=1),
                nn.GELU(),
                nn.Conv1d(hidden, hidden, 3, padding=2, dilation=2),
                nn.GELU(),
            )
        elif self.temporal == "gru":
            self.gru = nn.GRU(seq_dim + 1, hidden // 2, batch_first=True, bidirectional=True)
        self.vector = _mlp(vec_dim, hidden, hidden, dropout) if vec_dim else None
        self.missing = nn.Parameter(torch.zeros(hidden))

    def forward(self, batch: dict[str, torch.Tensor], with_tokens: bool = True):
        """-> (embedding (B, H), tokens (B, K, H), token mask (B, K)); no tokens unless asked."""
        present = batch["present"]
        pooled, tokens, masks = [], [], []
        if self.temporal != "none":
            steps = batch["steps"] & present[:, None]
            flags = steps.unsqueeze(-1).to(batch["sequence"].dtype)
            x = torch.cat([batch["sequence"] * flags, flags], -1)
            if self.temporal == "conv":
                states = self.conv(self.project(x).transpose(1, 2)).transpose(1, 2)
            else:
                states = self.gru(x)[0]
            pooled.append(masked_mean(states, steps))
            if with_tokens:
                states, steps = pool_tokens(states, steps, self.token_stride)
                tokens.append(states)
                masks.append(steps)
        if self.vector is not None:
            v = self.vector(batch["vector"])
            pooled.append(v)
            tokens.append(v.unsqueeze(1))
            masks.append(present.unsqueeze(1))
        embedding = pooled[0] if len(pooled) == 1 else torch.stack(pooled).mean(0)
        embedding = torch.where(present.unsqueeze(-1), embedding, self.missing)
        if not with_tokens:
            return embedding, None, None
        return embedding, torch.cat(tokens, 1), torch.cat(masks, 1)


class FusionModel(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        h, c, p = spec.hidden, spec.classes, spec.dropout
        self.encoders = nn.ModuleDict(
            {
                m: ModalityEncoder(
                    spec.dims[m]["sequence"],
                    spec.dims[m]["vector"],
                    h,
                    spec.temporal,
                    p,
                    spec.token_stride,
                )
                for m in spec.modalities
            }
        )
        count = len(spec.modalities)
        if spec.arm in ("early", "unimodal"):
            self.head = _mlp(count * (h + 1), h, c, p)
        elif spec.arm == "late":
            self.heads = nn.ModuleDict({m: _mlp(h, h, c, p) for m in spec.modalities})
            self.weights = nn.Parameter(torch.zeros(count))
        elif spec.arm == "attention":
            self.time = nn.Embedding(spec.max_steps + 1, h)
            self.kind = nn.Embedding(count, h)
            self.cls = nn.Parameter(torch.randn(h) * 0.02)
            self.mixer = nn.TransformerEncoderLayer(h, spec.heads, 2 * h, p, batch_first=True)
            self.head = _mlp(h, h, c, p)
        elif spec.arm == "leader":
            followers = [m for m in spec.modalities if m != spec.leader]
            self.query = nn.Parameter(torch.randn(h) * 0.02)  # stands in for an absent leader
            self.null = nn.ParameterDict(
                {m: nn.Parameter(torch.randn(h) * 0.02) for m in followers}
            )
            self.cross = nn.ModuleDict(
                {m: nn.MultiheadAttention(h, spec.heads, p, batch_first=True) for m in followers}
            )
            self.norm = nn.LayerNorm(h)
            self.ffn = _mlp(h, 2 * h, h, p)
            self.head = _mlp(h * (1 + len(followers)), h, c, p)
        elif spec.arm == "m2fnet":
            if "text" not in spec.modalities or len(spec.modalities) < 2:
                raise ValueError(
                    "the m2fnet arm needs the text modality (T) and at least one of A and V: the "
                    f"text queries the others; modalities here: {', '.join(spec.modalities)}"
                )
            others = [m for m in spec.modalities if m != "text"]
            self.query = nn.Parameter(torch.randn(h) * 0.02)  # stands in for absent text
            self.fusion = nn.ModuleList(
                [M2FNetFusionLayer(h, spec.heads, p, others) for _ in range(M2FNET_FUSION_LAYERS)]
            )
            self.head = _mlp(h * (1 + len(others)), h, c, p)
        else:
            raise ValueError(f"unknown arm {spec.arm!r}")

    def forward(self, batch: dict[str, dict[str, torch.Tensor]]):
        """-> (logits (B, C), auxiliary loss terms or None)."""
        arm = self.spec.arm
        tokens = arm in ("attention", "leader", "m2fnet")
        encoded = {m: self.encoders[m](batch[m], tokens) for m in self.spec.modalities}
        if arm in ("early", "unimodal"):
            parts = [
                torch.cat([encoded[m][0], batch[m]["present"].float().unsqueeze(-1)], -1)
                for m in self.spec.modalities
            ]
            return self.head(torch.cat(parts, -1)), None
        if arm == "late":
            return self._late(batch, encoded)
        if arm == "attention":
            return self._attention(encoded)
        if arm == "m2fnet":
            return self._m2fnet(batch, encoded)
        return self._leader(batch, encoded)

    def _late(self, batch, encoded):
        logits = torch.stack([self.heads[m](encoded[m][0]) for m in self.spec.modalities], 1)
        present = torch.stack([batch[m]["present"] for m in self.spec.modalities], 1)
        none = ~present.any(1, keepdim=True)
        weights = self.weights.expand_as(present).masked_fill(~(present | none), float("-inf"))
        mixed = (weights.softmax(1).unsqueeze(-1) * logits.softmax(-1)).sum(1)
        return mixed.clamp(min=1e-8).log(), (logits, present)

    def _attention(self, encoded):
        tokens, masks = [], []
        for k, m in enumerate(self.spec.modalities):
            _, toks, mask = encoded[m]
            positions = torch.arange(toks.shape[1], device=toks.device).clamp(
                max=self.spec.max_steps
            )
            tokens.append(toks + self.time(positions) + self.kind.weight[k])
            masks.append(mask)
        batch_size = tokens[0].shape[0]
        tokens.insert(0, self.cls.expand(batch_size, 1, -1))
        masks.insert(0, torch.ones(batch_size, 1, dtype=torch.bool, device=tokens[0].device))
        mixed = self.mixer(torch.cat(tokens, 1), src_key_padding_mask=~torch.cat(masks, 1))
        return self.head(mixed[:, 0]), None

    def _leader(self, batch, encoded):
        lead = self.spec.leader
        _, queries, qmask = encoded[lead]
        absent = ~batch[lead]["present"]
        queries = torch.where(absent[:, None, None], self.query.expand_as(queries), queries)
        qmask = qmask.clone()
        qmask[absent] = False
        qmask[absent, 0] = True
        state, follower_embeddings = queries, []
        for m, attention in self.cross.items():
            _, keys, kmask = encoded[m]
            null = self.null[m].expand(keys.shape[0], 1, -1)
            keys = torch.cat([null, keys], 1)
            kmask = torch.cat([torch.ones_like(kmask[:, :1]), kmask], 1)
            attended, _ = attention(state, keys, keys, key_padding_mask=~kmask)
            state = state + attended
            follower_embeddings.append(encoded[m][0])
        state = self.norm(state + self.ffn(state))
        return self.head(torch.cat([masked_mean(state, qmask), *follower_embeddings], -1)), None

    def _m2fnet(self, batch, encoded):
        _, queries, qmask = encoded["text"]
        absent = ~batch["text"]["present"]
        queries = torch.where(absent[:, None, None], self.query.expand_as(queries), queries)
        qmask = qmask.clone()
        qmask[absent] = False
        qmask[absent, 0] = True
        others = {m: encoded[m] for m in self.spec.modalities if m != "text"}
        for layer in self.fusion:
            queries = layer(queries, others)
        fused = masked_mean(queries, qmask)
        return self.head(torch.cat([fused, *(e for e, _, _ in others.values())], -1)), None


class M2FNetFusionLayer(nn.Module):
    """One multi-head attention fusion layer: text queries each other modality; sums, then FFN.

    Each other modality gets its own attention (text as query, that modality as key and value)
    and a learned null key, so a clip without that modality attends to nothing harmful.
    """

    def __init__(self, hidden: int, heads: int, dropout: float, modalities: list[str]):
        super().__init__()
        self.attend = nn.ModuleDict(
            {m: nn.MultiheadAttention(hidden, heads, dropout, batch_first=True) for m in modalities}
        )
        self.null = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(hidden) * 0.02) for m in modalities}
        )
        self.norm1 = nn.LayerNorm(hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = _mlp(hidden, 2 * hidden, hidden, dropout)

    def forward(self, queries: torch.Tensor, others: dict) -> torch.Tensor:
        attended = queries
        for m, attention in self.attend.items():
            _, keys, kmask = others[m]
            keys = torch.cat([self.null[m].expand(keys.shape[0], 1, -1), keys], 1)
            kmask = torch.cat([torch.ones_like(kmask[:, :1]), kmask], 1)
            attended = attended + attention(queries, keys, keys, key_padding_mask=~kmask)[0]
        queries = self.norm1(attended)
        return self.norm2(queries + self.ffn(queries))


def auxiliary_loss(aux, labels: torch.Tensor, loss_fn) -> torch.Tensor | None:
    """Late fusion also trains every modality's own classifier on the examples that have it."""
    if aux is None:
        return None
    logits, present = aux
    terms = [
        loss_fn(logits[present[:, k], k], labels[present[:, k]])
        for k in range(logits.shape[1])
        if present[:, k].any()
    ]
    return torch.stack(terms).mean() if terms else None
