import math

import pytest
import torch
import torch.nn.functional as F

from avssl.losses import estimate_partition, info_nce_loss, nce_loss
from avssl.methods import AVIDCriterion
from avssl.memory import MemoryBankMismatchError


def test_nce_loss_hand_checked():
    # B=2, K=2, N=10, Z=5: Pn = 1/10, K*Pn = 0.2, p = exp(s)/5.
    pos = torch.tensor([1.0, -0.5])
    neg = torch.tensor([[0.2, 0.0], [2.0, -1.0]])
    z, n, k = 5.0, 10, 2
    total = 0.0
    for b in range(2):
        p = math.exp(pos[b]) / z
        h_pos = p / (p + k / n)
        term = -math.log(h_pos)
        for j in range(k):
            q = math.exp(neg[b, j]) / z
            term += -math.log((k / n) / (q + k / n))
        total += term
    expected = total / 2
    got = nce_loss(pos, neg, math.log(z), n)
    assert abs(float(got) - expected) < 1e-5


def test_nce_loss_multi_positive_is_mean_over_positives():
    pos = torch.tensor([[0.3, 1.2, -0.4]])
    neg = torch.tensor([[0.1, 0.5]])
    z, n, k = 2.0, 7, 2
    pos_part = sum(-math.log((math.exp(s) / z) / (math.exp(s) / z + k / n)) for s in pos[0].tolist()) / 3
    neg_part = sum(-math.log((k / n) / (math.exp(s) / z + k / n)) for s in neg[0].tolist())
    assert abs(float(nce_loss(pos, neg, math.log(z), n)) - (pos_part + neg_part)) < 1e-5


def test_nce_matches_reference_ratio_form_with_avg_exp():
    # The reference writes P = e^s / (e^s + K * mean(e^neg)); with Z = N * mean(e^neg) it is ours.
    torch.manual_seed(0)
    pos, neg, n = torch.randn(4), torch.randn(4, 8), 50
    avg = torch.exp(neg).mean()
    ref_pos = torch.exp(pos) / (torch.exp(pos) + 8 * avg)
    ref_neg = 8 * avg / (torch.exp(neg) + 8 * avg)
    ref = (-torch.log(ref_pos) - torch.log(ref_neg).sum(1)).mean()
    log_z = estimate_partition(neg, n)
    assert abs(float(log_z) - math.log(n * float(avg))) < 1e-6
    assert torch.allclose(nce_loss(pos, neg, log_z, n), ref, atol=1e-5)


def test_nce_is_stable_for_large_logits():
    pos = torch.tensor([200.0])
    neg = torch.tensor([[-200.0, 150.0]])
    out = nce_loss(pos, neg, 0.0, 100)
    assert torch.isfinite(out)


def test_info_nce_hand_checked():
    pos = torch.tensor([0.5, 0.1])
    neg = torch.tensor([[0.2, -0.3, 0.0], [0.4, 0.4, -0.2]])
    t = 0.1
    expected = 0.0
    for b in range(2):
        num = math.exp(pos[b] / t)
        den = num + sum(math.exp(x / t) for x in neg[b].tolist())
        expected += -math.log(num / den)
    expected /= 2
    assert abs(float(info_nce_loss(pos, neg, t)) - expected) < 1e-5
    # agrees with cross-entropy on [pos | neg] logits
    logits = torch.cat([pos.unsqueeze(1), neg], 1) / t
    ce = F.cross_entropy(logits, torch.zeros(2, dtype=torch.long))
    assert torch.allclose(info_nce_loss(pos, neg, t), ce, atol=1e-6)


def test_loss_inputs_validated():
    with pytest.raises(ValueError):
        nce_loss(torch.zeros(3), torch.zeros(2, 4), 0.0, 10)
    with pytest.raises(ValueError):
        info_nce_loss(torch.zeros(2), torch.zeros(2, 4), temperature=0.0)


def _batch(b=6, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, d, generator=g, requires_grad=True),
            torch.randn(b, d, generator=g, requires_grad=True))


def test_avid_cross_loss_equals_explicit_formula_and_grads_flow():
    crit = AVIDCriterion(200, dim=16, num_negatives=32)
    vbank0, abank0 = crit.video_bank.bank.clone(), crit.audio_bank.bank.clone()
    v, a = _batch()
    idx = torch.tensor([3, 8, 100, 42, 7, 199])
    negs = crit.video_bank.sample_negatives(idx, 32, generator=torch.Generator().manual_seed(1))
    loss, stats = crit(v, a, idx, negatives=negs)
    loss.backward()
    assert v.grad is not None and v.grad.norm() > 0 and a.grad.norm() > 0
    # explicit recomputation from the banks before the update
    vn, an = F.normalize(v.detach(), dim=1), F.normalize(a.detach(), dim=1)
    t = 0.07
    v2a_pos = (vn * abank0[idx]).sum(1) / t
    v2a_neg = torch.einsum("bd,bkd->bk", vn, abank0[negs]) / t
    a2v_pos = (an * vbank0[idx]).sum(1) / t
    a2v_neg = torch.einsum("bd,bkd->bk", an, vbank0[negs]) / t
    z = torch.cat([torch.exp(v2a_neg).reshape(-1), torch.exp(a2v_neg).reshape(-1)]).double().mean() * 200
    assert abs(crit.partition - float(z)) / float(z) < 1e-5
    log_z = math.log(float(z))
    expected = (nce_loss(v2a_pos, v2a_neg, log_z, 200) + nce_loss(a2v_pos, a2v_neg, log_z, 200)) / 2
    assert torch.allclose(loss.detach(), expected, atol=1e-4)
    assert set(stats) >= {"loss/v2a", "loss/a2v", "sim/v2a_pos", "sim/v2a_neg", "partition"}
    # banks were updated after the loss with the (normalised) embeddings
    exp_v = F.normalize(0.5 * vbank0[idx] + 0.5 * vn, dim=1)
    assert torch.allclose(crit.video_bank.bank[idx], exp_v, atol=1e-6)
    assert not crit.video_bank.bank.requires_grad


