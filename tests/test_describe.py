"""Numbers to words: action units with intensity and coverage, emotions, prosody against a reference."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from textualize.describe import (
    BUILTIN_PROSODY_REFERENCE,
    ProsodyReference,
    build_prosody_reference,
    describe_action_units,
    describe_prosody,
    describe_speech_emotion,
    describe_visual_emotions,
    summarize_face,
)
from textualize.records import (
    AU_COLUMNS,
    AU_SCALE_INTENSITY,
    EMOTION_COLUMNS,
    FaceTrack,
    SpeechEmotion,
)


def face_track(n=10, faces=None, scale="probability", **columns) -> FaceTrack:
    """n frames, all faces unless ``faces`` says otherwise; AU/emotion columns default to 0."""
    data = {"time": np.arange(n) / 5, "face": faces if faces is not None else [True] * n, "face_score": 0.99}
    for col in (*AU_COLUMNS, *EMOTION_COLUMNS):
        data[col] = columns.get(col, np.zeros(n))
    frame = pd.DataFrame(data)
    frame.loc[~frame["face"], [*AU_COLUMNS, *EMOTION_COLUMNS]] = np.nan
    return FaceTrack(frame, "test", scale)


def test_strong_smile_throughout_and_brief_slight_frown():
    au12 = np.full(10, 0.95)
    au04 = np.array([0.6, 0.6] + [0.1] * 8)
    text = describe_action_units(summarize_face(face_track(AU12=au12, AU04=au04)))
    assert text == "strong lip corner puller (AU12) throughout, slight brow lowerer (AU4) briefly"


def test_neutral_face_is_not_no_face():
    neutral = describe_action_units(summarize_face(face_track()))
    nobody = describe_action_units(summarize_face(face_track(faces=[False] * 10)))
    assert neutral.startswith("neutral face")
    assert nobody == "no face visible"


def test_face_seen_part_of_the_time_is_said():
    faces = [True] * 3 + [False] * 7
    text = describe_action_units(summarize_face(face_track(faces=faces, AU06=np.full(10, 0.9))))
    assert text.startswith("face visible only")
    assert "cheek raiser (AU6)" in text


def test_openface_intensities_use_facs_levels():
    # r = 3.5 / 5 = 0.7 -> strong (FACS D); r = 1.5 / 5 = 0.3 -> slight (FACS A-B)
    track = face_track(scale=AU_SCALE_INTENSITY, AU12=np.full(10, 0.7), AU01=np.full(10, 0.3))
    text = describe_action_units(summarize_face(track))
    assert "strong lip corner puller (AU12) throughout" in text
    assert "slight inner brow raiser (AU1) throughout" in text


def test_top_visual_emotions_with_strength():
    track = face_track(happiness=np.full(10, 0.7), surprise=np.full(10, 0.2), neutral=np.full(10, 0.1))
    assert describe_visual_emotions(summarize_face(track)) == "happiness (strong), surprise (weak)"


def prosody(**values):
    base = {name: mean for name, (mean, _) in BUILTIN_PROSODY_REFERENCE.items()}
    return {**base, "silent": False, **values}


def test_prosody_words_relative_to_the_builtin_reference():
    reference = build_prosody_reference([], "builtin")
    text = describe_prosody(prosody(pitch_mean_st=40, pitch_sd_st=6, loudness_mean=2.0, speaking_rate=4.5,
                                    pause_ratio=0.0), reference)
    assert text == "high, variable pitch; loud; fast speech; few pauses"
    assert describe_prosody(prosody(), reference) == "medium pitch; moderately loud; moderate tempo; some pauses"


def test_silence_is_said_as_silence():
    assert describe_prosody({"silent": True}, build_prosody_reference([], "builtin")).startswith("silence")


def test_dataset_reference_makes_words_relative_to_the_data():
    rng = np.random.default_rng(0)
    data = [(None, prosody(pitch_mean_st=float(v))) for v in rng.normal(45, 2, 50)]
    reference = build_prosody_reference(data, "dataset")
    assert reference.source == "dataset"
    # 45 semitones is "high" against the built-in reference but average in this dataset
    assert describe_prosody(prosody(pitch_mean_st=45), reference).startswith("medium")
    assert describe_prosody(prosody(pitch_mean_st=45), build_prosody_reference(data, "builtin")).startswith("high")


def test_speaker_reference_and_fallback_for_small_data():
    data = [("ann", prosody(pitch_mean_st=40.0 + i % 3)) for i in range(30)]
    data += [("bob", prosody(pitch_mean_st=25.0 + i % 3)) for i in range(30)]
    reference = build_prosody_reference(data, "speaker")
    assert describe_prosody(prosody(pitch_mean_st=41), reference, "ann").startswith("medium")
    assert describe_prosody(prosody(pitch_mean_st=41), reference, "bob").startswith("high")
    assert build_prosody_reference(data[:5], "dataset").source == "builtin"


def test_prosody_reference_survives_json():
    data = [("ann", prosody(pitch_mean_st=30.0 + i % 7)) for i in range(60)]
    reference = build_prosody_reference(data, "speaker")
    again = ProsodyReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert again == reference and again.by_speaker["ann"]["pitch_mean_st"] == reference.overall["pitch_mean_st"]


def test_speech_emotion_words():
    cat = SpeechEmotion({"anger": 0.61, "neutral": 0.2, "joy": 0.19}, "categorical")
    dim = SpeechEmotion({"arousal": 0.72, "valence": 0.31}, "dimensional")
    assert describe_speech_emotion(cat) == "anger (0.61), neutral (0.20)"
    assert describe_speech_emotion(dim) == "high arousal (0.72), low valence (0.31)"
