"""The ``m2fnet`` arm: text tokens query the audio and visual tokens in stacked fusion layers."""

from __future__ import annotations

import pytest
import torch

from cer.config import ConfigError
from featurebaseline.config import BaselineConfig
from featurebaseline.models import M2FNET_FUSION_LAYERS, FusionModel, ModelSpec

DIMS = {"text": (6, 0), "audio": (4, 5), "visual": (3, 0)}  # sequence, vector widths


def spec(modalities=("visual", "audio", "text")) -> ModelSpec:
    return ModelSpec(
        arm="m2fnet",
        temporal="conv",
        hidden=16,
        heads=2,
        dropout=0.0,
        classes=3,
        max_steps=8,
        modalities=modalities,
        dims={m: {"sequence": DIMS[m][0], "vector": DIMS[m][1]} for m in modalities},
    )


def tiny_batch(n: int = 48, steps: int = 8, seed: int = 0):
    """Labels carried by the audio; the text is noise and absent on a quarter of the clips."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    batch = {}
    for m, (seq, vec) in DIMS.items():
        present = torch.ones(n, dtype=torch.bool)
        if m == "text":
            present[::4] = False
        sequence = torch.randn(n, steps, seq, generator=g)
        if m == "audio":
            sequence[:, :, 0] += 2.0 * labels[:, None]
        batch[m] = {
            "present": present,
            "steps": torch.ones(n, steps, dtype=torch.bool),
            "sequence": sequence,
            "vector": torch.randn(n, vec, generator=g),
        }
    return batch, labels


def test_m2fnet_arm_trains_on_a_tiny_batch():
    torch.manual_seed(0)
    model = FusionModel(spec())
    assert len(model.fusion) == M2FNET_FUSION_LAYERS
    assert set(model.fusion[0].attend) == {"visual", "audio"}  # text is the query, never a key
    batch, labels = tiny_batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        logits, aux = model(batch)
        assert aux is None and logits.shape == (48, 3)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    accuracy = (model(batch)[0].argmax(-1) == labels).float().mean().item()
    assert losses[-1] < 0.5 * losses[0]
    assert accuracy > 0.9


def test_m2fnet_arm_needs_text_to_query_with():
    with pytest.raises(ValueError, match="needs the text modality"):
        FusionModel(spec(("visual", "audio")))


@pytest.mark.parametrize("modalities", ["VA", "T"])
def test_an_m2fnet_config_without_text_and_another_modality_names_the_fix(modalities):
    with pytest.raises(ConfigError, match="m2fnet arm needs text .* --modalities TA"):
        BaselineConfig(source="x", arm="m2fnet", modalities=modalities)
    assert BaselineConfig(source="x", arm="m2fnet", modalities="TA").arm == "m2fnet"
