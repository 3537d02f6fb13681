"""Every stage on messy real-world video (issue #16): the wild collection (tests/wild.py, 40 files of every
common shape, codec, container, timestamp quirk and damage) through the real commands, as a user runs them.

    index -> pretrain (AVID, the paper's R(2+1)D-18 + Conv2D nets at a small input) -> CMA (from the AVID run)
    -> fine-tune (a UCF101-style split written over the files) -> localize (PNG overlays + MP4 with sound)
    -> extract -> retrieve

pretrain, CMA, fine-tune and extract run twice: one process, and `torchrun --nproc_per_node 2` (gloo).
After indexing, two clean files are damaged in place (every byte random, size and mtime kept, so the
cached index keeps them, as a collection damaged after it was indexed): both lie on rank 1's share only
(pretraining and CMA epoch 0, every fine-tuning epoch) and on rank 1's extraction shards, so the ranks meet
different failures. Nothing may crash or hang (subprocess timeouts are the guards), and every file is
accounted for, from the commands' own JSON outputs:

  index:     files = indexed + left out (each with its reason, the one the collection's truth names);
  training:  clips requested = used + dropped; failed = replaced + failed in skipped steps; the failed
             reads name exactly the damaged files; clips with damaged packets are counted;
  extract:   video rows + failed rows = files (index rejects + unreadable at decode);
  localize:  localized + skipped = files, each skip with its reason;
  retrieve:  videos searched + videos without sound = extracted videos.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wild_e2e")]
TIMEOUT_S = 300  # per command: the hang guard (a stuck gloo collective would otherwise wait 30 min)
WORLD = 2
BATCH = 4  # per process; the 1-process runs use WORLD * BATCH (the same global batch)
SPEC = "{num_frames: 4, fps: 8.0, frame_size: 40, audio_rate: 24000, audio_channels: 1, audio_duration: 1.0}"
FT_SPEC = "{num_frames: 4, fps: 8.0, frame_size: 40, audio_rate: 24000, audio_channels: 1, audio_duration: 0.25}"
CLASSES = ("Alpha", "Beta", "Gamma")


# ------------------------------------------------------------------------------ running commands
def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def _run(cmd: list, cwd: Path) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"did not finish in {TIMEOUT_S}s (hang?): {' '.join(map(str, cmd))}\n{str(e.stderr)[-3000:]}")
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stdout[-2000:]}\n" \
                                 f"{done.stderr[-4000:]}"
    return done


def tool(name: str, *args, cwd: Path, nproc: int = 1) -> subprocess.CompletedProcess:
    """`python tools/<name>.py args`, or under `torchrun --standalone --nproc_per_node <nproc>` (gloo on CPU)."""
    script = ROOT / "tools" / f"{name}.py"
    if nproc == 1:
        return _run([sys.executable, script, *args], cwd)
    return _run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", script,
                 *args], cwd)


def last_json(stdout: str):
    """The JSON document a command prints last."""
    start = stdout.rfind("\n{")
    return json.loads(stdout[start + 1 if start >= 0 else 0:])


def _ranks(nproc: int) -> str:
    return "1p" if nproc == 1 else f"{nproc}p"


# ------------------------------------------------------------------------------ the corpus and its plan
def _ucf_layout(media: Path, root: Path) -> tuple[list[str], list[str]]:
    """A UCF101-style dataset over every file of `media` (links named `<Class>/v_<Class>_gNN_c01<ext>`,
    3 classes, every 4th file in the test list). Returns (train rows, test rows) as listed."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(CLASSES)))
    train, test = [], []
    for k, p in enumerate(sorted(media.iterdir())):
        c = CLASSES[k % 3]
        rel = f"{c}/v_{c}_g{k // 3 + 1:02d}_c01{p.suffix}"
        (root / "UCF-101" / c).mkdir(parents=True, exist_ok=True)
        (root / "UCF-101" / rel).symlink_to(p)
        (test if k % 4 == 3 else train).append(rel)
    (lists / "trainlist01.txt").write_text("".join(f"{r} {CLASSES.index(r.split('/')[0]) + 1}\n" for r in train))
    (lists / "testlist01.txt").write_text("".join(f"{r}\n" for r in test))
    return train, test


