"""The batched (vectorised) GPU paths and the CUDA/AMP training path.

CPU part (always runs): the batched colour-jitter ops equal torchvision's per-image ops;
the sync-free bank update equals the unique-id update.
CUDA part (skipped without a GPU; run on the lent H100): criterion steps on CUDA equal
the same steps on CPU and make no host<->device sync after the first (partition) step;
batch transforms on CUDA match CPU; a short real AVID pretraining run on the tiny
generated world with bf16 autocast + channels-last through ``avssl.engine.pretrain.train``
gives finite losses and writes a loadable checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from avssl.methods import AVIDCriterion, CMACriterion
from avssl.memory.bank import MemoryBank, _segment_means, average_duplicates
from avssl.transforms.audio import LogSpectrogram
from avssl.transforms.video import (VideoAugment, adjust_brightness, adjust_contrast, adjust_hue,
                                    adjust_saturation)

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]
CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


@pytest.mark.parametrize("device", DEVICES)
def test_batched_colour_ops_equal_torchvision_per_clip(device):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 3, 12, 10, generator=g).to(device)  # [B, T, 3, h, w]
    x[0, :, :, :2] = 0.5  # grey pixels (zero saturation, hue undefined)
    factors = {adjust_brightness: (torch.rand(5, generator=g) * 0.8 + 0.6, TF.adjust_brightness),
               adjust_contrast: (torch.rand(5, generator=g) * 0.8 + 0.6, TF.adjust_contrast),
               adjust_saturation: (torch.rand(5, generator=g) * 0.8 + 0.6, TF.adjust_saturation),
               adjust_hue: (torch.rand(5, generator=g) * 0.8 - 0.4, TF.adjust_hue)}
    for ours, (f, theirs) in factors.items():
        got = ours(x, f.to(device))
        want = torch.stack([theirs(x[i], float(f[i])) for i in range(5)])
        torch.testing.assert_close(got, want, atol=2e-6, rtol=0, msg=ours.__name__)


def test_sync_free_bank_update_equals_unique_update():
    g = torch.Generator().manual_seed(3)
    ids = torch.tensor([7, 2, 7, 9, 2, 2, 0, 7])
    vals = torch.randn(8, 6, generator=g)
    rows, means = _segment_means(ids, vals)
    uniq, umeans = average_duplicates(ids, vals)
    assert torch.equal(rows, ids.sort(stable=True).values)
    for u, m in zip(uniq.tolist(), umeans):
        assert torch.equal(means[rows == u], m.expand(int((rows == u).sum()), 6))
    bank = MemoryBank(12, 6, seed=4)
    before = bank.bank.clone()
    bank.update(ids, vals)
    # ids' rows averaged after normalising each new row, as the bank does
    unit = torch.nn.functional.normalize(vals, dim=1)
    _, unit_means = average_duplicates(ids, unit)
    want = torch.nn.functional.normalize(0.5 * before[uniq] + 0.5 * unit_means, dim=1)
    torch.testing.assert_close(bank.bank[uniq], want)
    untouched = torch.ones(12, dtype=torch.bool)
    untouched[uniq] = False
    assert torch.equal(bank.bank[untouched], before[untouched])


# ---------------------------------------------------------------------------------- CUDA


def _criterion_pair(cls, **kw):
    cpu = cls(500, 16, num_negatives=64, **kw)
    gpu = cls(500, 16, num_negatives=64, **kw).cuda()
    return cpu, gpu


@needs_cuda
@pytest.mark.parametrize("cls", [AVIDCriterion, CMACriterion])
def test_criterion_on_cuda_equals_cpu_and_does_not_sync(cls):
    cpu, gpu = _criterion_pair(cls)
    if cls is CMACriterion:
        pos = (torch.arange(500).unsqueeze(1) + 1 + torch.arange(4)) % 500
        cpu.set_positives(pos)
        gpu.set_positives(pos.cuda())
    g = torch.Generator().manual_seed(0)
    gen_cuda = torch.Generator(device="cuda").manual_seed(0)
    for step in range(4):
        v = torch.randn(12, 16, generator=g, requires_grad=True)
        a = torch.randn(12, 16, generator=g, requires_grad=True)
        idx = torch.randint(0, 500, (12,), generator=g)
        idx[1] = idx[0]  # a duplicated id: averaged, deterministic
        exclude = cpu.positives[idx] if cls is CMACriterion else None
        negs = cpu.video_bank.sample_negatives(idx, 64, generator=g, exclude=exclude)
        loss_c, _ = cpu(v, a, idx, negatives=negs)
        loss_c.backward()
        vg, ag = v.detach().cuda().requires_grad_(), a.detach().cuda().requires_grad_()
        loss_g, _ = gpu(vg, ag, idx.cuda(), negatives=negs.cuda())
        loss_g.backward()
        torch.testing.assert_close(loss_g.cpu(), loss_c, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(vg.grad.cpu(), v.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gpu.video_bank.bank.cpu(), cpu.video_bank.bank, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gpu.audio_bank.bank.cpu(), cpu.audio_bank.bank, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gpu.log_partition.cpu(), cpu.log_partition, rtol=1e-5, atol=1e-6)
    # the training-step path (negatives drawn on the GPU) must not wait for the device
    v, a = torch.randn(12, 16, device="cuda", requires_grad=True), torch.randn(12, 16, device="cuda")
    idx = torch.randint(0, 500, (12,), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss, _ = gpu(v, a, idx, generator=gen_cuda)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss)


@needs_cuda
def test_negatives_on_cuda_exclude_self_and_are_uniform():
    bank = MemoryBank(50, 4).cuda()
    idx = torch.tensor([0, 13, 49], device="cuda")
    neg = bank.sample_negatives(idx, 20000, generator=torch.Generator(device="cuda").manual_seed(1))
    assert neg.is_cuda and not (neg == idx[:, None]).any()
    counts = torch.stack([torch.bincount(neg[r], minlength=50) for r in range(3)]).double().cpu()
    for r, i in enumerate(idx.tolist()):
        allowed = torch.ones(50, dtype=torch.bool)
        allowed[i] = False
        assert counts[r, i] == 0
        expected = 20000 / 49
        chi2 = float(((counts[r, allowed] - expected) ** 2 / expected).sum())
        assert chi2 < 110, chi2  # 48 dof: far beyond the 0.9999 quantile


@needs_cuda
def test_batch_transforms_on_cuda_match_cpu():
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (6, 4, 40, 48, 3), dtype=torch.uint8, generator=g)
    wave = torch.rand(6, 1, 24000, generator=g) * 2 - 1
    aug = VideoAugment(32)
    out_cpu = aug(video, generator=torch.Generator().manual_seed(5))
    out_gpu = aug.cuda()(video.cuda(), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, atol=1e-4, rtol=0)
    exact = LogSpectrogram("avid", compute_dtype=torch.float64)(wave)
    fast = LogSpectrogram("avid", compute_dtype=torch.float32).cuda()(wave.cuda())
    # z-normed dB: 0.05 dB float32 error is < 0.01 in normalised units for the shipped stds
    assert (fast.cpu() - exact).abs().max() < 0.02


@needs_cuda
def test_short_amp_pretraining_run_on_cuda(tmp_path):
    pytest.importorskip("av")
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from avssl.utils.checkpoint import CheckpointManager
    from avssl.engine.pretrain import train
    from avssl.synth.generate import generate_world

    world = tmp_path / "world"
    generate_world(world, preset="tiny", seed=0, workers=2, progress=False)
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("pretrain", overrides=[
            "experiment=tiny", f"run_dir={tmp_path / 'run'}", f"data.world_dir={world}",
            "trainer.device=cuda", "trainer.amp=bf16", "trainer.channels_last=true",
            "trainer.epochs=3", "trainer.sync_timing=true", "eval.enabled=false"])
    out = train(OmegaConf.to_container(cfg, resolve=True))
    losses = out["loss_history"]
    assert len(losses) >= 6 and all(torch.isfinite(torch.tensor(losses)))
    state = CheckpointManager(tmp_path / "run").load()
    bank = state["criterion"]["video_bank.bank"]
    assert torch.isfinite(bank).all() and torch.allclose(bank.norm(dim=1), torch.ones(bank.shape[0]), atol=1e-4)
    assert torch.isfinite(state["criterion"]["log_partition"])
