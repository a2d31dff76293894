"""Finding clips: folders (every file, odd names), manifests, labels files."""

from __future__ import annotations

import pandas as pd
import pytest

from textualize.inputs import InputError, discover_clips


def test_folder_gives_one_clip_per_file_with_odd_names_kept(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a clip.mp4", "ünïcødé 😀.mov", "sub/b.wav", "notes.txt", ".hidden.mp4"):
        (tmp_path / name).write_bytes(b"x")
    ids = [c.clip_id for c in discover_clips(tmp_path)]
    assert ids == ["a clip", "notes", "sub/b", "ünïcødé 😀"]


def test_same_stem_twice_keeps_the_suffix(tmp_path):
    for name in ("x.mp4", "x.wav"):
        (tmp_path / name).write_bytes(b"x")
    assert [c.clip_id for c in discover_clips(tmp_path)] == ["x.mp4", "x.wav"]


def test_labels_csv_matches_by_file_name(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("file,label,speaker,start,end\na.mp4,joy,Ross,1.5,3\n")
    (clip,) = discover_clips(tmp_path / "clips", tmp_path / "labels.csv")
    assert (clip.label, clip.speaker, clip.start, clip.end) == ("joy", "Ross", 1.5, 3.0)


def test_manifest_paths_are_relative_to_the_manifest(tmp_path):
    pd.DataFrame(
        {
            "clip_id": ["d1_u2"],
            "path": ["clips/d1_u2.mp4"],
            "label": ["anger"],
            "split": ["test"],
            "gold_text": ["Oh my God!"],
            "start": [None],
            "end": [None],
        }
    ).to_parquet(tmp_path / "m.parquet")
    (clip,) = discover_clips(tmp_path / "m.parquet")
    assert clip.path == str(tmp_path / "clips" / "d1_u2.mp4")
    assert (clip.label, clip.split, clip.gold_text, clip.start) == (
        "anger",
        "test",
        "Oh my God!",
        None,
    )


def test_bad_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        discover_clips(tmp_path / "nope")
    with pytest.raises(InputError, match="holds no files"):
        discover_clips(tmp_path)
    (tmp_path / "m.csv").write_text("name,label\na,b\n")
    with pytest.raises(InputError, match="clip_id and path"):
        discover_clips(tmp_path / "m.csv")
