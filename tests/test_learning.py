"""Learning checks on the tiny generated world (real encoded clips, real decoding): a short run
with the CPU preset's objective (in-batch cross-modal InfoNCE, BatchNorm heads, average pooling)
must (1) spread the embeddings that a random init collapses (pairwise cosine ~1) and
(2) learn the audio-video correspondence of its training clips: a fresh audio embedding of clip i
retrieves clip i's video embedding far more often than chance (1 / #clips), and a random init does not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
# the objective and model choices of configs/experiment/avid_embedded_cpu.yaml, on the tiny world
PRESET = ["loss.loss=infonce", "loss.variant=cross", "loss.in_batch=true", "loss.momentum=0.0", "loss.temperature=0.1",
          "+model.head_norm=true", "+model.video_args.pool=avg", "+model.audio_args.pool=avg",
          "+transforms.video.scale=[0.4,1.0]", "+transforms.video.jitter=[0.2,0.2,0.2,0.0]", "data.decoded_cache=memory"]


def _cfg(run_dir, world_dir, *overrides) -> dict:
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("pretrain", overrides=["experiment=tiny", f"run_dir={run_dir}", f"data.world_dir={world_dir}",
                                             *PRESET, *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def _mean_cos(x: torch.Tensor) -> float:
    n = x.shape[0]
    return float(((x @ x.T).sum() - n) / (n * n - n))


@pytest.mark.slow
def test_short_run_learns_audio_video_correspondence(tmp_path):
    from avssl.engine import pretrain as P
    from avssl.synth.generate import generate_world

    world = tmp_path / "world"
    generate_world(world, preset="tiny", seed=0, workers=1, progress=False)
    cfg = _cfg(tmp_path / "run", world, "trainer.epochs=80", "eval.enabled=false", "data.batch_size=8")
    data = P.build_data(cfg, P.setup_distributed("cpu"))
    tf = P.build_batch_transforms(cfg, train=False)
    torch.manual_seed(cfg["seed"])
    v0, a0, ids0 = P.embed_dataset(P.build_model(cfg), tf, data.train_set, 8, 0, torch.device("cpu"))

    out = P.train(cfg, return_objects=True)
    v, a, ids = P.embed_dataset(out["model"], tf, data.train_set, 8, 0, torch.device("cpu"))
    chance = 1.0 / len(ids)
    hits0 = ((a0 @ v0.T).argmax(1) == torch.arange(len(ids0))).float().mean().item()
    hits = ((a @ v.T).argmax(1) == torch.arange(len(ids))).float().mean().item()
    losses = out["loss_history"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3, f"loss did not fall: {losses[:5]} -> {losses[-5:]}"
    assert _mean_cos(v) < 0.9, f"video embeddings collapsed: {_mean_cos(v):.4f}"
    assert hits >= 4 * chance, f"train audio->video R@1 {hits:.3f} vs chance {chance:.3f}"
    assert hits0 <= 2 * chance, f"random init already finds {hits0:.3f} (chance {chance:.3f}): the check is void"


@pytest.mark.slow
def test_cma_kill_and_resume_mid_epoch_matches_uninterrupted(tmp_path):
    """A CMA run stopped mid-epoch (after a positive-set refresh) and resumed ends bit-for-bit
    where an uninterrupted run does: weights, both banks and the positive sets."""
    import copy

    from avssl.engine.checkpoint import CheckpointManager
    from avssl.engine.pretrain import train
    from avssl.synth.generate import generate_world

    world = tmp_path / "world"
    generate_world(world, preset="tiny", seed=0, workers=1, progress=False)
    train(_cfg(tmp_path / "avid", world, "trainer.epochs=1", "eval.enabled=false"))
    steps = 7  # tiny world: 4 steps/epoch -> the stop (3) is mid-epoch 0, the end mid-epoch 1
    cma = ["stage=cma", f"cma.init_from={tmp_path / 'avid'}", "trainer.epochs=5", "eval.enabled=false"]
    train(_cfg(tmp_path / "straight", world, *cma, f"trainer.max_steps={steps}"))
    killed = _cfg(tmp_path / "killed", world, *cma, "trainer.max_steps=3")
    first = train(killed)
    assert first["stopped_early"] and first["global_step"] == 3
    resumed = copy.deepcopy(killed)
    resumed["trainer"]["max_steps"] = steps
    assert train(resumed)["global_step"] == steps

    a, b = CheckpointManager(tmp_path / "straight").load(), CheckpointManager(tmp_path / "killed").load()
    assert a["stage"] == b["stage"] == "cma" and a["progress"] == b["progress"]
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6, msg=key)
    for key in a["criterion"]:
        if isinstance(a["criterion"][key], torch.Tensor):
            torch.testing.assert_close(a["criterion"][key], b["criterion"][key], rtol=1e-5, atol=1e-6,
                                       equal_nan=True, msg=key)  # log Z is NaN under InfoNCE
