"""Face words that say what py-feat and OpenFace measure, when it happens, and whose face it is.

Real inputs throughout: py-feat's own result tables and OpenFace table, py-feat's test videos
and its multi-face photograph, run through py-feat's detector code with only its two networks
replaced (test_faces.py explains the stand-ins), and a two-person video made here from that
photograph with a synthetic voice whose on/off pattern one of the two mouths follows.
"""

from __future__ import annotations

import math
import re
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("feat")
import torch
from media_factory import ffmpeg
from test_faces import (
    CENTRE_FACE,
    FEAT_DATA,
    LEFT_FACE,
    SINGLE_FACE_MP4,
    FakeMultitaskNet,
    FakeRetinaNet,
    _multi_face_image,
    feat_hub,  # noqa: F401  (py-feat with its two networks replaced)
)

from textualize.config import TextualizeConfig
from textualize.describe import summarize_face
from textualize.face_tables import read_face_table
from textualize.face_words import describe_face_course, summarize_face_course
from textualize.faces import FaceConfig, FaceExtractor, track_faces
from textualize.media import iter_frames
from textualize.pipeline import textualize
from textualize.records import (
    AU_COLUMNS,
    EMOTION_COLUMNS,
    OK,
    Clip,
    FaceTrack,
    ModalityStatus,
    VideoFrame,
)
from textualize.render import visual_text
from textualize.units import UnitFeatures, make_units

INTENSITY_WORDS = re.compile(r"intensity|\b(trace|slight|marked|severe|maximum|strong|moderate)\b")


def face_words(track: FaceTrack, voiced=()) -> str:
    return describe_face_course(summarize_face_course(track, voiced))[0]


def unit_of(track: FaceTrack) -> UnitFeatures:
    status = {m: ModalityStatus(OK) for m in ("face", "prosody", "transcript", "speech_emotion")}
    return UnitFeatures(Clip("c", "c.mp4"), "c", 0.0, 1.0, status, face=summarize_face(track))


# ---------------------------------------------------------------- what kind of number


def test_py_feat_probabilities_are_said_as_presence_never_as_intensity():
    smile = read_face_table(FEAT_DATA / "Feat_Test.csv")  # py-feat's result for a smiling face

    text = face_words(smile)

    assert text.startswith("lips part (AU25) clearly present throughout; ")
    assert "lip corner puller (AU12) clearly present throughout" in text  # probability 0.96
    assert "lid tightener (AU7) possibly present throughout" in text  # probability 0.69
    assert not INTENSITY_WORDS.search(text)
    video = face_words(read_face_table(FEAT_DATA / "001.csv", fps=30))
    assert "present" in video and not INTENSITY_WORDS.search(video)


def test_openface_intensities_get_facs_words_only_where_openface_calls_the_au_present(tmp_path):
    raw = pd.read_csv(FEAT_DATA / "OpenFace_Test.csv", skipinitialspace=True)
    raw.columns = raw.columns.str.strip()
    # OpenFace's regressor sees a smile (C) from frame 40, rising to D around frame 88; its
    # presence classifier agrees only from frame 70.
    row = raw.index.to_numpy()
    raw["AU12_r"] = np.select([(row >= 84) & (row <= 92), row >= 40], [4.3, 3.0], 0.0)
    raw["AU12_c"] = (row >= 70).astype(int)
    raw["AU15_r"], raw["AU15_c"] = 4.0, 0  # a strong regressor output the classifier rejects
    path = tmp_path / "openface.csv"
    raw.to_csv(path, index=False)

    text = face_words(read_face_table(path))

    assert text == (
        "marked lip corner puller (AU12, intensity C) at times, "
        "appears and peaks at severe (D) near the end"
    )
    assert "lip corner depressor" not in text
    # The real table alone: OpenFace calls AU05 and AU23 present in every frame at intensity ~0,
    # and AU04 in a third of them, mostly under A: none of it is a FACS-graded action unit.
    assert face_words(read_face_table(FEAT_DATA / "OpenFace_Test.csv")).startswith("neutral face")


