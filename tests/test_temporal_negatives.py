"""Temporal hard negatives (loss.temporal_negatives): the clip's own audio shifted in time is one more
negative of its video, counted w(step) times. Formulas checked against explicit sums (InfoNCE in-batch
and bank, NCE), the schedule, weight 0 == no negative, the same numbers through AVID and CLIP, and the
trainer: before start_step a run is the plain run step for step; after it the loss changes; the held-out
evaluation reports the instance and synchronization figures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from avssl.losses import append_weighted_negatives, info_nce_loss, nce_extra_negatives_loss, nce_loss
from avssl.methods import AVIDCriterion, ModelOutputs, build_method
from avssl.methods.clip import CLIPObjective
from avssl.methods.terms import TemporalNegatives
from avssl.utils.errors import UserError

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def tiny_cfg(run_dir: Path, world_dir: Path, *overrides: str) -> dict:
    from omegaconf import OmegaConf

    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("pretrain", overrides=["experiment=tiny", f"run_dir={run_dir}", f"data.world_dir={world_dir}",
                                             *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def _batch(n=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g), torch.randn(n, d, generator=g), torch.randn(n, d, generator=g),
            torch.tensor([3, 8, 100, 8, 7, 199])[:n])


def test_weighted_negatives_are_w_times_exp_in_the_denominator():
    g = torch.Generator().manual_seed(0)
    pos, neg, hard = torch.randn(5, generator=g), torch.randn(5, 7, generator=g), torch.randn(5, generator=g)
    w = torch.tensor([0.0, 0.5, 1.0, 2.0, 1.0])
    got = info_nce_loss(pos, append_weighted_negatives(neg, hard, w))
    want = (-pos + torch.log(pos.exp() + neg.exp().sum(1) + w * hard.exp())).mean()
    torch.testing.assert_close(got, want)
    # weight 0 everywhere = no extra negative; weight 1 = one more ordinary negative
    torch.testing.assert_close(info_nce_loss(pos, append_weighted_negatives(neg, hard, torch.zeros(5))),
                               info_nce_loss(pos, neg))
    torch.testing.assert_close(info_nce_loss(pos, append_weighted_negatives(neg, hard, torch.ones(5))),
                               info_nce_loss(pos, torch.cat([neg, hard[:, None]], 1)))
    # NCE: the extra negatives' term on the bank noise model (K = 7 draws of N = 50 slots)
    logz = torch.tensor(1.3)
    extra = nce_extra_negatives_loss(hard, w, logz, 50, 7)
    torch.testing.assert_close(extra, (w * F.softplus(hard - logz - math.log(7 / 50))).mean())
    with pytest.raises(ValueError):
        append_weighted_negatives(neg, hard, -w)


def test_schedule_and_config():
    tn = TemporalNegatives(weight=2.0, start_step=10, ramp_steps=4)
    assert [tn.weight_at(s) for s in (1, 9, 10, 11, 12, 13, 14, 100)] == [0, 0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert TemporalNegatives(weight=1.0).weight_at(1) == 1.0
    assert TemporalNegatives.from_config({"loss": {}}) is None
    assert TemporalNegatives.from_config({"loss": {"temporal_negatives": {"weight": 0}}}) is None
    got = TemporalNegatives.from_config({"loss": {"temporal_negatives": {"weight": 1, "min_shift": 0.3, "start_step": 5}}})
    assert got.shifts == (0.3, 1.0) and got.start_step == 5
    with pytest.raises(UserError, match="temporal_negatives.shfit"):
        TemporalNegatives.from_config({"loss": {"temporal_negatives": {"weight": 1, "shfit": 1}}})
    with pytest.raises(UserError, match="min_shift"):
        TemporalNegatives.from_config({"loss": {"temporal_negatives": {"weight": 1, "min_shift": 2, "max_shift": 1}}})


@pytest.mark.parametrize("loss,in_batch", [("infonce", True), ("infonce", False), ("nce", False)])
def test_avid_v2a_gets_the_shifted_audio_as_negative(loss, in_batch):
    v, a, h, ids = _batch()
    w = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 1.0])
    neg = torch.randint(0, 200, (6, 5), generator=torch.Generator().manual_seed(2))
    neg = torch.where(neg == ids[:, None], (neg + 1) % 200, neg)
    kw = dict(num_items=200, dim=8, num_negatives=5, temperature=0.1, momentum=0.0, loss=loss, in_batch=in_batch)
    plain, hard, zero = AVIDCriterion(**kw), AVIDCriterion(**kw), AVIDCriterion(**kw)
    hard.load_state_dict(plain.state_dict())
    zero.load_state_dict(plain.state_dict())
    lp, sp = plain(v, a, ids, negatives=neg)
    lh, sh = hard(v, a, ids, negatives=neg, hard_audio=h, hard_weights=w)
    vn, hn = F.normalize(v, dim=1), F.normalize(h, dim=1)
    s_hard = (vn * hn).sum(1) / 0.1
    if loss == "infonce":
        # only v2a changes: its denominator gains w_i exp(<v_i, a'_i> / T)
        assert sh["loss/v2a"] > sp["loss/v2a"]  # one more term in the denominators
        torch.testing.assert_close(sh["loss/a2v"], sp["loss/a2v"])
        assert torch.isfinite(lh) and lh > lp
    else:
        extra = nce_extra_negatives_loss(s_hard, w, plain.log_partition, 200, 5)
        torch.testing.assert_close(sh["loss/v2a"], sp["loss/v2a"] + extra)
        torch.testing.assert_close(sh["loss/a2v"], sp["loss/a2v"])
    assert sh["hard/v2a_weight"] == 1.0
    torch.testing.assert_close(sh["hard/v2a_cos"], ((vn * hn).sum(1)[w > 0]).mean())
    # weights 0: exactly the plain loss
    lz, _ = zero(v, a, ids, negatives=neg, hard_audio=h, hard_weights=torch.zeros(6))
    torch.testing.assert_close(lz, lp)


def test_in_batch_formula_explicitly_and_clip_agrees():
    v, a, h, ids = _batch()
    ids = torch.arange(6)  # one clip per video: no masking to reproduce
    w = torch.tensor([1.0, 0.0, 1.0, 2.0, 1.0, 1.0])
    avid = AVIDCriterion(num_items=10, dim=8, num_negatives=5, temperature=0.1, momentum=0.0, loss="infonce",
                         in_batch=True)
    _, stats = avid(v, a, ids, hard_audio=h, hard_weights=w)
    vn, an, hn = (F.normalize(x, dim=1) for x in (v, a, h))
    logits = vn @ an.t() / 0.1
    denom = logits.exp().sum(1) + w * ((vn * hn).sum(1) / 0.1).exp()
    want = (torch.log(denom) - logits.diag()).mean()
    torch.testing.assert_close(stats["loss/v2a"], want)
    clip = CLIPObjective(8, temperature=0.1, learn_temperature=False)
    _, cstats = clip(v, a, ids, hard_audio=h, hard_weights=w)
    torch.testing.assert_close(cstats["loss/v2a"], want)


def test_method_follows_the_schedule():
    cfg = tiny_cfg(Path("runs/x"), Path("w"), "loss.loss=infonce", "loss.in_batch=true",
                   "loss.temporal_negatives={weight: 1.0, start_step: 3, ramp_steps: 2}")
    method = build_method(cfg, num_items=200, fingerprint="fp")
    v, a, h, ids = _batch(6, 16)
    out = ModelOutputs(v, a, audio_shifted=h, shift=torch.tensor([0.5, -0.7, 0.0, 1.0, 0.6, -0.5]))
    method.on_step_start(2)
    assert not method.wants_shifted_audio() and method.hard_weights(out) is None
    method.on_step_start(3)
    assert method.wants_shifted_audio()
    assert method.hard_weights(out).tolist() == [0.5, 0.5, 0.0, 0.5, 0.5, 0.5]  # no shift fitted: no negative
    method.on_step_start(9)
    assert method.hard_weights(out).tolist() == [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    for name in ("clip", "cma"):
        other = build_method({**cfg, "method": name}, num_items=200, fingerprint="fp")
        assert other.temporal == method.temporal


def test_trainer_brings_them_in_at_start_step_and_reports_the_new_figures(tmp_path, tiny_world):
    from avssl.engine.pretrain import train

    base = ["trainer.epochs=2", "loss.loss=infonce", "loss.in_batch=true", "loss.num_negatives=8"]
    plain = train(tiny_cfg(tmp_path / "plain", tiny_world, *base))
    late = train(tiny_cfg(tmp_path / "late", tiny_world, *base,
                          "loss.temporal_negatives={weight: 1.0, min_shift: 0.3, max_shift: 0.8, start_step: 5}"))
    n = len(plain["loss_history"])
    assert n == len(late["loss_history"]) >= 6
    # steps before start_step: the plain run, number for number (the shifted reads draw from their own stream)
    assert late["loss_history"][:4] == plain["loss_history"][:4]
    assert late["loss_history"][4] != plain["loss_history"][4]
    assert all(math.isfinite(x) for x in late["loss_history"])
    r = late["retrieval"]
    for key in ("a2v_within_R@1", "within_chance_R@1", "a2v_class_top1", "chance_class_top1",
                "a2v_within_median_rank", "within_chance_median_rank", "sync@1s_acc", "sync@1s_auc",
                "sync@1s_acc_sounding"):
        assert key in r, key
    assert 0 <= r["sync@1s_acc"] <= 1 and r["sync@1s_trials"] == 2 * r["num_clips"]
    assert 0 < r["within_chance_R@1"] <= 1 and r["chance_class_top1"] < 1
    log = (tmp_path / "late" / "train.log").read_text()
    assert "within class R@1" in log and "sync test" in log
