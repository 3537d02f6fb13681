"""Checkpoints are read with weights_only=True everywhere: a crafted pickle runs nothing and
raises a CheckpointError naming the file, from every library entry that takes a checkpoint.

The crafted files ask the unpickler to call ``open(marker, "w")`` (and ``os.system("touch
marker")``); if any loader executed them, the marker file would exist.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from avssl.utils.checkpoint import (
    CheckpointError,
    CheckpointManager,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from avssl.utils.safe_load import DamagedCheckpointError, UnsafeCheckpointError, safe_torch_load


class _Opens:
    """Unpickling this calls open(path, 'w'): creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _Shell:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_malicious(path: Path, marker: Path, kind: str = "zip") -> Path:
    """A checkpoint-looking file (``model`` state dict + ``config``) whose loading would create ``marker``."""
    payload = {"model": {"w": torch.zeros(2)}, "config": {"model": "tiny"}, "extra": _Opens(marker),
               "more": _Shell(marker)}
    if kind == "zip":
        torch.save(payload, path)
    elif kind == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:  # a bare pickle, protocol 2 or 4
        path.write_bytes(pickle.dumps(payload, protocol=int(kind[-1])))
    return path


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "EXECUTED"
    yield m
    assert not m.exists(), "loading the crafted checkpoint ran its code"


@pytest.mark.parametrize("kind", ["zip", "legacy", "pickle2"])
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, marker, kind):
    path = write_malicious(tmp_path / f"evil_{kind}.pt", marker, kind)
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_torch_load(path)
    msg = str(err.value)
    assert str(path) in msg and "refused" in msg and "\n" not in msg
    assert "weights_only" not in msg  # no advice to turn the protection off
    assert isinstance(err.value, CheckpointError) and isinstance(err.value, ValueError)  # a UserError
    # the direct torch call would have executed it: prove the payload is live
    assert not marker.exists()


def test_pickle_protocol_4_is_unreadable_not_executed(tmp_path, marker):
    path = write_malicious(tmp_path / "evil.pkl", marker, "pickle4")
    with pytest.raises(CheckpointError, match="evil.pkl"):
        safe_torch_load(path)


def test_payload_really_executes_without_weights_only(tmp_path):
    """The crafted file is live: an unprotected load creates the marker (so the tests above mean something)."""
    m = tmp_path / "EXECUTED"
    path = write_malicious(tmp_path / "evil.pt", m, "zip")
    torch.load(path, weights_only=False)
    assert m.exists()


@pytest.mark.parametrize("case", ["missing", "folder", "empty", "truncated", "text"])
def test_bad_files_name_the_file(tmp_path, case):
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.randn(100, 100)}}, good)
    path = tmp_path / f"{case}.pt"
    if case == "folder":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "text":
        path.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError) as err:
        safe_torch_load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    damaged = case in ("empty", "truncated", "text")
    assert isinstance(err.value, DamagedCheckpointError) == damaged


def test_every_library_entry_refuses_a_crafted_checkpoint(tmp_path, marker):
    """load_checkpoint, CheckpointManager (resume), load_avid_checkpoint, finetune's starting points,
    avssl.embed.load_model (file and run directory): each raises CheckpointError naming the file."""
    from avssl.downstream.finetune import load_pretrained_av_model, load_pretrained_config, load_pretrained_video_encoder
    from avssl.embed.api import load_model
    from avssl.models import build_av_model, load_avid_checkpoint

    evil = write_malicious(tmp_path / "evil.pth.tar", marker)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    planted = write_malicious(run / "checkpoints" / "step_00000005.pt", marker)
    calls = {
        "load_checkpoint": lambda: load_checkpoint(evil),
        "manager.load(path)": lambda: CheckpointManager(run).load(evil),
        "manager.load() (resume=auto)": lambda: CheckpointManager(run).load(),
        "load_avid_checkpoint": lambda: load_avid_checkpoint(evil, build_av_model("tiny")),
        "finetune avssl": lambda: load_pretrained_av_model("avssl", evil),
        "finetune avssl run dir": lambda: load_pretrained_av_model("avssl", run),
        "finetune avid": lambda: load_pretrained_av_model("avid", evil),
        "finetune init.checkpoint": lambda: load_pretrained_video_encoder(
            {"kind": "avssl", "checkpoint": str(evil)}, {"video": "tiny"}),
        "finetune config": lambda: load_pretrained_config(evil),
        "embed.load_model": lambda: load_model(evil),
        "embed.load_model run dir": lambda: load_model(run),
    }
    for name, call in calls.items():
        with pytest.raises(UnsafeCheckpointError) as err:
            call()
        assert str(evil) in str(err.value) or str(planted) in str(err.value), name
    # an unsafe latest file is not silently skipped on resume: it is an error, not damage
    assert CheckpointManager(run).candidates() == [planted]


def test_checkpoint_config_cannot_name_a_class_to_instantiate(tmp_path, marker):
    """A weights-only-clean file whose stored model config carries a Hydra ``_target_`` (which
    instantiate() would call) is refused by load_model before anything is built."""
    from avssl.embed.api import load_model

    path = tmp_path / "target.pt"
    torch.save({"model": {}, "config": {"model": {"_target_": "builtins.open", "file": str(marker), "mode": "w"}}},
               path)
    with pytest.raises(CheckpointError, match="_target_"):
        load_model(path)


def test_rng_state_is_plain_and_old_numpy_state_still_reads(tmp_path):
    """New checkpoints hold no numpy objects; files written before (numpy's tuple with a uint32
    array) still load under weights_only through the small numpy allowlist, and restore."""
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    new = capture_rng_state()
    path = tmp_path / "new.pt"
    torch.save({"rng": new}, path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []

    old = dict(new, numpy=np.random.get_state())  # what earlier versions saved
    old_path = tmp_path / "old.pt"
    torch.save({"rng": old}, old_path)
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(old_path)
    expected = (random.random(), np.random.rand(3), torch.rand(3))
    for p in (path, old_path):
        state = load_checkpoint(p)
        np.random.seed(99)
        random.seed(99)
        restore_rng_state(state["rng"])
        got = (random.random(), np.random.rand(3), torch.rand(3))
        assert got[0] == expected[0] and np.array_equal(got[1], expected[1]) and torch.equal(got[2], expected[2])


def test_checkpoint_files_are_group_readable(tmp_path):
    """atomic_torch_save gives the mode a plain open() would (0644 under umask 022), not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        mgr = CheckpointManager(tmp_path)
        path = mgr.save({"model": {"w": torch.zeros(1)}}, 1)
        assert path.stat().st_mode & 0o777 == 0o644
        assert (mgr.dir / "latest").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)  # a private umask is still honoured
        assert mgr.save({"model": {"w": torch.zeros(1)}}, 2).stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_load_model_takes_a_file_a_run_dir_or_the_latest_pointer(tmp_path):
    """avssl.embed.load_model on what a pretraining run leaves: the step file, the run directory
    (newest checkpoint that reads) and ``checkpoints/latest`` (the pointer tools/make_real_world passes)."""
    from avssl.embed.api import load_model
    from avssl.models import build_av_model

    torch.manual_seed(0)
    src = build_av_model("tiny")
    mgr = CheckpointManager(tmp_path / "run")
    path = mgr.save({"model": src.state_dict(), "config": {"model": "tiny"}, "progress": {"global_step": 7}}, 7)
    for target in (path, tmp_path / "run", mgr.dir / "latest"):
        model, info = load_model(target)
        assert info["global_step"] == 7 and info["weights"] == "checkpoint"
        assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), model.state_dict().values()))
