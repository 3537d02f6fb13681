"""The reader and the prober on the wild collection (tests/wild.py): real files of every common shape,
codec, container, timestamp quirk and damage, checked against what ffmpeg itself shows and against
the bar codes the frames carry."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

import media as M
import wild as W
from avssl.io import ClipSpec, available_backends, probe, read_clip
from avssl.io.errors import CorruptMedia, DamagedMediaWarning, MediaError
from avssl.io.timestamps import timestamp_verdict

ALL_BACKENDS = ["pyav", "decord", "torchcodec"]
SPEC = ClipSpec(num_frames=6, fps=9.7, frame_size=64, audio_rate=24000, audio_channels=1, audio_duration=1.0)

pytestmark = pytest.mark.skipif(W.FFMPEG is None, reason="the ffmpeg CLI is the reference (and writes the AVIs)")


def backend_param(name):
    marks = [] if name in available_backends() else [pytest.mark.skip(reason=f"backend {name} not usable here")]
    return pytest.param(name, marks=marks, id=name)


BACKENDS = [backend_param(b) for b in ALL_BACKENDS]


@pytest.fixture(scope="session")
def by_name(wild):
    return _ByName({e.name: e for e in wild})


class _ByName(dict):
    """Entries by name; a case this machine could not write (encoder missing) skips the test."""

    def __missing__(self, name):
        pytest.skip(f"wild case {name!r} not written here: {W.skipped_cases()}")


@pytest.fixture(scope="session")
def shown(wild):
    """What ffmpeg shows (times, codes) for every indexed readable file."""
    return {e.name: W.ffmpeg_shown(e.path) for e in wild if e.indexed and e.readable}


@pytest.fixture(scope="session")
def probed(wild):
    out = {}
    for e in wild:
        try:
            out[e.name] = probe(e.path)
        except MediaError as err:
            out[e.name] = err
    return out


# ------------------------------------------------------------------ the collection itself
def test_collection_covers_the_wild(wild, probed):
    if W.skipped_cases():
        pytest.skip(f"encoders missing on this machine: {W.skipped_cases()}")
    assert len(wild) >= 35 and len({e.name for e in wild}) == len(wild)
    assert all(e.path.exists() for e in wild)
    infos = [i for i in probed.values() if not isinstance(i, MediaError)]
    assert {os.path.splitext(e.path)[1] for e in wild} >= {".mp4", ".mkv", ".webm", ".mov", ".avi"}
    assert {i.video_codec for i in infos} >= {"h264", "hevc", "vp9", "mpeg4", "mjpeg"}
    acodecs = {"mp3" if i.audio_codec.startswith("mp3") else i.audio_codec for i in infos if i.has_audio}
    assert acodecs >= {"aac", "mp3", "ac3", "opus", "flac", "pcm_s16le"}, acodecs
    assert {i.audio_channels for i in infos if i.has_audio} >= {1, 2, 6}
    rates = {i.audio_rate for i in infos if i.has_audio}
    assert min(rates) == 8000 and max(rates) == 48000 and len(rates) >= 6
    fps = [i.fps for i in infos]
    assert min(fps) <= 8 and max(fps) >= 60 and any(abs(f - 24000 / 1001) < 1e-3 for f in fps)
    assert {i.rotation for i in infos} == {0, 90, 180, 270}
    shapes = {(i.extra["display_size"][0], i.extra["display_size"][1]) for i in infos}  # (W, H) displayed
    ratios = {round(w / h, 2) for w, h in shapes}
    assert {1.78, 1.33, 0.56, 1.0} <= ratios, ratios
    assert any(w % 2 or h % 2 for w, h in shapes) and (854, 480) in shapes and (202, 360) in shapes
    assert {"vfr", "no-pts", "packed", "late-audio", "silent", "no-audio", "damaged", "truncated"} <= {
        t for e in wild for t in e.tags}


def test_ffmpeg_shows_the_bar_code_truth_where_pts_are_valid(wild, shown):
    """The reference is sound: on files with valid pts, the frame ffmpeg shows in the middle of every
    frame interval is the written frame (the generator's truth)."""
    for e in wild:
        if e.name not in shown or e.pts != "valid":
            continue
        t, codes = shown[e.name]
        ft = e.media.frame_times
        mids = (ft[:-1] + ft[1:]) / 2
        idx = np.clip(np.searchsorted(t, mids, side="right") - 1, 0, len(t) - 1)
        want = np.arange(len(mids))
        ok = codes[idx] == want
        if e.garbled is not None:
            ok |= (mids >= e.garbled[0]) & (mids < e.garbled[1])
        assert ok.all(), f"{e.name}: ffmpeg shows {codes[idx][~ok][:5]} where {want[~ok][:5]} were written"


def test_ffmpeg_guesses_the_times_of_avi_b_frames(wild, shown):
    """Where the file has no per-frame pts, ffmpeg's own times are guesses: its frames are in the right
    order (the bar codes 0..n-1) but placed up to `ffmpeg_tolerance` frames late; the reader's
    synthesized times (frame k at k / fps) are the truth there."""
    seen = 0
    for e in wild:
        if e.name not in shown or e.pts != "none":
            continue
        t, codes = shown[e.name]
        assert codes.tolist() == list(range(len(e.media.frame_times))), e.name
        fps = 1.0 / float(np.median(np.diff(e.media.frame_times)))
        off = np.round(t * fps).astype(int) - codes  # frames late, in ffmpeg's guess
        assert off.min() >= 0 and off.max() <= e.ffmpeg_tolerance, (e.name, off.min(), off.max())
        seen += 1
        if "packed" in e.tags:
            assert off.max() == 2 and off.min() == 0  # gaps: not even a constant shift
    assert seen >= 2


# ------------------------------------------------------------------ probe / index
def test_probe_reports_every_wild_file(wild, probed):
    for e in wild:
        got = probed[e.name]
        if e.probe_reason is not None:
            assert isinstance(got, MediaError) and got.reason == e.probe_reason, (e.name, got)
            continue
        assert not isinstance(got, MediaError), (e.name, got)
        assert got.has_audio == e.has_audio, e.name
        assert ("audio_undecodable" in got.extra) == e.audio_undecodable, (e.name, got.extra)
        assert got.extra["timestamps"] == ("no-pts" if e.pts == "none" else "pts"), (e.name, got.extra)
    assert "no sample" in probed["audio_undecodable"].extra["audio_undecodable"]
    assert probed["silent_track"].has_audio  # digital silence decodes: it is audio, not damage


def test_index_reports_the_wild_files(wild, tmp_path):
    from avssl.data.index import build_index

    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(e.path) for e in wild))
    m, rep = build_index(listing, workers=1, progress=False, missing_audio="skip")
    reasons = {os.path.basename(b.path): b.reason for b in rep.bad}
    want = {e.path.name: e.probe_reason for e in wild if e.probe_reason}
    want |= {e.path.name: "audio-undecodable" for e in wild if e.audio_undecodable}
    want |= {e.path.name: "no-audio" for e in wild if e.indexed and not e.has_audio and not e.audio_undecodable}
    assert reasons == want
    assert rep.audio_undecodable == [str(e.path) for e in wild if e.audio_undecodable]
    m, rep = build_index(listing, workers=1, progress=False, missing_audio="zeros")
    kept = {os.path.basename(p): bool(a) for p, a in zip(m.paths, m.has_audio)}
    assert kept["audio_undecodable.mp4"] is False and kept["h264_aac_16x9.mp4"] is True  # kept, as without audio
    assert "1 with undecodable audio" in rep.summary()


