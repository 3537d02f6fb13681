"""CMA kill-and-resume on the tiny generated world (real encoded clips, real decoding), with the SHIPPED
CPU presets (configs/experiment/avid_embedded_cpu.yaml, cma_embedded_cpu.yaml) composed through Hydra.

Only what the tiny world forces is overridden (see `_cfg`). The learning check that used to live here
(a hand copy of the CPU preset's objective on the tiny world's training clips) is superseded by
tests/test_learning_margin.py: the shipped preset itself, held-out clips, against its random init.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def _cfg(experiment: str, run_dir, world_dir, *overrides) -> dict:
    """The shipped preset on the tiny world. Overrides, each keeping the preset's meaning:
    world_dir / world_preset=tiny (the 24-clip world instead of the 480-clip one: seconds, not
    minutes); batch_size=4 (17 training clips: the preset's 32 would drop every batch; 4 gives 4 steps
    an epoch); tensorboard / progress off (output only)."""
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("pretrain", overrides=[
            f"experiment={experiment}", f"run_dir={run_dir}", f"data.world_dir={world_dir}",
            "data.world_preset=tiny", "data.batch_size=4", "trainer.tensorboard=false", "trainer.progress=false",
            *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.slow
def test_cma_kill_and_resume_mid_epoch_matches_uninterrupted(tmp_path, tiny_world):
    """A CMA run stopped mid-epoch and resumed ends bit-for-bit where an uninterrupted run does:
    weights, both banks and the positive sets (with a positive-set refresh between the stop and the end)."""
    from avssl.utils.checkpoint import CheckpointManager
    from avssl.engine.pretrain import train

    train(_cfg("avid_embedded_cpu", tmp_path / "avid", tiny_world, "trainer.epochs=1", "eval.enabled=false"))
    steps = 7  # 4 steps/epoch -> the stop (3) is mid-epoch 0, the end mid-epoch 1
    # refresh every epoch (the preset: every 2) so that epoch 1 starts with a refresh after the resume
    cma = [f"cma.init_from={tmp_path / 'avid'}", "trainer.epochs=5", "eval.enabled=false",
           "cma.refresh_every_epochs=1"]
    train(_cfg("cma_embedded_cpu", tmp_path / "straight", tiny_world, *cma, f"trainer.max_steps={steps}"))
    killed = _cfg("cma_embedded_cpu", tmp_path / "killed", tiny_world, *cma, "trainer.max_steps=3")
    first = train(killed)
    assert first["stopped_early"] and first["global_step"] == 3
    resumed = copy.deepcopy(killed)
    resumed["trainer"]["max_steps"] = steps
    assert train(resumed)["global_step"] == steps

    a, b = CheckpointManager(tmp_path / "straight").load(), CheckpointManager(tmp_path / "killed").load()
    assert a["stage"] == b["stage"] == "cma" and a["progress"] == b["progress"]
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6, msg=key)
    ta, tb = dict(_tensors(a["criterion"])), dict(_tensors(b["criterion"]))
    assert ta.keys() == tb.keys() and any("positives" in k for k in ta)  # banks, log Z and the positive sets
    for key in ta:  # equal_nan: log Z is NaN under InfoNCE
        torch.testing.assert_close(ta[key], tb[key], rtol=1e-5, atol=1e-6, equal_nan=True, msg=key)


def _tensors(state, prefix=""):
    """(dotted key, tensor) of every tensor in a nested state (extra state such as the positive sets included)."""
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, dict):
        for k, v in state.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