def _drawn(n: int, batch: int, rank: int, seed: int, epoch: int, drop_last: bool) -> tuple[set, set]:
    """(items rank `rank` draws in `epoch`, its whole share: the replacement candidates)."""
    from avssl.engine.samplers import BatchRequestSampler, ResumableDistributedSampler

    s = ResumableDistributedSampler(n, batch, num_replicas=WORLD, rank=rank, seed=seed, drop_last=drop_last)
    s.set_epoch(epoch)
    drawn = {i for r in BatchRequestSampler(s) for i in r.indices}
    return drawn, set(s.replacement_order(0, epoch))


def _rank1_only(names_of, n, batch, seed, epochs, drop_last) -> set[str]:
    """Files that rank 0 never reads (neither draws nor may draw as a replacement) in any of `epochs`,
    and that rank 1 draws in epoch 0."""
    out = None
    for e in epochs:
        d0, s0 = _drawn(n, batch, 0, seed, e, drop_last)
        ok = {names_of[i] for i in range(n)} - {names_of[i] for i in d0 | s0}
        out = ok if out is None else out & ok
    d1, _ = _drawn(n, batch, 1, seed, 0, drop_last)
    return out & {names_of[i] for i in d1}


def _damage_in_place(path: Path, seed: int) -> None:
    """Every byte random; size and mtime kept, so a cached index does not look at the file again."""
    st = path.stat()
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, st.st_size, dtype=np.uint8).tobytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture(scope="module")
def corpus(wild, tmp_path_factory):
    """The collection copied, indexed by the index command (probe cache), the other caches the runs use
    filled, the run plan chosen (seeds, shard size) and two clean files damaged on rank 1's side only."""
    from avssl.data.index import build_index, split_cache_path
    from avssl.data.formats.ucf101 import parse_class_ind, parse_ucf_split
    from avssl.embed.extract import as_video_list

    work = tmp_path_factory.mktemp("wild_e2e")
    media = work / "media"
    media.mkdir()
    for e in wild:
        shutil.copy2(e.path, media / e.path.name)
    idx = work / "idx"
    idx.mkdir()
    done = tool("index", media, "--cache", idx / "media.npz", "--report", work / "index_report.json", "--out",
                work / "manifest.npz", "--workers", "1", cwd=work)
    index_report = json.loads((work / "index_report.json").read_text())

    # the caches the runs read (pretraining's held-out source, the fine-tuning splits): probed before the damage
    manifest, _ = build_index(str(media), cache=idx / "media.npz", workers=1, progress=False)
    build_index(str(media), cache=split_cache_path(idx / "media.npz", "eval"), workers=1, progress=False)
    ucf = work / "ucf"
    train_rows, test_rows = _ucf_layout(media, ucf)
    classes = parse_class_ind(ucf / "ucfTrainTestlist" / "classInd.txt")
    ft = {}
    for key, lst in (("train", "trainlist01.txt"), ("test", "testlist01.txt")):
        rows = [s.path for s in parse_ucf_split(ucf / "ucfTrainTestlist" / lst, classes)]
        ft[key], _ = build_index(rows, root=str(ucf / "UCF-101"), cache=split_cache_path(idx / "ft.npz", key),
                                 workers=1, progress=False)

    # the plan: two clean files with sound that only rank 1 ever reads, in every parallel run
    by_name = {e.path.name: e for e in wild}
    clean = {n for n, e in by_name.items() if e.indexed and e.readable and e.has_audio and not e.damage
             and e.pts == "valid"}
    names = [Path(manifest.path(i)).name for i in range(len(manifest))]
    ft_names = [Path(os.path.realpath(ft["train"].resolve(i))).name for i in range(len(ft["train"]))]
    # a batch size leaving no last batch of ONE clip (1 or 2 processes): at this small input the R(2+1)D
    # net's last BatchNorm sees a 1x1x1 map, and one clip gives it a single value per channel
    n_ft = len(ft_names)
    ft_batch = next(b for b in (4, 5, 3, 6) if all(-(-n_ft // w) % max(1, min(b, n_ft // w)) != 1 for w in (1, WORLD)))
    videos, _ = as_video_list(manifest)
    plan = None
    for seed in range(200):
        pre = _rank1_only(names, len(names), BATCH, seed, [0], True)
        fin = _rank1_only(ft_names, n_ft, max(1, min(ft_batch, n_ft // WORLD)), seed, [0, 1], False)
        for shard_size in (1, 2, 3, 4):
            ext = {Path(p).name for k, p in enumerate(videos.path) if (k // shard_size) % WORLD == 1}
            both = sorted(pre & fin & ext & clean)
            if len(both) >= 2:
                plan = {"seed": seed, "shard_size": shard_size, "damaged": both[:2], "ft_batch": ft_batch}
                break
        if plan:
            break
    assert plan, "no seed puts two clean files on rank 1's side of every run"
    for k, name in enumerate(plan["damaged"]):
        _damage_in_place(media / name, seed=k)
    again, report = build_index(str(media), cache=idx / "media.npz", workers=1, progress=False)
    assert report.cached == report.total and len(again) == len(manifest)  # the damage is invisible to the index
    return {"work": work, "media": media, "idx": idx, "ucf": ucf, "wild": by_name, "manifest": manifest,
            "index_report": index_report, "index_stdout": done.stdout, "train_rows": train_rows,
            "test_rows": test_rows, "ft": ft, **plan, "damaged_paths": {str(media / n) for n in plan["damaged"]}}


# ------------------------------------------------------------------------------ index
def test_index_accounts_for_every_file(corpus):
    rep, wild = corpus["index_report"], corpus["wild"]
    assert rep["total"] == len(wild) == rep["indexed"] + len(rep["bad"])
    left_out = {Path(b["path"]).name: b["reason"] for b in rep["bad"]}
    assert left_out == {n: e.probe_reason for n, e in wild.items() if not e.indexed}
    assert all(b["detail"] for b in rep["bad"])
    assert {Path(p).name for p in rep["no_audio"]} == {n for n, e in wild.items() if e.indexed and not e.has_audio}
    assert {Path(p).name for p in rep["audio_undecodable"]} == {n for n, e in wild.items() if e.audio_undecodable}
    assert corpus["manifest"].fingerprint() in corpus["index_stdout"]


# ------------------------------------------------------------------------------ pretraining (AVID, CMA)
def _pretrain_args(corpus, run_dir: Path, nproc: int, *extra) -> list[str]:
    return ["trainer=cpu", f"run_dir={run_dir}", f"seed={corpus['seed']}", "data.source=files",
            f"data.train_source={corpus['media']}", f"data.eval_source={corpus['media']}",
            f"data.index_cache={corpus['idx'] / 'media.npz'}", "data.index_workers=1", "data.num_workers=0",
            f"data.batch_size={BATCH * WORLD // nproc}", f"data.spec={SPEC}",
            "model.video=avid_r2plus1d_18", "model.audio=avid_conv2d",  # the paper's networks, small input
            "transforms.video.crop_size=32", "loss.num_negatives=16", "eval.batch_size=16",
            "trainer.epochs=1", "trainer.progress=false", "trainer.tensorboard=true", *extra]


def _avid(corpus, nproc: int) -> tuple[Path, dict]:
    run = corpus["work"] / f"avid_{_ranks(nproc)}"
    done = tool("pretrain", *_pretrain_args(corpus, run, nproc), cwd=corpus["work"], nproc=nproc)
    return run, last_json(done.stdout)


def _cma(corpus, avid_run: Path, nproc: int) -> tuple[Path, dict]:
    run = corpus["work"] / f"cma_{_ranks(nproc)}"
    done = tool("pretrain", *_pretrain_args(corpus, run, nproc, "method=cma", f"cma.init_from={avid_run}",
                                           "cma.num_positives=3", "cma.num_negatives_within=8"),
                cwd=corpus["work"], nproc=nproc)
    return run, last_json(done.stdout)


def _finetune(corpus, cma_run: Path, nproc: int) -> tuple[Path, dict]:
    run = corpus["work"] / f"ft_{_ranks(nproc)}"
    done = tool("finetune", "finetune=tiny", f"run_dir={run}", f"seed={corpus['seed']}", "dataset.format=ucf101",
                f"dataset.root={corpus['ucf']}", "dataset.embedded=null", "dataset.val_fraction=0",
                f"dataset.index_cache={corpus['idx'] / 'ft.npz'}", f"dataset.spec={FT_SPEC}",
                f"dataset.batch_size={corpus['ft_batch']}",
                "init.kind=avssl", f"init.checkpoint={cma_run}", cwd=corpus["work"], nproc=nproc)
    return run, last_json(done.stdout)


# the chain of runs, per process count: AVID -> CMA (from that AVID run) -> fine-tuning (from that CMA run)
@pytest.fixture(scope="module")
def avid_1p(corpus):
    return _avid(corpus, 1)


@pytest.fixture(scope="module")
def avid_2p(corpus):
    return _avid(corpus, WORLD)


@pytest.fixture(scope="module")
def cma_1p(corpus, avid_1p):
    return _cma(corpus, avid_1p[0], 1)


@pytest.fixture(scope="module")
def cma_2p(corpus, avid_2p):
    return _cma(corpus, avid_2p[0], WORLD)


@pytest.fixture(scope="module")
def ft_1p(corpus, cma_1p):
    return _finetune(corpus, cma_1p[0], 1)


@pytest.fixture(scope="module")
def ft_2p(corpus, cma_2p):
    return _finetune(corpus, cma_2p[0], WORLD)


PROCS = [pytest.param(1, id="1p"), pytest.param(WORLD, id=f"{WORLD}p", marks=pytest.mark.distributed)]


def _draws(n: int, batch: int, world: int, seed: int, epoch: int, drop_last: bool, items: set) -> int:
    """Slots holding one of `items` that all ranks' samplers draw in `epoch`."""
    from avssl.engine.samplers import BatchRequestSampler, ResumableDistributedSampler

    total = 0
    for rank in range(world):
        s = ResumableDistributedSampler(n, batch, num_replicas=world, rank=rank, seed=seed, drop_last=drop_last)
        s.set_epoch(epoch)
        total += sum(i in items for r in BatchRequestSampler(s) for i in r.indices)
    return total


def _check_training_account(corpus, run: Path, out: dict, stage: str) -> None:
    n = len(corpus["manifest"])
    data = out["data"]
    steps = n // (BATCH * WORLD)
    assert out["global_step"] == steps and data["requested"] == steps * BATCH * WORLD
    assert data["requested"] == data["used"] + data["dropped"]
    # each damaged file is drawn once in the epoch (its one clip): failed, then replaced from the share
    assert data["failed"] == len(corpus["damaged"]) == data["replaced"] and data["dropped"] == 0
    report = json.loads((run / "data_failures.json").read_text())
    assert report["counts"] == {k: v for k, v in data.items() if k in report["counts"]}
    assert {f["path"] for f in report["files"]} == corpus["damaged_paths"]
    assert sum(f["failures"] for f in report["files"]) == data["failed"] + data["replacement_failures"]
    wild = corpus["wild"]
    assert {Path(f["path"]).name for f in report["damaged_files"]} <= {k for k, e in wild.items() if e.damage}
    assert data["damaged"] == sum(f["clips"] for f in report["damaged_files"]) == data["damaged_files"]
    # the index: every file indexed or reported; the damaged ones kept by the cache (damage after indexing)
    idx = json.loads((run / "index_report.json").read_text())
    assert idx["total"] == len(wild) == idx["indexed"] + len(idx["bad"]) and idx["indexed"] == n
    assert idx["cached"] == idx["total"]
    # held-out retrieval over the same files: the damaged ones counted once as unreadable
    r = out["retrieval"]
    assert r["num_failed"] == len(corpus["damaged"]) and r["num_clips"] + r["num_failed"] == n
    from avssl.utils.checkpoint import CheckpointManager

    state = CheckpointManager(run).load()
    assert state["stage"] == stage and state["config"]["model"]["video"] == "avid_r2plus1d_18"
    assert state["progress"]["data"] == {k: data[k] for k in state["progress"]["data"]}
    log = (run / "train.log").read_text()
    assert f"held-out retrieval ({n - len(corpus['damaged'])} clips, {len(corpus['damaged'])} unreadable)" in log


@pytest.mark.parametrize("nproc", PROCS)
def test_pretraining_avid_accounts_for_every_clip(nproc, corpus, request):
    run, out = request.getfixturevalue(f"avid_{_ranks(nproc)}")
    _check_training_account(corpus, run, out, "avid")


@pytest.mark.parametrize("nproc", PROCS)
def test_cma_stage_from_the_avid_run(nproc, corpus, request):
    run, out = request.getfixturevalue(f"cma_{_ranks(nproc)}")
    _check_training_account(corpus, run, out, "cma")
    assert "CMA stage initialised from AVID checkpoint" in (run / "train.log").read_text()


# ------------------------------------------------------------------------------ fine-tuning
@pytest.mark.parametrize("nproc", PROCS)
def test_finetuning_on_a_ucf_style_split_of_the_wild_files(nproc, corpus, request):
    run, summary = request.getfixturevalue(f"ft_{_ranks(nproc)}")
    m = json.loads((run / "fold1" / "test_metrics.json").read_text())
    for key, rows in (("train", corpus["train_rows"]), ("test", corpus["test_rows"])):
        c = m["index"][key]
        assert c["total"] == len(rows) == c["indexed"] + c["left_out"] and c["cached"] == c["total"]
    train = corpus["ft"]["train"]
    assert m["index"]["train"]["indexed"] == len(train)
    data = summary["train_data"]
    assert data == m["train_data"]
    assert data["requested"] == data["used"] + data["dropped"] and data["dropped"] == 0
    # the damaged files' slots, as the samplers draw them (one clip per video per epoch): all refilled
    names = [Path(os.path.realpath(train.resolve(i))).name for i in range(len(train))]
    bad = {i for i, name in enumerate(names) if name in corpus["damaged"]}
    batch = max(1, min(corpus["ft_batch"], len(train) // nproc))
    expect = sum(_draws(len(train), batch, nproc, corpus["seed"], e, False, bad) for e in range(len(m["history"])))
    assert data["failed"] == data["replaced"] == expect >= len(corpus["damaged"])
    report = json.loads((run / "fold1" / "data_failures.json").read_text())
    assert {Path(os.path.realpath(f["path"])).name for f in report["files"]} == set(corpus["damaged"])
    assert data["damaged"] == sum(f["clips"] for f in report["damaged_files"])
    # video-level test: every indexed test video scored with all its clips (none of them is unreadable)
    assert m["dropped"] == 0 and m["num_videos"] == m["index"]["test"]["indexed"]
    assert m["num_clips"] == 3 * m["num_videos"]  # finetune=tiny: 3 clips per test video
    assert 0 <= m["video_top1"] <= 1 and summary["video_top1"]["values"] == [pytest.approx(m["video_top1"])]


# ------------------------------------------------------------------------------ localization
@pytest.fixture(scope="module")
def localized(corpus, cma_1p):
    out = corpus["work"] / "loc"
    tool("localize", f"input={corpus['media']}", f"checkpoint={cma_1p[0]}", f"out_dir={out}", "overlays=1",
         "batch_size=4", "progress=false", "stride=1.0", cwd=corpus["work"])
    return out


def test_localize_every_file_or_say_why_not(localized, corpus):
    from avssl.io import probe

    report = json.loads((localized / "report.json").read_text())
    wild = corpus["wild"]
    done = {Path(p).name for p in report["files"]}
    skipped = {Path(f["path"]).name: f["reason"] for f in report["failed"]}
    assert len(done) + len(skipped) == len(wild) and not done & set(skipped)
    expect_skipped = {n for n, e in wild.items() if not e.indexed or not e.has_audio} | set(corpus["damaged"])
    assert set(skipped) == expect_skipped
    assert {skipped[n] for n, e in wild.items() if e.indexed and not e.has_audio} == {"no-audio-stream"}
    for name in done:
        outputs = report["files"][str(corpus["media"] / name)]
        src, mp4 = probe(corpus["media"] / name), probe(outputs["mp4"])
        assert mp4.has_audio and Path(outputs["overlay_0"]).stat().st_size > 0
        assert abs(mp4.duration - src.duration) < 0.2, name  # every frame, at its time
        dw, dh = (src.width, src.height) if src.rotation % 180 == 0 else (src.height, src.width)
        assert (mp4.width, mp4.height) == (dw // 2 * 2, dh // 2 * 2), name  # upright, even-sized


# ------------------------------------------------------------------------------ extraction and retrieval
def _extract(corpus, checkpoint: Path, out: Path, nproc: int) -> Path:
    tool("extract", f"input={corpus['media']}", f"checkpoint={checkpoint}", f"out_dir={out}", "clips_per_video=2",
         "num_workers=0", "batch_size=8", "progress=false", f"shard_size={corpus['shard_size']}", "device=cpu",
         "dtype=float32", f"index_cache={corpus['idx'] / 'media.npz'}", "index_workers=1",
         cwd=corpus["work"], nproc=nproc)
    return out


@pytest.fixture(scope="module")
def collections(corpus, cma_1p):
    """The collection embedded by one process and by two, with the same (1-process CMA) checkpoint."""
    ckpt = cma_1p[0]
    return {n: _extract(corpus, ckpt, corpus["work"] / f"emb_{_ranks(n)}", n) for n in (1, WORLD)}


def _table(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.distributed
def test_extraction_rows_and_failures_add_up(collections, corpus):
    from avssl.embed import load_collection

    wild = corpus["wild"]
    rows = {}
    for n, coll in collections.items():
        rep = json.loads((coll / "extract_report.json").read_text())
        videos, failed = _table(coll / "videos.csv"), _table(coll / "failed.csv")
        assert rep["complete"] and rep["world_size"] == n
        assert rep["collection"] == {"videos": len(videos), "clips": 2 * len(videos), "failed": len(failed)}
        assert len(videos) + len(failed) == len(wild)  # every file: a row or a failure with its reason
        reasons = {Path(f["path"]).name: f["reason"] for f in failed}
        assert set(reasons) == {k for k, e in wild.items() if not e.indexed} | set(corpus["damaged"])
        assert all(reasons[k] == e.probe_reason for k, e in wild.items() if not e.indexed)
        flags = {Path(v["path"]).name: int(v["has_audio"]) for v in videos}
        assert {k for k, a in flags.items() if not a} == {k for k, e in wild.items() if e.indexed and not e.has_audio}
        emb, table = load_collection(coll, "video", "video")
        assert emb.shape[0] == len(videos) and np.isfinite(emb).all()
        rows[n] = dict(zip(table["path"], emb))
    assert rows[1].keys() == rows[WORLD].keys()  # two processes: the rows of one
    for p in rows[1]:
        np.testing.assert_allclose(rows[WORLD][p], rows[1][p], atol=1e-4, err_msg=p)


@pytest.mark.distributed
def test_retrieval_over_the_collections(collections, corpus):
    one, two = collections[1], collections[WORLD]
    work = corpus["work"]
    done = tool("retrieve", "table", one, two, "--names", "one", "two", "--json", work / "table.json", cwd=work)
    table = json.loads((work / "table.json").read_text())
    videos = len(_table(one / "videos.csv"))
    for name in ("one", "two"):
        res = table[name]
        assert res["num_videos"] + res["excluded_without_audio"] == videos
        assert res["a2v"]["num_queries"] == res["num_videos"] and 1 <= res["a2v"]["median_rank"] <= res["num_videos"]
    assert table["one"]["a2v"] == pytest.approx(table["two"]["a2v"]) and "| one | audio→video |" in done.stdout
    query = tool("retrieve", "query", one, "--file", corpus["media"] / "surround_ac3_51.mkv", "--modality", "audio",
                 "-k", "3", "--json", cwd=work)
    hits = json.loads(query.stdout[query.stdout.index("["):])
    assert [h["rank"] for h in hits] == [1, 2, 3] and all(Path(h["path"]).exists() for h in hits)