# ------------------------------------------------------------------ frame accuracy
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_shows_what_ffmpeg_shows(wild, shown, backend):
    """Every clip of the plan (4 per readable file, off-grid times): each frame is the one ffmpeg
    shows at that time (+-0 frames; either neighbour within 1.5 ms of a frame time), and on files
    without pts the frame at k / fps in output order (ffmpeg itself is 1-2 frames late there)."""
    wrong = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedMediaWarning)
        for e, start in W.clip_plan(wild, num_frames=SPEC.num_frames, fps=SPEC.fps):
            clip = read_clip(e.path, start, SPEC, backend=backend, audio=False)
            codes = [M.decode_frame(f) for f in clip.video]
            bad = W.frame_errors(e, clip.frame_times.numpy(), codes, shown[e.name])
            if bad:
                wrong.append((e.name, start, bad[:2]))
            want_ts = "synthesized" if e.pts == "none" else "pts"
            assert clip.read_info["timestamps"] == want_ts, (e.name, clip.read_info)
            assert tuple(clip.video.shape[1:3]) == _display_shape(e, SPEC.frame_size), e.name
    assert not wrong, f"{len(wrong)} clips not frame-accurate on {backend}: {wrong[:6]}"


def _display_shape(e, short):
    """(H, W) read_clip returns for a short side of `short` pixels."""
    h, w = e.media.display_hw
    return (short, round(w * short / h)) if h <= w else (round(h * short / w), short)


