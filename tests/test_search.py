"""Approximate search over embedding collections (avssl.embed.search, faiss): build / save / load /
query round trips on a collection extracted from the tiny world, recall against exact search on
clustered synthetic collections, refusal of a stale index, query by file."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from avssl.embed import shards as sh

faiss = pytest.importorskip("faiss", reason="the optional 'search' extra (faiss-cpu) is not installed")

from avssl.embed import search as se  # noqa: E402
from avssl.embed.api import query_collection  # noqa: E402



def synthetic_collection(out, n, dim=32, *, clusters=40, spread=1.2, shard=700, seed=0, dtype="float16"):
    """A collection on disk (shards of ``shard`` videos) whose video rows are a clustered mixture on
    the sphere (unit centres + ``spread`` x unit-variance noise / sqrt(dim), normalised) and whose
    audio rows are noisy copies of them (cross-modal queries)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    shards = -(-n // shard)
    sh.write_json_atomic(out / "meta.json", {"format": sh.FORMAT, "version": sh.VERSION, "num_shards": shards,
                                            "dtype": dtype, "modalities": ["video", "audio"],
                                            "layers": {"video": ["proj"], "audio": ["proj"]}})
    for s in range(shards):
        m = min(shard, n - s * shard)
        ids = np.arange(s * shard, s * shard + m)
        paths = np.array([f"/v/{i}.mp4" for i in ids], dtype=object)
        videos = {"video_id": ids, "path": paths, "num_clips": np.ones(m, int), "has_audio": np.ones(m, int),
                  "shard": np.full(m, s), "row": np.arange(m)}
        clips = {"video_id": ids, "path": paths, "clip_index": np.zeros(m, int), "clip_start": np.zeros(m),
                 "clip_end": np.ones(m), "has_audio": np.ones(m, int), "shard": np.full(m, s), "row": np.arange(m)}
        v = unit(centres[rng.integers(0, clusters, m)] + spread * rng.standard_normal((m, dim)) / np.sqrt(dim))
        a = unit(v + 0.5 * rng.standard_normal((m, dim)) / np.sqrt(dim))
        arrays = {f"{lv}-{mod}-proj": x for lv in ("clip", "video") for mod, x in (("video", v), ("audio", a))}
        sh.write_shard(out, s, arrays, clips, videos, sh.empty_table("failed"), dtype=dtype)
    sh.finalize(out, shards)
    return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_collection(tmp_path_factory.mktemp("syn"), 6000)


def test_mapped_rows_and_table_rows_match_load_collection(synthetic):
    emb, table = sh.load_collection(synthetic, "video", "audio")
    rows = sh.MappedRows(synthetic, "video", "audio")
    assert rows.shape == emb.shape and len(rows.maps) == 9  # per-shard maps, never concatenated
    pick = np.array([[5999, 0], [700, 699]])
    assert np.array_equal(rows.rows(pick), emb[pick].astype(np.float32))
    assert np.array_equal(np.concatenate([b for _, b in rows.blocks()]), emb.astype(np.float32))
    t = se.table_rows(synthetic, "video", [4321, 3, 700])
    assert t["video_id"].tolist() == table["video_id"][[4321, 3, 700]].tolist()
    assert t["path"].tolist() == table["path"][[4321, 3, 700]].tolist()
    with pytest.raises(IndexError):
        rows.rows([6000])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_recall_against_exact_on_clustered_data(synthetic, kind):
    si = se.build_index(synthetic, "video", "video", kind=kind, save=False, progress=False, threads=1, seed=1)
    assert si.info["recall"] >= 0.95 and si.info["calibration_queries"] == 256
    assert [c["recall"] for c in si.info["calibration"]][-1] == pytest.approx(si.info["recall"], abs=1e-4)
    # fresh queries (not rows of the collection): noisy audio-like rows of other draws
    rng = np.random.default_rng(7)
    base = sh.MappedRows(synthetic, "video", "video").rows(rng.choice(6000, 300, replace=False))
    q = base + 0.5 * rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    s, i = si.search(q, 10)
    es, ei = se.exact_search(si.rows, q, 10)
    assert se.recall_at_k(i, ei) >= 0.95
    # scores are the exact dot products of the rows returned, sorted
    direct = np.einsum("qkd,qd->qk", si.rows.rows(i), q)
    assert np.allclose(s, direct, atol=1e-5) and (np.diff(s, axis=1) <= 0).all()
    # the candidate set alone (no re-ranking) is what the index finds; re-ranking never loses recall
    _, raw = si.search(q, 10, rerank=False)
    assert se.recall_at_k(i, ei) >= se.recall_at_k(raw, ei) - 1e-9
    # a shallower search finds less (the calibrated depth is not a no-op)
    if kind == "ivf":
        _, shallow = si.search(q, 10, depth=1, candidates=10)
        assert se.recall_at_k(shallow, ei) < se.recall_at_k(i, ei)


def test_ivf_reaches_exact_with_every_cell_probed(synthetic):
    si = se.build_index(synthetic, "video", "audio", nlist=16, codec="flat", save=False, progress=False, threads=1)
    q = sh.MappedRows(synthetic, "video", "video").rows(np.arange(0, 6000, 97))
    s, i = si.search(q, 10, depth=16)
    es, ei = se.exact_search(si.rows, q, 10)
    assert np.array_equal(i, ei) and np.allclose(s, es, atol=1e-6)


def test_build_save_load_and_stale_index_refused(synthetic, tmp_path, capsys, monkeypatch):
    from test_cli_errors import one_error_line, run_script

    coll = shutil.copytree(synthetic, tmp_path / "c")
    assert not se.has_index(coll)
    with pytest.raises(se.NoIndex, match="avssl-retrieve index"):
        se.load_index(coll)
    built = se.build_index(coll, progress=False, threads=1)
    idx_path, info_path = se.index_paths(coll)
    assert idx_path.parent == coll / "search" and json.loads(info_path.read_text())["rows"] == 6000
    loaded = se.load_index(coll)
    q = sh.MappedRows(coll, "video", "audio").rows(np.arange(50))
    assert all(np.array_equal(x, y) for x, y in zip(built.search(q, 5), loaded.search(q, 5)))
    # the collection changes under the index (one shard re-extracted): refused until rebuilt
    shard = sh.shards_dir(coll) / sh.shard_name(3)
    done = json.loads((shard / sh.DONE_MARKER).read_text())
    sh.write_json_atomic(shard / sh.DONE_MARKER, {**done, "pid": done.get("pid", 0) + 1})
    with pytest.raises(se.StaleIndex, match="rebuild"):
        se.load_index(coll)
    with pytest.raises(se.StaleIndex):
        query_collection(coll, embedding=q[0], query_modality="audio", k=3)
    rows = query_collection(coll, embedding=q[0], query_modality="audio", k=3, exact=True)
    assert [r["method"] for r in rows] == ["exact"] * 3
    np.save(tmp_path / "q.npy", q[0])  # the command: one line naming the index and what to do, exit 2
    res = run_script("retrieve", "query", str(coll), "--embedding", str(tmp_path / "q.npy"), tmp_path=tmp_path,
                     capsys=capsys, monkeypatch=monkeypatch)
    one_error_line(res, "retrieve", str(idx_path), "rebuild", "--exact")
    se.build_index(coll, progress=False, threads=1)
    assert se.load_index(coll).info["rows"] == 6000
    # more results than the build's k: candidates scale with k; an empty query batch is fine
    s, i = se.load_index(coll).search(q[:3], 50)
    assert s.shape == (3, 50) and (i >= 0).all() and se.load_index(coll).search(q[:0], 5)[1].shape == (0, 5)
    idx_path.write_bytes(idx_path.read_bytes()[:1000])  # a truncated index file
    with pytest.raises(se.StaleIndex, match="unreadable"):
        se.load_index(coll)


def test_missing_faiss_is_one_clear_line(monkeypatch):
    from avssl.utils.errors import UserError

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(UserError, match=r"pip install 'avssl\[search\]'"):
        se.require_faiss()


# ------------------------------------------------------------------ a real collection (tiny world)


def test_round_trip_on_an_extracted_collection(tiny_variant_collection, tmp_path, capsys):
    src, variants = tiny_variant_collection
    coll = shutil.copytree(src, tmp_path / "emb")
    from avssl.cli import retrieve as tool

    assert tool.run(["index", str(coll), "--level", "clip", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "clip-video-proj: ivf/sq8 over 48 rows" in printed and "clip-audio-proj" in printed
    for m in ("video", "audio"):
        info = se.load_index(coll, "clip", m).info
        assert info["recall"] >= 0.95 and info["rows"] == 48
    a, table = sh.load_collection(coll, "clip", "audio")
    q = np.asarray(a[[3, 17]], np.float32)
    via_index = query_collection(coll, embedding=q, query_modality="audio", level="clip", k=5)
    exact = query_collection(coll, embedding=q, query_modality="audio", level="clip", k=5, exact=True)
    assert {r["method"] for r in via_index} == {"ivf"} and {r["method"] for r in exact} == {"exact"}
    key = ("query", "rank", "video_id", "path", "clip_index")
    assert [[r[c] for c in key] for r in via_index] == [[r[c] for c in key] for r in exact]
    assert np.allclose([r["score"] for r in via_index], [r["score"] for r in exact], atol=1e-5)
    # the command: query goes through the index when present, --exact bypasses it
    np.save(tmp_path / "q.npy", q[0])
    assert tool.run(["query", str(coll), "--embedding", str(tmp_path / "q.npy"), "--level", "clip", "-k", "3"]) == 0
    assert capsys.readouterr().out.strip().endswith("(searched: ivf)")
    assert tool.run(["query", str(coll), "--embedding", str(tmp_path / "q.npy"), "--level", "clip", "-k", "3",
                      "--exact", "--json"]) == 0
    assert [r["path"] for r in json.loads(capsys.readouterr().out)] == [r["path"] for r in exact[:3]]


def test_query_by_file_uses_the_collection_model(tiny_variant_collection, tmp_path):
    src, variants = tiny_variant_collection
    coll = shutil.copytree(src, tmp_path / "emb")
    se.build_index(coll, "video", "audio", progress=False, threads=1)
    normal = next(r for r in variants if r["kind"] == "normal")
    # the file is embedded as its row was (the collection's model, spec, transforms, clips): same vector
    from avssl.embed.api import embed_query_file

    a, table = sh.load_collection(coll, "video", "audio")
    row = table["path"].tolist().index(normal["path"])
    q = embed_query_file(coll, normal["path"], "audio", device="cpu")
    assert np.allclose(q.numpy(), a[row], atol=2e-3)  # float16 rows
    kw = dict(file=normal["path"], query_modality="audio", target_modality="audio", k=3, device="cpu")
    rows = query_collection(coll, **kw)
    exact = query_collection(coll, **kw, exact=True)
    assert rows[0]["method"] == "ivf" and [r["path"] for r in rows] == [r["path"] for r in exact]
    assert np.allclose([r["score"] for r in rows], [r["score"] for r in exact], atol=1e-6)
    cross = query_collection(coll, file=normal["path"], query_modality="video", k=4, device="cpu")
    assert len(cross) == 4 and cross[0]["method"] == "ivf"  # video -> audio: the audio index
    assert [r["score"] for r in cross] == sorted((r["score"] for r in cross), reverse=True)
