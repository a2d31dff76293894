"""Speech emotion with real Hugging Face audio-classification models built tiny and random here
(no emotion weights ship offline): categorical and arousal/valence/dominance variants."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from textualize.speech_emotion import (
    SpeechEmotionConfig,
    SpeechEmotionModel,
    SpeechEmotionUnavailable,
)

EMOTIONS = ("angry", "happy", "neutral", "sad")
DIMENSIONS = ("arousal", "valence", "dominance")


def save_tiny_wav2vec2(folder, labels, problem_type=None, *, with_head=True) -> str:
    """A 2-layer random wav2vec2 classifier plus its feature extractor, saved like a Hub model."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
        Wav2Vec2Model,
    )

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=16,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type=problem_type,
    )
    model = (Wav2Vec2ForSequenceClassification if with_head else Wav2Vec2Model)(config)
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16_000, return_attention_mask=True).save_pretrained(
        folder
    )
    return str(folder)


@pytest.fixture(scope="module")
def voice(speak) -> np.ndarray:
    audio, _ = sf.read(
        speak("That is wonderful news, congratulations!", "wonderful"), dtype="float32"
    )
    return audio


@pytest.fixture(scope="module")
def categorical_model(tmp_path_factory) -> str:
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("ser_categorical"), EMOTIONS)


@pytest.fixture(scope="module")
def dimensional_model(tmp_path_factory) -> str:
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("ser_avd"), DIMENSIONS, "regression")


def raw_logits(path: str, audio: np.ndarray) -> np.ndarray:
    import torch
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    model = AutoModelForAudioClassification.from_pretrained(path).eval()
    inputs = AutoFeatureExtractor.from_pretrained(path)(
        audio, sampling_rate=16_000, return_tensors="pt"
    )
    with torch.inference_mode():
        return model(**inputs).logits[0].numpy()


def test_categorical_model_gives_a_probability_per_label(categorical_model, voice):
    model = SpeechEmotionModel(SpeechEmotionConfig(model=categorical_model, device="cpu"))
    emotion = model.predict(voice)

    assert emotion.kind == "categorical" and model.kind == "categorical"
    assert tuple(emotion.scores) == EMOTIONS
    assert sum(emotion.scores.values()) == pytest.approx(1.0, abs=1e-5)
    logits = raw_logits(categorical_model, voice)
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert list(emotion.scores.values()) == pytest.approx(softmax.tolist(), abs=1e-5)
    assert emotion.model == model.version and "ser_categorical" in model.version


def test_dimensional_model_gives_raw_values_named_from_id2label(dimensional_model, voice):
    model = SpeechEmotionModel(SpeechEmotionConfig(model=dimensional_model))
    emotion = model.predict(voice)

    assert emotion.kind == "dimensional"
    assert tuple(emotion.scores) == DIMENSIONS
    logits = raw_logits(dimensional_model, voice)
    assert list(emotion.scores.values()) == pytest.approx(logits.tolist(), abs=1e-5)


def test_dimension_labels_alone_make_a_model_dimensional(tmp_path, voice):
    path = save_tiny_wav2vec2(tmp_path / "avd_no_problem_type", ("Arousal", "Valence", "Dominance"))
    assert SpeechEmotionModel(SpeechEmotionConfig(model=path)).kind == "dimensional"
    forced = SpeechEmotionModel(SpeechEmotionConfig(model=path, kind="categorical"))
    assert forced.predict(voice).kind == "categorical"


def test_other_sample_rates_and_very_short_audio_are_handled(
    categorical_model, dimensional_model, voice
):
    import audresample

    model = SpeechEmotionModel(SpeechEmotionConfig(model=dimensional_model))
    at_44k = audresample.resample(voice, 16_000, 44_100)[0]
    resampled = list(model.predict(at_44k, sample_rate=44_100).scores.values())
    back_at_16k = audresample.resample(at_44k, 44_100, 16_000)[0]
    assert resampled == pytest.approx(list(model.predict(back_at_16k).scores.values()), abs=1e-6)
    misread = list(model.predict(at_44k, sample_rate=16_000).scores.values())
    assert max(abs(a - b) for a, b in zip(resampled, misread)) > 1e-4

    classifier = SpeechEmotionModel(SpeechEmotionConfig(model=categorical_model))
    blip = classifier.predict(voice[:80])  # 5 ms: shorter than wav2vec2's receptive field
    assert sum(blip.scores.values()) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="mono"):
        classifier.predict(np.zeros((2, 16_000), np.float32))


@pytest.mark.parametrize("name", ["/no/such/ser-model", "nobody/no-such-ser-model"])
def test_a_missing_model_fails_fast_with_the_fix(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import transformers  # noqa: F401  (time the look-up, not the one-off import)

    started = time.monotonic()
    with pytest.raises(SpeechEmotionUnavailable, match="--speech-emotion-model"):
        SpeechEmotionModel(SpeechEmotionConfig(model=name))
    assert time.monotonic() - started < 5


def test_a_checkpoint_without_a_classification_head_is_refused(tmp_path):
    bare = save_tiny_wav2vec2(tmp_path / "bare", EMOTIONS, with_head=False)
    with pytest.raises(SpeechEmotionUnavailable, match="no trained audio-classification head"):
        SpeechEmotionModel(SpeechEmotionConfig(model=bare))


def test_no_model_configured_says_which_flag_turns_it_on():
    with pytest.raises(SpeechEmotionUnavailable, match="--speech-emotion-model"):
        SpeechEmotionModel(SpeechEmotionConfig())
