"""Numbers to words: action units with intensity and coverage, emotions, prosody against a reference."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from textualize.describe import (
    PAPER2024_REFERENCE,
    ProsodyReference,
    build_prosody_reference,
    builtin_graded_reference,
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
    data = {
        "time": np.arange(n) / 5,
        "face": faces if faces is not None else [True] * n,
        "face_score": 0.99,
    }
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
    track = face_track(
        happiness=np.full(10, 0.7), surprise=np.full(10, 0.2), neutral=np.full(10, 0.1)
    )
    assert describe_visual_emotions(summarize_face(track)) == "happiness (strong), surprise (weak)"


def prosody(**values):
    base = {name: mean for name, (mean, _) in PAPER2024_REFERENCE.items()}
    return {**base, "silent": False, **values}


def test_paper2024_describer_still_gives_the_published_words():
    reference = build_prosody_reference([], "builtin", "paper2024")
    text = describe_prosody(
        prosody(
            pitch_mean_st=40, pitch_sd_st=6, loudness_mean=2.0, speaking_rate=4.5, pause_ratio=0.0
        ),
        reference,
    )
    assert text == "high, variable pitch; loud; fast speech; few pauses"
    assert (
        describe_prosody(prosody(), reference)
        == "medium pitch; moderately loud; moderate tempo; some pauses"
    )


def test_silence_is_said_as_silence():
    assert describe_prosody(
        {"silent": True}, build_prosody_reference([], "builtin", "paper2024")
    ).startswith("silence")


def test_dataset_reference_makes_words_relative_to_the_data():
    rng = np.random.default_rng(0)
    data = [(None, prosody(pitch_mean_st=float(v))) for v in rng.normal(45, 2, 50)]
    reference = build_prosody_reference(data, "dataset", "paper2024")
    assert reference.source == "dataset"
    # 45 semitones is "high" against the built-in reference but average in this dataset
    assert describe_prosody(prosody(pitch_mean_st=45), reference).startswith("medium")
    assert describe_prosody(
        prosody(pitch_mean_st=45), build_prosody_reference(data, "builtin", "paper2024")
    ).startswith("high")


def test_speaker_reference_and_fallback_for_small_data():
    data = [("ann", prosody(pitch_mean_st=40.0 + i % 3)) for i in range(30)]
    data += [("bob", prosody(pitch_mean_st=25.0 + i % 3)) for i in range(30)]
    reference = build_prosody_reference(data, "speaker", "paper2024")
    assert describe_prosody(prosody(pitch_mean_st=41), reference, "ann").startswith("medium")
    assert describe_prosody(prosody(pitch_mean_st=41), reference, "bob").startswith("high")
    assert build_prosody_reference(data[:5], "dataset", "paper2024").source == "builtin"


def test_prosody_reference_survives_json():
    data = [("ann", prosody(pitch_mean_st=30.0 + i % 7)) for i in range(60)]
    reference = build_prosody_reference(data, "speaker", "paper2024")
    again = ProsodyReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert (
        again == reference
        and again.by_speaker["ann"]["pitch_mean_st"] == reference.overall["pitch_mean_st"]
    )


# ---------------------------------------------------------------- graded describer


def voice(**values):
    """A voiced summary with the graded describer's measures at ordinary values."""
    base = {
        "pitch_median_st": 30.0,
        "pitch_range_st": 5.0,
        "loudness_speech": 1.0,
        "loudness_variation": 0.6,
        "articulation_rate": 4.0,
        "hnr_db": 7.0,
        "jitter": 0.03,
        "shimmer_db": 1.3,
        "h1_h2_db": 5.0,
        "alpha_ratio_db": -12.0,
        "inner_pauses": 0.0,
        "inner_pause_sec": 0.0,
        "pitch_trend_st": 0.0,
        "loudness_trend": 0.0,
        "pitch_peak_pos": 0.5,
        "loudness_peak_pos": 0.5,
    }
    return {**base, "silent": False, **values}


def two_speakers():
    """ann speaks around 38 semitones, bob around 24; each clip within 3 semitones of the median."""
    spread = np.linspace(-3, 3, 41)
    return [("ann", voice(pitch_median_st=38 + d)) for d in spread] + [
        ("bob", voice(pitch_median_st=24 + d)) for d in spread
    ]