@pytest.mark.parametrize("backend", BACKENDS)
def test_untrusted_timestamps_are_handed_to_pyav(by_name, backend):
    """decord reads the missing AVI pts as ~-3e17 s (one frame for every time), torchcodec trusts
    FFmpeg's guesses (1-2 frames late): both hand such files to PyAV's synthesized times."""
    for name in ("mpeg4_bframes_ac3", "xvid_packed_mp3"):
        e = by_name[name]
        clip = read_clip(e.path, 1.23, ClipSpec(num_frames=8, fps=25, frame_size=48), backend=backend, audio=False)
        assert [M.decode_frame(f) for f in clip.video] == list(range(30, 38)), (name, backend)
        assert clip.read_info["decoder"] == "pyav"
        if backend != "pyav":
            assert clip.read_info["fallback"].startswith("file timestamps: no-pts")


def test_timestamp_verdict_rule():
    v = timestamp_verdict
    assert v([0, 3, 1, 2, 6, 4, 5], 1 / 30, 30, [0, 1, 2, 3, 4, 5, 6], "mov,mp4,m4a").trusted  # B-frames in mp4
    assert v([1, 4, 2, 3], 1 / 25, 25, [0, 1, 2, 3], "avi").reason == "no-pts"  # reordered in AVI: guesses
    assert v([0, 1, 2, 3], 1 / 25, 25, [0, 1, 2, 3], "avi").trusted  # AVI without B-frames: the chunk clock
    assert v([0, None, 2], 1 / 25, 25).reason == "no-pts"
    assert v([0, 1, 1, 2], 1 / 25, 25).reason == "non-monotonic"
    assert v([0, 1, 2, 100, 3, 4], 1 / 25, 25).reason == "non-monotonic"  # a jump back past the reorder window
    assert v(list(range(0, 48 * 10**6, 10**6)), 1 / 25, 25).reason == "implausible"  # 48 packets over 21 days
    assert v([0, 1, 2, 3], 1 / 90000, 25).reason == "implausible"  # 4 packets within 33 us at 25 fps
    assert v([], 1 / 25, 25).trusted


# ------------------------------------------------------------------ audio
def test_audio_of_every_wild_file(wild):
    """Every file with audio: the clip's audio is the written source at the right time (lag within
    0.6 ms of the delay every player has: Matroska/WebM stamp whole ms; AVI cannot signal the encoder
    priming), the silent track is digital silence, and all backends read the same samples."""
    for e in wild:
        if not (e.indexed and e.has_audio):
            continue
        for start in (0.2, float(e.media.frame_times[-1]) - 1.0):
            clip = read_clip(e.path, max(start, 0.0), SPEC, video=False)
            a = clip.audio[0].numpy()
            if "silent" in e.tags:
                assert np.abs(a).max() < 1e-4, e.name
                continue
            t0 = max(clip.audio_start, e.media.audio_start) + 0.05
            seg = a[int((t0 - clip.audio_start) * 24000) :][: int(0.5 * 24000)]
            if e.damage is not None and t0 - 0.1 < e.damage[1] < t0 + 0.6:
                continue  # the zero gap: test_damaged_audio_packet
            lag, corr = M.audio_lag(seg, e.media, t0, 24000, max_lag=0.05)
            assert abs(lag - e.audio_delay) <= 0.0006 and corr > 0.85, (e.name, start, lag, corr)
    e = next(x for x in wild if x.name == "h264_aac_16x9")
    clips = [read_clip(e.path, 0.4, SPEC, backend=b, av_offset=0.1) for b in available_backends()]
    for c in clips[1:]:
        torch.testing.assert_close(c.audio, clips[0].audio)


