"""probe() on real encoded files, and build_index: report reasons, cache re-runs, stable ids, small pickles."""

import json
import os
import pickle
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from avssl.data.index import Manifest, build_index
from avssl.io.errors import CorruptMedia, EmptyFile, MissingFile, NoAudioStream, NoVideoStream
from avssl.io.probe import NotMedia, TruncatedMedia, probe
from avssl.io.writer import write_av, write_wav


def _frames(t=24, h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (t, h, w, 3), dtype=np.uint8)


def _tone(seconds, rate, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    return np.tile(0.3 * np.sin(2 * np.pi * 440 * t), (channels, 1)).astype(np.float32)


def _video(path, seconds=2.0, fps=12, audio=True, rate=48000, channels=1, **kw):
    a = _tone(seconds, rate, channels) if audio else None
    return write_av(path, _frames(int(seconds * fps)), fps, a, rate, **kw)


def test_probe_h264_aac_mp4(tmp_path):
    p = _video(tmp_path / "a.mp4", seconds=2.0, fps=12, rate=44100, channels=2)
    i = probe(p)
    assert (i.width, i.height) == (64, 48)
    assert i.fps == pytest.approx(12.0)
    assert i.num_frames == 24 and "num_frames_estimated" not in i.extra
    assert i.duration == pytest.approx(2.0, abs=1e-3)
    assert (i.video_codec, i.audio_codec) == ("h264", "aac")
    assert i.has_audio and (i.audio_rate, i.audio_channels) == (44100, 2)
    assert i.rotation == 0 and i.video_start == pytest.approx(0.0)


def test_probe_vp9_opus_webm_estimates_frame_count(tmp_path):
    p = _video(tmp_path / "b.webm", seconds=2.0, fps=15, rate=48000)
    i = probe(p)
    assert (i.video_codec, i.audio_codec) == ("vp9", "opus")
    assert i.fps == pytest.approx(15.0) and i.duration == pytest.approx(2.0, abs=0.05)
    # Matroska stores no frame count: estimated from duration*fps and flagged
    assert i.extra.get("num_frames_estimated") is True and i.num_frames == 30
    assert i.audio_rate == 48000 and i.audio_channels == 1


def test_probe_rotation_from_display_matrix(tmp_path):
    src = _video(tmp_path / "plain.mp4", audio=False)
    out = tmp_path / "rot.mp4"
    with av.open(str(src)) as c, av.open(str(out), "w") as o:  # remux with a display matrix, no re-encode
        s = c.streams.video[0]
        os_ = o.add_stream_from_template(s)
        os_.set_display_rotation(90)
        for pkt in c.demux(s):
            if pkt.dts is not None:
                pkt.stream = os_
                o.mux(pkt)
    i = probe(out)
    assert i.rotation == 90 and (i.width, i.height) == (64, 48)
    assert i.extra["display_size"] == (48, 64)
    assert probe(src).rotation == 0


def test_probe_no_audio_and_delayed_audio(tmp_path):
    assert probe(_video(tmp_path / "mute.mp4", audio=False)).has_audio is False
    i = probe(_video(tmp_path / "late.mp4", audio_start=0.5))
    # AAC priming (1024 samples) is trimmed by the edit list, so the stream starts ~0.48-0.5 s
    assert 0.45 <= i.audio_start - i.video_start <= 0.51


@pytest.mark.parametrize("case,err,reason", [
    ("missing", MissingFile, "missing"),
    ("empty", EmptyFile, "zero-byte"),
    ("truncated_mp4", TruncatedMedia, "truncated"),
    ("truncated_faststart", TruncatedMedia, "truncated"),
    ("truncated_webm", TruncatedMedia, "truncated"),
    ("text", NotMedia, "not-a-video"),
    ("random", NotMedia, "not-a-video"),
    ("wav", NoVideoStream, "no-video-stream"),
])
def test_probe_bad_files_raise_typed_errors(tmp_path, case, err, reason):
    p = _make_bad(tmp_path, case)
    with pytest.raises(err) as e:
        probe(p)
    assert e.value.reason == reason and e.value.path == str(p)
    if err in (TruncatedMedia, NotMedia):
        assert isinstance(e.value, CorruptMedia)


def _make_bad(d, case):
    p = d / f"{case}.mp4"
    if case == "missing":
        return p
    if case == "empty":
        p.write_bytes(b"")
    elif case == "truncated_mp4":  # moov atom (written last) is cut off
        b = _video(d / "src1.mp4", seconds=3).read_bytes()
        p.write_bytes(b[: len(b) // 2])
    elif case == "truncated_faststart":  # index present, media data cut
        src = _video(d / "src2.mp4", seconds=3)
        fs = d / "fs.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c", "copy", "-movflags", "+faststart", str(fs)], check=True)
        b = fs.read_bytes()
        p.write_bytes(b[: len(b) // 2])
    elif case == "truncated_webm":
        p = d / "cut.webm"
        b = _video(d / "src3.webm", seconds=4).read_bytes()
        p.write_bytes(b[: len(b) // 2])
    elif case == "text":
        p.write_text("this is not a video\n" * 50)
    elif case == "random":
        p.write_bytes(np.random.default_rng(0).bytes(4000))
    elif case == "wav":
        p = write_wav(d / "tone.wav", _tone(1.0, 16000), 16000)
    return p


def test_index_reports_every_bad_file_and_keeps_good(tmp_path):
    good = [_video(tmp_path / "vids" / f"g{i}.mp4", seconds=1.0) for i in range(2)]
    cases = ["empty", "truncated_mp4", "text", "random"]
    bad = [_make_bad(tmp_path / "vids", c) for c in cases]
    for junk in tmp_path.glob("vids/src*"):
        junk.unlink()
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(map(str, good + bad + [tmp_path / "vids" / "gone.mp4"])))
    m, rep = build_index(listing, workers=2, progress=False)
    assert sorted(m.paths) == sorted(map(str, good))
    reasons = {os.path.basename(b.path): b.reason for b in rep.bad}
    assert reasons == {"empty.mp4": "zero-byte", "truncated_mp4.mp4": "truncated", "text.mp4": "not-a-video",
                       "random.mp4": "not-a-video", "gone.mp4": "missing"}
    assert rep.total == 7 and rep.indexed == 2
    rep.write_csv(tmp_path / "r.csv")
    rep.write_json(tmp_path / "r.json")
    assert (tmp_path / "r.csv").read_text().count("\n") == 1 + 5
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["not-a-video"] == 2


def test_index_missing_audio_policies(tmp_path):
    _video(tmp_path / "v" / "a.mp4", seconds=1.0)
    _video(tmp_path / "v" / "mute.mp4", seconds=1.0, audio=False)
    m, rep = build_index(tmp_path / "v", workers=1, progress=False, missing_audio="zeros")
    assert len(m) == 2 and rep.no_audio == [str(tmp_path / "v" / "mute.mp4")] and not rep.bad
    m, rep = build_index(tmp_path / "v", workers=1, progress=False, missing_audio="skip")
    assert [os.path.basename(p) for p in m.paths] == ["a.mp4"] and rep.bad[0].reason == "no-audio"
    with pytest.raises(NoAudioStream):
        build_index(tmp_path / "v", workers=1, progress=False, missing_audio="error")


def test_index_cache_reprobes_only_changed_and_ids_are_stable(tmp_path):
    d = tmp_path / "v"
    for i in range(3):
        _video(d / f"v{i}.mp4", seconds=1.0)
    cache = tmp_path / "cache.json"
    m1, r1 = build_index(d, cache=cache, root=d, workers=2, progress=False)
    assert r1.probed == 3 and m1.paths == ["v0.mp4", "v1.mp4", "v2.mp4"]
    ids1 = dict(zip(m1.paths, m1.id.tolist()))

    m2, r2 = build_index(d, cache=cache, root=d, workers=2, progress=False)
    assert r2.probed == 0 and r2.cached == 3 and m2.fingerprint() == m1.fingerprint()

    _video(d / "v1.mp4", seconds=2.0)  # changed content -> new size/mtime
    os.utime(d / "v1.mp4", ns=(1, 1))
    m3, r3 = build_index(d, cache=cache, root=d, workers=2, progress=False)
    assert r3.probed == 1 and m3.row(1)["duration"] == pytest.approx(2.0, abs=0.05)
    assert dict(zip(m3.paths, m3.id.tolist())) == ids1

    _video(d / "a_new.mp4", seconds=1.0)  # sorts first, must not shift anyone's id
    (d / "v2.mp4").unlink()
    m4, r4 = build_index(d, cache=cache, root=d, workers=2, progress=False)
    ids4 = dict(zip(m4.paths, m4.id.tolist()))
    assert r4.probed == 1
    assert ids4["v0.mp4"] == ids1["v0.mp4"] and ids4["v1.mp4"] == ids1["v1.mp4"]
    assert ids4["a_new.mp4"] not in ids1.values()  # a removed video's id is never reused
    assert m4.fingerprint() != m1.fingerprint()


def test_split_cache_path_names_one_file_per_split():
    from avssl.data.index import split_cache_path

    assert split_cache_path("idx/ucf.npz", "train") == Path("idx/ucf.train.npz")
    assert split_cache_path("idx/k400_cache.json", "eval") == Path("idx/k400_cache.eval.json")  # npz inside
    assert split_cache_path("idx/ucf", "test") == Path("idx/ucf.test.npz")
    assert split_cache_path(None, "val") is None and split_cache_path("", "val") is None


def test_manifest_is_columnar_small_and_roundtrips(tmp_path):
    n = 20000
    rows = [dict(id=i, path=f"kinetics/train/class_{i % 400:03d}/video_{i:07d}.mp4", duration=10.0, fps=30.0,
                 num_frames=300, width=340, height=256, rotation=0, video_start=0.0, has_audio=bool(i % 7),
                 audio_rate=44100, audio_channels=2, audio_start=0.0) for i in range(n)]
    m = Manifest.from_rows(rows)
    blob = pickle.dumps(m)
    per_row = len(blob) / n
    path_bytes = sum(len(r["path"]) for r in rows) / n
    # 12 numeric columns (~63 B) + the UTF-8 path + an offset: no per-row Python objects
    assert per_row < path_bytes + 80, per_row
    m2 = pickle.loads(blob)
    assert m2 == m and m2.row(12345) == rows[12345] | {"path": rows[12345]["path"]}
    m.save(tmp_path / "m.npz")
    m3 = Manifest.load(tmp_path / "m.npz")
    assert m3 == m and m3.fingerprint() == m.fingerprint()
    assert np.array_equal(m.position_of([5, 19999, 0]), [5, 19999, 0])
    rows[3]["path"] = "other.mp4"
    assert Manifest.from_rows(rows).fingerprint() != m.fingerprint()


def test_index_cache_is_columnar_npz_reads_v1_json_and_keeps_ids_of_returning_files(tmp_path):
    import json
    import shutil

    d = tmp_path / "v"
    for i in range(3):
        _video(d / f"v{i}.mp4", seconds=1.0)
    cache = tmp_path / "cache.idx"
    m1, _ = build_index(d, cache=cache, root=d, workers=1, progress=False)
    assert cache.read_bytes()[:2] == b"PK"  # an npz, not JSON
    with np.load(cache) as z:
        assert z["size"].dtype == np.int64 and len(z["path_offsets"]) == 4 and int(z["next_id"]) == 3
    ids1 = dict(zip(m1.paths, m1.id.tolist()))

    shutil.move(d / "v1.mp4", tmp_path / "away.mp4")  # gone for a run, then back unchanged
    m2, r2 = build_index(d, cache=cache, root=d, workers=1, progress=False)
    assert m2.paths == ["v0.mp4", "v2.mp4"] and not r2.bad  # a folder listing just lacks it
    shutil.move(tmp_path / "away.mp4", d / "v1.mp4")
    m3, r3 = build_index(d, cache=cache, root=d, workers=1, progress=False)
    assert r3.probed == 0 and dict(zip(m3.paths, m3.id.tolist())) == ids1

    # a version-1 JSON cache (earlier releases) is read: nothing re-probed, ids kept, rewritten as npz
    st = {p: os.stat(d / p) for p in m1.paths}
    legacy = {"version": 1, "next_id": 7, "files": {p: {
        "id": ids1[p] + 4, "size": st[p].st_size, "mtime_ns": st[p].st_mtime_ns, "error": None,
        "info": {k: m1.row(i)[k] for k in m1.row(i) if k not in ("id", "path")}} for i, p in enumerate(m1.paths)}}
    old_cache = tmp_path / "old.json"
    old_cache.write_text(json.dumps(legacy))
    m4, r4 = build_index(d, cache=old_cache, root=d, workers=1, progress=False)
    assert r4.probed == 0 and m4.id.tolist() == [ids1[p] + 4 for p in m4.paths]
    np.testing.assert_array_equal(m4.duration, m1.duration)
    _video(d / "v3.mp4", seconds=1.0)
    m5, _ = build_index(d, cache=old_cache, root=d, workers=1, progress=False)
    assert old_cache.read_bytes()[:2] == b"PK" and m5.id.tolist()[-1] == 7  # next_id carried over
