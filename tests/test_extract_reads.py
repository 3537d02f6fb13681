"""Extraction decodes a short video once for all its clips: the same embeddings as reading every clip
alone (real H.264/AAC files and the tiny model of tests/test_extract.py)."""

import numpy as np
import pytest

from avssl.embed import shards as sh
from test_extract import KW, TinyAV, _all_arrays, _write_media, ex


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return _write_media(tmp_path_factory.mktemp("media_reads"))


def _extract(media, out, **kw):
    rep = ex.extract(media, TinyAV(), out, **{**KW, **kw})
    assert rep.complete and rep.failed == 1 and rep.videos == 6
    return _all_arrays(out)


def test_one_decode_per_video_gives_the_per_clip_embeddings(media, tmp_path, monkeypatch):
    calls = {"read_clip": 0, "read_clips": 0}
    import avssl.io as io

    for name in calls:
        real = getattr(io, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(io, name, counted)
    together = _extract(media, tmp_path / "together")  # defaults: every video here is short
    assert calls["read_clips"] >= 3  # clips with no keyframe between them share a decode (keyframe every 0.5 s)
    calls.update(read_clip=0, read_clips=0)
    alone = _extract(media, tmp_path / "alone", whole_video_max=0.0, merge_gap=-np.inf)
    assert calls["read_clips"] == 0 and calls["read_clip"] >= 15
    assert set(together) == set(alone)
    for name in together:
        a, b = together[name][0], alone[name][0]
        assert a.shape == b.shape and a.size
        assert float(np.abs(a - b).max()) < 1e-6, name
        assert np.array_equal(together[name][1]["clip_start" if name.startswith("clip") else "video_id"],
                              alone[name][1]["clip_start" if name.startswith("clip") else "video_id"])


def test_long_video_falls_back_to_groups(media, tmp_path):
    """With a threshold below the videos' length, overlapping clips still share a decode and the rest are
    read alone; rows unchanged."""
    ref = _extract(media, tmp_path / "ref", whole_video_max=0.0, merge_gap=-np.inf)
    grouped = _extract(media, tmp_path / "grouped", whole_video_max=1.0, merge_gap=0.1)
    for name in ref:
        assert float(np.abs(ref[name][0] - grouped[name][0]).max()) < 1e-6, name
    assert sh.read_meta(tmp_path / "grouped")["num_videos"] == len(media)
