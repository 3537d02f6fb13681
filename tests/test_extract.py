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
        "has_audio": np.ones(n * clips_per_video, dtype=np.int64),
        "shard": np.full(n * clips_per_video, shard),
        "row": np.arange(n * clips_per_video),
    }
    videos = {
        "video_id": np.asarray(ids, dtype=np.int64),
        "path": np.array([f"/data/v,{i}\u00e9.mp4" for i in ids], dtype=object),
        "num_clips": np.full(n, clips_per_video),
        "has_audio": np.ones(n, dtype=np.int64),
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


# ------------------------------------------------------------------ extraction of real media

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import importlib  # noqa: E402

# the package exports the function `extract`, which hides the module of the same name
ex = importlib.import_module("avssl.embed.extract")
from avssl.io.types import ClipSpec  # noqa: E402
from avssl.io.writer import write_av  # noqa: E402

SPEC = ClipSpec(num_frames=4, fps=8.0, frame_size=(24, 32), audio_rate=8000, audio_duration=0.5)
N_CLIPS = 3


def _write_media(folder, n=5, seed=0):
    """n short H.264/AAC files with different content and durations, plus one corrupt file."""
    rng = np.random.default_rng(seed)
    paths, durations = [], []
    for i in range(n):
        frames_n = 12 + 4 * i  # 1.5 s, 2.0 s, ...
        base = rng.integers(0, 255, size=(1, 24, 32, 3))
        drift = np.linspace(0, 120, frames_n)[:, None, None, None]
        video = ((base + drift) % 255).astype(np.uint8)
        t = np.arange(int(frames_n / 8.0 * 16000)) / 16000
        audio = (0.4 * np.sin(2 * np.pi * (300 + 150 * i) * t))[None].astype(np.float32)
        p = write_av(folder / f"v{i}.mp4", video, 8.0, audio, 16000, gop=4)
        paths.append(str(p))
        durations.append(frames_n / 8.0)
    bad = folder / "broken.mp4"
    good = (folder / "v0.mp4").read_bytes()
    bad.write_bytes(good[:200] + bytes(rng.integers(0, 255, 3000, dtype=np.uint8)))  # header kept, rest garbage
    paths.insert(2, str(bad))
    durations.insert(2, 2.0)
    silent = write_av(folder / "no_sound.mp4", np.full((16, 24, 32, 3), 90, np.uint8), 8.0, None)
    paths.append(str(silent))
    durations.append(2.0)
    ids = np.arange(100, 100 + len(paths), dtype=np.int64)
    return ex.VideoList(ids, np.array(paths, dtype=object), np.array(durations), "test-index-v1")


class TinyEncoder(torch.nn.Module):
    def __init__(self, in_ch, conv, dim=8):
        super().__init__()
        self.conv1 = conv(in_ch, 6, 3, padding=1)
        self.conv2 = conv(6, dim, 3, padding=1, stride=2)
        self.out_dim = dim

    def forward_features(self, x):
        a = torch.relu(self.conv1(x))
        b = torch.relu(self.conv2(a))
        return {"conv1": a, "conv2": b, "pool": b.flatten(2).mean(-1)}

    def forward(self, x):
        return self.forward_features(x)["pool"]


class TinyAV(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.video = TinyEncoder(3, torch.nn.Conv3d)
        self.audio = TinyEncoder(1, torch.nn.Conv2d)
        self.video_head = torch.nn.Linear(8, 5)
        self.audio_head = torch.nn.Linear(8, 5)

    def embed_video(self, x):
        return F.normalize(self.video_head(self.video(x)), dim=1)

    def embed_audio(self, x):
        return F.normalize(self.audio_head(self.audio(x)), dim=1)


def video_tf(x):  # uint8 [B,T,H,W,3] -> float [B,3,T,H,W]
    return x.permute(0, 4, 1, 2, 3).float() / 255.0


def audio_tf(x):  # [B,1,S] -> [B,1,F,T]
    spec = torch.stft(x[:, 0], 128, 64, window=torch.hann_window(128, device=x.device), return_complex=True).abs()
    return torch.log(spec + 1e-2)[:, None]  # a floor well above 16-bit quantisation noise


KW = dict(clips_per_video=N_CLIPS, layers=("proj", "conv2"), spec=SPEC, batch_size=5, num_workers=0,
          device="cpu", shard_size=2, dtype="float32", video_transform=video_tf, audio_transform=audio_tf,
          progress=False, index_failures=[("/elsewhere/notes.txt", "not-a-video", "tty demuxer")])


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return _write_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="module")
def reference(media, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    rep = ex.extract(media, TinyAV(), out, **KW)
    return out, rep


def _all_arrays(out):
    meta = sh.read_meta(out)
    res = {}
    for name in meta["arrays"]:
        level, modality, layer = name.split("-", 2)
        res[name] = sh.load_collection(out, level, modality, layer)
    return res


def test_extraction_rows_pooling_and_failed_file(media, reference):
    out, rep = reference
    assert rep.complete and rep.computed_shards == [0, 1, 2, 3] and rep.failed == 1 and rep.videos == 6
    assert rep.collection == {"clips": 6 * N_CLIPS, "videos": 6, "failed": 2}  # the index's reject included
    failed = sh.read_table(out / "failed.csv", "failed")
    assert failed["path"].tolist() == ["/elsewhere/notes.txt", media.path[2]]
    assert failed["reason"].tolist() == ["not-a-video", "corrupt"] and failed["video_id"].tolist() == [-1, media.id[2]]
    vemb, vt = sh.load_collection(out, "video", "video", "proj")
    cemb, ct = sh.load_collection(out, "clip", "video", "proj")
    good = [i for i in range(len(media)) if i != 2]
    assert vt["video_id"].tolist() == media.id[good].tolist()
    assert vt["has_audio"].tolist() == [1, 1, 1, 1, 1, 0]  # the silent file is kept, flagged
    assert ct["has_audio"].tolist() == [1] * 15 + [0] * 3
    assert vt["path"].tolist() == media.path[good].tolist()
    assert ct["video_id"].tolist() == np.repeat(media.id[good], N_CLIPS).tolist()
    from avssl.io.sampling import eval_clip_starts

    for j, i in enumerate(good):
        starts = eval_clip_starts(media.duration[i], SPEC.video_duration, N_CLIPS)
        assert np.allclose(ct["clip_start"][j * N_CLIPS:(j + 1) * N_CLIPS], starts)
        clip_rows = torch.from_numpy(cemb[j * N_CLIPS:(j + 1) * N_CLIPS])
        assert torch.allclose(clip_rows.norm(dim=1), torch.ones(N_CLIPS), atol=1e-5)
        assert torch.allclose(torch.from_numpy(vemb[j]), F.normalize(clip_rows.mean(0), dim=0), atol=1e-6)
    # backbone layer: pooled channels, per-video = plain mean
    bc, _ = sh.load_collection(out, "clip", "audio", "conv2")
    bv, _ = sh.load_collection(out, "video", "audio", "conv2")
    assert bc.shape == (6 * N_CLIPS, 8) and np.allclose(bv, bc.reshape(6, N_CLIPS, 8).mean(1), atol=1e-6)
    # the stored clip embedding is what the model gives on the decoded clip
    from avssl.io import read_clip

    clip = read_clip(media.path[3], ct["clip_start"][N_CLIPS * 2 + 1], SPEC)
    model = TinyAV().eval()
    with torch.no_grad():
        direct = model.embed_audio(audio_tf(clip.audio[None]))[0]
    aemb, _ = sh.load_collection(out, "clip", "audio", "proj")
    assert torch.allclose(torch.from_numpy(aemb[N_CLIPS * 2 + 1]), direct, atol=1e-5)
    # the audio level of each clip's window (dBFS), for avssl.embed.agreement; the file without sound at the floor
    from avssl.embed.agreement import RMS_FLOOR_DB, rms_db

    rms, _ = sh.load_collection(out, "clip", "audio", "rms_db")
    assert rms[N_CLIPS * 2 + 1, 0] == pytest.approx(rms_db(clip.audio.numpy()), abs=1e-4)
    assert rms[-N_CLIPS:, 0].tolist() == [RMS_FLOOR_DB] * N_CLIPS and (rms[:-N_CLIPS] > -20).all()


def _two_rank_extract(rank, world, media, out):
    rep = ex.extract(media, TinyAV(), out, **KW)
    return rep.computed_shards, rep.collection


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_give_the_rows_of_one(media, reference, tmp_path):
    from avssl.utils.distributed import run_distributed

    (shards0, totals0), (shards1, totals1) = run_distributed(_two_rank_extract, 2, media, str(tmp_path))
    assert [shards0, shards1] == [[0, 2], [1, 3]]
    assert totals0 == reference[1].collection and totals1 == {}  # rank 0 merged: the whole collection's rows
    ref_arrays, got_arrays = _all_arrays(reference[0]), _all_arrays(tmp_path)
    assert set(ref_arrays) == set(got_arrays)
    for name, (ref_emb, ref_table) in ref_arrays.items():
        emb, table = got_arrays[name]
        assert np.array_equal(emb, ref_emb), name  # same batches per shard -> bit-identical
        for col in ref_table:
            assert np.array_equal(table[col], ref_table[col]), (name, col)
    for kind in sh.TABLES:
        assert (tmp_path / f"{kind}.csv").read_text() == (reference[0] / f"{kind}.csv").read_text()


class _Killed(Exception):
    pass


def test_resume_recomputes_nothing_finished(media, reference, tmp_path):
    first = ex.extract(media, TinyAV(), tmp_path, max_shards=1, **KW)
    assert first.computed_shards == [0] and not first.complete
    stamp = (sh.shards_dir(tmp_path) / "shard_00000" / sh.DONE_MARKER).stat().st_mtime_ns

    def die_after_shard_1(k):
        if k == 1:
            # leave debris like a writer killed half-way through shard 2
            (sh.shards_dir(tmp_path) / ".shard_00002.tmp.host.999").mkdir()
            raise _Killed

    with pytest.raises(_Killed):
        ex.extract(media, TinyAV(), tmp_path, on_shard_done=die_after_shard_1, **KW)
    assert sh.done_shards(tmp_path) == [0, 1]
    assert not (tmp_path / "videos.csv").exists()
    last = ex.extract(media, TinyAV(), tmp_path, **KW)
    assert last.skipped_shards == [0, 1] and last.computed_shards == [2, 3] and last.complete
    assert (sh.shards_dir(tmp_path) / "shard_00000" / sh.DONE_MARKER).stat().st_mtime_ns == stamp
    assert not list(sh.shards_dir(tmp_path).glob(".*"))
    again = ex.extract(media, TinyAV(), tmp_path, **KW)
    assert again.computed_shards == [] and again.skipped_shards == [0, 1, 2, 3]
    for name, (ref_emb, ref_table) in _all_arrays(reference[0]).items():
        emb, table = sh.load_collection(tmp_path, *name.split("-", 2))
        assert np.array_equal(emb, ref_emb) and table["video_id"].tolist() == ref_table["video_id"].tolist()


def test_resume_refuses_other_settings(media, tmp_path):
    ex.extract(media, TinyAV(), tmp_path, max_shards=1, **KW)
    with pytest.raises(sh.CollectionMismatch, match="model_digest"):
        ex.extract(media, TinyAV(seed=1), tmp_path, **KW)
    with pytest.raises(sh.CollectionMismatch, match="clips_per_video"):
        ex.extract(media, TinyAV(), tmp_path, **{**KW, "clips_per_video": 2})
    rep = ex.extract(media, TinyAV(seed=1), tmp_path, overwrite=True, max_shards=1, **KW)
    assert rep.computed_shards == [0]


def test_worker_processes_decode_the_same(media, reference, tmp_path):
    rep = ex.extract(media, TinyAV(), tmp_path, **{**KW, "num_workers": 2})
    assert rep.complete and rep.failed == 1
    for name, (ref_emb, _) in _all_arrays(reference[0]).items():
        assert np.array_equal(sh.load_collection(tmp_path, *name.split("-", 2))[0], ref_emb), name


# ------------------------------------------------------------------ notebook API


def test_api_matches_extracted_rows(media, reference):
    from avssl.embed import embed_audio, embed_video

    out, _ = reference
    vemb, vt = sh.load_collection(out, "video", "video", "proj")
    aemb, _ = sh.load_collection(out, "video", "audio", "proj")
    bemb, _ = sh.load_collection(out, "video", "video", "conv2")
    kw = dict(clips_per_video=N_CLIPS, spec=SPEC, device="cpu")
    model = TinyAV()
    row = vt["path"].tolist().index(media.path[3])
    v = embed_video(media.path[3], model, transform=video_tf, **kw)
    assert v.shape == (5,) and torch.allclose(v, torch.from_numpy(vemb[row]), atol=1e-5)
    b = embed_video(media.path[3], model, transform=video_tf, layer="conv2", **kw)
    assert torch.allclose(b, torch.from_numpy(bemb[row]), atol=1e-5)
    a = embed_audio(media.path[3], model=model, transform=audio_tf, **kw)
    assert torch.allclose(a, torch.from_numpy(aemb[row]), atol=1e-5)
    per_clip = embed_audio(media.path[3], model=model, transform=audio_tf, pool=False, **kw)
    assert per_clip.shape == (N_CLIPS, 5) and torch.allclose(F.normalize(per_clip.mean(0), dim=0), a, atol=1e-6)


def test_api_waveform_equals_audio_file(tmp_path):
    from avssl.embed import embed_audio
    from avssl.io.writer import write_wav

    rate = 16000
    t = torch.arange(int(1.3 * rate)) / rate
    wav = (0.3 * torch.sin(2 * torch.pi * 440 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)))[None]
    path = write_wav(tmp_path / "tone.wav", wav, rate)
    model = TinyAV()
    kw = dict(model=model, clips_per_video=N_CLIPS, spec=SPEC, device="cpu", transform=audio_tf)
    from_wave = embed_audio(wav, rate=rate, pool=False, **kw)
    from_file = embed_audio(str(path), pool=False, **kw)
    assert from_wave.shape == (N_CLIPS, 5)
    assert torch.allclose(from_wave, from_file, atol=2e-3)  # 16-bit wav quantisation
    # different windows hold different sound -> different embeddings
    assert (from_wave[0] - from_wave[1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="rate"):
        embed_audio(wav, **kw)
    with pytest.raises(ValueError, match="no model"):
        embed_audio(wav, rate=rate, model=None, spec=SPEC, transform=audio_tf)


# ------------------------------------------------------------------ retrieval over a collection


def test_retrieve_tool_table_and_embedding_query(reference, tmp_path, capsys):
    from avssl.embed.api import collection_retrieval, query_collection
    from avssl.embed.retrieval import cross_modal_retrieval

    out, _ = reference
    v, vt = sh.load_collection(out, "video", "video", "proj")
    a, _ = sh.load_collection(out, "video", "audio", "proj")
    res = collection_retrieval(out, level="video", device="cpu")
    direct = cross_modal_retrieval(torch.from_numpy(v[:5]), torch.from_numpy(a[:5]), device="cpu")
    assert res["a2v"] == direct["a2v"] and res["num_videos"] == 5 and res["chance"]["R@1"] == pytest.approx(0.2)
    assert res["excluded_without_audio"] == 1
    clip_res = collection_retrieval(out, level="clip", device="cpu")
    assert clip_res["a2v"]["num_queries"] == 5 * N_CLIPS

    rows = query_collection(out, embedding=a[3], query_modality="audio", k=5, device="cpu")
    scores = torch.from_numpy(v) @ torch.from_numpy(a[3])
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    assert [r["path"] for r in rows] == vt["path"][order[:5]].tolist()
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]

    from avssl.cli import retrieve as tool

    js = tmp_path / "table.json"
    assert tool.run(["table", str(out), str(out), "--names", "a", "b", "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    assert "| a | audio→video |" in printed and "| b | video→audio |" in printed
    assert json.loads(js.read_text())["a"]["a2v"]["R@1"] == pytest.approx(direct["a2v"]["R@1"])
    np.save(tmp_path / "q.npy", a[3])
    assert tool.run(["query", str(out), "--embedding", str(tmp_path / "q.npy"), "-k", "2", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in got] == vt["path"][order[:2]].tolist()


def test_folder_input_is_indexed_and_rejects_are_listed(media, tmp_path):
    from pathlib import Path

    from avssl.data.index import build_index

    import shutil

    folder = shutil.copytree(Path(media.path[0]).parent, tmp_path / "media")
    (folder / "notes.txt").write_text("not a video")  # list_videos should skip non-video names
    (folder / "empty.mp4").write_bytes(b"")
    out = tmp_path / "emb"
    rep = ex.extract(str(folder), TinyAV(), out, **{**KW, "index_failures": None})
    manifest, report = build_index(str(folder), workers=1, progress=False)
    assert rep.complete
    assert sh.read_meta(out)["index_fingerprint"] == manifest.fingerprint()
    failed = sh.read_table(out / "failed.csv", "failed")
    names = sorted(Path(p).name for p in failed["path"])
    assert names == ["broken.mp4", "empty.mp4"]  # each bad file listed once, by the index or the decoder
    assert dict(zip((Path(p).name for p in failed["path"]), failed["reason"]))["empty.mp4"] == "zero-byte"
    _, vt = sh.load_collection(out, "video", "video", "proj")
    assert sorted(Path(p).name for p in vt["path"]) == ["no_sound.mp4"] + [f"v{i}.mp4" for i in range(5)]
    assert vt["video_id"].tolist() == sorted(vt["video_id"].tolist())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_amp_extraction_close_to_cpu(media, reference, tmp_path):
    rep = ex.extract(media, TinyAV(), tmp_path, **{**KW, "device": "cuda", "amp": True})
    assert rep.complete
    for name, (ref_emb, ref_table) in _all_arrays(reference[0]).items():
        emb, table = sh.load_collection(tmp_path, *name.split("-", 2))
        assert table["video_id"].tolist() == ref_table["video_id"].tolist()
        assert np.abs(emb - ref_emb).max() < 2e-2 * max(1.0, np.abs(ref_emb).max()), name  # float16 autocast


# ------------------------------------------------------------------ the library's own models


def test_library_tiny_model_named_layers_and_seeded_rebuild(media, tmp_path):
    from avssl.embed.api import load_model

    cfg = {"video": "tiny", "audio": "tiny", "proj_dim": [32, 32, 16]}
    model, info = load_model(model_config=cfg, seed=3)
    again, _ = load_model(model_config=cfg, seed=3)
    other, _ = load_model(model_config=cfg, seed=4)
    assert info["weights"] == "random" and info["seed"] == 3
    assert ex.model_digest(model) == ex.model_digest(again) != ex.model_digest(other)
    layers = {"video": ["proj", "conv4x"], "audio": ["proj", "block3"]}
    rep = ex.extract(media, model, tmp_path, **{**KW, "layers": layers, "model_info": info})
    assert rep.complete
    meta = sh.read_meta(tmp_path)
    assert meta["layers"] == layers and meta["model"]["model_config"] == cfg
    v, _ = sh.load_collection(tmp_path, "video", "video", "proj")
    c4, _ = sh.load_collection(tmp_path, "clip", "video", "conv4x")
    b3, _ = sh.load_collection(tmp_path, "video", "audio", "block3")
    assert v.shape == (6, 16) and c4.shape == (6 * N_CLIPS, 64) and b3.shape == (6, 64)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    with pytest.raises(KeyError, match="available"):
        ex.extract(media, model, tmp_path / "bad", **{**KW, "layers": {"video": ["nope"], "audio": ["proj"]}})


def test_default_transforms_and_query_by_file(media, tmp_path):
    from avssl.embed.api import load_model, query_collection

    cfg = {"video": "tiny", "audio": "tiny", "proj_dim": [32, 32, 16]}
    model, info = load_model(model_config=cfg, seed=5)
    tcfg = {"video": {"crop_size": 16}, "audio": {"preset": "avid"}}
    kw = {k: v for k, v in KW.items() if k not in ("video_transform", "audio_transform", "layers")}
    rep = ex.extract(media, model, tmp_path, **kw, transforms_config=tcfg, model_info=info)
    assert rep.complete
    # the collection's model is rebuilt from meta.json and a query file embeds to its stored row
    from avssl.embed.api import collection_model, default_transforms, embed_audio, spec_from

    rebuilt, meta = collection_model(tmp_path)
    a, table = sh.load_collection(tmp_path, "video", "audio", "proj")
    row = table["path"].tolist().index(media.path[4])
    q = embed_audio(media.path[4], model=rebuilt, clips_per_video=N_CLIPS, spec=spec_from(meta["spec"]), device="cpu",
                    transform=default_transforms(SPEC, "cpu", tcfg)[1])
    assert torch.allclose(q, torch.from_numpy(a[row]), atol=1e-5)
    rows = query_collection(tmp_path, file=media.path[4], query_modality="audio", target_modality="audio", k=6,
                            device="cpu")
    own = [r for r in rows if r["path"] == media.path[4]]
    assert len(own) == 1 and own[0]["score"] == pytest.approx(float(q @ q), abs=1e-5)
    # cross-modal by file: ranks every video, scores sorted
    rows = query_collection(tmp_path, file=media.path[4], query_modality="video", k=6, device="cpu")
    assert len(rows) == 6 and [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    meta["model"]["seed"] = 6  # other weights than the ones that made the rows: refused
    sh.write_json_atomic(tmp_path / "meta.json", meta)
    with pytest.raises(sh.CollectionMismatch, match="weights differ"):
        collection_model(tmp_path)


def test_extract_tool_over_a_folder(media, tmp_path):
    import shutil
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    folder = shutil.copytree(Path(media.path[0]).parent, tmp_path / "media")
    configs = Path(__file__).resolve().parents[1] / "configs"
    overrides = [f"input={folder}", "model=tiny", f"out_dir={tmp_path / 'emb'}", "clips_per_video=2",
                 "spec={num_frames: 4, fps: 8.0, frame_size: [24, 32], audio_rate: 8000, audio_channels: 1,"
                 " audio_duration: 0.5}", "transforms={video: {crop_size: 16}, audio: {preset: avid}}",
                 "num_workers=0", "shard_size=4", "progress=false", "device=cpu", "dtype=float32"]
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose(config_name="extract", overrides=overrides)
    from avssl.embed.job import run_extraction

    summary = run_extraction(cfg)
    assert summary["complete"] and summary["videos"] == 6
    failed = sh.read_table(tmp_path / "emb" / "failed.csv", "failed")
    assert [Path(p).name for p in failed["path"]] == ["broken.mp4"]
    meta = sh.read_meta(tmp_path / "emb")
    assert meta["model"]["model_config"]["video"] == "tiny" and meta["spec"]["frame_size"] == [24, 32]
    v, table = sh.load_collection(tmp_path / "emb", "video", "video")
    assert v.shape[0] == 6 and (tmp_path / "emb" / "extract_report.json").exists()


def test_collection_instance_and_sync_figures(reference, tmp_path, capsys):
    """--labels / --sync-shifts: the class-level and within-class figures of the pooled rows and the
    sync test from the clip rows, equal to the metrics computed by hand from the stored arrays."""
    from pathlib import Path

    from avssl.embed.api import collection_retrieval, load_labels
    from avssl.metrics import instance_report, sync_metrics

    out, _ = reference
    v, vt = sh.load_collection(out, "video", "video", "proj")
    a, _ = sh.load_collection(out, "video", "audio", "proj")
    names = [Path(p).name for p in vt["path"]]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label\n" + "".join(f"/x/{n},{'cat' if i % 2 else 'dog'}\n" for i, n in enumerate(names)))
    labels = load_labels(csv_path)
    assert sorted(set(labels.values())) == [0, 1]
    res = collection_retrieval(out, device="cpu", labels=labels, sync_shifts=[0.5, 10.0])
    ok = vt["has_audio"] == 1
    lab = torch.tensor([labels[n] for n in names])[torch.from_numpy(ok)]
    want = instance_report(torch.from_numpy(v[ok]), torch.from_numpy(a[ok]), lab)
    assert {k: res["instance"][k] for k in want} == want and res["instance"]["num_videos"] == int(ok.sum())
    # sync by hand: clips of one video whose starts differ by >= 0.5 s, audio windows (= the clip) in the file
    cv, ct = sh.load_collection(out, "clip", "video", "proj")
    ca, _ = sh.load_collection(out, "clip", "audio", "proj")
    own, shifted = [], []
    for i in range(len(ct["video_id"])):
        for j in range(len(ct["video_id"])):
            if (ct["video_id"][i] == ct["video_id"][j] and ct["has_audio"][i] == 1
                    and abs(ct["clip_start"][i] - ct["clip_start"][j]) >= 0.5 - 1e-6):
                own.append(float(cv[i] @ ca[i]))
                shifted.append(float(cv[i] @ ca[j]))
    assert res["sync"]["0.5s"]["num_trials"] == len(own) > 0
    assert res["sync"]["0.5s"]["acc"] == pytest.approx(sync_metrics(torch.tensor(own), torch.tensor(shifted))["acc"])
    assert res["sync"]["10s"]["num_trials"] == 0  # no file is that long
    from avssl.cli.retrieve import run as retrieve

    assert retrieve(["table", str(out), "--labels", str(csv_path), "--sync-shifts", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "within-class R@1" in printed and "sync 0.5s" in printed
    with pytest.raises(Exception, match="path"):
        bad = tmp_path / "bad.csv"
        bad.write_text("file,cls\na,1\n")
        load_labels(bad)