# ------------------------------------------------------------------ damage
@pytest.mark.parametrize("backend", BACKENDS)
def test_damaged_audio_packet(by_name, backend):
    """Issue #16: one undecodable AC-3 packet no longer makes the file unreadable: every clip reads on
    every backend; a clip whose audio window holds it counts it, warns, and has a zero gap where the
    packet's samples were, the rest in place."""
    e, ref = by_name["mpeg4_ac3_bad_packet"], by_name["mpeg4_bframes_ac3"]
    t_bad = e.damage[1]
    dur = float(e.media.frame_times[-1])
    for start in np.arange(0.0, dur - 0.5, 0.25):
        near = abs((start + SPEC.video_duration / 2) - t_bad) < SPEC.audio_duration / 2 - 0.05
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clip = read_clip(e.path, start, SPEC, backend=backend)
        assert clip.video.shape[0] == SPEC.num_frames and clip.audio.shape == (1, SPEC.audio_samples)
        if near:
            assert clip.decode_errors >= 1 and clip.read_info["audio_errors"] == clip.decode_errors, start
            assert any(issubclass(w.category, DamagedMediaWarning) and str(e.path) in str(w.message) for w in caught)
        elif abs((start + SPEC.video_duration / 2) - t_bad) > SPEC.audio_duration / 2 + 0.2:
            assert clip.decode_errors == 0, start
    # the gap: zeros where the packet (and the one the parser merged with it) was, the clean file's samples elsewhere
    spec48 = ClipSpec(num_frames=1, fps=25, frame_size=32, audio_rate=48000, audio_duration=0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedMediaWarning)
        bad_clip = read_clip(e.path, t_bad - 0.02, spec48, backend=backend, video=False)
    bad = bad_clip.audio[0].numpy()
    good = read_clip(ref.path, t_bad - 0.02, spec48, backend=backend, video=False).audio[0].numpy()
    rel = int(round((t_bad - bad_clip.audio_start) * 48000))  # the damaged packet's first sample
    zero = np.flatnonzero(np.abs(bad) < 1e-6)
    run = zero[(zero > rel - 4000) & (zero < rel + 4000)]
    assert 1536 <= len(run) <= 2 * 1536 + 64, len(run)  # one or two AC-3 frames of silence
    diff = np.abs(bad - good)
    assert diff[: run.min() - 50].max() < 1e-4 and diff[run.max() + 1536 + 50 :].max() < 0.05


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["h264_bad_video_packet", "mpeg4_bad_video_packet"])
def test_damaged_video_packet(by_name, backend, name):
    """A garbage video packet mid-GOP: clips over it read on every backend (frames outside the
    concealed span exact: test_every_backend_shows_what_ffmpeg_shows), and the damage is counted
    by whichever decoder met it."""
    e = by_name[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedMediaWarning)
        clip = read_clip(e.path, e.damage[1] - 0.1, ClipSpec(num_frames=8, fps=25, frame_size=48), backend=backend,
                         audio=False)
    assert clip.video.shape[0] == 8
    if clip.read_info["decoder"] == "pyav":
        assert clip.decode_errors >= 1 and clip.read_info["video_errors"] == clip.decode_errors
    codes = [M.decode_frame(f) for f in clip.video]
    assert codes[:3] == [7, 8, 9]  # before the damaged frame 10


@pytest.mark.parametrize("backend", BACKENDS)
def test_window_without_decodable_data_is_a_typed_error(by_name, backend):
    """Audio no decoder reads: an audio read of any window is CorruptMedia (not silence passed off as
    the clip's sound); the video alone reads (the index marks the file as without audio)."""
    e = by_name["audio_undecodable"]
    for kw in ({"video": False}, {}):
        with pytest.raises(CorruptMedia, match="no decodable data") as info:
            read_clip(e.path, 0.5, SPEC, backend=backend, **kw)
        assert info.value.path == str(e.path)
    clip = read_clip(e.path, 0.5, SPEC, backend=backend, audio=False)
    assert [M.decode_frame(f) for f in clip.video] == e.media.expected_index(clip.frame_times.numpy()).tolist()


@pytest.mark.filterwarnings("ignore::avssl.io.errors.DamagedMediaWarning")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["truncated_tail", "truncated_faststart"])
def test_truncated_file_reads_up_to_the_cut(by_name, backend, name):
    """The index leaves a cut file out, but a reader given one anyway returns the frames before the cut
    and, after it, the last frame there is (padding) or a typed error: never a crash or a wrong frame."""
    e = by_name[name]
    spec = ClipSpec(num_frames=6, fps=9.7, frame_size=48, audio_duration=0.5)
    last = int(e.media.expected_index(e.readable_until))
    for start in (0.1, e.readable_until - 0.2, e.readable_until + 0.5):
        try:
            c = read_clip(e.path, start, spec, backend=backend)
        except MediaError as err:
            assert start > 0.1 and err.reason in ("corrupt", "truncated"), (start, err)
            continue
        codes = [M.decode_frame(f) for f in c.video]
        want = np.minimum(e.media.expected_index(c.frame_times.numpy()), last).tolist()
        assert codes == want, (start, codes, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_wild_files_raise_typed_errors(wild, backend):
    for e in wild:
        if e.readable:
            continue
        with pytest.raises(MediaError) as info:
            read_clip(e.path, 0.0, SPEC, backend=backend)
        assert info.value.path == str(e.path)
        if e.read_reason is not None:
            assert info.value.reason == e.read_reason, (e.name, info.value)
