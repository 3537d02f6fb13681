"""Every command run once as a user runs it: a subprocess ``python -m avssl <command>`` (what the
console script ``avssl-<command>`` runs; the installed scripts themselves: tests/test_wheel.py), on the
tiny generated world (24 clips; 17 train / 7 held-out) and the tiny presets, a few steps each.
Each test asserts exit code 0 and that the outputs the command promises exist and are sane (counts,
shapes, ranges); a crash, a renamed option, a missing output or a wrong count fails it.

The chain shares its expensive steps through module fixtures: make_data's world feeds pretrain,
whose run directory feeds finetune, extract, localize and probe_audio.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("commands")]


def run_tool(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``avssl-<tool> args`` (as ``python -m avssl <tool> args``) from ``cwd``; fails the test (with the
    output's tail) unless it exits 0. ``tool``: the command (``make-data``, ``pretrain``, ...)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "avssl", tool, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{tool} {' '.join(map(str, args))} exited {done.returncode}:\n" \
                                 f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def last_json(stdout: str):
    """The JSON document a command prints last (commands log lines before it)."""
    start = stdout.rfind("\n{")
    start = 0 if stdout.startswith("{") and start < 0 else start + 1
    return json.loads(stdout[start:])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("commands")


@pytest.fixture(scope="module")
def world(work):
    done = run_tool("make-data", "--preset", "tiny", "--out", work / "world", "--seed", "0", "--workers", "1",
                    cwd=work)
    return work / "world", last_json(done.stdout)


@pytest.fixture(scope="module")
def pretrained(work, world):
    root, _ = world
    done = run_tool("pretrain", "experiment=tiny", f"run_dir={work / 'run'}", f"data.world_dir={root}",
                    "trainer.epochs=1", cwd=work)
    return work / "run", last_json(done.stdout)


@pytest.fixture(scope="module")
def collections(work, world, pretrained):
    """Embeddings of the held-out clips: the pretrained checkpoint and a random tiny model."""
    root, _ = world
    common = ["input=world", f"world.dir={root}", "world.split=test", "num_workers=0", "batch_size=8",
              "clips_per_video=2", "progress=false"]
    run_tool("extract", *common, f"checkpoint={pretrained[0]}", f"out_dir={work / 'emb_pretrained'}", cwd=work)
    run_tool("extract", *common, "model=tiny", f"out_dir={work / 'emb_random'}", cwd=work)
    return work / "emb_pretrained", work / "emb_random"


def _split_counts(root: Path) -> dict:
    return json.loads((root / "world.json").read_text())["counts"]


# ------------------------------------------------------------------------------------ make_data
def test_make_data_generates_the_world_and_its_exports(world):
    root, out = world
    assert out["clips"] == 24 and Path(out["root"]) == root
    counts = _split_counts(root)
    assert counts["train"] + counts["test"] == 24 and counts["test"] >= 2
    videos = sorted((root / "videos").iterdir())
    assert len(videos) == 24 and all(v.stat().st_size > 1000 for v in videos)
    assert set(out["exports"]) >= {"kinetics", "ucf101", "hmdb51", "vggss", "flickr", "esc50"}
    assert all(Path(p).is_dir() and any(Path(p).iterdir()) for p in out["exports"].values())


# ------------------------------------------------------------------------------------ index / prepare
@pytest.fixture(scope="module")
def folder(work, world):
    """Four world videos and one file that is not a video."""
    root, _ = world
    d = work / "folder"
    d.mkdir()
    for src in sorted((root / "videos").iterdir())[:4]:
        (d / src.name).write_bytes(src.read_bytes())
    (d / "broken.mp4").write_text("not a video")
    return d


def test_index_keeps_the_videos_and_reports_the_bad_file(work, folder):
    from avssl.data.index import Manifest

    done = run_tool("index", folder, "--out", work / "m.npz", "--report", work / "bad.csv", "--workers", "1",
                    cwd=work)
    manifest = Manifest.load(work / "m.npz")
    assert len(manifest) == 4 and sorted(Path(manifest.path(i)).name for i in range(4)) == sorted(
        p.name for p in folder.iterdir() if p.name != "broken.mp4")
    assert (manifest.duration > 1.5).all() and manifest.has_audio.all()
    bad = list(csv.DictReader((work / "bad.csv").open()))
    assert [Path(b["path"]).name for b in bad] == ["broken.mp4"] and bad[0]["reason"]
    assert "broken.mp4" in done.stdout and manifest.fingerprint() in done.stdout


def test_prepare_builds_a_resumable_training_cache(work, folder):
    from avssl.data.index import Manifest
    from avssl.io import probe

    out = work / "cache"
    done = run_tool("prepare", folder, out, "--short-side", "32", "--fps", "8", "--workers", "1", cwd=work)
    listed = (out / "videos.txt").read_text().split()
    cache = Manifest.load(out / "manifest.npz")
    assert len(listed) == len(cache) == 4 and "failed 0" in done.stdout
    for path in listed:
        info = probe((work / path) if not Path(path).is_absolute() else path)
        assert min(info.width, info.height) == 32 and info.fps == pytest.approx(8.0) and info.has_audio
    again = run_tool("prepare", folder, out, "--short-side", "32", "--fps", "8", "--workers", "1", cwd=work)
    assert "transcoded now 0, already done 4" in again.stdout


# ------------------------------------------------------------------------------------ pretrain
def test_pretrain_runs_an_epoch_and_checkpoints(world, pretrained):
    from avssl.utils.checkpoint import CheckpointManager

    root, _ = world
    run, out = pretrained
    counts = _split_counts(root)
    assert out["epoch"] == 1 and out["global_step"] == counts["train"] // 4  # batch 4, last partial batch dropped
    r = out["retrieval"]
    assert r["num_clips"] == counts["test"] and r["chance_R@1"] == pytest.approx(1 / counts["test"])
    assert 0 <= r["a2v_R@1"] <= r["a2v_R@5"] <= 1 and out["dropped_samples"] == 0
    state = CheckpointManager(run).load()
    assert state["stage"] == "avid" and state["progress"]["global_step"] == out["global_step"]
    assert state["config"]["model"]["video"] == "tiny"
    assert state["criterion"]["video_bank.bank"].shape == (counts["train"], 16)  # one slot per training video
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert "loss" in (run / "train.log").read_text()


# ------------------------------------------------------------------------------------ finetune
def test_finetune_from_the_pretrained_run(work, world, pretrained):
    root, _ = world
    run_dir = work / "finetune"
    done = run_tool("finetune", "finetune=tiny", f"run_dir={run_dir}", f"dataset.embedded.world_dir={root}",
                    "init.kind=avssl", f"init.checkpoint={pretrained[0]}", cwd=work)
    summary = last_json(done.stdout)
    fold = run_dir / "fold1"
    for name in ("best_model.pt", "confusion.png", "test_metrics.json"):
        assert (fold / name).is_file(), name
    m = json.loads((fold / "test_metrics.json").read_text())
    assert m["num_test_videos"] == m["num_videos"] > 0 and m["incomplete_videos"] == 0
    assert len(m["classes"]) == 6 and np.asarray(m["confusion"]).shape == (6, 6)
    assert np.asarray(m["confusion"]).sum() == m["num_videos"]
    assert 0 <= m["video_top1"] <= m["video_top5"] <= 1
    assert summary["video_top1"]["values"] == [pytest.approx(m["video_top1"])]


# ------------------------------------------------------------------------------------ extract / retrieve
def test_extract_writes_complete_collections(world, collections):
    from avssl.embed import load_collection

    root, _ = world
    n = _split_counts(root)["test"]
    for coll, dim in zip(collections, (16, 32)):  # experiment=tiny projects to 16, model=tiny to 32
        report = json.loads((coll / "extract_report.json").read_text())
        assert report["complete"] and report["videos"] == n and report["clips"] == 2 * n and report["failed"] == 0
        for modality in ("video", "audio"):
            emb, table = load_collection(coll, "video", modality)
            assert emb.shape == (n, dim) and np.isfinite(emb).all()
            clips, _ = load_collection(coll, "clip", modality)
            assert clips.shape == (2 * n, dim)
    a, _ = load_collection(collections[0], "video", "video")
    b, _ = load_collection(collections[1], "video", "video")
    assert a.shape[0] == b.shape[0]


def test_retrieve_table_and_query(work, world, collections):
    root, _ = world
    n = _split_counts(root)["test"]
    done = run_tool("retrieve", "table", *collections, "--names", "pretrained", "random", "--json",
                    work / "table.json", cwd=work)
    table = json.loads((work / "table.json").read_text())
    assert set(table) == {"pretrained", "random"} and "| pretrained | audio→video |" in done.stdout
    for res in table.values():
        for d in ("a2v", "v2a"):
            r = res[d]
            assert r["num_queries"] == n and 0 <= r["R@1"] <= r["R@5"] <= r["R@10"] == 1.0  # n <= 10
            assert 1 <= r["median_rank"] <= n
    query = run_tool("retrieve", "query", collections[0], "--file", root / "videos" / "clip_000001.mp4",
                     "--modality", "audio", "-k", "3", "--json", cwd=work)
    rows = json.loads(query.stdout[query.stdout.index("["):])
    assert [r["rank"] for r in rows] == [1, 2, 3] and all(Path(r["path"]).exists() for r in rows)
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]


# ------------------------------------------------------------------------------------ localize
def test_localize_writes_pictures_mp4_and_metrics(work, world, pretrained):
    from avssl.io import probe

    root, _ = world
    out = work / "localize"
    video = root / "videos" / "clip_000001.mp4"
    run_tool("localize", f"input={video}", f"annotations={root}", "annotation_format=world", "limit=4",
             f"checkpoint={pretrained[0]}", f"out_dir={out}", "overlays=1", "batch_size=4", "progress=false",
             cwd=work)
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["weights"] == "checkpoint"
    files = out / "files"
    mp4 = files / "clip_000001_heatmap.mp4"
    info = probe(mp4)
    assert info.num_frames > 1 and info.has_audio  # the overlay video plays the clip's own sound
    assert len(list(files.glob("clip_000001_t*.png"))) == 1
    summaries = json.loads((out / "eval" / "results.json").read_text())["summaries"]
    assert set(summaries) >= {"model", "centre_prior", "whole_image", "oracle_box"}  # baselines beside the model
    for s in summaries.values():
        assert s["num_samples"] == 4 and 0 <= s["mean_ciou"] <= 1 and 0 <= s["auc"] <= 1
    rows = list(csv.DictReader((out / "eval" / "per_sample.csv").open()))
    assert len(rows) == 4 and all(0 <= float(r["ciou"]) <= 1 for r in rows if r["has_source"] == "True")
    assert report["eval"]["summaries"] == summaries


# ------------------------------------------------------------------------------------ probe_audio
def test_probe_audio_cross_validates_the_pretrained_audio_encoder(work, world, pretrained):
    root, _ = world
    done = run_tool("probe-audio", "--esc50", root / "esc50", "--init", "avssl", "--checkpoint", pretrained[0],
                    "--duration", "1", "--device", "cpu", "--out", work / "probe.json", cwd=work)
    res = json.loads((work / "probe.json").read_text())
    assert res == last_json(done.stdout)
    assert sorted(res["per_fold"]) == ["1", "2", "3", "4", "5"]
    assert all(0 <= v <= 1 for v in res["per_fold"].values())
    assert res["mean"] == pytest.approx(np.mean(list(res["per_fold"].values())))
    assert res["num_files"] == len(list((root / "esc50" / "audio").glob("*.wav")))
    assert res["feature_dim"] == 64  # the tiny audio encoder's pooled features
