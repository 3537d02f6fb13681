"""Checkpoint files: atomic replacement, retention, fingerprint refusal, RNG round trip."""

import random

import numpy as np
import pytest
import torch

from avssl.utils import checkpoint as ckpt
from avssl.engine.samplers import EvalShardSampler, ResumableDistributedSampler
from avssl.utils.checkpoint import (
    CheckpointError,
    CheckpointManager,
    FingerprintMismatchError,
    capture_rng_state,
    restore_rng_state,
)


def _state(value: float, fingerprint: str = "fp-a") -> dict:
    return {
        "model": {"w": torch.full((64, 64), value)},
        "progress": {"epoch": 0, "batches_consumed": int(value), "global_step": int(value)},
        "manifest_fingerprint": fingerprint,
    }


def test_save_load_keeps_last_n_and_latest(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3):
        mgr.save(_state(step), global_step=step)
    names = [p.name for p in mgr.list_checkpoints()]
    assert names == ["step_00000002.pt", "step_00000003.pt"]
    assert mgr.latest_path().name == "step_00000003.pt"
    state = mgr.load(expected_fingerprint="fp-a")
    assert torch.equal(state["model"]["w"], torch.full((64, 64), 3.0))


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    mgr = CheckpointManager(tmp_path, keep_last=3)
    good = mgr.save(_state(1), global_step=1)
    good_bytes = good.read_bytes()

    real_save = torch.save

    def save_then_die(obj, f, *a, **k):
        # write real bytes first so the partial file exists on disk, then "crash"
        real_save({"partial": torch.zeros(1000)}, f, *a, **k)
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(ckpt.torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        mgr.save(_state(2), global_step=2)
    monkeypatch.setattr(ckpt.torch, "save", real_save)

    # the half-written step 2 never appears under a real name, latest still points at step 1
    assert [p.name for p in mgr.list_checkpoints()] == ["step_00000001.pt"]
    assert mgr.latest_path() == good
    assert good.read_bytes() == good_bytes
    assert not list(mgr.dir.glob("*.tmp"))
    assert torch.equal(mgr.load()["model"]["w"], torch.full((64, 64), 1.0))


def test_truncated_file_under_real_name_is_reported(tmp_path):
    mgr = CheckpointManager(tmp_path)
    path = mgr.save(_state(1), global_step=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="cannot read any of the 1 checkpoint"):
        mgr.load()


@pytest.mark.parametrize("damage", ["truncated", "zero-bytes", "not-a-zip"])
def test_damaged_latest_falls_back_with_a_warning(tmp_path, caplog, damage):
    mgr = CheckpointManager(tmp_path, keep_last=3)
    for step in (1, 2, 3):
        mgr.save(_state(step), global_step=step)
    latest = mgr.latest_path()
    data = latest.read_bytes()
    latest.write_bytes({"truncated": data[: len(data) // 2], "zero-bytes": b"", "not-a-zip": b"PK\x03\x04junk" * 50}[damage])
    with caplog.at_level("WARNING", logger="avssl.utils.checkpoint"):
        path, state = mgr.load_latest(expected_fingerprint="fp-a")
    assert path.name == "step_00000002.pt" and state["progress"]["global_step"] == 2
    assert str(latest) in caplog.text and "skipping damaged checkpoint" in caplog.text
    assert mgr.load()["progress"]["global_step"] == 2  # load() without a path resumes the same way
    # an explicit path is not second-guessed
    with pytest.raises(CheckpointError, match="step_00000003.pt"):
        mgr.load(latest)
    # a mismatching index is an error, not damage: no fallback past it
    with pytest.raises(FingerprintMismatchError):
        mgr.load_latest(expected_fingerprint="fp-b")


def test_fingerprint_mismatch_refused(tmp_path):
    mgr = CheckpointManager(tmp_path)
    mgr.save(_state(1, fingerprint="index-A"), global_step=1)
    with pytest.raises(FingerprintMismatchError, match="different dataset index"):
        mgr.load(expected_fingerprint="index-B")
    assert mgr.load(expected_fingerprint="index-A")["manifest_fingerprint"] == "index-A"


def test_missing_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        CheckpointManager(tmp_path).load()


def test_rng_round_trip():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    state = capture_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_state(state)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])


# ---- sampler position (what a checkpoint's 'progress' restores)




def _batches(sampler, bs):
    idx = list(sampler)
    return [idx[i : i + bs] for i in range(0, len(idx) - bs + 1, bs)]


def test_resume_skips_consumed_batches():
    full = ResumableDistributedSampler(50, 4, seed=3)
    full.set_epoch(2)
    straight = _batches(full, 4)
    resumed = ResumableDistributedSampler(50, 4, seed=3)
    resumed.load_state_dict({"epoch": 2, "batches_consumed": 5, "seed": 3})
    assert _batches(resumed, 4) == straight[5:]
    assert len(resumed) == len(full) - 5 * 4


def test_epochs_differ_and_are_reproducible():
    s = ResumableDistributedSampler(40, 4, seed=0)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert e0 != e1
    s.set_epoch(0)
    assert list(s) == e0


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_disjoint_and_equal_length(world):
    shares = []
    for r in range(world):
        s = ResumableDistributedSampler(50, 4, num_replicas=world, rank=r, seed=1)
        s.set_epoch(4)
        shares.append(list(s))
    assert len({len(x) for x in shares}) == 1 and len(shares[0]) % 4 == 0
    flat = [i for x in shares for i in x]
    assert len(flat) == len(set(flat))


def test_padding_without_drop_last_covers_everything():
    world = 3
    shares = []
    for r in range(world):
        s = ResumableDistributedSampler(10, 2, num_replicas=world, rank=r, drop_last=False)
        shares.append(list(s))
    assert all(len(x) == 4 for x in shares)  # ceil(10 / 3)
    flat = [i for x in shares for i in x]
    assert set(flat) == set(range(10)) and len(flat) - 10 == 2  # two repeats, documented


def test_eval_sampler_no_padding():
    world, n = 4, 10
    shares = [list(EvalShardSampler(n, num_replicas=world, rank=r)) for r in range(world)]
    flat = sorted(i for x in shares for i in x)
    assert flat == list(range(n))
    assert [len(EvalShardSampler(n, num_replicas=world, rank=r)) for r in range(world)] == [3, 3, 2, 2]


def test_bad_arguments():
    with pytest.raises(ValueError):
        ResumableDistributedSampler(3, 4)
    with pytest.raises(ValueError):
        ResumableDistributedSampler(10, 2, num_replicas=2, rank=2)
    s = ResumableDistributedSampler(10, 2, seed=0)
    with pytest.raises(ValueError, match="seed"):
        s.load_state_dict({"epoch": 0, "batches_consumed": 0, "seed": 5})
