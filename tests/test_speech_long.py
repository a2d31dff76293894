"""Long audio is transcribed in chunks cut at quiet spots, with absolute timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from textualize.media import decode_audio
from textualize.speech import SpeechConfig, load_transcriber, quiet_cuts, transcribe_long


def test_cuts_land_in_the_quiet_gap():
    sr = 16_000
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, 25 * sr).astype(np.float32)
    audio[int(9.5 * sr) : int(10.5 * sr)] = 0  # the only quiet second, near the 10-s target
    cuts = quiet_cuts(audio, chunk_sec=10.0)
    assert cuts[0] == 0 and cuts[-1] == len(audio) and len(cuts) == 3
    assert 9.5 * sr <= cuts[1] < 10.5 * sr


@pytest.mark.slow
def test_chunked_transcript_keeps_words_and_absolute_times(speak, whisper_tiny):
    first = decode_audio(
        speak("Thank you very much for coming to the meeting today.", "m1", "-v", "en", "-s", "120")
    )
    second = decode_audio(
        speak("Please call me back when you get this message.", "m2", "-v", "en", "-s", "120")
    )
    gap = np.zeros(16_000, np.float32)
    audio = np.concatenate([first, gap, second])
    model = load_transcriber(SpeechConfig(model=whisper_tiny, language="en"))
    chunk = (len(first) + len(gap) // 2) / 16_000
    result = transcribe_long(model, audio, chunk_sec=chunk)
    text = result.text.lower()
    assert "meeting" in text and "call me back" in text
    back = [w for s in result.segments for w in s.words if "back" in w.word.lower()]
    assert back and back[0].start > len(first) / 16_000  # second chunk's times are offset
