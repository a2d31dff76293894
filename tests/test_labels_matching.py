"""A labels file names its clips by id, relative path, file name or stem, and says what it missed.

Only file names matter here (labels are attached before any media is read), so the clips are
placeholder files; the command-line cases stop with exit code 2 before any extraction starts.
"""

from __future__ import annotations

import logging

import pytest

from cer.cli import main
from textualize.inputs import InputError, discover_clips


def make_folder(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def labels_csv(path, text: str):
    path.write_text(text)
    return path


def labels_of(clips) -> dict[str, str | None]:
    return {c.clip_id: c.label for c in clips}


@pytest.fixture()
def actors(tmp_path):
    """RAVDESS-like layout: the same file name in two actor folders."""
    return make_folder(tmp_path / "clips", "Actor_01/x.wav", "Actor_02/x.wav", "Actor_02/y.wav")


def test_relative_paths_with_subfolders_match_with_or_without_suffix(actors, tmp_path):
    with_suffix = labels_csv(
        tmp_path / "a.csv",
        "file,label,split\nActor_01/x.wav,happy,train\nActor_02/x.wav,sad,test\n"
        "./Actor_02/y.wav,angry,val\n",
    )
    clips = discover_clips(actors, with_suffix)
    assert labels_of(clips) == {"Actor_01/x": "happy", "Actor_02/x": "sad", "Actor_02/y": "angry"}
    assert [c.split for c in clips] == ["train", "test", "val"]
    without_suffix = labels_csv(
        tmp_path / "b.csv", "file,label\nActor_01/x,happy\nActor_02\\x,sad\nActor_02/y,angry\n"
    )
    assert labels_of(discover_clips(actors, without_suffix)) == {
        "Actor_01/x": "happy",
        "Actor_02/x": "sad",
        "Actor_02/y": "angry",
    }


def test_unique_file_names_and_stems_match_across_subfolders(tmp_path):
    folder = make_folder(tmp_path / "clips", "s1/a.mp4", "s2/b.wav", "c.wav")
    labels = labels_csv(tmp_path / "l.csv", "file,label\na.mp4,joy\nb,anger\nc,fear\n")
    assert labels_of(discover_clips(folder, labels)) == {
        "c": "fear",
        "s1/a": "joy",
        "s2/b": "anger",
    }


def test_a_stem_shared_by_two_clips_is_an_error_not_a_guess(actors, tmp_path):
    labels = labels_csv(tmp_path / "l.csv", "file,label\nx,happy\ny,sad\n")
    with pytest.raises(
        InputError, match="fit several clips, e.g. 'x' fits 'Actor_01/x', 'Actor_02/x'"
    ):
        discover_clips(actors, labels)
    by_name = labels_csv(tmp_path / "n.csv", "file,label\nx.wav,happy\n")
    with pytest.raises(InputError, match="path relative to"):
        discover_clips(actors, by_name)


def test_two_rows_for_one_clip_is_an_error(tmp_path):
    folder = make_folder(tmp_path / "clips", "a.wav", "b.wav")
    labels = labels_csv(tmp_path / "l.csv", "file,label\na.wav,happy\na,sad\nb,sad\n")
    with pytest.raises(InputError, match="named by several rows, e.g. 'a' by 'a.wav', 'a'"):
        discover_clips(folder, labels)


def test_a_labels_file_that_matches_nothing_is_an_error(actors, tmp_path):
    labels = labels_csv(tmp_path / "l.csv", "file,label\nother/x.wav,happy\nz.wav,sad\n")
    with pytest.raises(InputError, match="matches none of the 3 clip") as caught:
        discover_clips(actors, labels)
    assert "'other/x.wav'" in str(caught.value) and "'Actor_01/x'" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_partial_match_warns_with_counts_and_strict_makes_it_an_error(actors, tmp_path, caplog):
    labels = labels_csv(
        tmp_path / "l.csv", "file,label\nActor_01/x.wav,happy\nActor_03/x.wav,sad\n"
    )
    with caplog.at_level(logging.WARNING, logger="textualize.inputs"):
        clips = discover_clips(actors, labels)
    assert labels_of(clips) == {"Actor_01/x": "happy", "Actor_02/x": None, "Actor_02/y": None}
    warnings = [r.getMessage() for r in caplog.records]
    assert any("no row for 2 of 3 clips (e.g. 'Actor_02/x', 'Actor_02/y')" in w for w in warnings)
    assert any("1 of 2 rows match no clip (e.g. 'Actor_03/x.wav')" in w for w in warnings)
    with pytest.raises(InputError, match="no row for 2 of 3 clips.*--strict"):
        discover_clips(actors, labels, strict=True)


def test_blank_labels_are_no_labels(tmp_path):
    folder = make_folder(tmp_path / "clips", "a.wav", "b.wav")
    labels = labels_csv(tmp_path / "l.csv", 'file,label\na.wav,"  "\nb.wav,sad\n')
    assert labels_of(discover_clips(folder, labels)) == {"a": None, "b": "sad"}


def test_cli_stops_with_exit_2_before_any_work(actors, tmp_path, capsys):
    out = tmp_path / "out"
    common = ["textualize", str(actors), str(out), "--cache-dir", str(tmp_path / "cache")]
    nothing = labels_csv(tmp_path / "none.csv", "file,label\nActor_01_x.wav,happy\n")
    assert main([*common, "--labels", str(nothing)]) == 2
    error = capsys.readouterr().err.strip()
    assert "matches none of the 3 clip(s)" in error and len(error.splitlines()) == 1
    partial = labels_csv(tmp_path / "some.csv", "file,label\nActor_01/x.wav,happy\n")
    assert main([*common, "--labels", str(partial), "--strict"]) == 2
    assert "no row for 2 of 3 clips" in capsys.readouterr().err
    assert not (out / "prompts.parquet").exists()


def test_manifest_clips_match_by_id_or_path_relative_to_the_manifest(tmp_path):
    make_folder(tmp_path, "media/d1_u2.wav")
    (tmp_path / "manifest.csv").write_text("clip_id,path\nd1_u1,\nd1_u2,media/d1_u2.wav\n")
    labels = labels_csv(tmp_path / "l.csv", "file,label\nd1_u1,joy\nmedia/d1_u2.wav,anger\n")
    clips = discover_clips(tmp_path / "manifest.csv", labels)
    assert labels_of(clips) == {"d1_u1": "joy", "d1_u2": "anger"}  # d1_u1 is text-only
