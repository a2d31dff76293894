"""Transcripts from real Whisper models on speech synthesized with espeak-ng, all offline."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import soundfile as sf

from textualize.records import Transcript
from textualize.speech import (
    SAMPLE_RATE,
    SpeechConfig,
    TranscriberUnavailable,
    load_transcriber,
    speech_regions,
)

FIRST = "Please leave me alone, I do not want to talk about it."
SECOND = "I am so tired of waiting here every single morning."


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = words_of(reference), words_of(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


@pytest.fixture(scope="module")
def dialogue(speak) -> tuple[np.ndarray, float]:
    """1.5 s of silence, FIRST, 1 s of silence, SECOND; and when SECOND starts (s)."""
    first, rate = sf.read(speak(FIRST, "leave_me_alone"), dtype="float32")
    second, _ = sf.read(speak(SECOND, "so_tired"), dtype="float32")
    assert rate == SAMPLE_RATE
    audio = np.concatenate([silence(1.5), first, silence(1.0), second])
    return audio, (audio.size - second.size) / SAMPLE_RATE


@pytest.fixture(scope="module")
def tiny(whisper_tiny):
    return load_transcriber(SpeechConfig(model=whisper_tiny, language="en", threads=2))


def test_faster_whisper_transcribes_synthesized_speech(tiny, dialogue):
    audio, second_starts = dialogue
    transcript = tiny.transcribe(audio)

    assert word_error_rate(f"{FIRST} {SECOND}", transcript.text) <= 0.15, transcript.text
    assert {"alone", "talk", "tired", "waiting", "morning"} <= set(words_of(transcript.text))
    assert transcript.language == "en"
    assert transcript.backend == tiny.version
    assert transcript.text == " ".join(s.text for s in transcript.segments)

    words = [w for s in transcript.segments for w in s.words]
    duration = audio.size / SAMPLE_RATE
    assert all(0 <= w.start <= w.end <= duration for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    # Timestamps count from the start of the audio passed in: leading silence and the gap show.
    assert words[0].start >= 1.0
    tired = next(w for w in words if "tired" in w.word.lower())
    assert tired.start >= second_starts - 0.3
    assert all(s.no_speech_prob is not None and s.no_speech_prob < 0.5 for s in transcript.segments)
    assert "morning" in transcript.between(second_starts, duration)

    again = Transcript.from_json(transcript.to_json())
    assert again == transcript


def test_silence_and_noise_give_an_empty_transcript(tiny, whisper_tiny):
    noise = np.random.default_rng(0).normal(0, 0.003, 3 * SAMPLE_RATE).astype(np.float32)
    for audio in (silence(3), noise, silence(0)):
        transcript = tiny.transcribe(audio)
        assert transcript.text == "" and transcript.segments == ()
        assert transcript.language == "en"

    # Without VAD, tiny.en writes "You" on silence with no_speech_prob ~0.95; it is dropped.
    no_vad = load_transcriber(SpeechConfig(model=whisper_tiny, vad=False, threads=2))
    assert no_vad.transcribe(silence(3)).segments == ()
    keep_all = load_transcriber(
        SpeechConfig(model=whisper_tiny, vad=False, max_no_speech_prob=None, threads=2)
    )
    hallucinated = keep_all.transcribe(silence(3)).segments
    assert hallucinated and all(s.no_speech_prob > 0.8 for s in hallucinated)


def test_model_is_loaded_once_for_many_clips(whisper_tiny, speak, monkeypatch):
    import faster_whisper

    loads = []

    class CountingModel(faster_whisper.WhisperModel):
        def __init__(self, *args, **kwargs):
            loads.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(faster_whisper, "WhisperModel", CountingModel)
    transcriber = load_transcriber(SpeechConfig(model=whisper_tiny, beam_size=1, threads=2))
    clip, _ = sf.read(speak(SECOND, "so_tired"), dtype="float32")
    texts = [transcriber.transcribe(clip).text for _ in range(3)]

    assert loads == [whisper_tiny]
    assert texts[0] == texts[1] == texts[2] and "morning" in texts[0].lower()


def test_version_names_backend_model_and_decoding_options(tiny, whisper_tiny):
    assert tiny.version.startswith("backend=faster-whisper==")
    assert " model=model@" in tiny.version and "compute_type=int8" in tiny.version
    greedy = load_transcriber(SpeechConfig(model=whisper_tiny, language="en", beam_size=1))
    assert greedy.version != tiny.version  # a different cache key for a different decode


def test_batched_pipeline_gives_the_same_words(whisper_tiny, speak):
    clip, _ = sf.read(speak(FIRST, "leave_me_alone"), dtype="float32")
    batched = load_transcriber(
        SpeechConfig(model=whisper_tiny, language="en", batch_size=4, threads=2)
    )
    transcript = batched.transcribe(clip)
    assert word_error_rate(FIRST, transcript.text) <= 0.15, transcript.text
    assert all(
        0 <= w.start <= w.end <= clip.size / SAMPLE_RATE for w in transcript.segments[0].words
    )


def test_speech_regions_find_the_speech(dialogue):
    audio, second_starts = dialogue
    regions = speech_regions(audio)
    assert regions and 0.9 <= regions[0][0] <= 1.6
    assert regions[-1][1] >= second_starts + 1.0
    assert speech_regions(silence(2)) == []


@pytest.mark.parametrize("backend", ["faster-whisper", "openai-whisper"])
@pytest.mark.parametrize("model", ["/no/such/whisper-model", "small", "no-such-model"])
def test_missing_model_fails_fast_and_names_the_flag(backend, model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import whisper  # noqa: F401  (time the model look-up, not the one-off torch import)

    started = time.monotonic()
    with pytest.raises(TranscriberUnavailable, match="--whisper-model"):
        load_transcriber(SpeechConfig(backend=backend, model=model, download_root=str(tmp_path)))
    assert time.monotonic() - started < 5


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(TranscriberUnavailable, match="model.bin"):
        load_transcriber(SpeechConfig(model=str(tmp_path)))


@pytest.fixture(scope="module")
def random_openai_whisper(tmp_path_factory) -> str:
    """A tiny randomly initialised openai-whisper model saved the way load_model(path) reads.

    Random weights give near-uniform logits: greedy decoding would hang on float noise and the
    seek loop could crawl. So the decoder blocks are silenced (their output projections zeroed)
    and the positional embedding alone spells ``<|0.00|> banana banana <|1.00|> <|endoftext|>``:
    the encoder, cross-attention, word alignment and all of the transcribe loop still run.
    """
    import torch
    from whisper.model import ModelDimensions, Whisper
    from whisper.tokenizer import get_tokenizer

    torch.manual_seed(0)
    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,  # 30 s of mel frames after the stride-2 convolution; fixed by Whisper
        n_audio_state=64,
        n_audio_head=2,
        n_audio_layer=2,
        n_vocab=51864,  # English-only vocabulary, as in tiny.en
        n_text_ctx=64,
        n_text_state=64,
        n_text_head=2,
        n_text_layer=2,
    )
    model = Whisper(dims)
    tokenizer = get_tokenizer(multilingual=False)
    (banana,) = tokenizer.encode(" banana")
    script = [tokenizer.timestamp_begin, banana, banana, tokenizer.timestamp_begin + 50]
    script.append(tokenizer.eot)  # the token predicted at position p is script[p]; p=0 is <|sot|>
    with torch.no_grad():
        for block in model.decoder.blocks:
            for layer in (block.attn.out, block.cross_attn.out, block.mlp[2]):
                layer.weight.zero_()
                layer.bias.zero_()
        embedding = model.decoder.token_embedding.weight
        # Whisper leaves this one torch.empty (checkpoints fill it): uninitialised memory.
        model.decoder.positional_embedding.normal_(std=0.02)
        for token in set(script):
            embedding[token] *= 3  # a decisive logit for the scripted tokens
        for position, token in enumerate(script):
            direction = embedding[token] / embedding[token].norm()
            model.decoder.positional_embedding[position] = 1000 * direction
    path = tmp_path_factory.mktemp("openai_whisper") / "random-tiny.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, path)
    return str(path)


@pytest.mark.slow
def test_openai_whisper_backend_returns_a_well_formed_transcript(random_openai_whisper, dialogue):
    audio, _ = dialogue
    transcriber = load_transcriber(
        SpeechConfig(backend="openai-whisper", model=random_openai_whisper, threads=2)
    )
    transcript = transcriber.transcribe(audio)

    assert transcriber.version.startswith("backend=openai-whisper==")
    assert "model=random-tiny.pt@" in transcriber.version
    assert transcript.backend == transcriber.version and transcript.language == "en"
    assert transcript.text == "banana banana"
    (segment,) = transcript.segments
    assert segment.text == "banana banana"
    assert [w.word for w in segment.words] == ["banana", "banana"]
    # Decoding starts where the VAD found speech, and times count from the start of the audio.
    speech_start, speech_end = speech_regions(audio)[0]
    assert speech_start - 0.05 <= segment.start <= segment.end <= speech_end
    assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)
    assert 0 <= segment.no_speech_prob < 0.5

    # The VAD finds no speech in silence, so nothing is decoded at all.
    assert transcriber.transcribe(silence(2)) == Transcript("", "en", (), transcriber.version)