def test_partition_frozen_after_first_batch_and_saved():
    crit = AVIDCriterion(100, dim=8, num_negatives=10)
    assert crit.partition is None
    v, a = _batch(4, 8)
    crit(v, a, torch.arange(4))
    z1 = crit.partition
    v2, a2 = _batch(4, 8, seed=5)
    crit(v2 * 3, a2, torch.arange(4, 8))
    assert crit.partition == z1
    state = crit.state_dict()
    other = AVIDCriterion(100, dim=8, num_negatives=10)
    other.load_state_dict(state)
    assert other.partition == pytest.approx(z1)


@pytest.mark.parametrize("variant,terms", [("cross", {"v2a", "a2v"}), ("self", {"v2v", "a2a"}),
                                           ("joint", {"v2a", "a2v", "v2v", "a2a"})])
def test_variants_select_terms(variant, terms):
    crit = AVIDCriterion(50, dim=8, num_negatives=5, variant=variant)
    v, a = _batch(3, 8)
    loss, stats = crit(v, a, torch.tensor([0, 1, 2]), generator=torch.Generator().manual_seed(0))
    got = {k.split("/")[1] for k in stats if k.startswith("loss/") and k.split("/")[1] in
           {"v2a", "a2v", "v2v", "a2a"}}
    assert got == terms
    if variant == "joint":
        expected = 0.5 * stats["loss/cross"] + 0.5 * stats["loss/self"]
        assert torch.allclose(loss.detach(), expected)


def test_infonce_variant_has_no_partition():
    crit = AVIDCriterion(50, dim=8, num_negatives=5, loss="infonce")
    v, a = _batch(3, 8)
    loss, stats = crit(v, a, torch.tensor([0, 1, 2]))
    assert torch.isfinite(loss) and "partition" not in stats and crit.partition is None


def test_avid_state_fingerprint_mismatch_raises():
    crit = AVIDCriterion(30, dim=8, num_negatives=5, index_fingerprint="idx-A")
    other = AVIDCriterion(30, dim=8, num_negatives=5, index_fingerprint="idx-B")
    with pytest.raises(MemoryBankMismatchError):
        other.load_state_dict(crit.state_dict())


def test_bad_config_raises():
    with pytest.raises(ValueError):
        AVIDCriterion(10, variant="both")
    with pytest.raises(ValueError):
        AVIDCriterion(10, num_negatives=10)


def test_in_batch_cross_terms_equal_explicit_formula_and_mask_same_video():
    """in_batch=True: live positive v_i.a_i, the batch's rows of other videos as negatives, rows of
    the same video id (two clips of video 8 below) never a negative; the banks are still updated."""
    crit = AVIDCriterion(200, dim=16, num_negatives=32, loss="infonce", temperature=0.1, in_batch=True)
    abank0, vbank0 = crit.audio_bank.bank.clone(), crit.video_bank.bank.clone()
    v, a = _batch()
    idx = torch.tensor([3, 8, 100, 8, 7, 199])
    negs = crit.video_bank.sample_negatives(idx, 32, generator=torch.Generator().manual_seed(1))
    loss, stats = crit(v, a, idx, negatives=negs)
    loss.backward()
    assert v.grad.norm() > 0 and a.grad.norm() > 0
    vn, an = F.normalize(v.detach(), dim=1), F.normalize(a.detach(), dim=1)
    t, expected = 0.1, []
    for q, keys in ((vn, an), (an, vn)):
        per = []
        for i in range(len(idx)):
            others = [keys[j] for j in range(len(idx)) if idx[j] != idx[i]]
            logits = torch.cat([(q[i] @ keys[i])[None], torch.stack(others) @ q[i]]) / t
            per.append(torch.logsumexp(logits, 0) - logits[0])
        expected.append(torch.stack(per).mean())
    assert torch.allclose(loss.detach(), (expected[0] + expected[1]) / 2, atol=1e-5)
    assert math.isfinite(float(stats["sim/v2a_neg"]))
    rows = torch.tensor([0, 2])  # ids 3 and 100 appear once: the plain momentum update
    assert torch.allclose(crit.video_bank.bank[idx[rows]], F.normalize(0.5 * vbank0[idx[rows]] + 0.5 * vn[rows], dim=1),
                          atol=1e-6)
    assert not torch.equal(crit.audio_bank.bank, abank0) and not torch.equal(crit.video_bank.bank, vbank0)
    # the same batch without in_batch scores against the (random) bank row instead
    ref = AVIDCriterion(200, dim=16, num_negatives=32, loss="infonce", temperature=0.1)
    loss_ref, _ = ref(v.detach(), a.detach(), idx, negatives=negs)
    assert abs(float(loss_ref.detach()) - float(loss.detach())) > 1e-3
    with pytest.raises(ValueError, match="infonce"):
        AVIDCriterion(200, dim=16, num_negatives=32, loss="nce", in_batch=True)
