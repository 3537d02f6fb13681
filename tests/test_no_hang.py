"""Unreadable training files never hang or desynchronise a distributed run (issue #16).

The damage is real and happens after indexing, as bit rot in a large collection with a cached
index: tiny-world MP4 files (H.264 + AAC) are indexed with a probe cache, then their AAC packets
are overwritten with random bytes in place, keeping the file's size and mtime. Container, sample
tables and video stream are intact; the cache sees an unchanged file (no re-probe: a fresh probe
would flag the audio as undecodable), so the runs index it as before and every clip read fails in
the audio decoder (`CorruptMedia`).

- `fill_batch`: failed items are replaced from the rank's own share, deterministically (same
  batches with 0 or 2 DataLoader workers), without repeating a video id; no budget -> incomplete;
- `torchrun --nproc_per_node 2 tools/pretrain.py` with EVERY file of rank 1's epoch-0 share
  unreadable (a rank with zero good items: every step of that epoch is skipped by both ranks)
  and a mixed epoch 1 (failed items replaced): finishes under a timeout, the account adds up
  (requested = used + dropped), failures equal the damaged slots the samplers drew, the report
  lists exactly the damaged files, and the 1-process run of the same global batch agrees;
  held-out retrieval with a damaged file on rank 1's eval share counts it once;
- the same for `torchrun --nproc_per_node 2 tools/finetune.py` (DDP classifier) and its
  video-level test evaluation.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avssl.data import AVClipDataset, build_index
from avssl.data.index import split_cache_path
from avssl.data.collate import BatchFiller, fill_batch, keep_batch
from avssl.engine.samplers import BatchRequestSampler, ResumableDistributedSampler
from avssl.io.errors import CorruptMedia
from avssl.io.probe import probe
from avssl.io.read import read_clip
from avssl.io.types import ClipSpec

REPO = Path(__file__).resolve().parents[1]
SPEC = ClipSpec(num_frames=4, fps=8.0, frame_size=32, audio_rate=24000, audio_channels=1, audio_duration=1.0)
RUN_TIMEOUT_S = 300  # the guard: a hung rank would otherwise wait for gloo's 30 min timeout


def compose_cfg(name: str, overrides: list[str]) -> dict:
    """The config `tools/<name>.py` would build from these command-line overrides."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        return OmegaConf.to_container(compose(name, overrides=overrides), resolve=True)


def _audio_frames_decoded(path: Path) -> int:
    """Frames the AAC decoder makes of `path`'s audio packets: in stream order (decoder state carried
    over, as a read from the start) and each packet on a fresh decoder (as the first after a seek)."""
    frames = 0
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        for pkt in c.demux(a):
            if not pkt.size:
                continue
            fresh = av.CodecContext.create(a.codec_context.name, "r")
            fresh.extradata = a.codec_context.extradata
            for ctx in (a.codec_context, fresh):
                try:
                    frames += len(ctx.decode(pkt))
                except av.error.FFmpegError:
                    pass
    return frames


