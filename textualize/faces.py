"""Face action units and emotions per sampled video frame, with py-feat.

``FaceExtractor`` builds one py-feat detector and streams decoded frames through it in batches
(in memory, as tensors: no per-frame image files). Per frame it keeps the most confident face;
a frame without one becomes a ``face=False`` row with NaN values, never a "neutral" face. The
result is the canonical ``FaceTrack`` that ``face_tables.read_face_table`` also produces, plus
the kept face's box per frame (``FACE_BOX_COLUMNS``), so later steps can crop the face again,
and every face found (``FaceTrack.detections``), which ``track_faces`` links across frames by
box overlap, so that the words can follow one person (textualize/face_words.py).

py-feat downloads its weights from the Hugging Face Hub into its own package folder
(``<site-packages>/feat/resources``, in the Hub cache layout; ``HF_HOME`` is not used for them).
``check_face_backend`` looks for them there, offline, before any clip is processed.

``FaceConfig.identity`` names everything that changes a face track's bytes (detector, sampling
rate, threshold, batch, device, threads, py-feat and torch versions, a replaced multitask
checkpoint): the stage's cache key, its entry in ``run.json`` and, as text,
``FaceExtractor.version``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cer.fingerprints import model_identity
from textualize.face_tables import FEAT_EMOTION_NAMES, feat_frames
from textualize.records import (
    AU_COLUMNS,
    AU_SCALE_PROBABILITY,
    FACE_BOX_COLUMNS,
    FACE_DETECTION_COLUMNS,
    FACE_FRAME_COLUMNS,
    FaceTrack,
    VideoFrame,
)
from textualize.stage_identity import identity_text, package_version, torch_device

DETECTORS = ("Detectorv2", "Detectorv1", "MPDetector")
# py-feat 0.x/1.x called Detectorv1 plain "Detector"; that name is accepted for it.
DETECTOR_ALIASES = {"Detector": "Detectorv1"}

# (repo, file, fallback file) that each py-feat model fetches from the Hub; a fallback of None
# means py-feat asks for that one file only. Identity and gaze models are switched off.
RETINAFACE = ("py-feat/retinaface_r34", "model.safetensors", "retinaface_r34.safetensors")
MULTITASK = ("py-feat/face_multitask_v2", "face_multitask_v28.safetensors", None)
RESMASKNET = (
    ("py-feat/resmasknet", "config.json", None),
    ("py-feat/resmasknet", "ResMaskNet_Z_resmasking_dropout1_rot30.pth", None),
)
REQUIRED_WEIGHTS: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    "Detectorv2": (RETINAFACE, MULTITASK),
    "Detectorv1": (
        RETINAFACE,
        ("py-feat/mobilefacenet", "mobilefacenet_model_best.pth.tar", None),
        ("py-feat/xgb_au", "xgb_au_classifier_v2.skops", "xgb_au_classifier.skops"),
        *RESMASKNET,
    ),
    "MPDetector": (
        RETINAFACE,
        ("py-feat/mp_facemesh_v2", "face_landmarks_detector.pt", None),
        ("py-feat/mp_blendshapes", "face_blendshapes.pth", None),
        *RESMASKNET,
    ),
}
MULTITASK_ENV = "FEAT_MULTITASK_WEIGHTS"  # py-feat's own override: a local multitask checkpoint
# The columns of py-feat's result table that the canonical face track is built from.
_FEAT_COLUMNS = {"frame", "FaceScore", "FaceRectX", *AU_COLUMNS, *FEAT_EMOTION_NAMES}
_FEAT_BOX = ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight")


class FaceModelUnavailable(RuntimeError):
    """py-feat is not installed or its weights are not on disk; the message says how to fix it."""


@dataclass(frozen=True)
class FaceConfig:
    """How faces are found and read.

    The default detector is py-feat's ``Detectorv2``: RetinaFace boxes, then ONE multitask
    ConvNeXt-V2 network per face that predicts the same 20 AUs as the classic detector, the 7
    emotions, valence/arousal, gaze and pose. That is two weight files (RetinaFace-R34, 22M
    parameters, and the multitask checkpoint, about 40M) instead of Detectorv1's five (its
    ResMaskNet emotion model alone has 138M parameters), one batched network forward per face
    instead of landmarks + HOG features + 20 XGBoost classifiers on the CPU, and it is the
    detector py-feat 2.x recommends going forward.
    ``Detectorv1`` is the published py-feat 0.x/1.x pipeline (HOG + XGBoost AUs, ResMaskNet
    emotions), kept for comparison with papers that used it; ``MPDetector`` (MediaPipe mesh +
    blendshape-derived AUs) is marked experimental and slated for removal by py-feat.
    """

    detector: str = field(
        default="Detectorv2",
        metadata={
            "help": "py-feat detector: Detectorv2 (multitask model, recommended), Detectorv1 "
            "(classic HOG+XGBoost AUs, ResMaskNet emotions; 'Detector' is accepted for it) or "
            "MPDetector (experimental)",
            "choices": DETECTORS,
        },
    )
    device: str = field(
        default="auto", metadata={"help": "torch device for the detector: auto, cpu, cuda, ..."}
    )
    batch_size: int = field(default=16, metadata={"help": "frames per detector call"})
    face_threshold: float = field(
        default=0.5,
        metadata={"help": "RetinaFace score (0-1) below which a detection is not a face"},
    )
    fps: float = field(default=5.0, metadata={"help": "video frames analysed per second"})
    threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads. Float sums can differ in the last bit between thread "
            "counts, so the count is fixed: every worker, engine and resumed run computes the "
            "same bytes"
        },
    )

    def identity(self) -> dict:
        """Everything that changes this stage's face tracks: the cache key of the face stage,
        its entry in ``run.json`` and (as text) ``FaceExtractor.version``. No model is loaded;
        ``device`` is resolved to what will actually run."""
        detector = detector_class_name(self.detector)
        identity = {
            "py-feat": package_version("py-feat"),
            "torch": package_version("torch"),
            "detector": detector,
            "fps": self.fps,
            "threshold": self.face_threshold,
            # Batched convolutions may pick other kernels for other batch shapes.
            "batch_size": self.batch_size,
            "device": torch_device(self.device),
            "threads": self.threads,
            "format": FaceTrack.TABLE_FORMAT,  # every face per frame, not only the kept one
        }
        if detector == "Detectorv2":
            override = os.environ.get(MULTITASK_ENV)
            identity["multitask_weights"] = model_identity(override) if override else MULTITASK[1]
        return identity


def check_face_backend(config: FaceConfig) -> None:
    """Raise FaceModelUnavailable, offline and in well under a second, if the detector can't be built."""
    detector = detector_class_name(config.detector)
    resources = feat_resources()
    if resources is None:
        raise FaceModelUnavailable(
            "py-feat is not installed: pip install 'cer-textualize[faces]' (py-feat, torch, "
            "torchvision), or turn the face modality off (--face off)"
        )
    missing = [
        f"{repo}/{name}"
        for repo, name, fallback in REQUIRED_WEIGHTS[detector]
        if not _weight_on_disk(repo, name, fallback, resources)
    ]
    if missing:
        raise FaceModelUnavailable(_missing_weights_message(detector, missing, resources))


