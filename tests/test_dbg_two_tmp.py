import pandas as pd, pytest, numpy as np
from test_face_words import *
from test_face_words import _two_person_video, _cached_descriptors
from test_faces import feat_hub  # noqa
from textualize import face_words as fw

@pytest.mark.usefixtures("feat_hub")
def test_dbg(tmp_path, monkeypatch):
    import feat.multitask.inference as multitask
    monkeypatch.setattr(multitask, "MEGraphAUv2", MouthReadingNet)
    clips = tmp_path / "clips"; clips.mkdir()
    _two_person_video(clips / "centre_talks.mp4", CENTRE_FACE, LEFT_FACE, [VOICE_ON])
    FakeRetinaNet.faces = {(666, 1000): [LEFT_FACE, CENTRE_FACE]}
    cfg = TextualizeConfig(cache_dir=str(tmp_path / "cache"), face="on", fps=5, transcript=False, workers=1, progress=False)
    textualize(clips, tmp_path / "out", cfg)
    rows = pd.read_parquet(tmp_path / "out" / "prompts.parquet")
    print(rows[["clip_id","visual_text","audio_text"]].to_dict("records"))
    print(rows.prompt[0])
    d = _cached_descriptors(clips, cfg)[0]
    v = fw.voiced_spans(d.prosody, d.transcript); print("voiced", v[:3], len(v), sum(b-a for a,b in v))
    det = d.face.detections.assign(track=fw.track_faces(d.face.detections))
    pd.set_option("display.width", 200)
    print(det[["time","track","face_x","AU25","AU26","AU01"]].round(3).to_string())
    times = np.sort(d.face.frames.time.to_numpy())
    for t in (0,1): print(t, fw._mouth_score(times, det[det.track==t], v))
