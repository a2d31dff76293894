"""The baseline learns from real extracted features: only the voice carries the label here.

Every sentence is spoken by a high, fast voice (class ``bright``) and a low, slow one (class
``dark``), so the words say nothing about the class. openSMILE runs for real on the espeak-ng
speech (through ``cer textualize``); the text arm embeds the words with the real MiniLM encoder.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from experiments.synthetic import SENTENCES as VOICE_CORPUS_SENTENCES
from experiments.synthetic import VOICES
from featurebaseline.config import BaselineConfig
from featurebaseline.features import assemble_features
from featurebaseline.runner import run_baseline
from textualize.config import TextualizeConfig
from textualize.pipeline import textualize

SENTENCES = VOICE_CORPUS_SENTENCES[:8]
LOUDNESS = ("100", "160")


@pytest.fixture(scope="module")
def voice_run(tmp_path_factory, speak):
    """A textualized set of 32 clips: 20 train, 4 val, 8 test (test sentences never trained on)."""
    folder = tmp_path_factory.mktemp("voice")
    rows = []
    for s, sentence in enumerate(SENTENCES):
        split = "train" if s < 5 else "val" if s == 5 else "test"
        for label, flags in VOICES.items():
            for amplitude in LOUDNESS:
                clip_id = f"s{s}_{label}_a{amplitude}"
                path = speak(sentence, clip_id, *flags, "-a", amplitude)
                rows.append(
                    {
                        "clip_id": clip_id,
                        "path": str(path),
                        "label": label,
                        "split": split,
                        "gold_text": sentence,
                    }
                )
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    cfg = TextualizeConfig(
        cache_dir=str(folder / "cache"), face="off", transcript=False, workers=1, progress=False
    )
    textualize(manifest, folder / "out", cfg)
    return folder


def config(voice_run, **overrides) -> BaselineConfig:
    base = BaselineConfig(
        source=str(voice_run / "out"),
        output_dir=str(voice_run / "runs"),
        epochs=25,
        patience=8,
        batch_size=8,
        hidden=32,
        learning_rate=3e-3,
        grid_hz=10,
        max_steps=48,
        seeds=(0,),
    )
    return replace(base, **overrides)


def test_features_come_from_the_cache_aligned_on_a_time_grid(voice_run):
    features = assemble_features(config(voice_run, modalities="TA"))
    audio, text = features.modalities["audio"], features.modalities["text"]

    assert len(features) == 32 and audio.present.all() and text.present.all()
    assert "Loudness_sma3" in audio.sequence_columns and len(audio.vector_columns) == 88
    # the slow voice speaks the same words over more grid steps than the fast one
    steps = pd.Series(audio.steps.sum(1), index=features.rows["clip_id"])
    assert steps["s0_dark_a100"] > 1.5 * steps["s0_bright_a100"]
    # the same sentence has the same embedding whoever speaks it
    rows = features.rows.reset_index(drop=True)
    first = rows.index[rows["clip_id"] == "s0_bright_a100"][0]
    second = rows.index[rows["clip_id"] == "s0_dark_a160"][0]
    assert (text.vector[first] == text.vector[second]).all()


def test_token_states_of_minilm_are_a_masked_sequence_cached_beside_the_mean(
    voice_run, monkeypatch
):
    from transformers import AutoTokenizer

    from featurebaseline.encoders import resolve_model

    cfg = config(voice_run, modalities="T", text_pooling="both", text_max_tokens=12)
    features = assemble_features(cfg)
    text = features.modalities["text"]
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("bundled-minilm"))
    texts = pd.read_parquet(voice_run / "out" / "prompts.parquet").set_index("clip_id")["gold_text"]
    counts = [len(tokenizer(texts[c])["input_ids"]) for c in features.rows["clip_id"]]

    assert text.sequence.shape == (32, 12, 384) and text.vector.shape == (32, 384)
    assert text.steps.sum(1).tolist() == [min(n, 12) for n in counts]  # long ones are cut at 12
    soup = features.rows.index[features.rows["clip_id"] == "s7_dark_a100"][0]
    assert counts[soup] == 9  # [CLS] the soup is on the stove . [SEP]
    assert not text.sequence[soup, 9:].any()
    # the sentence vector is the mean of the same pass's token states
    assert text.sequence[soup, :9].mean(0) == pytest.approx(text.vector[soup], abs=1e-5)
    monkeypatch.setattr(
        "featurebaseline.encoders.TextEncoder._run",
        lambda *a: pytest.fail("cached token states were computed again"),
    )
    again = assemble_features(replace(cfg, text_pooling="tokens")).modalities["text"]
    assert again.vector is None and np.array_equal(again.sequence, text.sequence)


@pytest.mark.parametrize(
    "arm,modalities,text_pooling",
    [
        ("early", "TA", "mean"),
        ("attention", "TA", "mean"),
        ("attention", "TA", "tokens"),
        ("late", "TA", "mean"),
        ("leader", "TA", "both"),
        ("unimodal", "A", "mean"),
    ],
)
def test_arms_with_the_voice_beat_chance(voice_run, arm, modalities, text_pooling):
    cfg = config(
        voice_run,
        arm=arm,
        modalities=modalities,
        leader="A",
        text_pooling=text_pooling,
        output_dir=str(voice_run / f"run_{arm}_{text_pooling}"),
    )
    run = run_baseline(cfg).runs[0]

    test = run.metrics["test"]["rows"]
    assert test["accuracy"] >= 0.875 and test["macro_f1"] >= 0.85, (arm, test)
    predictions = pd.read_parquet(run.run_dir / "predictions.parquet")
    assert {"prob_bright", "prob_dark", "gold", "predicted", "run_id"} <= set(predictions.columns)


@pytest.mark.parametrize("text_pooling", ["mean", "tokens"])
def test_text_alone_stays_at_chance(voice_run, text_pooling):
    cfg = config(
        voice_run,
        arm="unimodal",
        modalities="T",
        text_pooling=text_pooling,
        output_dir=str(voice_run / f"run_text_{text_pooling}"),
    )
    test = run_baseline(cfg).runs[0].metrics["test"]["rows"]

    # both voices of a sentence share one embedding, so exactly one of each pair can be right
    assert test["accuracy"] == pytest.approx(0.5)
