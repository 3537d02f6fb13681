"""Pretraining methods behind one interface (avssl/methods): the registry finds every method module
(the CLIP-style method is known through discovery alone: no other module names it), the trainer runs
any of them, the CLIP objective is the AVID in-batch term with its temperature learned (the same
numbers when it is fixed; 2 gloo processes == 1 process), a CLIP run resumes exactly, old checkpoints
(``stage``, no ``method``) still resume and start CMA, and config mistakes are one clear line."""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from avssl.methods import AVIDCriterion, ModelOutputs, available_methods, build_method, method_name
from avssl.methods.clip import CLIPObjective
from avssl.utils.checkpoint import CheckpointError, CheckpointManager, atomic_torch_save
from avssl.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")
INFRASTRUCTURE = {"__init__", "base", "registry", "terms"}


def tiny_cfg(run_dir: Path, world_dir: Path, *overrides: str) -> dict:
    from omegaconf import OmegaConf

    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("pretrain", overrides=["experiment=tiny", f"run_dir={run_dir}", f"data.world_dir={world_dir}",
                                             "eval.enabled=false", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def _train(cfg, **kw):
    from avssl.engine.pretrain import train

    return train(cfg, **kw)


# ------------------------------------------------------------------------------------ registry
def test_registry_discovers_every_method_module_and_nothing_else_names_clip():
    modules = {p.stem for p in (ROOT / "avssl" / "methods").glob("*.py")} - INFRASTRUCTURE
    assert set(available_methods()) == modules >= {"avid", "cma", "clip"}
    # adding the CLIP method touched no other module: only the registry's discovery knows it
    others = [p for p in (ROOT / "avssl").rglob("*.py") if p != ROOT / "avssl" / "methods" / "clip.py"]
    naming = [str(p.relative_to(ROOT)) for p in others
              if any(s in p.read_text() for s in ("methods.clip", "methods import clip", "CLIPMethod", "CLIPObjective"))]
    assert naming == []


def test_config_mistakes_are_one_line_user_errors():
    cfg = tiny_cfg(Path("runs/x"), Path("w"))
    with pytest.raises(UserError, match="method='nope'.*avid, clip, cma"):
        build_method({**cfg, "method": "nope"}, num_items=20, fingerprint="fp")
    with pytest.raises(UserError, match="clip.learn_temprature: not an option"):
        build_method({**cfg, "method": "clip", "clip": {"learn_temprature": False}}, num_items=20, fingerprint="fp")
    with pytest.raises(UserError, match="cma.num_positive: not an option"):
        build_method({**cfg, "method": "cma", "cma": {"num_positive": 3}}, num_items=20, fingerprint="fp")
    # `stage`, the old name, is still read (old run configs); disagreeing with `method` is refused
    legacy = {k: v for k, v in cfg.items() if k != "method"}
    assert method_name({**legacy, "stage": "cma"}) == "cma"
    with pytest.raises(UserError, match="disagree"):
        method_name({**cfg, "method": "avid", "stage": "cma"})


# ------------------------------------------------------------------------------------ CLIP objective
def _batch(n=8, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g), torch.tensor([3, 8, 100, 8, 7, 199, 5, 6])[:n]


def test_clip_with_fixed_temperature_is_the_avid_in_batch_cross_term():
    """The same symmetric in-batch InfoNCE (same-video rows masked), built from the same pure pieces:
    equal losses and gradients; the banks AVID keeps do not enter its in-batch cross loss."""
    v, a, ids = _batch()
    vg, ag = v.clone().requires_grad_(), a.clone().requires_grad_()
    avid = AVIDCriterion(300, dim=16, num_negatives=32, loss="infonce", temperature=0.1, in_batch=True)
    la, _ = avid(vg, ag, ids, generator=torch.Generator().manual_seed(0))
    la.backward()
    vc, ac = v.clone().requires_grad_(), a.clone().requires_grad_()
    clip = CLIPObjective(16, temperature=0.1, learn_temperature=False)
    lc, stats = clip(vc, ac, ids)
    lc.backward()
    assert list(clip.parameters()) == [] and torch.isclose(stats["temperature"], torch.tensor(0.1))
    assert torch.equal(lc, la) and torch.equal(vc.grad, vg.grad) and torch.equal(ac.grad, ag.grad)


def test_clip_temperature_is_learned_and_clamped():
    v, a, ids = _batch()
    clip = CLIPObjective(16, temperature=0.07)
    assert math.isclose(float(clip.logit_scale.detach()), 1 / 0.07, rel_tol=1e-6)
    loss, _ = clip(v, a, ids)
    loss.backward()
    assert clip.log_scale.grad is not None and float(clip.log_scale.grad) != 0.0
    with torch.no_grad():
        clip.log_scale.fill_(10.0)  # exp(10) >> 100: clamped, as CLIP's logit scale
    assert math.isclose(float(clip.logit_scale.detach()), 100.0, rel_tol=1e-6)


def test_clip_and_avid_run_the_same_trainer_to_the_same_numbers(tmp_path, tiny_world):
    """The method-agnostic trainer: AVID with in-batch InfoNCE (T = 0.1) and CLIP with the temperature
    fixed at 0.1 train the same model through the same steps: identical per-step losses and weights."""
    common = ["trainer.epochs=1", "loss.loss=infonce", "loss.temperature=0.1"]
    avid = _train(tiny_cfg(tmp_path / "avid", tiny_world, *common, "loss.in_batch=true"), return_objects=True)
    clip = _train(tiny_cfg(tmp_path / "clip", tiny_world, *common, "method=clip", "+clip.learn_temperature=false"),
                  return_objects=True)
    assert len(avid["loss_history"]) >= 4 and clip["loss_history"] == avid["loss_history"]
    for key, value in avid["model"].state_dict().items():
        assert torch.equal(clip["model"].state_dict()[key], value), key


def test_clip_run_resumes_exactly_and_refuses_another_methods_checkpoint(tmp_path, tiny_world):
    steps = 6  # spans an epoch boundary (4 steps an epoch) and stops mid-epoch
    straight = _train(tiny_cfg(tmp_path / "straight", tiny_world, "method=clip", "trainer.epochs=5",
                               f"trainer.max_steps={steps}"), return_objects=True)
    killed = tiny_cfg(tmp_path / "killed", tiny_world, "method=clip", "trainer.epochs=5", f"trainer.max_steps={steps // 2}")
    _train(killed)
    resumed = copy.deepcopy(killed)
    resumed["trainer"]["max_steps"] = steps
    out = _train(resumed, return_objects=True)
    start = torch.log(torch.tensor(1 / 0.07))
    assert not torch.isclose(straight["criterion"].log_scale.detach(), start)  # the temperature was trained
    torch.testing.assert_close(out["criterion"].log_scale, straight["criterion"].log_scale)
    for key, value in straight["model"].state_dict().items():
        torch.testing.assert_close(out["model"].state_dict()[key], value, msg=key)
    state = CheckpointManager(tmp_path / "killed").load()
    assert state["method"] == "clip" and set(state["criterion"]) == {"log_scale"}
    assert len(state["optimizer"]["param_groups"]) == 2 and state["optimizer"]["param_groups"][1]["weight_decay"] == 0
    # a checkpoint of another method is refused by name
    other = tiny_cfg(tmp_path / "killed", tiny_world, "trainer.epochs=5")  # method=avid on the CLIP run
    with pytest.raises(CheckpointError, match="'clip' checkpoint, this run is method 'avid'"):
        _train(other)


def test_checkpoint_written_before_methods_resumes_and_starts_cma(tmp_path, tiny_world):
    """Old checkpoints name their method `stage` (no `method` key): a resume reads them as before and
    CMA's init_from takes them."""
    run = tmp_path / "old"
    _train(tiny_cfg(run, tiny_world, "trainer.epochs=1"))
    mgr = CheckpointManager(run)
    path = mgr.latest_path()
    state = mgr.load(path)
    del state["method"]
    state["config"]["stage"] = state["config"].pop("method")
    atomic_torch_save(state, path)
    assert "method" not in mgr.load(path) and mgr.load(path)["stage"] == "avid"
    resumed = _train(tiny_cfg(run, tiny_world, "trainer.epochs=2"))
    assert resumed["epoch"] == 2 and len(resumed["loss_history"]) == 4
    cma = _train(tiny_cfg(tmp_path / "cma", tiny_world, "method=cma", f"cma.init_from={path}", "trainer.epochs=1"),
                 return_objects=True)
    assert cma["criterion"].positives is not None
    torch.testing.assert_close(cma["criterion"].log_partition.cpu(), state["criterion"]["log_partition"])
    clip_run = tmp_path / "clip"  # a checkpoint without banks cannot start CMA: one line naming it
    _train(tiny_cfg(clip_run, tiny_world, "method=clip", "trainer.epochs=1"))
    with pytest.raises(UserError, match="cma.init_from=.*not an AVID checkpoint"):
        _train(tiny_cfg(tmp_path / "cma2", tiny_world, "method=cma", f"cma.init_from={clip_run}", "trainer.epochs=1"))


def test_the_localization_term_is_added_to_any_method():
    from avssl.methods.terms import LocalizationTerm

    cfg = tiny_cfg(Path("runs/x"), Path("w"), "method=clip", "loss.localization_weight=2.0")
    method = build_method(cfg, num_items=20, fingerprint="fp")
    assert method.needs_dense and [type(t) for t in method.terms] == [LocalizationTerm]
    v, a, ids = _batch(4, 16)
    dense = F.normalize(torch.randn(4, 16, 2, 3, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    loss, stats = method.loss(ModelOutputs(v, a, dense), ids)
    plain, _ = build_method({**cfg, "loss": {**cfg["loss"], "localization_weight": 0.0}}, 20, "fp").loss(
        ModelOutputs(v, a), ids)
    torch.testing.assert_close(loss, plain + 2.0 * stats["loss/localization"])
    with pytest.raises(ValueError, match="dense video map"):
        method.loss(ModelOutputs(v, a), ids)


# ------------------------------------------------------------------------------------ 2 processes
B, D = 8, 16


def _clip_rank(rank: int, world: int, cfg: dict):
    """One objective step on this rank's half of the batch (gradients averaged as the trainer does), then
    a short CLIP training run under DDP."""
    from avssl.utils import distributed as du

    v, a, ids = _batch(B, D)
    share = slice(rank * B // world, (rank + 1) * B // world)
    clip = CLIPObjective(D, temperature=0.07)
    vg, ag = v[share].clone().requires_grad_(), a[share].clone().requires_grad_()
    loss, _ = clip(vg, ag, ids[share])
    loss.backward()
    du.all_reduce_grads_mean_(clip.parameters())
    out = _train(copy.deepcopy(cfg), return_objects=True)
    params = torch.cat([p.detach().flatten() for p in out["model"].parameters()])
    return {"loss": float(loss.detach()), "grad": torch.cat([vg.grad, ag.grad], 1), "scale_grad": clip.log_scale.grad,
            "log_scale": out["criterion"].log_scale.detach().clone(), "params": params, "steps": out["global_step"]}


@pytest.mark.slow
@pytest.mark.distributed
def test_clip_two_gloo_processes_equal_one(tmp_path, tiny_world):
    """Gathered with gradient across ranks: the mean of the 2 ranks' losses is the whole batch's loss, the
    summed row gradients / 2 (what DDP averages) and the averaged logit-scale gradient are the whole
    batch's; in a DDP run both ranks end with the same weights and the same learned temperature."""
    from avssl.utils.distributed import run_distributed

    cfg = tiny_cfg(tmp_path / "ddp", tiny_world, "method=clip", "trainer.epochs=2", "data.batch_size=2")
    r0, r1 = run_distributed(_clip_rank, 2, cfg)
    v, a, ids = _batch(B, D)
    clip = CLIPObjective(D, temperature=0.07)
    vg, ag = v.clone().requires_grad_(), a.clone().requires_grad_()
    loss, _ = clip(vg, ag, ids)
    loss.backward()
    assert abs((r0["loss"] + r1["loss"]) / 2 - float(loss.detach())) < 1e-5
    torch.testing.assert_close(torch.cat([r0["grad"], r1["grad"]]) / 2, torch.cat([vg.grad, ag.grad], 1),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r0["scale_grad"], clip.log_scale.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r1["scale_grad"], clip.log_scale.grad, rtol=1e-5, atol=1e-6)
    assert r0["steps"] == r1["steps"] > 0
    assert torch.equal(r0["log_scale"], r1["log_scale"])
    assert not torch.isclose(r0["log_scale"], torch.log(torch.tensor(1 / 0.07)))
    torch.testing.assert_close(r0["params"], r1["params"])
