"""The fitted textualizer: training prompts that test clips cannot move, and the same words later.

The media tests speak one sentence in many voices (espeak-ng pitch and speed) and textualize only
the voice (no face model, no Whisper), so every prompt difference is a prosody-word or label
difference. Runs share one extraction cache: after the first, every run renders from the cache.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import EXAMPLES, REPO

from textualize.config import TextualizeConfig
from textualize.describe import PAPER2024_REFERENCE, describe_prosody
from textualize.pipeline import textualize
from textualize.records import OK, Clip, ModalityStatus
from textualize.textualizer import (
    FILE_NAME,
    Textualizer,
    TextualizerError,
    clip_digest,
    fit_textualizer,
    load_textualizer,
    with_new_speakers,
)
from textualize.units import UnitFeatures

SENTENCE = "I really did not expect to see you here today."


# ---------------------------------------------------------------- fitting, without media


def unit(
    clip_id: str,
    split: str | None,
    speaker: str | None = None,
    label: str | None = None,
    **prosody: float,
) -> UnitFeatures:
    summary = {name: mean for name, (mean, _) in PAPER2024_REFERENCE.items()}
    summary.update(pitch_median_st=prosody.get("pitch_mean_st", 30.0), loudness_speech=1.0)
    summary.update(silent=False, **prosody)
    clip = Clip(clip_id, f"{clip_id}.wav", label=label, split=split, speaker=speaker)
    status = {m: ModalityStatus(OK) for m in ("face", "prosody", "transcript", "speech_emotion")}
    return UnitFeatures(clip, clip_id, 0.0, 3.0, status, prosody=summary)


def test_paper2024_fitted_on_training_clips_only_and_new_speakers_get_the_overall_reference():
    train = [unit(f"ann{i}", "train", "ann", "calm", pitch_mean_st=40.0 + i % 3) for i in range(25)]
    train += [
        unit(f"bob{i}", "train", "bob", "angry", pitch_mean_st=25.0 + i % 3) for i in range(25)
    ]
    held_out = [unit(f"cid{i}", "test", "cid", "sad", pitch_mean_st=90.0) for i in range(30)]
    cfg = TextualizeConfig(prosody_reference="speaker", describer="paper2024")
    fitted = fit_textualizer(train + held_out, cfg, {}, "corpus")
    assert fitted == dataclasses.replace(
        fit_textualizer(train, cfg, {}, "corpus"), fitted_on=fitted.fitted_on
    )
    assert fitted.labels == ("angry", "calm")  # no "sad": it is only in the test split
    assert (fitted.fitted_on.split, fitted.fitted_on.clips) == ("train", 50)
    assert fitted.fitted_on.speaker_units == {"ann": 25, "bob": 25}
    assert set(fitted.prosody.by_speaker) == {"ann", "bob"}
    # 41 semitones: ordinary for ann, high for bob; cid has no statistics and gets the overall ones
    voice = {**train[0].prosody, "pitch_mean_st": 41.0}
    assert describe_prosody(voice, fitted.prosody, "ann").startswith("medium pitch")
    assert describe_prosody(voice, fitted.prosody, "bob").startswith("high")
    assert describe_prosody(voice, fitted.prosody, "cid") == describe_prosody(
        voice, fitted.prosody, None
    )


def graded_speakers() -> list[UnitFeatures]:
    """ann and bob in training (pitch 40 and 25 semitones, +-2); cid held out, unlabelled use only."""
    train = [
        unit(f"{spk}{i}", "train", spk, "calm", pitch_mean_st=base + (i % 5) - 2)
        for spk, base in (("ann", 40.0), ("bob", 25.0))
        for i in range(25)
    ]
    return train + [
        unit(f"cid{i}", "test", "cid", "sad", pitch_mean_st=60.0 + i % 3) for i in range(12)
    ]


def test_graded_baselines_are_label_free_and_cut_points_come_from_training_clips():
    units = graded_speakers()
    fitted = fit_textualizer(units, TextualizeConfig(), {}, "corpus")
    assert (fitted.describer, fitted.prosody_reference) == ("graded", "speaker")  # the defaults
    graded = fitted.prosody.graded
    # cid is held out: their baseline is their own median (no labels needed), not fitted on
    assert graded.baselines["cid"]["pitch_median_st"] == 61.0
    assert fitted.fitted_on.speaker_units == {"ann": 25, "bob": 25, "cid": 0}
    # The cut points are the training clips' only: changing the held-out clips does not move them.
    louder = [
        dataclasses.replace(u, prosody={**u.prosody, "loudness_speech": 9.0})
        if u.clip.speaker == "cid"
        else u
        for u in units
    ]
    again = fit_textualizer(louder, TextualizeConfig(), {}, "corpus").prosody.graded
    assert again.cuts == graded.cuts and again.baselines["ann"] == graded.baselines["ann"]
    voice = {**units[0].prosody, "pitch_median_st": 61.5}
    assert describe_prosody(voice, fitted.prosody, "cid").startswith(
        "compared with the speaker's usual voice: slightly higher pitch"
    )


def test_a_prior_textualizer_learns_new_speakers_baselines_from_their_clips():
    units = graded_speakers()
    fitted = fit_textualizer(units[:50], TextualizeConfig(), {}, "corpus")
    assert set(fitted.prosody.graded.baselines) == {"ann", "bob"}
    new = [
        dataclasses.replace(u, clip=dataclasses.replace(u.clip, speaker="dee")) for u in units[50:]
    ]
    adapted = with_new_speakers(fitted, new + units[:3])
    assert set(adapted.prosody.graded.baselines) == {"ann", "bob", "dee"}
    assert adapted.prosody.graded.baselines["ann"] == fitted.prosody.graded.baselines["ann"]
    assert adapted.prosody.graded.cuts == fitted.prosody.graded.cuts
    assert with_new_speakers(fitted, new[:5]) == fitted  # too few clips for a baseline


def test_a_version_1_file_reads_as_the_paper2024_describer(tmp_path):
    units = [unit(f"c{i}", None, pitch_mean_st=30.0 + i) for i in range(20)]
    fitted = fit_textualizer(units, TextualizeConfig(describer="paper2024"), {}, "folder")
    data = fitted.to_dict()
    data["version"] = 1
    del data["prosody"]["describer"]
    loaded = Textualizer.from_dict(data)
    assert loaded.describer == "paper2024" and loaded.prosody == fitted.prosody


def test_without_any_split_every_clip_is_fitted_on():
    units = [unit(f"c{i}", None, pitch_mean_st=30.0 + i) for i in range(20)]
    fitted = fit_textualizer(units, TextualizeConfig(describer="paper2024"), {}, "folder")
    assert fitted.fitted_on.split is None and fitted.fitted_on.clips == 20
    assert fitted.prosody.source == "dataset" and fitted.prosody.overall["pitch_mean_st"][0] == 39.5


def test_artifact_round_trips_and_records_what_it_was_fitted_on(tmp_path):
    units = [
        unit(
            f"c{i}",
            "train",
            "ann" if i % 2 else "bob",
            "calm" if i % 3 else "happy",
            pitch_mean_st=30.0 + i,
            speaking_rate=2.0 + i / 10,
        )
        for i in range(44)
    ]
    units += [unit("t0", "test", "ann", "angry", pitch_mean_st=70.0)]
    fitted = fit_textualizer(
        units,
        TextualizeConfig(
            template="instruction",
            modalities="A+T",
            prosody_reference="speaker",
            describer="paper2024",
        ),
        {"prosody": {"feature_set": "eGeMAPSv02"}},
        "manifest.parquet",
    )
    fitted.save(tmp_path / FILE_NAME)
    loaded = load_textualizer(tmp_path)  # the folder or the file itself
    assert loaded == fitted == load_textualizer(tmp_path / FILE_NAME)
    data = json.loads((tmp_path / FILE_NAME).read_text())
    assert (data["format"], data["version"], data["modalities"]) == ("cer-textualizer", 2, "TA")
    assert data["prosody"]["describer"] == "paper2024"
    assert (
        data["template"]["id"] == "instruction"
        and "Answer with exactly one of" in data["template"]["source"]
    )
    assert data["labels"] == ["calm", "happy"]
    assert data["prosody"]["mode"] == "speaker" and set(data["prosody"]["by_speaker"]) == {
        "ann",
        "bob",
    }
    on = data["fitted_on"]
    assert (on["split"], on["clips"], on["labelled_clips"], on["voiced_units"]) == (
        "train",
        44,
        44,
        44,
    )
    assert on["clip_ids_sha256"] == clip_digest(f"c{i}" for i in range(44))
    assert on["speaker_units"] == {"ann": 22, "bob": 22} and on["source"] == "manifest.parquet"
    assert data["extraction"] == {"prosody": {"feature_set": "eGeMAPSv02"}}


def test_a_file_that_is_not_a_textualizer_says_so(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(TextualizerError, match="holds no textualizer.json"):
        load_textualizer(tmp_path)
    (tmp_path / FILE_NAME).write_text(json.dumps({"format": "cer-textualizer", "version": 99}))
    with pytest.raises(TextualizerError, match="version 99"):
        load_textualizer(tmp_path)
    (tmp_path / FILE_NAME).write_text('{"format": "cer-textualizer", "version": 2}')
    with pytest.raises(TextualizerError, match="not a valid textualizer"):
        Textualizer.from_json((tmp_path / FILE_NAME).read_text())


# ---------------------------------------------------------------- real voices, cache-only re-renders


@pytest.fixture(scope="module")
def voices(speak) -> dict[str, list[Clip]]:
    """24 training voices over a range of pitch and speed; held-out voices, ordinary and extreme."""

    def clip(name: str, split: str, label: str, pitch: int, speed: int) -> Clip:
        path = speak(SENTENCE, name, "-v", "en", "-p", str(pitch), "-s", str(speed))
        return Clip(name, str(path), label=label, split=split)

    train = [
        clip(f"train{i:02d}", "train", "calm" if i % 2 else "excited", 15 + 3 * i, 110 + 5 * i)
        for i in range(24)
    ]
    ordinary = [clip(f"test{i}", "test", "angry", 40 + 10 * i, 150) for i in range(3)]
    extreme = [clip(f"shout{i}", "test", "angry", 99, 380 + 10 * i) for i in range(10)]
    return {"train": train, "ordinary": ordinary, "extreme": extreme}


def manifest(folder: Path, clips: list[Clip]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.csv"
    pd.DataFrame([c.to_row() for c in clips]).to_csv(path, index=False)
    return path


def prompts(output: Path) -> dict[str, str]:
    return dict(
        pd.read_parquet(output / "prompts.parquet")[["clip_id", "prompt"]].itertuples(index=False)
    )


@pytest.fixture(scope="module")
def voice_cfg(tmp_path_factory) -> TextualizeConfig:
    return TextualizeConfig(
        cache_dir=str(tmp_path_factory.mktemp("cache")),
        face="off",
        transcript=False,
        workers=1,
        progress=False,
    )


@pytest.fixture(scope="module")
def training_run(tmp_path_factory, voices, voice_cfg) -> Path:
    out = tmp_path_factory.mktemp("run") / "train"
    source = manifest(out.parent / "in", voices["train"] + voices["ordinary"])
    textualize(source, out, dataclasses.replace(voice_cfg, template="instruction", modalities="A"))
    return out


@pytest.mark.slow
def test_training_prompts_do_not_move_when_test_clips_are_added_or_changed(
    tmp_path, voices, voice_cfg, training_run
):
    before = prompts(training_run)
    source = manifest(tmp_path / "in", voices["train"] + voices["extreme"])
    summary = textualize(
        source,
        tmp_path / "out",
        dataclasses.replace(voice_cfg, template="instruction", modalities="A"),
    )
    after = prompts(tmp_path / "out")
    assert summary.computed == len(voices["extreme"])  # only the new clips were extracted
    assert {c: after[c] for c in before if c.startswith("train")} == {
        c: p for c, p in before.items() if c.startswith("train")
    }
    words = {p.split("Their voice: ")[1].split(";")[0] for p in before.values()}
    assert any("lower pitch" in w for w in words) and any("higher pitch" in w for w in words)
    # The label list is the training clips', whatever the test clips are labelled.
    assert all(p.endswith("Answer with exactly one of: calm, excited.") for p in after.values())
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["textualizer"]["fitted_on"]["split"] == "train"
    assert run["textualizer"]["labels_not_in_textualizer"] == ["angry"]


@pytest.mark.slow
def test_a_clip_alone_with_reference_gets_its_training_run_prompt(
    tmp_path, voices, voice_cfg, training_run
):
    inside = prompts(training_run)
    for clip in (voices["ordinary"][1], voices["train"][3]):
        alone = textualize(
            clip.path,
            tmp_path / clip.clip_id,
            dataclasses.replace(voice_cfg, reference=str(training_run)),
        )
        assert alone.computed == 0 and alone.cached == 1  # from the cache: no extractor ran
        assert prompts(tmp_path / clip.clip_id) == {clip.clip_id: inside[clip.clip_id]}
        # The output folder carries the same textualizer, so it can serve as a reference in turn.
        assert load_textualizer(tmp_path / clip.clip_id) == load_textualizer(training_run)
    unreferenced = textualize(
        voices["ordinary"][1].path,
        tmp_path / "alone",
        dataclasses.replace(voice_cfg, template="instruction", modalities="A"),
    )
    assert unreferenced.cached == 1
    assert prompts(tmp_path / "alone")["test1"] != inside["test1"]  # its own (builtin) reference


@pytest.mark.slow
def test_options_that_contradict_the_reference_are_an_error(
    tmp_path, voices, voice_cfg, training_run
):
    clip = voices["train"][0].path
    for change in (
        {"template": "paper"},
        {"modalities": "TA"},
        {"window": 1.0},
        {"prosody_reference": "builtin"},
        {"describer": "paper2024"},
        {"prosody_quantiles": (0.2, 0.4, 0.6, 0.8)},
    ):
        with pytest.raises(TextualizerError, match="contradict the textualizer"):
            textualize(
                clip,
                tmp_path / "out",
                dataclasses.replace(voice_cfg, reference=str(training_run), **change),
            )
    same = dataclasses.replace(
        voice_cfg,
        reference=str(training_run),
        template="instruction",
        modalities="A",
        prosody_reference="speaker",
        describer="graded",
    )
    assert textualize(clip, tmp_path / "out", same).cached == 1


def test_a_bad_reference_is_a_one_line_error_with_exit_2(tmp_path):
    missing = tmp_path / "no-such-run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cer",
            "textualize",
            str(EXAMPLES),
            str(tmp_path / "out"),
            "--reference",
            str(missing),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--transcript",
            "false",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert str(missing) in result.stderr and "textualizer.json" in result.stderr
    assert not (tmp_path / "out").exists()
