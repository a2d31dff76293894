"""A synthetic video corpus where only the voice carries the label, for studies that run anywhere.

Every sentence is spoken (espeak-ng) by a high, fast voice (class ``bright``) and by a low, slow
voice (class ``dark``), each at two loudness levels, and muxed with an ffmpeg test-pattern
picture into an MP4 clip. The words are the same for both classes, so a model that reads only
the words stays at chance, and one that hears the voice does better. Splits go by sentence: the
test sentences are never trained on. The folder is what ``data_cards.prepare_folder`` reads::

    OUT/clips/<clip_id>.mp4   OUT/labels.csv (file, label, split, text, video = sentence)
    OUT/synthetic.json        the options that made it (a different set regenerates)

Generation is deterministic and resumable: a clip already on disk is kept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SENTENCES = (
    "I did not expect to see you here today.",
    "The meeting starts in ten minutes.",
    "Please put the box on the table.",
    "We are going to the coast this weekend.",
    "She said the train was late again.",
    "Turn left after the second bridge.",
    "My brother bought a new bicycle.",
    "The soup is on the stove.",
    "He left his keys in the kitchen.",
    "The library closes at six.",
)
#: espeak-ng pitch (0-99) and speed (words per minute) of each class's voice.
VOICES = {"bright": ("-p", "80", "-s", "220"), "dark": ("-p", "15", "-s", "110")}
SAMPLE_RATE_HZ = 16_000
LABELS_FILE = "labels.csv"
OPTIONS_FILE = "synthetic.json"


class SyntheticCorpusError(RuntimeError):
    """The synthetic corpus cannot be made here; the message says what to install or change."""


@dataclass(frozen=True)
class SyntheticOptions:
    """How many clips, which splits, what the picture looks like (keys of a study's ``prepare:``)."""

    sentences: int = field(
        default=8, metadata={"help": f"distinct sentences (at most {len(SENTENCES)})"}
    )
    val_sentences: int = field(default=1, metadata={"help": "sentences held out for validation"})
    test_sentences: int = field(default=2, metadata={"help": "sentences held out for testing"})
    amplitudes: tuple[int, ...] = field(
        default=(100, 160), metadata={"help": "espeak-ng amplitudes: one clip per voice and level"}
    )
    video_size: str = field(default="160x120", metadata={"help": "test-pattern picture size"})
    video_fps: int = field(default=10, metadata={"help": "test-pattern frame rate"})

    def __post_init__(self) -> None:
        if not 3 <= self.sentences <= len(SENTENCES):
            raise ValueError(f"sentences must be between 3 and {len(SENTENCES)}")
        if self.val_sentences < 1 or self.test_sentences < 1:
            raise ValueError("val_sentences and test_sentences must be at least 1")
        if self.val_sentences + self.test_sentences >= self.sentences:
            raise ValueError(
                "val_sentences + test_sentences must leave at least one sentence for training"
            )
        if not self.amplitudes:
            raise ValueError("amplitudes must list at least one espeak-ng amplitude, e.g. [100]")

    def split_of(self, sentence: int) -> str:
        train = self.sentences - self.val_sentences - self.test_sentences
        return (
            "train"
            if sentence < train
            else "val"
            if sentence < train + self.val_sentences
            else "test"
        )


def _require_tools() -> dict[str, str]:
    tools = {name: shutil.which(name) for name in ("espeak-ng", "ffmpeg")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        raise SyntheticCorpusError(
            f"{' and '.join(missing)} not found on PATH; the synthetic corpus speaks its sentences "
            "with espeak-ng and writes video with ffmpeg: apt-get install espeak-ng ffmpeg "
            "(or brew install espeak-ng ffmpeg)"
        )
    return tools  # type: ignore[return-value]


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True)
    except subprocess.CalledProcessError as err:
        stderr = err.stderr.decode(errors="replace").strip()
        raise SyntheticCorpusError(f"{Path(command[0]).name} failed: {stderr}") from err


def _make_clip(
    tools: dict[str, str],
    text: str,
    voice: tuple[str, ...],
    amplitude: int,
    options: SyntheticOptions,
    target: Path,
) -> None:
    with tempfile.TemporaryDirectory() as work:
        speech = Path(work) / "speech.wav"
        _run([tools["espeak-ng"], *voice, "-a", str(amplitude), "-w", str(speech), text])
        partial = target.with_name(f".{target.stem}.part.mp4")
        picture = f"testsrc=size={options.video_size}:rate={options.video_fps}"
        _run(
            [
                tools["ffmpeg"],
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                picture,
                "-i",
                str(speech),
                "-map",
                "0:v",
                "-map",
                "1:a",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                "-threads",
                "1",
                "-c:a",
                "aac",
                "-ar",
                str(SAMPLE_RATE_HZ),
                "-ac",
                "1",
                "-shortest",
                str(partial),
            ]
        )
        os.replace(partial, target)


def make_synthetic_corpus(
    output_dir: str | Path, options: SyntheticOptions = SyntheticOptions()
) -> Path:
    """Write the clips and ``labels.csv`` into ``output_dir``; returns the labels CSV path."""
    import pandas as pd

    tools = _require_tools()
    output = Path(output_dir)
    clips = output / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    wanted = json.loads(json.dumps(dataclasses.asdict(options)))
    options_path = output / OPTIONS_FILE
    if options_path.is_file() and json.loads(options_path.read_text()) != wanted:
        log.info("synthetic corpus options changed; regenerating %s", clips)
        shutil.rmtree(clips)
        clips.mkdir()
    rows, made = [], 0
    for s, text in enumerate(SENTENCES[: options.sentences]):
        for label, voice in VOICES.items():
            for amplitude in options.amplitudes:
                clip_id = f"s{s}_{label}_a{amplitude}"
                target = clips / f"{clip_id}.mp4"
                if not target.is_file():
                    _make_clip(tools, text, voice, amplitude, options, target)
                    made += 1
                rows.append(
                    {
                        "file": target.name,
                        "label": label,
                        "split": options.split_of(s),
                        "text": text,
                        # the sentence is the unit kept on one side of a split (leakage check)
                        "video": f"sentence{s}",
                    }
                )
    labels = output / LABELS_FILE
    pd.DataFrame(rows).to_csv(labels, index=False)
    options_path.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
    log.info("synthetic corpus: %d clips in %s (%d made now)", len(rows), clips, made)
    return labels
