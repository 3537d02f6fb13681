"""Decoders kept open between reads (avssl.io.decoder_cache) and several clips from one decode
(avssl.io.read_clips), on real encoded files with known frame content (tests/media.py)."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import weakref

import numpy as np
import pytest
import torch

import media as M
from avssl.io import ClipSpec, available_backends, read_clip, read_clips
from avssl.io.decoder_cache import DecoderCache, decoder_cache
from avssl.io.sampling import eval_clip_starts, read_groups

SPEC = ClipSpec(num_frames=8, fps=16.0, frame_size=48, audio_rate=24000, audio_channels=1, audio_duration=2.0)
CACHED = [pytest.param(b, id=b, marks=[] if b in available_backends() else [pytest.mark.skip(reason=f"{b} not usable here")])
          for b in ("decord", "torchcodec")]
ALL = [pytest.param(b, id=b, marks=[] if b in available_backends() else [pytest.mark.skip(reason=f"{b} not usable here")])
       for b in ("pyav", "decord", "torchcodec")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("dcache")
    return {
        "h264": M.write_coded(d / "h264.mp4", seconds=5, fps=30, gop=45, bframes=2, audio_rate=48000,
                              channel_gains=(1.0, 0.5)),
        "vp9": M.write_coded(d / "vp9.webm", seconds=3, fps=25, audio_rate=48000),
        "vfr": M.write_vfr(d / "vfr.mp4", seconds=3),
        "mono44": M.write_coded(d / "mono44.mp4", seconds=4, fps=30, audio_rate=44100),
    }


@pytest.fixture
def cache():
    """This process's cache, emptied and sized 4 for the test, restored afterwards."""
    c = decoder_cache()
    old = c.size
    c.clear()
    c.resize(4)
    c.opens = c.hits = c.evictions = 0
    yield c
    c.clear()
    c.resize(old)


class _Closable:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def close(self):
        self.log.append(self.name)


# ---------------------------------------------------------------------------- the LRU itself


def test_lru_evicts_least_recent_and_closes_it():
    log = []
    c = DecoderCache(2)
    a = c.get("a", lambda: _Closable("a", log))
    c.get("b", lambda: _Closable("b", log))
    assert c.get("a", lambda: pytest.fail("a is cached")) is a  # a is now the most recent
    c.get("c", lambda: _Closable("c", log))  # evicts b, the least recently used
    assert log == ["b"] and len(c) == 2 and "b" not in c and c.evictions == 1
    assert (c.opens, c.hits) == (3, 1)
    c.discard("a")
    assert log == ["b", "a"]
    c.clear()
    assert log == ["b", "a", "c"] and len(c) == 0


def test_size_zero_keeps_nothing_and_resize_closes_extra():
    log = []
    c = DecoderCache(0)
    c.get("a", lambda: _Closable("a", log))
    c.get("a", lambda: _Closable("a", log))
    assert len(c) == 0 and c.opens == 2
    c.resize(3)
    for k in "xyz":
        c.get(k, lambda k=k: _Closable(k, log))
    c.resize(1)
    assert log == ["x", "y"] and len(c) == 1


def _child_reads(marker):
    class Marker:
        def close(self):
            open(marker, "w").close()

    decoder_cache().get("key", Marker)  # the worker returns without clearing anything itself


def test_worker_exit_closes_its_decoders(tmp_path):
    """A multiprocessing worker (as DataLoader's) leaves through os._exit: its decoders are still closed.
    (forkserver: the child also ends in os._exit, but is forked from a clean single-threaded server; a plain
    fork of this threaded test process could inherit a held lock and hang.)"""
    marker = tmp_path / "closed"
    ctx = mp.get_context("forkserver")
    p = ctx.Process(target=_child_reads, args=(str(marker),))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert marker.exists(), "the worker's cached decoder was not closed at exit"


# ---------------------------------------------------------------------------- on the backends