def test_a_semitone_above_the_speakers_usual_pitch_reads_slightly_higher():
    reference = build_prosody_reference(two_speakers(), "speaker")
    assert reference.describer == "graded" and set(reference.graded.baselines) == {"ann", "bob"}
    # Cut points are quantiles of the training differences (here uniform over -3..3 semitones).
    assert reference.graded.cuts["speaker"]["pitch"] == pytest.approx(
        (-2.4, -1.5, -0.6, 0.6, 1.5, 2.4)
    )
    text = describe_prosody(voice(pitch_median_st=39), reference, "ann")
    assert text.startswith("compared with the speaker's usual voice: slightly higher pitch")
    assert "much higher pitch" in describe_prosody(voice(pitch_median_st=41), reference, "ann")
    # The same 39 semitones are ordinary-for-nobody: far above bob's usual voice.
    assert "much higher pitch" in describe_prosody(voice(pitch_median_st=39), reference, "bob")
    assert "lower pitch" in describe_prosody(voice(pitch_median_st=37), reference, "ann")


def test_a_voice_as_usual_says_so_and_silence_is_silence():
    reference = build_prosody_reference(two_speakers(), "speaker")
    text = describe_prosody(voice(pitch_median_st=38), reference, "ann")
    assert text == (
        "compared with the speaker's usual voice: pitch, loudness and speed as usual; no pauses; "
        "level pitch, highest pitch in the middle, loudest in the middle"
    )
    assert describe_prosody({"silent": True}, reference, "ann") == "silence, no voice activity"


def test_without_a_speaker_baseline_the_clip_is_compared_with_its_register():
    builtin = builtin_graded_reference()
    reference = build_prosody_reference([], "builtin")
    lower = builtin.registers["lower"]["pitch_median_st"]
    higher = builtin.registers["higher"]["pitch_median_st"]
    assert higher - lower > 5  # measured on real speech: female voices sit well above male ones
    deep = describe_prosody(voice(pitch_median_st=lower), reference)
    high = describe_prosody(voice(pitch_median_st=higher), reference)
    # A typical female voice is not "high pitch": it is compared with typical higher voices.
    assert (
        deep.startswith("compared with typical lower voices:") and "pitch" not in deep.split(";")[0]
    )
    assert (
        high.startswith("compared with typical higher voices:")
        and "pitch" not in high.split(";")[0]
    )


def test_dataset_mode_ignores_speakers_and_small_data_falls_back_to_builtin():
    reference = build_prosody_reference(two_speakers(), "dataset")
    assert reference.graded.baselines == {} and reference.source == "dataset"
    assert describe_prosody(voice(), reference, "ann").startswith("compared with typical")
    assert build_prosody_reference(two_speakers()[:5], "speaker").source == "builtin"


def test_pauses_and_changes_over_the_clip_in_words():
    reference = build_prosody_reference(two_speakers(), "speaker")
    text = describe_prosody(
        voice(
            pitch_median_st=38,
            inner_pauses=1.0,
            inner_pause_sec=0.8,
            pitch_trend_st=-5.0,
            loudness_trend=-1.2,
            pitch_peak_pos=0.1,
            loudness_peak_pos=0.9,
        ),
        reference,
        "ann",
    )
    assert "; one long pause; " in text
    assert "pitch falling sharply toward the end, trailing off at the end" in text
    assert "highest pitch at the start, loudest at the end" in text
    rising = describe_prosody(
        voice(pitch_median_st=38, pitch_trend_st=2.0, inner_pauses=3.0, inner_pause_sec=0.6),
        reference,
        "ann",
    )
    assert "pitch rising toward the end" in rising and "a few short pauses" in rising


def test_voice_quality_words_name_the_measure_not_an_emotion():
    reference = build_prosody_reference(two_speakers(), "speaker")
    text = describe_prosody(
        voice(pitch_median_st=38, hnr_db=2.0, alpha_ratio_db=-4.0), reference, "ann"
    )
    assert text.endswith("voice: much hoarser, much brighter")
    for emotion in ("angry", "happy", "sad", "fear", "disgust", "surprise"):
        assert emotion not in text


def test_graded_reference_survives_json():
    reference = build_prosody_reference(two_speakers(), "speaker", quantiles=(0.2, 0.4, 0.6, 0.8))
    again = ProsodyReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert again == reference and again.graded.quantiles == (0.2, 0.4, 0.6, 0.8)
    # Four quantiles give five levels: "much", plain, as usual, plain, "much".
    assert "much higher pitch" in describe_prosody(voice(pitch_median_st=41), again, "ann")


def test_speech_emotion_words():
    cat = SpeechEmotion({"anger": 0.61, "neutral": 0.2, "joy": 0.19}, "categorical")
    dim = SpeechEmotion({"arousal": 0.72, "valence": 0.31}, "dimensional")
    assert describe_speech_emotion(cat) == "anger (0.61), neutral (0.20)"
    assert describe_speech_emotion(dim) == "high arousal (0.72), low valence (0.31)"