# ---------------------------------------------------------------- when


def test_dynamics_on_a_real_py_feat_video_table():
    table = read_face_table(FEAT_DATA / "001.csv", fps=30)  # 40 frames of a real py-feat run
    raw = pd.read_csv(FEAT_DATA / "001.csv")

    text = face_words(table)

    # Where each AU's (3-frame smoothed) probability is highest, by the table itself.
    smoothed = raw[["AU25", "AU10"]].rolling(3, center=True, min_periods=1).mean()
    assert smoothed["AU25"].idxmax() >= 2 / 3 * 39 and smoothed["AU10"].idxmax() < 1 / 3 * 39
    assert "lips part (AU25) clearly present at times, peaks near the end" in text
    assert "upper lip raiser (AU10) possibly present most of the time, peaks early" in text
    # lip stretcher is certain in every frame: nothing happens to it, so no event is named
    assert "lip stretcher (AU20) clearly present throughout;" in text


def test_an_action_unit_that_comes_and_goes_says_when():
    times = np.arange(15) / 5
    au12 = np.where((times >= 1.0) & (times < 2.2), 0.9, 0.1)
    frames = pd.DataFrame({"time": times, "face": True, "face_score": 0.99})
    frames[[*AU_COLUMNS, *EMOTION_COLUMNS]] = 0.05
    frames["AU12"] = au12  # a smile from 1.0 s to 2.2 s of a 2.8 s unit

    assert face_words(FaceTrack(frames, "test")) == (
        "lip corner puller (AU12) clearly present at times, appears and peaks midway, "
        "fades near the end"
    )


# ---------------------------------------------------------------- whose face


@pytest.mark.usefixtures("feat_hub")
def test_a_real_video_through_py_feat_is_one_person_in_probability_words():
    FakeRetinaNet.faces = {(360, 640): [SINGLE_FACE_MP4]}
    frames = list(iter_frames(FEAT_DATA / "single_face.mp4", fps=5))
    track = FaceExtractor(FaceConfig(device="cpu")).extract(frames)

    course = summarize_face_course(track)

    assert len(track.detections) == len(frames) == 12 and set(track_faces(track.detections)) == {0}
    assert course.people == 1 and course.face_frames == 12
    text = describe_face_course(course)[0]
    assert "people visible" not in text and "present" in text
    assert not INTENSITY_WORDS.search(text)


@pytest.mark.usefixtures("feat_hub")
def test_two_people_in_a_photograph_and_no_voice_describe_the_largest():
    image = _multi_face_image()
    FakeRetinaNet.faces = {image.shape[:2]: [LEFT_FACE, CENTRE_FACE]}
    frames = [VideoFrame(t / 5, image) for t in range(5)]
    track = FaceExtractor(FaceConfig(device="cpu")).extract(frames)

    course = summarize_face_course(track)  # no voice: nothing to match a mouth with

    assert course.people == 2 and course.chosen == "largest"
    assert course.box[0] + course.box[2] / 2 == pytest.approx(585, abs=3)  # the centre face
    assert describe_face_course(course)[0].startswith(
        "two people visible, described is the largest face: "
    )


@pytest.mark.usefixtures("feat_hub")
def test_the_face_cache_keeps_every_face_and_old_tables_still_read():
    image = _multi_face_image()
    FakeRetinaNet.faces = {image.shape[:2]: [LEFT_FACE, CENTRE_FACE]}
    track = FaceExtractor(FaceConfig(device="cpu")).extract([VideoFrame(0.0, image)])

    again = FaceTrack.from_table(track.to_table(), track.source, track.au_scale)

    assert len(track.frames) == 1 and len(track.detections) == 2
    pd.testing.assert_frame_equal(again.frames, track.frames)
    pd.testing.assert_frame_equal(again.detections, track.detections)
    old = FaceTrack.from_table(track.frames, track.source, track.au_scale)  # cached before
    assert old.detections is None and summarize_face_course(old).people == 1


