"""Training cache: real transcode, same ids, requested fps/size/GOP, rotation baked in, resumable."""

import os

import av
import numpy as np
import pytest

from avssl.data import build_index
from avssl.data.index import Manifest
from avssl.data.prepare import CacheSpec, build_training_cache
from avssl.io.probe import probe
from avssl.io.read import read_clip
from avssl.io.types import ClipSpec
from media import decode_frame, write_coded


def _keyframe_indices(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pkts = sorted((p.pts, p.is_keyframe) for p in c.demux(s) if p.pts is not None)
    return [i for i, (_, k) in enumerate(pkts) if k]


def test_prepare_keeps_ids_and_meets_spec_and_resumes(tmp_path):
    src = tmp_path / "src"
    write_coded(src / "a" / "plain.mp4", seconds=3.0, fps=30.0, size=(96, 160), audio_rate=44100)
    write_coded(src / "rot.mp4", seconds=2.0, fps=25.0, size=(96, 160), audio_rate=48000, rotation=90)
    write_coded(src / "mute.webm", seconds=2.0, fps=30.0, size=(96, 160), audio_rate=None)
    m, rep = build_index(src, cache=tmp_path / "c.json", root=src, workers=1, progress=False)
    assert len(m) == 3 and not rep.bad
    spec = CacheSpec(short_side=64, fps=16.0, gop=8, audio_rate=16000)
    out = tmp_path / "cache"
    cm, crep = build_training_cache(m, out, spec, workers=2, progress=False)
    assert crep.probed == 3 and not crep.bad
    assert cm.id.tolist() == m.id.tolist()
    assert Manifest.load(out / "manifest.npz") == cm

    for i in range(len(cm)):
        info = probe(cm.resolve(i))
        assert info.fps == pytest.approx(16.0)
        assert min(info.width, info.height) == 64 and info.rotation == 0
        assert info.duration == pytest.approx(float(m.duration[i]), abs=0.1)
        kf = _keyframe_indices(cm.resolve(i))
        assert kf == list(range(0, info.num_frames, 8))
        assert info.has_audio == bool(m.has_audio[i])
        if info.has_audio:
            assert (info.audio_rate, info.audio_channels) == (16000, 1)

    # the rotated source (displayed 96x160) is stored upright with no rotation tag: frames decode right
    rot = cm.paths.index("rot.mp4")
    assert (cm.height[rot], cm.width[rot]) == (64, 106)
    rclip = read_clip(cm.resolve(rot), 0.5, ClipSpec(num_frames=3, fps=16.0), audio=False)
    assert [decode_frame(f.numpy()) for f in rclip.video] == [int(np.floor((0.5 + k / 16) * 25 + 1e-4)) for k in range(3)]
    plain = cm.paths.index("a/plain.mp4")
    clip = read_clip(cm.resolve(plain), 1.0, ClipSpec(num_frames=4, fps=16.0, audio_rate=16000))
    got = [decode_frame(f.numpy()) for f in clip.video]
    want = [int(np.floor((1.0 + k / 16.0) * 30.0 + 1e-4)) for k in range(4)]
    assert got == want
    assert clip.audio.abs().max() > 0.05

    stamps = {p: os.stat(p).st_mtime_ns for p in out.rglob("*.mp4")}
    cm2, crep2 = build_training_cache(m, out, spec, workers=2, progress=False)
    assert crep2.probed == 0 and cm2 == cm
    assert {p: os.stat(p).st_mtime_ns for p in out.rglob("*.mp4")} == stamps


@pytest.mark.slow
def test_transcode_streams_with_bounded_memory_on_a_long_clip(tmp_path):
    """A 60 s source: the transcode's peak Python/numpy allocation stays far below the resized
    clip's size (what holding all frames needs), and frames and audio stay in sync at the end.
    Measured on a 20 s source: the former whole-clip transcode peaked at 22.6 MB (clip 14.7 MB),
    the streaming one at 0.05 MB."""
    import tracemalloc

    from avssl.data.prepare import transcode_video
    from media import audio_lag

    src = write_coded(tmp_path / "long.mp4", seconds=60.0, fps=30.0, size=(96, 160), audio_rate=48000,
                      audio_start=0.3, preset="ultrafast")
    spec = CacheSpec(short_side=96, fps=16.0, gop=8, audio_rate=24000)
    whole_clip_bytes = 60 * 16 * 96 * 160 * 3  # 44 MB: the resized clip held at once
    tracemalloc.start()
    try:
        out = transcode_video(str(src.path), tmp_path / "long_cache.mp4", spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < whole_clip_bytes / 5, f"peak {peak / 1e6:.1f} MB vs whole clip {whole_clip_bytes / 1e6:.1f} MB"
    info = probe(out)
    assert info.num_frames == 960 and info.fps == pytest.approx(16.0)
    clip = read_clip(out, 55.0, ClipSpec(num_frames=4, fps=16.0, audio_rate=24000))
    assert [decode_frame(f.numpy()) for f in clip.video] == [int(np.floor((55.0 + k / 16) * 30 + 1e-4)) % 1024 for k in range(4)]  # 10-bit codes wrap
    lag, corr = audio_lag(clip.audio[0].numpy(), src, clip.audio_start, 24000)
    assert abs(lag) < 0.002 and corr > 0.8, (lag, corr)


def _outputs(out):
    return sorted(p.name for p in out.glob("*.mp4") if not p.name.startswith("."))


def test_prepare_resumes_after_a_kill_and_reports(tmp_path):
    """`avssl-prepare` killed (SIGKILL) while transcoding, then run again: the finished outputs are kept
    (not transcoded again), the killed run's half-written files are removed, every video ends up in
    the cache, and prepare_report.json counts it all and names the source that failed."""
    import json
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    src = tmp_path / "src"
    for i in range(6):
        write_coded(src / f"v{i}.mp4", seconds=4.0, fps=30.0, size=(240, 320), audio_rate=48000)
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    out = tmp_path / "cache"
    out.mkdir()
    for i in range(6):  # outputs are named by video id (0-5 here): a dead process's half file beside each
        (out / f".{i:09d}.tmp999999999.mp4").write_bytes(b"half a file from a dead process")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "avssl", "prepare", str(src), str(out), "--workers", "1", "--short-side", "96"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_outputs(out)) >= 2:
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = _outputs(out)
    assert finished, "the first run wrote nothing before it was killed"
    stamps = {n: os.stat(out / n).st_mtime_ns for n in finished}

    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["cached"] == 6 and report["total"] == 6
    assert report["already_done"] == len(finished) and report["transcoded_now"] == 6 - len(finished)
    assert [b["path"].endswith("broken.mp4") for b in report["left_out"]] == [True]
    assert report["output_bytes"] == sum(os.path.getsize(out / n) for n in _outputs(out))
    assert report["transcoded_now"] == 0 or report["videos_per_hour_per_core"] > 0
    assert {n: os.stat(out / n).st_mtime_ns for n in finished} == stamps  # not transcoded again
    assert not list(out.glob(".*.tmp*")), "half-written files left behind"
    cm = Manifest.load(out / "manifest.npz")
    for i in range(len(cm)):
        assert probe(cm.resolve(i)).num_frames > 0