def detector_class_name(name: str) -> str:
    """The py-feat class a configured detector name stands for."""
    detector = DETECTOR_ALIASES.get(name, name)
    if detector not in DETECTORS:
        raise FaceModelUnavailable(
            f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}"
        )
    return detector


def feat_resources() -> Path | None:
    """py-feat's weight folder (a Hub cache), found without importing py-feat; None if absent."""
    spec = importlib.util.find_spec("feat")
    if spec is None or spec.origin is None or importlib.util.find_spec("torch") is None:
        return None
    return Path(spec.origin).parent / "resources"


def _weight_on_disk(repo: str, name: str, fallback: str | None, resources: Path) -> bool:
    if repo == MULTITASK[0] and os.environ.get(MULTITASK_ENV):
        return Path(os.environ[MULTITASK_ENV]).is_file()
    from huggingface_hub import try_to_load_from_cache

    for filename in (name, fallback):
        if filename and isinstance(
            try_to_load_from_cache(repo, filename, cache_dir=str(resources)), str
        ):
            return True
    return False


def _missing_weights_message(detector: str, missing: list[str], resources: Path) -> str:
    repos = sorted({m.rsplit("/", 1)[0] for m in missing})
    downloads = "; ".join(
        f"hf download {m.rsplit('/', 1)[0]} {m.rsplit('/', 1)[1]} --cache-dir {resources}"
        for m in missing
    )
    multitask_hint = (
        f"Detectorv2's multitask checkpoint may instead be any local file named by "
        f"${MULTITASK_ENV}. "
        if detector == "Detectorv2"
        else ""
    )
    return (
        f"py-feat {detector} weights are not on disk: {', '.join(missing)}. py-feat reads them "
        f"from its own Hub cache {resources} (not HF_HOME), and this machine cannot download "
        f"them (offline). On a connected machine with the same py-feat version run: {downloads}; "
        f"then copy the models--{{{','.join(r.replace('/', '--') for r in repos)}}} folders into "
        f"{resources}. {multitask_hint}Otherwise turn the face modality off (--face off; face: off "
        "in a config), or read precomputed py-feat/OpenFace tables with --face-tables DIR."
    )


