"""Embedding collections on disk: shard round-trip, and extraction of real media files."""

import json

import numpy as np
import pytest

from avssl.embed import shards as sh


def _tables(ids, clips_per_video, shard, start=0.0):
    n = len(ids)
    clips = {
        "video_id": np.repeat(np.asarray(ids, dtype=np.int64), clips_per_video),
        "path": np.array([f"/data/v,{i}\u00e9.mp4" for i in ids for _ in range(clips_per_video)], dtype=object),
        "clip_index": np.tile(np.arange(clips_per_video), n),
        "clip_start": np.tile(np.arange(clips_per_video) / 3.0 + start, n),  # non-terminating decimals
        "clip_end": np.tile(np.arange(clips_per_video) / 3.0 + start + 0.5, n),
        "shard": np.full(n * clips_per_video, shard),
        "row": np.arange(n * clips_per_video),
    }
    videos = {
        "video_id": np.asarray(ids, dtype=np.int64),
        "path": np.array([f"/data/v,{i}\u00e9.mp4" for i in ids], dtype=object),
        "num_clips": np.full(n, clips_per_video),
        "shard": np.full(n, shard),
        "row": np.arange(n),
    }
    return clips, videos


def _write_meta(out, num_shards, dtype):
    sh.write_json_atomic(out / "meta.json", {"format": sh.FORMAT, "version": sh.VERSION, "num_shards": num_shards,
                                            "dtype": dtype, "dims": {}})


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_shard_roundtrip(tmp_path, dtype):
    rng = np.random.default_rng(0)
    _write_meta(tmp_path, 3, dtype)
    written = {}
    for shard, ids in enumerate([[10, 11], [12], [13, 14, 15]]):
        clips, videos = _tables(ids, 2, shard)
        failed = sh.empty_table("failed")
        if shard == 1:
            failed = {"video_id": np.array([99]), "path": np.array(["/bad.mp4"], dtype=object),
                      "reason": np.array(["corrupt"], dtype=object), "detail": np.array(["moov atom, not found"], dtype=object)}
        arrays = {"clip-video-proj": rng.standard_normal((len(ids) * 2, 4)),
                  "video-video-proj": rng.standard_normal((len(ids), 4))}
        written[shard] = (arrays, clips, videos)
        sh.write_shard(tmp_path, shard, arrays, clips, videos, failed, dtype=dtype)
    assert sh.done_shards(tmp_path) == [0, 1, 2]
    counts = sh.finalize(tmp_path, num_shards=3)
    assert counts == {"clips": 12, "videos": 6, "failed": 1}

    emb, table = sh.load_collection(tmp_path, level="clip", modality="video", layer="proj")
    ref = np.concatenate([written[s][0]["clip-video-proj"] for s in range(3)]).astype(dtype)
    assert emb.dtype == np.dtype(dtype) and np.array_equal(emb, ref)
    for col in sh.CLIP_COLUMNS:
        ref_col = np.concatenate([written[s][1][col] for s in range(3)])
        assert np.array_equal(table[col], ref_col), col  # floats exact, commas/unicode in paths kept
    vemb, vtable = sh.load_collection(tmp_path, level="video", modality="video", layer="proj", mmap=True)
    assert vemb.shape == (6, 4) and vtable["video_id"].tolist() == [10, 11, 12, 13, 14, 15]
    merged = sh.read_table(tmp_path / "failed.csv", "failed")
    assert merged["detail"].tolist() == ["moov atom, not found"]
    with pytest.raises(sh.CollectionError):
        sh.load_collection(tmp_path, level="clip", modality="audio", layer="proj")


def test_incomplete_collection_and_partial_shards(tmp_path):
    _write_meta(tmp_path, 2, "float32")
    clips, videos = _tables([1], 1, 0)
    sh.write_shard(tmp_path, 0, {"clip-audio-proj": np.ones((1, 3))}, clips, videos, sh.empty_table("failed"),
                   dtype="float32")
    # debris of a killed writer of shard 1: a hidden tmp folder, never counted as done
    junk = sh.shards_dir(tmp_path) / ".shard_00001.tmp.host.123"
    junk.mkdir()
    (junk / "clip-audio-proj.npy").write_bytes(b"half")
    assert sh.done_shards(tmp_path) == [0]
    with pytest.raises(sh.CollectionError, match="missing"):
        sh.load_collection(tmp_path, "clip", "audio")
    emb, _ = sh.load_collection(tmp_path, "clip", "audio", allow_incomplete=True)
    assert emb.shape == (1, 3)
    with pytest.raises(sh.CollectionError):
        sh.finalize(tmp_path, num_shards=2)
    assert sh.remove_partial_shards(tmp_path, [1]) == [junk] and not junk.exists()
    with pytest.raises(sh.CollectionError, match="already done"):
        sh.write_shard(tmp_path, 0, {}, clips, videos, sh.empty_table("failed"))


def test_write_shard_rejects_rows_that_do_not_match_the_table(tmp_path):
    clips, videos = _tables([1, 2], 2, 0)
    with pytest.raises(ValueError, match="rows"):
        sh.write_shard(tmp_path, 0, {"clip-video-proj": np.ones((3, 2))}, clips, videos, sh.empty_table("failed"))
    assert sh.done_shards(tmp_path) == []
    with pytest.raises(sh.CollectionError):
        sh.read_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(sh.CollectionError, match="format"):
        sh.read_meta(tmp_path)