def _count_opens(monkeypatch, backend):
    count = {"n": 0}
    if backend == "decord":
        import decord

        real = decord.VideoReader

        def counting(*a, **kw):
            count["n"] += 1
            return real(*a, **kw)

        monkeypatch.setattr(decord, "VideoReader", counting)
    else:
        import torchcodec.decoders as tcd

        real = tcd.VideoDecoder

        def counting(*a, **kw):
            if kw.get("seek_mode") == "exact":  # the indexing open (the header-only one is cheap)
                count["n"] += 1
            return real(*a, **kw)

        monkeypatch.setattr(tcd, "VideoDecoder", counting)
    return count


@pytest.mark.parametrize("backend", CACHED)
def test_reader_is_reused_across_calls(files, cache, backend, monkeypatch):
    count = _count_opens(monkeypatch, backend)
    for s in (0.0, 2.1, 0.7, 3.0):
        read_clip(files["h264"].path, s, SPEC, backend=backend, audio=False)
    assert count["n"] == 1, f"{backend} opened the file {count['n']} times for 4 reads"
    assert cache.opens == 1 and cache.hits == 3
    read_clip(files["h264"].path, 1.0, ClipSpec(num_frames=4, fps=8.0, frame_size=32), backend=backend, audio=False)
    assert count["n"] == 2, "another output size is another decoder"


@pytest.mark.parametrize("backend", CACHED)
def test_rewritten_file_is_opened_again(tmp_path, cache, backend, monkeypatch):
    path = tmp_path / "v.mp4"
    M.write_coded(path, seconds=2, fps=25, audio_rate=None)
    count = _count_opens(monkeypatch, backend)
    read_clip(path, 0.5, SPEC, backend=backend, audio=False)
    media = M.write_coded(path, seconds=3, fps=20, audio_rate=None)  # same name, new content
    clip = read_clip(path, 2.2, SPEC, backend=backend, audio=False)
    assert count["n"] == 2
    assert [M.decode_frame(f) for f in clip.video] == media.expected_index(clip.frame_times.numpy()).tolist()


@pytest.mark.parametrize("backend", CACHED)
def test_eviction_closes_the_decoder(files, cache, backend):
    cache.resize(1)
    read_clip(files["h264"].path, 1.0, SPEC, backend=backend, audio=False)
    (opened,) = list(cache._items.values())
    inner = weakref.ref(opened.vr if backend == "decord" else opened.dec)
    read_clip(files["vp9"].path, 1.0, SPEC, backend=backend, audio=False)
    gc.collect()
    assert cache.evictions == 1 and len(cache) == 1
    assert inner() is None, "the evicted decoder is still alive"


@pytest.mark.parametrize("backend", CACHED)
def test_cached_reads_equal_fresh_opens_and_stay_frame_accurate(files, cache, backend):
    """Interleaved reads of several files through a cache of 2 (hits, misses, evictions) give exactly the
    arrays of a fresh open per read, and the frames shown at the requested times."""
    cache.resize(2)
    plan = [(n, s) for s in (0.0, 1.37, 0.4, 2.2, 0.9) for n in ("h264", "vfr", "vp9", "h264")]
    cached = [read_clip(files[n].path, s, SPEC, backend=backend, audio=False).video for n, s in plan]
    assert cache.hits > 0 and cache.evictions > 0
    cache.resize(0)
    for (n, s), got in zip(plan, cached):
        fresh = read_clip(files[n].path, s, SPEC, backend=backend, audio=False)
        assert torch.equal(got, fresh.video), (n, s)
        assert [M.decode_frame(f) for f in got] == files[n].expected_index(fresh.frame_times.numpy()).tolist(), (n, s)


@pytest.mark.parametrize("backend", CACHED)
def test_open_decoders_stay_bounded_over_many_files(tmp_path, cache, backend):
    cache.resize(2)
    paths = [M.write_coded(tmp_path / f"f{i}.mp4", seconds=1, fps=20, audio_rate=None).path for i in range(5)]
    for rep in range(3):
        for p in paths:
            read_clip(p, 0.3, SPEC, backend=backend, audio=False)
            assert len(cache) <= 2
    assert cache.opens == 15 and cache.evictions == 13  # round robin over 5 files never hits a cache of 2


