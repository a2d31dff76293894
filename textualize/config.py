"""Configuration of a textualization run: one flat dataclass, fields grouped by stage.

Every field is a ``cer textualize`` flag and a key of ``--config FILE.yaml``. Extraction fields
(the first groups) decide what is computed and cached: each stage's frozen config (``FaceConfig``,
``ProsodyConfig``, ``SpeechConfig``, ``SpeechEmotionConfig``, beside its extractor) is built from
them by one method (``face_stage()``, ...), and that config's ``identity()`` is the stage's cache
key and its entry in ``run.json``. Rendering fields (template, modalities,
windows, reference, transcript source) only change how cached results are put into words; run
fields (workers, engine, Ray address, ...) only change where and how fast the same work is done.
Template, modalities, windows, prosody reference and describer default to None: "paper", "TVA",
whole clips, "speaker" ("dataset" for the paper2024 describer) and "graded", or, with
``reference``, what the fitted textualizer recorded.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the stage modules import pandas/numpy; `--help` must stay instant
    from textualize.faces import FaceConfig
    from textualize.prosody import ProsodyConfig
    from textualize.speech import SpeechConfig
    from textualize.speech_emotion import SpeechEmotionConfig

_DEFAULT_CACHE = os.environ.get("CER_CACHE_DIR") or str(
    Path.home() / ".cache" / "cer" / "textualize"
)


#: Same as textualize.faces.DETECTORS (kept here so `--help` does not import pandas).
FACE_DETECTORS = ("Detectorv2", "Detectorv1", "MPDetector")


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


@dataclass(frozen=True)
class TextualizeConfig:
    # --- where
    cache_dir: str = field(
        default=_DEFAULT_CACHE,
        metadata=_help(
            "Folder of the per-clip, per-stage cache (shared between runs; env CER_CACHE_DIR sets the default)"
        ),
    )
    labels: str | None = field(
        default=None,
        metadata=_help(
            "CSV with clip_id (or file) and label/split/speaker/gold_text/start/end columns; a row "
            "names its clip by clip id, path relative to the input folder (with or without "
            "suffix), file name or stem; a labels file matching no clip is an error, clips "
            "left without a row are a warning (an error with --strict)"
        ),
    )
    # --- media
    fps: float = field(default=5.0, metadata=_help("Video frames analysed per second of video"))
    # --- face (py-feat)
    face: str = field(
        default="auto",
        metadata=_help(
            "Face modality: auto = use py-feat if its weights are installed, else say so once and mark the "
            "visual modality unavailable; on = fail if it cannot run; off = skip",
            choices=("auto", "on", "off"),
        ),
    )
    face_detector: str = field(
        default="Detectorv2",
        metadata=_help(
            "py-feat detector: Detectorv2 (RetinaFace + one multitask network for AUs and emotions; "
            "recommended by py-feat 2.x), Detectorv1 (the classic landmarks + HOG + XGBoost AU pipeline "
            "with ResMaskNet emotions, for comparison with published py-feat results) or MPDetector "
            "(experimental MediaPipe generation)",
            choices=FACE_DETECTORS,
        ),
    )
    face_batch_size: int = field(default=16, metadata=_help("Frames per face-detector call"))
    face_threshold: float = field(
        default=0.5,
        metadata=_help("Face detection score (0-1) below which a detection is not a face"),
    )
    face_tables: str | None = field(
        default=None,
        metadata=_help(
            "Folder of precomputed py-feat or OpenFace 2.x CSVs named <clip_id>.csv or <file stem>.csv; "
            "used instead of running a detector"
        ),
    )
    # --- prosody (openSMILE)
    prosody: bool = field(default=True, metadata=_help("Extract eGeMAPSv02 prosody with openSMILE"))
    # --- transcript (Whisper)
    transcript: bool = field(default=True, metadata=_help("Transcribe speech with Whisper"))
    whisper_backend: str = field(
        default="faster-whisper",
        metadata=_help(
            "faster-whisper (CTranslate2, faster) or openai-whisper (the paper's reference)",
            choices=("faster-whisper", "openai-whisper"),
        ),
    )
    whisper_model: str = field(
        default="small",
        metadata=_help(
            "Whisper model name (downloaded from the Hub when online) or local path (CTranslate2 folder "
            "for faster-whisper, .pt file for openai-whisper)"
        ),
    )
    language: str | None = field(
        default=None, metadata=_help("Spoken language code (e.g. en); detected when unset")
    )
    vad: bool = field(default=True, metadata=_help("Voice-activity filtering before transcription"))
    beam_size: int = field(default=5, metadata=_help("Whisper beam size"))
    # --- optional speech-emotion model
    speech_emotion_model: str | None = field(
        default=None,
        metadata=_help(
            "Hugging Face audio-classification or arousal/valence/dominance model (name or local path)"
        ),
    )
    device: str = field(
        default="auto",
        metadata=_help("auto (GPU when present), cpu or cuda", choices=("auto", "cpu", "cuda")),
    )
    # --- rendering (cache-only: changing these never re-runs an extractor)
    template: str | None = field(
        default=None,
        metadata=_help(
            "Prompt template: paper, instruction, dialogue / instruction_dialogue (the same after "
            "the previous turns of a conversation, e.g. MELD's context), or a .j2 file path "
            "(default: paper, or the --reference textualizer's)"
        ),
    )
    modalities: str | None = field(
        default=None,
        metadata=_help(
            "Modalities in the prompt: any of T (transcript), V (visual), A (audio) (default: TVA, or "
            "the --reference textualizer's)"
        ),
    )
    window: float | None = field(
        default=None,
        metadata=_help(
            "Window length in seconds: one prompt per window instead of per clip (default: whole "
            "clips, or the --reference textualizer's windows)"
        ),
    )
    hop: float | None = field(
        default=None, metadata=_help("Window hop in seconds (default: the window length)")
    )
    prosody_reference: str | None = field(
        default=None,
        metadata=_help(
            "What prosody words are relative to: dataset (the training clips: split train when any "
            "clip has one, else all clips), speaker (each speaker against their own voice: graded, "
            "the median over all their clips, which needs no label; paper2024, their training clips; "
            "others against the dataset), builtin (fixed defaults); falls back when fewer than 20 "
            "voiced clips (default: speaker for graded, dataset for paper2024, or the --reference "
            "textualizer's)",
            choices=("dataset", "speaker", "builtin"),
        ),
    )
    describer: str | None = field(
        default=None,
        metadata=_help(
            "How the voice is put into words: graded (seven levels against the speaker's usual "
            "voice, cut points from the training clips' quantiles, pauses inside speech, changes "
            "over the clip, voice quality) or paper2024 (three levels at |z| >= 1, the words of "
            "published results) (default: graded, or the --reference textualizer's)",
            choices=("graded", "paper2024"),
        ),
    )
    prosody_quantiles: tuple[float, ...] = field(
        default=(),
        metadata=_help(
            "graded describer: the quantiles of the training clips' differences from their "
            "baseline that separate its levels, increasing in (0, 1); six give seven levels "
            "(default: 0.1 0.25 0.4 0.6 0.75 0.9)"
        ),
    )
    voice_reference: str | None = field(
        default=None,
        metadata=_help(
            "graded describer: a JSON from benchmarks/fit_prosody_reference.py to fall back on "
            "(register baselines, cut points, change thresholds) instead of the built-in one "
            "measured on RAVDESS"
        ),
    )
    reference: str | None = field(
        default=None,
        metadata=_help(
            "Render with a fitted textualizer instead of fitting one: a prior run's output folder "
            "or its textualizer.json. Its prosody statistics, label list, template, modalities and "
            "windows are used unchanged, so new clips get the words of training time; a flag that "
            "contradicts it is an error. A speaker it has no statistics for is described against "
            "its overall statistics, however many clips of that speaker this run holds"
        ),
    )
    transcript_source: str = field(
        default="whisper",
        metadata=_help(
            "whisper, gold (the manifest's gold_text) or auto (gold when present)",
            choices=("whisper", "gold", "auto"),
        ),
    )
    # --- run
    workers: int = field(
        default=0,
        metadata=_help(
            "Parallel worker processes (0 = all cores); with --engine ray and no --ray-address, the CPUs "
            "of the local Ray instance it starts"
        ),
    )
    engine: str = field(
        default="local",
        metadata=_help(
            "Where extraction runs: local (worker processes on this machine) or ray (Ray Data: CPU stages "
            "as tasks, one actor pool per model, GPUs when the cluster has them; pip install "
            "'cer-textualize[ray]'). Outputs and cache are the same either way",
            choices=("local", "ray"),
        ),
    )
    ray_address: str | None = field(
        default=None,
        metadata=_help(
            "Address of a running Ray cluster, e.g. ray://host:10001 or auto; unset: start a local "
            "Ray on this machine's CPUs. Every node needs cer-textualize installed and must see the "
            "clips and --cache-dir"
        ),
    )
    force: bool = field(default=False, metadata=_help("Recompute every stage, ignoring the cache"))
    strict: bool = field(
        default=False,
        metadata=_help(
            "Exit non-zero when any requested modality is missing for any clip; also make a --labels "
            "file that has no row for some clip an error (exit 2, before any extraction) instead of "
            "a warning"
        ),
    )
    progress: bool = field(default=True, metadata=_help("Show a progress bar"))

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError("fps must be positive")
        if self.window is not None and self.window <= 0:
            raise ValueError("window must be a positive number of seconds")
        if self.hop is not None and (self.window is None or self.hop <= 0):
            raise ValueError("hop needs a window and must be positive")
        if self.workers < 0:
            raise ValueError("workers must be 0 (all cores) or a positive count")
        q = self.prosody_quantiles
        if q and not (all(a < b for a, b in itertools.pairwise(q)) and 0 < q[0] and q[-1] < 1):
            raise ValueError(
                f"prosody_quantiles must increase strictly within (0, 1), e.g. 0.1 0.25 0.4 0.6 "
                f"0.75 0.9; got {' '.join(map(str, q))}"
            )
        if q and len(q) % 2:
            raise ValueError(
                "prosody_quantiles needs an even count, so that one level is 'as usual'"
            )
        if self.ray_address and self.engine != "ray":
            raise ValueError(
                "ray_address is only used by the Ray engine: add --engine ray (or drop --ray-address)"
            )

    @property
    def worker_count(self) -> int:
        return self.workers or (os.cpu_count() or 1)

    # The stage configs: the only place where these flags become a stage's settings.

    def face_stage(self) -> FaceConfig:
        from textualize.faces import FaceConfig

        return FaceConfig(
            detector=self.face_detector,
            device=self.device,
            batch_size=self.face_batch_size,
            face_threshold=self.face_threshold,
            fps=self.fps,
        )

    def prosody_stage(self) -> ProsodyConfig:
        from textualize.prosody import ProsodyConfig

        return ProsodyConfig()

    def speech_stage(self) -> SpeechConfig:
        from textualize.speech import SpeechConfig

        return SpeechConfig(
            backend=self.whisper_backend,
            model=self.whisper_model,
            language=self.language,
            vad=self.vad,
            beam_size=self.beam_size,
            device=self.device,
        )

    def speech_emotion_stage(self) -> SpeechEmotionConfig:
        from textualize.speech_emotion import SpeechEmotionConfig

        return SpeechEmotionConfig(model=self.speech_emotion_model, device=self.device)
