"""Learning-rate schedules in epochs or steps (avssl.engine.schedules), in pretraining and fine-tuning.

- the rule lr(u) = lr * w(u) * gamma ** #{m <= u} holds for both units, with and without warm-up;
- every shipped preset builds exactly the scheduler it built before (MultiStepLR over epochs, same numbers);
- a pretraining run with milestones in steps logs, step by step, the same rates as the epoch recipe it
  restates, and the rates the rule documents;
- fine-tuning with schedule_unit=step: per-step milestones and a frozen warm-up that ends mid-epoch.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avssl.engine.schedules import build_lr_scheduler
from tests.media import write_coded

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def _compose(name: str, overrides: list[str]) -> dict:
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        return OmegaConf.to_container(compose(name, overrides=overrides), resolve=True)


def _rates(opt, sched, n: int) -> list[float]:
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _documented(lr: float, milestones, gamma: float, warmup: int, u: int) -> float:
    w = (u + 1) / warmup if u < warmup else 1.0
    return lr * w * gamma ** sum(1 for m in milestones if m <= u)


@pytest.mark.parametrize("milestones,gamma,warmup", [([], 1.0, 0), ([3, 7], 0.3, 0), ([4, 6], 0.5, 3), ([0], 0.1, 5)])
def test_rule_of_the_module_docstring(milestones, gamma, warmup):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.2)
    got = _rates(opt, build_lr_scheduler(opt, milestones, gamma, warmup), 12)
    assert got == pytest.approx([_documented(0.2, milestones, gamma, warmup, u) for u in range(12)], rel=1e-9)


PRETRAIN_PRESETS = ["avid_kinetics", "avid_audioset", "cma_kinetics", "cma_audioset", "avid_embedded_cpu",
                    "cma_embedded_cpu", "tiny"]


@pytest.mark.parametrize("preset", PRETRAIN_PRESETS)
def test_pretraining_presets_keep_their_epoch_schedule(preset):
    from avssl.engine.pretrain import build_optimizer

    cfg = _compose("pretrain", [f"experiment={preset}"])
    ocfg = cfg["optim"]
    assert ocfg["schedule_unit"] == "epoch" and ocfg["warmup"] == 0
    p = [torch.nn.Parameter(torch.zeros(3))]
    opt, sched = build_optimizer(cfg, p)
    assert type(sched) is torch.optim.lr_scheduler.MultiStepLR  # checkpoints of earlier runs load
    # the construction used before schedule units existed, stepped side by side
    ref_opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))], lr=ocfg["lr"])
    ref = torch.optim.lr_scheduler.MultiStepLR(ref_opt, milestones=list(ocfg.get("milestones", [])),
                                               gamma=ocfg.get("gamma", 1.0))
    epochs = cfg["trainer"]["epochs"] + 2
    assert _rates(opt, sched, epochs) == _rates(ref_opt, ref, epochs)


@pytest.mark.parametrize("preset", ["ucf101", "hmdb51", "kinetics", "embedded_cpu", "tiny"])
def test_finetune_presets_keep_their_epoch_schedule(preset):
    cfg = _compose("finetune", [f"finetune={preset}"])
    ocfg = cfg["optim"]
    assert ocfg["schedule_unit"] == "epoch" and ocfg["warmup_steps"] is None
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))], lr=ocfg["lr"])
    sched = build_lr_scheduler(opt, list(ocfg["milestones"]), float(ocfg["gamma"]))
    ref_opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))], lr=ocfg["lr"])
    ref = torch.optim.lr_scheduler.MultiStepLR(ref_opt, list(ocfg["milestones"]), float(ocfg["gamma"]))
    assert type(sched) is type(ref)
    assert _rates(opt, sched, ocfg["epochs"] + 1) == _rates(ref_opt, ref, ocfg["epochs"] + 1)


def test_unknown_schedule_unit_fails_at_start():
    from avssl.engine.pretrain import build_optimizer

    from hydra.errors import ConfigCompositionException

    # the typed schema (avssl.utils.schema) refuses it at compose time, naming the valid units
    with pytest.raises(ConfigCompositionException) as info:
        _compose("pretrain", ["experiment=tiny", "optim.schedule_unit=steps"])
    assert "expected one of [epoch, step]" in str(info.value.__cause__)
    # a plain dict from Python (no schema) is still checked when the optimizer is built
    cfg = _compose("pretrain", ["experiment=tiny"])
    cfg["optim"]["schedule_unit"] = "steps"
    with pytest.raises(ValueError, match="schedule_unit"):
        build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])


# ------------------------------------------------------------------------------ pretraining runs


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    from avssl.synth.generate import generate_world

    root = tmp_path_factory.mktemp("schedworld") / "tiny"
    generate_world(root, preset="tiny", seed=0, workers=1, progress=False)
    return root


_LOG = re.compile(r"epoch (\d+) step (\d+) \| loss \S+ \| lr (\S+)")


def _logged_rates(run_dir: Path) -> dict[int, float]:
    return {int(m.group(2)): float(m.group(3)) for m in _LOG.finditer((run_dir / "train.log").read_text())}


def test_step_milestones_restate_the_epoch_recipe(tmp_path, world_dir):
    from avssl.engine.pretrain import train

    base = ["experiment=tiny", f"data.world_dir={world_dir}", "eval.enabled=false", "trainer.epochs=3",
            "optim.lr=0.001", "optim.gamma=0.5"]
    by_epoch = train(_compose("pretrain", base + [f"run_dir={tmp_path / 'epoch'}", "optim.milestones=[1,2]"]))
    spe = by_epoch["global_step"] // 3
    assert spe >= 2
    by_step = train(_compose("pretrain", base + [f"run_dir={tmp_path / 'step'}", "optim.schedule_unit=step",
                                                 f"optim.milestones=[{spe},{2 * spe}]"]))
    a, b = _logged_rates(tmp_path / "epoch"), _logged_rates(tmp_path / "step")
    assert sorted(a) == sorted(b) == list(range(1, 3 * spe + 1))
    assert a == b
    # the documented rate of update s (1-based): u = s - 1 updates done before it
    for s, lr in b.items():
        assert lr == pytest.approx(_documented(0.001, [spe, 2 * spe], 0.5, 0, s - 1), rel=1e-2)
    assert by_step["lr"] == pytest.approx(0.001 * 0.25)


def test_step_budget_run_ends_with_its_evaluation(tmp_path, world_dir):
    """trainer.max_steps stops mid-epoch: final checkpoint at that step, held-out evaluation in the
    summary; the step-unit warm-up and milestone give the documented rate at each logged step."""
    from avssl.utils.checkpoint import CheckpointManager
    from avssl.engine.pretrain import train

    out = train(_compose("pretrain", ["experiment=tiny", f"data.world_dir={world_dir}", f"run_dir={tmp_path / 'r'}",
                                      "trainer.epochs=50", "trainer.max_steps=5", "optim.schedule_unit=step",
                                      "optim.warmup=2", "optim.milestones=[3]", "optim.gamma=0.1", "optim.lr=0.01"]))
    assert out["stopped_early"] and out["global_step"] == 5
    assert out["retrieval"] is not None and out["retrieval"]["global_step"] == 5
    assert 0.0 <= out["retrieval"]["a2v_R@1"] <= 1.0 and out["retrieval"]["num_clips"] > 0
    assert CheckpointManager(tmp_path / "r").load()["progress"]["global_step"] == 5
    rates = _logged_rates(tmp_path / "r")
    assert rates == pytest.approx({1: 0.005, 2: 0.01, 3: 0.01, 4: 0.001, 5: 0.001}, rel=1e-2)


# ------------------------------------------------------------------------------ fine-tuning


def test_finetune_step_schedule_and_step_warmup(tmp_path):
    """Fine-tuning on a Kinetics-style list (two classes, real coded clips): with schedule_unit=step the
    milestone counts updates and a 1-step frozen warm-up ends inside the first epoch."""
    from avssl.downstream.finetune import finetune
    from avssl.utils.checkpoint import CheckpointManager
    from avssl.models import build_video_encoder

    root = tmp_path / "k"
    rows = ["label,youtube_id,time_start,time_end,split"]
    for split, n in (("train", 8), ("val", 2)):
        for i in range(n):
            label = "ab"[i % 2]
            yid = f"{split}{i:07d}"
            rows.append(f"{label},{yid},0,1,{split}")
            p = root / split / label / f"{yid}_000000_000001.mp4"
            p.parent.mkdir(parents=True, exist_ok=True)
            write_coded(p, seconds=1.0, fps=8.0, size=(32, 48), audio_rate=16000)
    header, body = rows[0], rows[1:]
    (root / "train.csv").write_text("\n".join([header] + [r for r in body if r.endswith(",train")]) + "\n")
    (root / "validate.csv").write_text("\n".join([header] + [r for r in body if r.endswith(",val")]) + "\n")
    cfg = _compose("finetune", ["finetune=tiny", f"run_dir={tmp_path / 'ft'}", "dataset.format=kinetics",
                                f"dataset.root={root}", "dataset.embedded=null", "dataset.val_fraction=0",
                                "dataset.batch_size=2", "optim.epochs=2", "optim.schedule_unit=step",
                                "optim.milestones=[5]", "optim.gamma=0.1", "optim.warmup_steps=1",
                                "trainer.stop_after_epochs=1"])
    torch.manual_seed(cfg["seed"])
    encoder = build_video_encoder(cfg["model"]["video"], **cfg["model"]["video_args"])
    init = {n: p.detach().clone() for n, p in encoder.named_parameters()}  # weights, not BatchNorm statistics
    out = finetune(cfg)["stopped"]
    (rec,) = out["history"]
    assert rec["frozen_encoder"]  # the epoch started frozen ...
    state = CheckpointManager(tmp_path / "ft" / "fold1").load()
    enc = {k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")}
    changed = [k for k in init if not torch.equal(init[k], enc[k])]
    assert changed  # ... and trained after its first update (4 updates per epoch)
    # 8 videos / batch 2 = 4 updates done: milestone 5 not reached; after the 5th update lr x 0.1
    assert rec["lr"] == pytest.approx(cfg["optim"]["lr"])
    cfg["trainer"]["stop_after_epochs"] = None
    done = finetune(cfg)["per_fold"][0]
    assert done["history"][1]["lr"] == pytest.approx(cfg["optim"]["lr"] * 0.1)