# ---------------------------------------------------------------------------- several clips, one decode


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("name", ["h264", "vfr", "mono44", "vp9"])
def test_read_clips_equals_per_clip_reads(files, cache, backend, name):
    """One decode for N overlapping clips gives exactly the per-clip reads' frames and audio."""
    media = files[name]
    dur = media.duration
    starts = eval_clip_starts(dur, SPEC.video_duration, 6)
    has_audio = media.audio is not None
    together = read_clips(media.path, starts, SPEC, backend=backend, audio=has_audio)
    assert len(together) == len(starts)
    for s, c in zip(starts, together):
        alone = read_clip(media.path, s, SPEC, backend=backend, audio=has_audio)
        assert torch.equal(c.video, alone.video), s
        assert torch.equal(c.frame_times, alone.frame_times)
        if has_audio:
            assert c.audio.shape == alone.audio.shape
            assert torch.equal(c.audio, alone.audio), s
            assert c.audio_start == alone.audio_start


def test_read_clips_unsorted_and_padded_starts(files, cache):
    """Starts in any order and past the end: each clip still follows read_clip's padding rules."""
    media = files["h264"]
    starts = [4.8, 0.0, 2.5, -0.3]
    together = read_clips(media.path, starts, SPEC)
    for s, c in zip(starts, together):
        alone = read_clip(media.path, s, SPEC)
        assert torch.equal(c.video, alone.video)
        assert torch.equal(c.audio, alone.audio)


def test_read_groups_rule():
    span = 0.5
    starts = np.array([0.0, 0.4, 0.9, 5.0, 5.5, 9.0])
    # no keyframe index: the whole of a short video, else clips closer than merge_gap
    assert read_groups(starts, span, 10.0, whole_video_max=20.0) == [[0, 1, 2, 3, 4, 5]]
    assert read_groups(starts, span, 60.0, whole_video_max=20.0, merge_gap=0.0) == [[0, 1, 2], [3, 4], [5]]
    assert read_groups(starts, span, 60.0, whole_video_max=20.0, merge_gap=4.0) == [[0, 1, 2, 3, 4, 5]]
    assert read_groups(starts[::-1], span, 60.0, whole_video_max=0, merge_gap=0.0) == [[5, 4, 3], [2, 1], [0]]
    assert read_groups(starts, span, 5.0, whole_video_max=0, merge_gap=-np.inf) == [[i] for i in range(6)]
    assert read_groups([], span, 5.0) == []
    # keyframes: a clip joins unless a keyframe lies (more than merge_gap) after the previous clip's end
    sparse = np.array([0.0, 8.3])  # a source: one decode for the clips up to 8.3 s
    assert read_groups(starts, span, 60.0, keyframes=sparse, merge_gap=0.5) == [[0, 1, 2, 3, 4], [5]]
    dense = np.arange(0.0, 10.0, 0.5)  # a training cache: a keyframe right before each distant clip
    assert read_groups(starts, span, 10.0, keyframes=dense, merge_gap=0.5) == [[0, 1, 2], [3, 4], [5]]
    assert read_groups(starts, span, 10.0, keyframes=dense, merge_gap=-np.inf) == [[i] for i in range(6)]
    assert read_groups(starts, span, 10.0, keyframes=[], merge_gap=0.0) == [[0, 1, 2, 3, 4, 5]]  # empty: no index


def test_keyframe_times_from_the_index(files):
    from avssl.io import keyframe_times

    kf = keyframe_times(files["h264"].path)  # gop=45 at 30 fps: every 1.5 s
    assert kf is not None and len(kf) == 4
    assert np.allclose(kf, [0.0, 1.5, 3.0, 4.5], atol=0.1)



@pytest.mark.parametrize("name", ["h264", "vfr"])
def test_read_clips_far_apart_skip_between_and_stay_frame_accurate(files, name):
    """Clips with gaps longer than the skip margin (non-reference frames between them are not decoded)
    still show the frame displayed at every requested time, as per-clip reads do."""
    media = files[name]
    starts = [0.05, 1.6, 0.0, media.duration - 0.6]
    together = read_clips(media.path, starts, SPEC, backend="pyav", audio=False)
    for s, c in zip(starts, together):
        assert [M.decode_frame(f) for f in c.video] == media.expected_index(c.frame_times.numpy()).tolist(), s
        assert torch.equal(c.video, read_clip(media.path, s, SPEC, backend="pyav", audio=False).video)
