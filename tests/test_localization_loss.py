"""The max-over-positions audio-video InfoNCE (avssl/losses/localization.py) against loops."""
import pytest
import torch
import torch.nn.functional as F

from avssl.losses import max_position_infonce, max_position_scores


def _data(b=6, d=8, t=2, h=3, w=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = F.normalize(torch.randn(b, d, t, h, w, generator=g), dim=1)
    a = F.normalize(torch.randn(b, d, generator=g), dim=1)
    return v, a


def test_scores_are_time_mean_of_the_best_position():
    v, a = _data()
    s = max_position_scores(v, a)
    for i in range(v.shape[0]):
        for j in range(a.shape[0]):
            per_t = [max(float(v[i, :, t].reshape(v.shape[1], -1)[:, p] @ a[j]) for p in range(9)) for t in range(2)]
            assert abs(float(s[i, j]) - sum(per_t) / 2) < 1e-6
    # 4-d maps (one frame) are accepted; shape mismatches are refused
    assert torch.allclose(max_position_scores(v[:, :, 0], a), max_position_scores(v[:, :, :1], a))
    with pytest.raises(ValueError, match="same D"):
        max_position_scores(v, a[:, :4])


def test_loss_equals_explicit_formula_and_masks_same_video():
    v, a = _data()
    ids = torch.tensor([3, 8, 3, 5, 9, 1])  # rows 0 and 2: two clips of video 3, never each other's negative
    t = 0.1
    loss = max_position_infonce(v, a, ids, temperature=t)
    s = max_position_scores(v, a) / t
    per = []
    for scores in (s, s.t()):  # v2a rows, a2v rows
        for i in range(len(ids)):
            keep = [j for j in range(len(ids)) if j == i or ids[j] != ids[i]]
            per.append(torch.logsumexp(scores[i, keep], 0) - scores[i, i])
    expected = 0.5 * (torch.stack(per[:6]).mean() + torch.stack(per[6:]).mean())
    assert torch.allclose(loss, expected, atol=1e-5)
    # without the mask the result differs: the duplicate would be a negative
    assert abs(float(max_position_infonce(v, a, torch.arange(6), t)) - float(loss)) > 1e-4
    with pytest.raises(ValueError, match="temperature"):
        max_position_infonce(v, a, ids, temperature=0.0)


def test_gradient_reaches_only_the_winning_positions():
    """The point of the term: only the best-matching position of each frame (per audio) gets a
    gradient, so training moves single positions towards the sound, not the whole map."""
    v, a = _data(b=1)
    v = v.clone().requires_grad_()
    # one clip, one audio: the loss is constant (log 1); use the raw score instead
    max_position_scores(v, a).sum().backward()
    nz = (v.grad.abs().sum(1) > 0)  # [1, T, H, W]
    assert nz.flatten(2).sum(2).tolist() == [[1, 1]]
    best = torch.einsum("idthw,d->ithw", v.detach(), a[0]).flatten(2).argmax(2)
    assert torch.equal(nz.flatten(2).float().argmax(2), best)


def test_loss_falls_when_one_position_holds_the_sound():
    """Planting each audio embedding at one position of its own clip lowers the loss far more
    than planting it at a position of another clip."""
    v, a = _data(b=8, seed=3)
    ids = torch.arange(8)
    own, other = v.clone(), v.clone()
    for i in range(8):
        own[i, :, :, 1, 2] = a[i, :, None]
        other[(i + 1) % 8, :, :, 0, 0] = a[i, :, None]
    base = float(max_position_infonce(v, a, ids))
    assert float(max_position_infonce(own, a, ids)) < base - 1.0
    assert float(max_position_infonce(other, a, ids)) > base