class FaceExtractor:
    """One py-feat detector, built once; ``extract`` turns a stream of frames into a FaceTrack."""

    def __init__(self, config: FaceConfig):
        check_face_backend(config)
        self.config = config
        self.detector = detector_class_name(config.detector)
        self.identity = config.identity()
        self._device = self.identity["device"]
        self.version = identity_text(self.identity)
        import torch

        torch.set_num_threads(config.threads)
        grad_enabled = torch.is_grad_enabled()
        try:
            self._detector = _build_detector(self.detector, self._device)
        except (OSError, ValueError, RuntimeError) as err:
            raise FaceModelUnavailable(
                f"py-feat could not build {self.detector} on {self._device}: {err}"
            ) from err
        finally:
            # py-feat's RetinaFace constructor calls torch.set_grad_enabled(False) for the whole
            # process, which silently breaks any training done later in the same process.
            torch.set_grad_enabled(grad_enabled)
        face_model = getattr(self._detector, "face_detector", None) or getattr(
            self._detector, "facepose_detector", None
        )
        if face_model is not None and hasattr(face_model, "detection_threshold"):
            # RetinaFace drops boxes under its own 0.5 first; let a lower threshold through.
            face_model.detection_threshold = min(
                face_model.detection_threshold, config.face_threshold
            )

    def extract(self, frames: Iterable[VideoFrame]) -> FaceTrack:
        """Run the detector over ``frames`` in batches; one canonical row per frame."""
        parts = [self._detect(batch) for batch in _batches(frames, self.config.batch_size)]
        table = (
            pd.concat([frames for frames, _ in parts], ignore_index=True)
            if parts
            else pd.DataFrame(
                {c: pd.Series(dtype=float) for c in (*FACE_FRAME_COLUMNS, *FACE_BOX_COLUMNS)}
            )
        )
        table["face"] = table["face"].astype(bool)
        detections = pd.concat(
            [_empty_detections(), *(found for _, found in parts)], ignore_index=True
        )
        return FaceTrack(table, f"py-feat:{self.detector}", AU_SCALE_PROBABILITY, detections)

    def _detect(self, batch: list[VideoFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
        import torch

        images = torch.from_numpy(np.stack([f.image for f in batch])).permute(0, 3, 1, 2)
        results = self._detector.detect(
            images.contiguous(),
            data_type="tensor",
            batch_size=len(batch),
            face_detection_threshold=self.config.face_threshold,
            progress_bar=False,
        )
        # With data_type="tensor", py-feat numbers frames 0..len(batch)-1 in each call.
        wanted = [c for c in results.columns if c in _FEAT_COLUMNS]
        times = np.array([f.time for f in batch])
        table = feat_frames(pd.DataFrame(results[wanted]), times)
        return with_face_boxes(table, pd.DataFrame(results)), feat_detections(results, times)


def feat_detections(results: pd.DataFrame, times: np.ndarray) -> pd.DataFrame:
    """Every face of py-feat's results (not only the most confident one), as
    ``FACE_DETECTION_COLUMNS`` rows; frames without a face have none."""
    results = pd.DataFrame(results).reset_index(drop=True)
    if not len(results) or not set(_FEAT_BOX) <= set(results.columns):
        return _empty_detections()
    score = pd.to_numeric(results["FaceScore"], errors="coerce")
    frame = (
        results["frame"].astype(int)
        if "frame" in results.columns
        else pd.Series(np.arange(len(results)))
    )
    keep = score.notna() & (score > 0) & results["FaceRectX"].notna()
    keep &= (frame >= 0) & (frame < len(times))
    found = results[keep]
    out = _empty_detections(len(found))
    out["time"] = np.asarray(times, dtype=float)[frame[keep].to_numpy()]
    out["face_score"] = score[keep].to_numpy(dtype=float)
    for source, target in [(au, au) for au in AU_COLUMNS] + list(FEAT_EMOTION_NAMES.items()):
        if source in found.columns:
            out[target] = found[source].to_numpy(dtype=float)
    out[list(FACE_BOX_COLUMNS)] = found[list(_FEAT_BOX)].to_numpy(dtype=float)
    return out


def _empty_detections(rows: int = 0) -> pd.DataFrame:
    return pd.DataFrame(np.nan, index=range(rows), columns=list(FACE_DETECTION_COLUMNS))


def box_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``a`` (n, 4) and ``b`` (m, 4), each (x, y, width, height)."""
    ax, ay, aw, ah = (a[:, i : i + 1] for i in range(4))
    bx, by, bw, bh = (b[None, :, i] for i in range(4))
    inter_w = np.clip(np.minimum(ax + aw, bx + bw) - np.maximum(ax, bx), 0, None)
    inter_h = np.clip(np.minimum(ay + ah, by + bh) - np.maximum(ay, by), 0, None)
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


#: Least box overlap (IoU) between a face and a track's last box for the face to continue it.
MIN_TRACK_OVERLAP = 0.3


def track_faces(detections: pd.DataFrame, min_overlap: float = MIN_TRACK_OVERLAP) -> np.ndarray:
    """A track number per detection: faces linked across frames by box overlap.

    Frame by frame (``time``), each face continues the track whose last box it overlaps most
    (greedy, best pairs first, at most one face per track and frame, IoU >= ``min_overlap``);
    a face that continues none starts a new track. Tracks are numbered in order of appearance.
    """
    ids = np.full(len(detections), -1, dtype=int)
    boxes = detections[list(FACE_BOX_COLUMNS)].to_numpy(dtype=float)
    last_boxes: list[np.ndarray] = []
    for _, rows in sorted(detections.groupby("time").indices.items()):
        rows = np.asarray(rows)
        if last_boxes:
            overlap = box_overlap(boxes[rows], np.stack(last_boxes))
            for flat in np.argsort(-overlap, axis=None, kind="stable"):
                face, track = np.unravel_index(flat, overlap.shape)
                if overlap[face, track] < min_overlap:
                    break
                if ids[rows[face]] == -1 and track not in ids[rows]:
                    ids[rows[face]] = track
        for face in rows:
            if ids[face] == -1:
                ids[face] = len(last_boxes)
                last_boxes.append(boxes[face])
            else:
                last_boxes[ids[face]] = boxes[face]
    return ids


def with_face_boxes(table: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus the box of each frame's kept face: the most confident one, as in
    ``feat_frames`` (py-feat's placeholder rows of frames without a face have NaN boxes)."""
    boxes = np.full((len(table), len(FACE_BOX_COLUMNS)), np.nan)
    if set(_FEAT_BOX) <= set(results.columns) and len(results):
        results = results.reset_index(drop=True)
        score = pd.to_numeric(results["FaceScore"], errors="coerce")
        valid = score.notna() & (score > 0) & results["FaceRectX"].notna()
        frame = (
            results["frame"].astype(int)
            if "frame" in results.columns
            else pd.Series(np.arange(len(results)))
        )
        if valid.any():
            best = score[valid].groupby(frame[valid]).idxmax()
            best = best[(best.index >= 0) & (best.index < len(table))]
            kept = table["face"].to_numpy(bool)[best.index.to_numpy()]
            rows = best.to_numpy()[kept]
            boxes[best.index.to_numpy()[kept]] = results.loc[rows, list(_FEAT_BOX)].to_numpy(float)
    return table.assign(**dict(zip(FACE_BOX_COLUMNS, boxes.T)))


def _batches(frames: Iterable[VideoFrame], size: int) -> Iterator[list[VideoFrame]]:
    """Consecutive frames, at most ``size`` at a time, of one image shape (a detector batch)."""
    batch: list[VideoFrame] = []
    for frame in frames:
        if batch and (len(batch) >= size or frame.image.shape != batch[0].image.shape):
            yield batch
            batch = []
        batch.append(frame)
    if batch:
        yield batch


def _build_detector(name: str, device: str):
    """The py-feat detector with identity and gaze models off (unused, and more weights)."""
    if name == "Detectorv2":
        from feat.detector_v2 import Detectorv2

        return Detectorv2(device=device, identity_model=None)
    if name == "Detectorv1":
        from feat.detector import Detectorv1

        return Detectorv1(device=device, identity_model=None, gaze_model=None)
    from feat.MPDetector import MPDetector

    return MPDetector(
        device=device, emotion_model="resmasknet", identity_model=None, gaze_model=None
    )