def garble_audio(path: Path, seed: int = 0) -> None:
    """Overwrite the payload of every audio packet of `path` with random bytes, in place: the size
    and the mtime stay those of the indexed file (nothing else changes). Random bytes now and then
    parse as an AAC frame (a file that would still read a little audio): redrawn until the decoder
    rejects every packet, so every clip read of the file fails."""
    st = path.stat()
    clean = path.read_bytes()
    with av.open(str(path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(c.streams.audio[0]) if p.size and p.pos is not None]
    for attempt in range(20):
        data = bytearray(clean)
        rng = np.random.default_rng([seed, attempt])
        for pos, size in spans:
            data[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
        if _audio_frames_decoded(path) == 0:
            break
    else:
        raise AssertionError(f"{path}: no draw of random bytes the decoder rejects everywhere")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    from avssl.synth.generate import generate_world

    root = tmp_path_factory.mktemp("nohang_world") / "tiny"
    generate_world(root, preset="tiny", seed=0, workers=1, progress=False)
    return root


def _mp4_copies(world_dir: Path, split: str, dest: Path) -> Path:
    from avssl.synth.generate import load_world

    dest.mkdir(parents=True)
    for p in load_world(world_dir).video_paths(split):
        if Path(p).suffix == ".mp4":  # the AAC damage below needs MP4/AAC files
            shutil.copy(p, dest / Path(p).name)
    return dest


def _index(source, cache: Path):
    """Index `source` with a probe cache (before any damage): every file probed once."""
    manifest, report = build_index(str(source), cache=cache, workers=1, progress=False)
    assert report.probed == report.total == len(manifest) and manifest.has_audio.all()
    return manifest


def _damage(paths) -> None:
    for k, p in enumerate(paths):
        garble_audio(Path(p), seed=k)
        assert "audio_undecodable" in probe(p).extra  # what a fresh probe would see (the cache won't look) ...
        with pytest.raises(CorruptMedia):  # ... and what every clip read meets
            read_clip(p, 0.5, SPEC)


def _still_indexed(source, cache: Path, manifest) -> None:
    """The damaged files pass the cached indexer: nothing probed, the same manifest, audio everywhere."""
    again, report = build_index(str(source), cache=cache, workers=1, progress=False)
    assert report.probed == 0 and report.cached == report.total == len(manifest)
    assert again.fingerprint() == manifest.fingerprint() and again.has_audio.all()


def _rank_share(n: int, batch: int, world: int, rank: int, seed: int, epoch: int, drop_last: bool = True) -> set[int]:
    """Items of `rank`'s whole share of `epoch` (before truncation), from the sampler's public order."""
    s = ResumableDistributedSampler(n, batch, num_replicas=world, rank=rank, seed=seed, drop_last=drop_last)
    return set(s.replacement_order(0, epoch))


def _batches(n, batch, world, rank, seed, epoch, drop_last=True) -> list[list[int]]:
    s = ResumableDistributedSampler(n, batch, num_replicas=world, rank=rank, seed=seed, drop_last=drop_last)
    s.set_epoch(epoch)
    return [list(r.indices) for r in BatchRequestSampler(s)]


# ============================================================================================
# filling one batch
# ============================================================================================


def test_failed_items_are_replaced_from_the_rank_share(tmp_path, world_dir):
    train = _mp4_copies(world_dir, "train", tmp_path / "train")
    manifest, _ = build_index(str(train), workers=1, progress=False)
    n = len(manifest)
    sampler = ResumableDistributedSampler(n, 3, num_replicas=2, rank=1, seed=3)
    sampler.set_epoch(0)
    requests = list(BatchRequestSampler(sampler))
    assert len(requests) >= 2
    first = requests[0].indices
    bad_items = [first[0], first[2], requests[1].indices[1]]
    _damage([manifest.path(i) for i in bad_items])
    ds = AVClipDataset(manifest, SPEC, mode="train", seed=3)

    out = BatchFiller(ds, max_attempts=8)[requests[0]]
    assert out["complete"] and out["requested"] == 3 and out["replaced"] == 2
    assert [f.item for f in out["failed"]] == bad_items[:2]
    assert {f.reason for f in out["failed"]} == {"corrupt"}
    assert [f.path for f in out["failed"]] == [manifest.path(i) for i in bad_items[:2]]
    got = out["index"].tolist()  # manifest ids
    assert got[1] == int(manifest.id[first[1]])  # the readable item keeps its place
    assert len(set(got)) == 3  # no video twice
    share_ids = {int(manifest.id[i]) for i in sampler.replacement_order(0)}
    assert {got[0], got[2]} <= share_ids - {int(manifest.id[i]) for i in first}  # from rank 1's own share
    assert not {got[0], got[2]} & {int(manifest.id[i]) for i in bad_items}  # never a damaged one

    # a pure function of the request: the same batches through 0 or 2 worker processes
    def run(workers):
        loader = DataLoader(BatchFiller(ds, 8), batch_size=None, sampler=BatchRequestSampler(sampler),
                            num_workers=workers, collate_fn=keep_batch)
        return [(b["index"].tolist(), b["replaced"], [f.item for f in b["failed"]]) for b in loader]

    assert run(0) == run(2)
    torch.testing.assert_close(BatchFiller(ds, 8)[requests[0]]["video"], out["video"])

    # no replacement budget: the batch is reported incomplete, without tensors
    short = fill_batch(ds, first, requests[0].candidates, max_attempts=0)
    assert not short["complete"] and "video" not in short and short["replaced"] == 0 and len(short["failed"]) == 2


def test_decoded_cache_items_are_replaced_too(tmp_path, world_dir):
    """`DecodedClipDataset` leaves a video that fails to decode out of its store (its items yield None):
    the filler replaces those items like any other and names the file."""
    from avssl.data.decoded import DecodedClipDataset

    train = _mp4_copies(world_dir, "train", tmp_path / "train")
    manifest, _ = build_index(str(train), workers=1, progress=False)
    sampler = ResumableDistributedSampler(len(manifest), 3, num_replicas=2, rank=0, seed=1)
    request = next(iter(BatchRequestSampler(sampler)))
    _damage([manifest.path(request.indices[1])])
    ds = DecodedClipDataset(AVClipDataset(manifest, SPEC, mode="train", seed=1), None, progress=False)
    assert int(ds.ok.sum()) == len(manifest) - 1
    out = BatchFiller(ds, 8)[request]
    assert out["complete"] and out["replaced"] == 1 and out["video"].shape[0] == 3
    assert [(f.item, f.path) for f in out["failed"]] == [(request.indices[1], manifest.path(request.indices[1]))]


def test_resume_with_unreadable_files_matches_uninterrupted(tmp_path, world_dir):
    """Replacement draws depend only on (seed, epoch, step, rank): a run killed mid-epoch and resumed ends
    with the weights, banks, data account and failure report of an uninterrupted run."""
    from avssl.utils.checkpoint import CheckpointManager
    from avssl.engine.pretrain import train as pretrain

    src = _mp4_copies(world_dir, "train", tmp_path / "train")
    cache = tmp_path / "index.npz"
    manifest = _index(src, cache)
    _damage([manifest.path(i) for i in (0, 3, 5, 8)])
    _still_indexed(src, cache, manifest)
    steps = 5  # 3 steps an epoch: spans the epoch boundary, stops mid-epoch

    def cfg(run, max_steps):
        return compose_cfg("pretrain", ["experiment=tiny", f"run_dir={tmp_path / run}", "trainer.epochs=4",
                                        f"trainer.max_steps={max_steps}", "eval.enabled=false", "data.source=files",
                                        f"data.train_source={src}", f"data.index_cache={cache}"])

    straight = pretrain(cfg("straight", steps))
    first = pretrain(cfg("killed", 2))
    assert first["stopped_early"] and first["global_step"] == 2
    resumed = pretrain(cfg("killed", steps))
    assert straight["data"] == resumed["data"]
    assert 0 < first["data"]["failed"] < straight["data"]["failed"]  # failures before and after the kill
    assert straight["data"]["replaced"] == straight["data"]["failed"]  # 4 damaged of 14: always refilled
    a, b = CheckpointManager(tmp_path / "straight").load(), CheckpointManager(tmp_path / "killed").load()
    assert a["progress"] == b["progress"]
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6, msg=key)
    torch.testing.assert_close(a["criterion"]["video_bank.bank"], b["criterion"]["video_bank.bank"])
    ra = json.loads((tmp_path / "straight" / "data_failures.json").read_text())
    rb = json.loads((tmp_path / "killed" / "data_failures.json").read_text())
    assert ra["files"] == rb["files"] and ra["counts"] == rb["counts"]


def test_failure_log_is_bounded_and_merges_without_losing_counts():
    from avssl.data.collate import ItemFailure
    from avssl.engine.batches import FailureLog

    def fails(paths):
        return [ItemFailure(i, i, p, "corrupt", "x" * 1000) for i, p in enumerate(paths)]

    a, b = FailureLog(max_files=3), FailureLog(max_files=3)
    a.add(fails(["f0", "f1", "f0"]))
    b.add(fails(["f1", "f2", "f3", "f4"]))  # f3 and f4 beyond b's bound: counted, not listed
    assert b.unlisted_failures == 1 and set(b.files) == {"f1", "f2", "f3"}
    m = FailureLog(max_files=3).merge(a).merge(b)
    assert m.files["f0"]["failures"] == 2 and m.files["f1"]["failures"] == 2
    total = sum(r["failures"] for r in m.files.values()) + m.unlisted_failures
    assert total == 7 and len(m.files) == 3  # every failed read accounted for, listed or not
    assert all(len(r["detail"]) <= 300 for r in m.files.values())  # bounded size
    again = FailureLog(3)
    again.load_state_dict(m.state_dict())
    assert again.state_dict() == m.state_dict()


# ============================================================================================
# real multi-process runs (torchrun, gloo)
# ============================================================================================


def _run(args: list[str], nproc: int, cwd: Path) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node <nproc> <args>` (gloo on CPU) under the hang guard."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:  # the failure this file exists for
        pytest.fail(f"run did not finish in {RUN_TIMEOUT_S}s (hang?): {' '.join(cmd)}\n{(e.stderr or '')[-3000:]}")
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc


def _pretrain_seed(n: int, world: int, batch: int) -> tuple[int, set[int]]:
    """(seed, damaged items): rank 1's whole epoch-0 share damaged, and an epoch 1 that draws damaged
    items on both ranks yet can refill every batch from the rank's share (enough readable items
    outside each batch; a share has fewer candidates than the attempt budget): every epoch-1 step runs."""
    for seed in range(50):
        bad = _rank_share(n, batch, world, 1, seed, 0)
        ok = True
        hits = [0] * world
        for r in range(world):
            good = _rank_share(n, batch, world, r, seed, 1) - bad
            for b in _batches(n, batch, world, r, seed, 1):
                need = len(set(b) & bad)
                hits[r] += need
                ok &= len(good - set(b)) >= need
        if ok and min(hits) > 0:
            return seed, bad
    raise AssertionError("no suitable seed")


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_pretraining_with_one_rank_unreadable(tmp_path, world_dir):
    train = _mp4_copies(world_dir, "train", tmp_path / "train")
    heldout = _mp4_copies(world_dir, "test", tmp_path / "heldout")
    cache = tmp_path / "idx" / "probe.npz"  # the runs' data.index_cache: train here, held-out beside it
    manifest = _index(train, cache)
    eval_manifest = _index(heldout, split_cache_path(cache, "eval"))
    n, world, batch = len(manifest), 2, 2
    seed, bad = _pretrain_seed(n, world, batch)  # bad: every item of rank 1's epoch-0 share
    _damage([manifest.path(i) for i in sorted(bad)])
    _damage([eval_manifest.path(1)])  # EvalShardSampler: item 1 is rank 1's
    _still_indexed(train, cache, manifest)
    _still_indexed(heldout, split_cache_path(cache, "eval"), eval_manifest)
    epochs, steps = 2, n // (world * batch)

    common = ["experiment=tiny", "data.source=files", f"data.train_source={train}", f"data.eval_source={heldout}",
              f"data.index_cache={cache}", f"seed={seed}", f"trainer.epochs={epochs}", "trainer.tensorboard=true"]
    _run([str(REPO / "tools/pretrain.py"), *common, f"run_dir={tmp_path / 'two'}", f"data.batch_size={batch}"],
         world, tmp_path)
    from avssl.engine.pretrain import train as pretrain  # one process: the same config, in this process

    pretrain(compose_cfg("pretrain", [*common, f"run_dir={tmp_path / 'one'}", f"data.batch_size={world * batch}"]))

    from avssl.utils.checkpoint import CheckpointManager

    two = json.loads((tmp_path / "two" / "data_failures.json").read_text())
    one = json.loads((tmp_path / "one" / "data_failures.json").read_text())
    c2, c1 = two["counts"], one["counts"]
    # what the samplers drew: every damaged slot of epoch 0 is rank 1's; epoch 1 is mixed
    drawn_bad = [sum(len(set(b) & bad) for r in range(world) for b in _batches(n, batch, world, r, seed, e))
                 for e in range(epochs)]
    assert drawn_bad[0] == steps * batch
    assert c2["requested"] == epochs * steps * world * batch == c2["used"] + c2["dropped"]
    assert c2["skipped_steps"] == steps  # rank 1 had no readable item in epoch 0: all skipped together
    assert c2["dropped"] == steps * world * batch and c2["used"] == steps * world * batch
    assert c2["failed"] == sum(drawn_bad) and c2["replaced"] == drawn_bad[1]  # epoch 1 fully refilled
    # rank 1 tried every other item of its share for each epoch-0 step
    assert c2["replacement_failures"] >= steps * (len(bad) - batch)
    damaged_paths = {manifest.path(i) for i in bad}
    assert {f["path"] for f in two["files"]} == damaged_paths
    assert {f["reason"] for f in two["files"]} == {"corrupt"}
    # one process, same global batch: the same clips requested and the same damaged draws
    assert c1["requested"] == c2["requested"] == c1["used"] + c1["dropped"]
    assert c1["failed"] == c2["failed"] and c1["skipped_steps"] == 0 and c1["replaced"] == c1["failed"]
    assert {f["path"] for f in one["files"]} <= damaged_paths

    for run in ("one", "two"):
        for name in ("index_report.json", "index_report_eval.json"):  # the damage came through the cache
            rep = json.loads((tmp_path / run / name).read_text())
            assert rep["probed"] == 0 and rep["cached"] == rep["indexed"] == rep["total"], (run, name)
        state = CheckpointManager(tmp_path / run).load()
        assert state["progress"]["global_step"] == epochs * steps
        assert state["progress"]["data"] == (c2 if run == "two" else c1)
        log = (tmp_path / run / "train.log").read_text()
        assert "held-out retrieval (%d clips, 1 unreadable)" % (len(eval_manifest) - 1) in log  # counted once
        assert "data: %d clips requested" % c2["requested"] in log
    assert "skipped on every rank" in (tmp_path / "two" / "train.log").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(tmp_path / "two" / "tensorboard"))
    tb.Reload()
    assert tb.Scalars("data/failed")[-1].value == c2["failed"]
    assert tb.Scalars("data/skipped_steps")[-1].value == steps


def _finetune_cfg(world_dir: Path, seed: int, cache: Path) -> dict:
    return compose_cfg("finetune", ["finetune=tiny", f"dataset.embedded.world_dir={world_dir}", f"seed={seed}",
                                    f"dataset.index_cache={cache}"])


def _finetune_plan(world_dir: Path, seed: int, world: int, cache: Path):
    """(train dataset, sampler batch size, test dataset) exactly as `finetune_fold` builds them,
    indexed into the split caches of `dataset.index_cache=cache`."""
    from avssl.downstream.finetune import _clip_spec, _train_clips, prepare_splits
    from avssl.downstream.data import make_dataset

    cfg = _finetune_cfg(world_dir, seed, cache)
    d = cfg["dataset"]
    splits = prepare_splits(d, 1, seed)
    spec = _clip_spec(d["spec"])
    train = make_dataset(splits["train"], spec, "train", _train_clips(d, len(splits["train"]), d["batch_size"] * world),
                         seed, index_cache=split_cache_path(cache, "train"))
    test = make_dataset(splits["test"], spec, "eval", d["eval_clips_per_video"], seed,
                        index_cache=split_cache_path(cache, "test"))
    return train, max(1, min(d["batch_size"], len(train) // world)), test, cfg


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_finetuning_with_one_rank_unreadable(tmp_path, world_dir):
    world = 2
    local = tmp_path / "world"
    shutil.copytree(world_dir, local)  # real copies: the damage must not reach the shared world
    cache = tmp_path / "idx" / "ucf.npz"  # dataset.index_cache: ucf.{train,val,test}.npz
    # a seed whose rank-1 epoch-0 share is all MP4 (the damage needs AAC): no readable candidate there
    for seed in range(50):
        train, batch, test, cfg = _finetune_plan(local, seed, world, cache)
        share = _rank_share(len(train), batch, world, 1, seed, 0, drop_last=False)
        if all(train._path(train.sample_plan(i)[0]).endswith(".mp4") for i in share):
            break
    else:
        raise AssertionError("no suitable seed")
    n, bad = len(train), share
    _damage(sorted({train._path(train.sample_plan(i)[0]) for i in bad}))
    test_bad = next(i for i in range(len(test.manifest)) if test.manifest.path(i).endswith(".mp4"))
    _damage([test._path(test_bad)])

    common = ["finetune=tiny", f"dataset.embedded.world_dir={local}", f"seed={seed}", f"dataset.index_cache={cache}"]
    _run([str(REPO / "tools/finetune.py"), *common, f"run_dir={tmp_path / 'two'}"], world, tmp_path)
    from avssl.downstream.finetune import finetune  # one process: the same config, in this process

    finetune(compose_cfg("finetune", [*common, f"run_dir={tmp_path / 'one'}"]))
    two = json.loads((tmp_path / "two" / "fold1" / "test_metrics.json").read_text())
    one = json.loads((tmp_path / "one" / "fold1" / "test_metrics.json").read_text())

    def drawn(world_size: int, batch_size: int, epoch: int) -> tuple[int, int, list]:
        """(slots, damaged slots, rank-1 batches) the samplers draw (drop_last=False pads a share
        with at most world-1 repeats of other ranks' items)."""
        per_rank = [_batches(n, batch_size, world_size, r, seed, epoch, drop_last=False) for r in range(world_size)]
        slots = sum(len(b) for bs in per_rank for b in bs)
        return slots, sum(len(set(b) & bad) for bs in per_rank for b in bs), per_rank[-1]

    for e, (h2, h1) in enumerate(zip(two["history"], one["history"])):
        slots2, bad2, rank1 = drawn(world, batch, e)
        slots1, bad1, _ = drawn(1, min(cfg["dataset"]["batch_size"], n), e)
        assert h2["data"]["requested"] == slots2 and h2["data"]["failed"] == bad2
        assert h1["data"]["requested"] == slots1 and h1["data"]["failed"] == bad1
        # the same clips, but for the 2-process padding repeat (one slot of rank 1's share)
        assert slots2 - slots1 == world * math.ceil(n / world) - n and 0 <= bad2 - bad1 <= slots2 - slots1
        for h in (h1, h2):
            assert h["data"]["requested"] == h["data"]["used"] + h["data"]["dropped"]
            assert h["data"]["replaced"] <= h["data"]["failed"]
        assert h1["data"]["skipped_steps"] == 0 and h1["data"]["replaced"] == bad1  # plenty of readable items
        if e == 0:  # every rank-1 batch holds damaged items and its share nothing readable: all skipped
            assert all(set(b) & bad for b in rank1)
            assert h2["data"]["skipped_steps"] == len(rank1) and h2["data"]["used"] == 0 and h2["loss"] != h2["loss"]
    assert two["train_data"]["failed"] == sum(h["data"]["failed"] for h in two["history"])
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["train_data"] == two["train_data"] and summary["test_dropped"] == two["dropped"]
    report = json.loads((tmp_path / "two" / "fold1" / "data_failures.json").read_text())
    assert {f["path"] for f in report["files"]} == {train._path(train.sample_plan(i)[0]) for i in bad}
    # video-level test: every clip of the damaged test video counted once as dropped, the rest scored
    for m in (one, two):
        assert m["dropped"] == cfg["dataset"]["eval_clips_per_video"]
        assert m["num_clips"] + m["dropped"] == len(test)
        assert m["num_videos"] == len(test.manifest) - 1
    assert one["clips_per_video_seen"] == two["clips_per_video_seen"]
    for m in (one, two):  # the damaged files came through the cache unprobed
        for split in ("train", "test"):
            assert m["index"][split]["probed"] == 0 and m["index"][split]["cached"] == m["index"][split]["total"]