# The two mouths of the two-person video: open in alternate 0.2 s steps while they "talk".
VOICE_ON = (1.0, 3.0)  # seconds of the 4-second clip in which the synthetic voice sounds
SECONDS, VIDEO_FPS = 4.0, 10


class MouthReadingNet(FakeMultitaskNet):
    """The multitask stand-in, with lips part (AU25) and jaw drop (AU26) read from the crop:
    the share of near-black pixels in the lower middle of the face chip (an open mouth)."""

    def forward(self, x):
        from feat.multitask import AU_NAMES_V24

        out = super().forward(x)
        mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
        pixels = (x * std + mean).mean(dim=1)
        h, w = pixels.shape[1:]
        mouth = pixels[:, int(0.64 * h) : int(0.82 * h), int(0.38 * w) : int(0.62 * w)]
        opened = (mouth < 0.12).float().mean(dim=(1, 2))
        p_au = out["p_au"].clone()
        for au in ("AU25", "AU26"):
            p_au[:, AU_NAMES_V24.index(au)] = (0.05 + opened).clamp(max=0.95)
        return {**out, "p_au": p_au}


def _mouth_open(t: float, talking: bool) -> bool:
    return talking and int(t * 5 + 1e-6) % 2 == 1  # a new position at every sampled frame


def _two_person_video(path: Path, speaker: tuple, listener: tuple, voice_on: list) -> Path:
    """multi_face.jpg as a 4 s video whose ``speaker`` opens and closes the mouth while the voice
    sounds, and whose ``listener`` does so only while it is silent; with that voice as audio."""
    import av

    image = _multi_face_image()[:666]
    video = path.parent.parent / f"{path.stem}.video.mp4"  # outside the clips folder
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
        for i in range(int(SECONDS * VIDEO_FPS)):
            t = i / VIDEO_FPS
            voiced = any(a <= t < b for a, b in voice_on)
            frame = image.copy()
            for (x1, y1, x2, y2, _), talking in ((speaker, voiced), (listener, not voiced)):
                if _mouth_open(t, talking):
                    w, h = x2 - x1, y2 - y1
                    frame[
                        int(y1 + 0.68 * h) : int(y1 + 0.9 * h),
                        int(x1 + 0.3 * w) : int(x1 + 0.7 * w),
                    ] = 0
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    audio = video.with_suffix(".wav")
    _synthetic_voice(audio, voice_on)
    ffmpeg(
        "-i", str(video), "-i", str(audio), "-c:v", "copy", "-c:a", "aac", "-shortest", str(path)
    )
    return path


