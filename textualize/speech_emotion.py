"""Speech emotion from the waveform with any Hugging Face audio-classification model.

Two kinds of model give two kinds of ``SpeechEmotion``:

- categorical (emotion classes such as angry/happy/neutral/sad): softmax probabilities per label
  (sigmoid scores for multi-label models), ``kind="categorical"``;
- dimensional (a regression head such as arousal/valence/dominance): the raw head outputs, one
  per dimension named from the model's ``id2label``, ``kind="dimensional"``.

The kind comes from the model's ``problem_type`` ("regression" is dimensional) or, when that is
unset, from its labels (all of arousal/valence/dominance is dimensional). A checkpoint whose
classification head is not in its weights (a bare wav2vec2, or a custom head that
``AutoModelForAudioClassification`` does not know) is refused: its scores would be random.

``SpeechEmotionConfig.identity`` names what changes the scores (model, kind, device, threads,
transformers and torch versions): the stage's cache key, its entry in ``run.json`` and, as text,
``SpeechEmotion.model``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from cer.fingerprints import model_identity
from textualize.records import SpeechEmotion
from textualize.speech import hub_offline
from textualize.stage_identity import identity_text, package_version, torch_device

MODEL_FLAG = "--speech-emotion-model"
KINDS = ("auto", "categorical", "dimensional")
DIMENSION_NAMES = frozenset({"arousal", "valence", "dominance"})
MIN_SECONDS = 0.1  # shorter audio is zero-padded: wav2vec2's convolutions need 400 samples


@dataclass(frozen=True)
class SpeechEmotionConfig:
    """Which speech-emotion model to run; ``model=None`` turns the stage off."""

    model: str | None = field(
        default=None,
        metadata={
            "help": "Hugging Face audio-classification model: a Hub name or a local folder "
            "(config.json, weights, preprocessor_config.json); unset = no speech emotion"
        },
    )
    device: str = field(
        default="auto",
        metadata={
            "help": "cpu, cuda or auto (cuda when available)",
            "choices": ("auto", "cpu", "cuda"),
        },
    )
    kind: str = field(
        default="auto",
        metadata={
            "help": "categorical (softmax over labels) or dimensional (raw regression outputs); "
            "auto decides from the model's problem_type and labels",
            "choices": KINDS,
        },
    )

    threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads, fixed so that every worker and engine computes the same "
            "bytes (float sums can differ in the last bit between thread counts)"
        },
    )

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown speech-emotion kind {self.kind!r}; use one of {KINDS}")

    def identity(self) -> dict:
        """Everything that changes this stage's scores: the cache key of the speech-emotion
        stage, its entry in ``run.json`` and (as text) ``SpeechEmotion.model``. No model is
        loaded; ``device`` is resolved to what will actually run."""
        return {
            "transformers": package_version("transformers"),
            "torch": package_version("torch"),
            "model": model_identity(self.model),
            "kind": self.kind,
            "device": torch_device(self.device),
            "threads": self.threads,
        }


class SpeechEmotionUnavailable(RuntimeError):
    """The speech-emotion model cannot be loaded; the message says what to fetch or install."""


class SpeechEmotionModel:
    """A loaded audio-classification model: build once per worker, then ``predict`` per clip."""

    def __init__(self, config: SpeechEmotionConfig) -> None:
        if not config.model:
            raise SpeechEmotionUnavailable(
                f"no speech-emotion model configured: pass {MODEL_FLAG} NAME_OR_PATH"
            )
        try:
            import torch
            from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
        except ImportError as err:
            raise SpeechEmotionUnavailable(
                "speech emotion needs transformers and torch: pip install 'cer-textualize[emotion]'"
            ) from err
        self.config = config
        name = os.path.expanduser(config.model)
        local = os.path.isdir(name)
        if not local and (
            os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1
        ):
            raise SpeechEmotionUnavailable(
                f"speech-emotion model folder {name} does not exist. {_how_to_get_one()}"
            )
        offline = hub_offline()
        try:
            self.model, info = AutoModelForAudioClassification.from_pretrained(
                name, local_files_only=offline, output_loading_info=True
            )
            encoder = self.model.base_model_prefix + "."
            head = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(encoder))
            if head:
                raise SpeechEmotionUnavailable(
                    f"{name} has no trained audio-classification head for "
                    f"{type(self.model).__name__} (missing weights: {', '.join(head[:4])}); its "
                    "scores would be random. Use a checkpoint fine-tuned with a standard "
                    "*ForSequenceClassification / *ForAudioClassification head."
                )
            self.extractor = AutoFeatureExtractor.from_pretrained(name, local_files_only=offline)
        except (OSError, ValueError, KeyError) as err:
            where = "folder" if local else "model"
            cause = (
                "it is not in the Hugging Face cache and HF_HUB_OFFLINE is set"
                if offline and not local
                else str(err).splitlines()[0].rstrip(".")
            )
            raise SpeechEmotionUnavailable(
                f"cannot load speech-emotion {where} {name!r}: {cause}. {_how_to_get_one()}"
            ) from err
        self.identity = config.identity()
        self.device = self.identity["device"]
        torch.set_num_threads(config.threads)
        self.model.to(self.device).eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.kind = config.kind if config.kind != "auto" else _kind_of(self.model.config)
        self.sampling_rate = int(getattr(self.extractor, "sampling_rate", 16_000))
        self.version = identity_text(self.identity)

    def predict(self, audio: np.ndarray, sample_rate: int = 16_000) -> SpeechEmotion:
        """Scores for one mono clip: probabilities per label, or raw values per dimension."""
        import torch

        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(
                f"predict() takes non-empty mono audio (one dimension), got shape {audio.shape}"
            )
        if sample_rate != self.sampling_rate:
            import audresample

            audio = audresample.resample(audio, sample_rate, self.sampling_rate)[0]
        shortest = int(MIN_SECONDS * self.sampling_rate)
        if audio.size < shortest:
            audio = np.pad(audio, (0, shortest - audio.size))
        inputs = self.extractor(audio, sampling_rate=self.sampling_rate, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits[0]
        logits = logits.float().cpu()
        if self.kind == "dimensional":
            values = logits
        elif self.model.config.problem_type == "multi_label_classification":
            values = torch.sigmoid(logits)
        else:
            values = torch.softmax(logits, dim=-1)
        scores = {label: float(v) for label, v in zip(self.labels, values.tolist())}
        return SpeechEmotion(scores=scores, kind=self.kind, model=self.version)


def _kind_of(model_config) -> str:
    if model_config.problem_type == "regression":
        return "dimensional"
    labels = {str(label).lower() for label in model_config.id2label.values()}
    if model_config.problem_type is None and labels and labels <= DIMENSION_NAMES:
        return "dimensional"
    return "categorical"


def _how_to_get_one() -> str:
    return (
        "Download a model once where the Hugging Face Hub is reachable, e.g. python -c "
        '"from huggingface_hub import snapshot_download; snapshot_download('
        "'superb/wav2vec2-base-superb-er', local_dir='models/ser')\", then pass "
        f"{MODEL_FLAG} models/ser (or leave {MODEL_FLAG} unset to skip speech emotion)"
    )
