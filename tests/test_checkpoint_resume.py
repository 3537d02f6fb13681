"""Resume on real tiny runs: a damaged latest checkpoint falls back to the newest one that reads;
a crafted checkpoint is refused (nothing runs) by pretrain resume (auto and a path), cma.init_from,
and by the pretrain / finetune commands (one error line, exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from avssl.utils.checkpoint import CheckpointManager
from avssl.utils.safe_load import DamagedCheckpointError, UnsafeCheckpointError
from test_safe_load import write_malicious

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")


def tiny_cfg(run_dir: Path, world_dir: Path, *overrides: str) -> dict:
    from omegaconf import OmegaConf

    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("pretrain", overrides=["experiment=tiny", f"run_dir={run_dir}", f"data.world_dir={world_dir}",
                                             "eval.enabled=false", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    from avssl.synth.generate import generate_world

    root = tmp_path_factory.mktemp("resume_world") / "tiny"
    generate_world(root, preset="tiny", seed=0, workers=1, progress=False)
    return root


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "EXECUTED"
    yield m
    assert not m.exists(), "a crafted checkpoint ran its code"


def _train(cfg, **kw):
    from avssl.engine.pretrain import train

    return train(cfg, **kw)


def test_damaged_latest_checkpoint_falls_back_to_the_newest_that_reads(tmp_path, world_dir, caplog):
    run = tmp_path / "run"
    first = _train(tiny_cfg(run, world_dir, "trainer.epochs=2"))
    mgr = CheckpointManager(run)
    older, latest = mgr.list_checkpoints()  # keep_last=2: one per epoch
    assert mgr.latest_path() == latest and first["epoch"] == 2
    steps_per_epoch = first["global_step"] // 2
    older_state = mgr.load(older)
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # a torn copy under the real name

    out = _train(tiny_cfg(run, world_dir, "trainer.epochs=3"))
    log = (run / "train.log").read_text()
    assert f"skipping damaged checkpoint: cannot read checkpoint {latest}" in log
    assert f"resumed from {older} at epoch 1, step {steps_per_epoch}" in log
    assert out["epoch"] == 3 and out["global_step"] == 3 * steps_per_epoch  # epochs 2 and 3 re-run from the older one
    assert older_state["progress"]["global_step"] == steps_per_epoch

    # when no checkpoint reads, resume fails with one clear error naming the folder
    for p in mgr.list_checkpoints():
        p.write_bytes(b"")
    with pytest.raises(DamagedCheckpointError, match=r"cannot read any of the 2 checkpoint\(s\) under .*checkpoints"):
        _train(tiny_cfg(run, world_dir, "trainer.epochs=4"))


@pytest.mark.parametrize("how", ["auto", "path", "run_dir"])
def test_pretrain_resume_refuses_a_crafted_checkpoint(tmp_path, world_dir, marker, how):
    run = tmp_path / "run"
    evil = write_malicious(tmp_path / "evil.pt", marker)
    if how == "auto":  # planted in the run directory the run resumes from
        (run / "checkpoints").mkdir(parents=True)
        evil = write_malicious(run / "checkpoints" / "step_00000009.pt", marker)
        cfg = tiny_cfg(run, world_dir)
    elif how == "path":
        cfg = tiny_cfg(run, world_dir, f"resume={evil}")
    else:
        other = tmp_path / "other"
        (other / "checkpoints").mkdir(parents=True)
        evil = write_malicious(other / "checkpoints" / "step_00000001.pt", marker)
        cfg = tiny_cfg(run, world_dir, f"resume={other}")
    with pytest.raises(UnsafeCheckpointError, match=str(evil)):
        _train(cfg)


@pytest.mark.parametrize("where", ["file", "run_dir"])
def test_cma_init_from_refuses_a_crafted_checkpoint(tmp_path, world_dir, marker, where):
    evil = write_malicious(tmp_path / "avid.pt", marker)
    src = evil
    if where == "run_dir":
        src = tmp_path / "avid_run"
        (src / "checkpoints").mkdir(parents=True)
        evil = write_malicious(src / "checkpoints" / "step_00000004.pt", marker)
    with pytest.raises(UnsafeCheckpointError, match=str(evil)):
        _train(tiny_cfg(tmp_path / "cma", world_dir, "method=cma", f"cma.init_from={src}"))


def _run_tool(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_pretrain_and_finetune_commands_refuse_a_crafted_checkpoint(tmp_path, world_dir, marker):
    evil = write_malicious(tmp_path / "evil.pth.tar", marker)
    runs = {
        "pretrain": ["tools/pretrain.py", "experiment=tiny", f"run_dir={tmp_path / 'run'}", f"data.world_dir={world_dir}",
                     "eval.enabled=false", f"resume={evil}"],
        "finetune": ["tools/finetune.py", "finetune=tiny", f"run_dir={tmp_path / 'ft'}",
                     f"dataset.embedded.world_dir={world_dir}", "init.kind=avssl", f"init.checkpoint={evil}"],
    }
    for name, args in runs.items():
        res = _run_tool([str(ROOT / args[0]), *args[1:]], tmp_path)
        assert res.returncode == 2, (name, res.stderr)
        assert "Traceback" not in res.stderr and "Error executing job" not in res.stderr, name
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith(f"{name}.py: error: refused to load checkpoint {evil}"), (name, last)
        assert sum("error:" in line for line in res.stderr.splitlines()) == 1