def _synthetic_voice(path: Path, voice_on: list, rate: int = 16_000) -> None:
    """A buzzing, voiced sound (ten harmonics of a 130 Hz pitch with vibrato) in ``voice_on``."""
    t = np.arange(int(SECONDS * rate)) / rate
    phase = 2 * np.pi * np.cumsum(130 + 12 * np.sin(2 * np.pi * 3 * t)) / rate
    buzz = sum(np.sin(k * phase) / k for k in range(1, 11))
    envelope = np.zeros_like(t)
    for a, b in voice_on:
        envelope[(t >= a) & (t < b)] = 0.3
    samples = (np.clip(buzz * envelope, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


@pytest.mark.slow
@pytest.mark.usefixtures("feat_hub")
def test_two_person_video_describes_the_one_whose_mouth_goes_with_the_voice(tmp_path, monkeypatch):
    import feat.multitask.inference as multitask

    monkeypatch.setattr(multitask, "MEGraphAUv2", MouthReadingNet)
    clips = tmp_path / "clips"
    clips.mkdir()
    # The same two people; in one clip the centre face talks, in the other the left one does.
    _two_person_video(clips / "centre_talks.mp4", CENTRE_FACE, LEFT_FACE, [VOICE_ON])
    _two_person_video(clips / "left_talks.mp4", LEFT_FACE, CENTRE_FACE, [VOICE_ON])
    FakeRetinaNet.faces = {(666, 1000): [LEFT_FACE, CENTRE_FACE]}
    cfg = TextualizeConfig(
        cache_dir=str(tmp_path / "cache"), face="on", fps=5, transcript=False, workers=1,
        progress=False,
    )  # fmt: skip

    textualize(clips, tmp_path / "out", cfg)

    rows = pd.read_parquet(tmp_path / "out" / "prompts.parquet").set_index("clip_id")
    for clip in ("centre_talks", "left_talks"):
        assert rows.loc[clip, "face_status"] == "ok" and rows.loc[clip, "prosody_status"] == "ok"
        assert rows.loc[clip, "visual_text"].startswith(
            "two people visible, described is the speaker's face (mouth moving with the voice): "
        )
    # which face was described: the speaker's, wherever they sit and whatever their size
    descriptors = {d.clip.clip_id: d for d in _cached_descriptors(clips, cfg)}
    centre_x = {clip: _described_centre(descriptors[clip]) for clip in descriptors}
    assert centre_x["centre_talks"] == pytest.approx((CENTRE_FACE[0] + CENTRE_FACE[2]) / 2, abs=5)
    assert centre_x["left_talks"] == pytest.approx((LEFT_FACE[0] + LEFT_FACE[2]) / 2, abs=5)
    # 2-second windows: each finds the speaker in its own frames and voice
    windows = [w.face.course for w in make_units(descriptors["left_talks"], window=2.0)]
    assert [(w.chosen, w.people) for w in windows] == [("speaker", 2), ("speaker", 2)]
    left_x = (LEFT_FACE[0] + LEFT_FACE[2]) / 2
    assert [w.box[0] + w.box[2] / 2 for w in windows] == pytest.approx([left_x, left_x], abs=5)

    # Rendering again comes from the cache (every face of every frame is in it): same words.
    FakeRetinaNet.faces = {}
    textualize(clips, tmp_path / "again", replace(cfg, template="instruction"))
    again = pd.read_parquet(tmp_path / "again" / "prompts.parquet").set_index("clip_id")
    assert again["visual_text"].to_dict() == rows["visual_text"].to_dict()
    assert "Their face: two people visible" in again.loc["left_talks", "prompt"]


def _cached_descriptors(clips: Path, cfg: TextualizeConfig):
    from textualize.cache import StageCache
    from textualize.extract import plan_extraction, read_cached
    from textualize.inputs import scan_folder

    plan = plan_extraction(cfg)
    return [read_cached(c, cfg, plan, StageCache(cfg.cache_dir)) for c in scan_folder(clips)]


def _described_centre(desc) -> float:
    from textualize.face_words import voiced_spans

    course = summarize_face_course(desc.face, voiced_spans(desc.prosody, desc.transcript))
    assert course.chosen == "speaker" and course.people == 2
    return course.box[0] + course.box[2] / 2


# ---------------------------------------------------------------- paper2024


def test_paper2024_face_words_are_unchanged():
    unit = unit_of(read_face_table(FEAT_DATA / "Feat_Test.csv"))

    old = visual_text(unit, "paper2024")

    assert old.action_units == (
        "strong lips part (AU25) throughout, strong lip corner puller (AU12) throughout, "
        "strong upper lip raiser (AU10) throughout, strong cheek raiser (AU6) throughout, "
        "slight lid tightener (AU7) throughout, slight dimpler (AU14) throughout"
    )
    assert old.emotions == "happiness (strong)"
    graded = visual_text(unit, "graded")
    assert graded.action_units.startswith("lips part (AU25) clearly present throughout")
    assert graded.emotions == "happiness (likely)"
    assert math.isclose(unit.face.au_means["AU12"], 0.964379, rel_tol=1e-5)  # numbers unchanged
