import pytest
import torch
import torch.nn.functional as F

from avssl.cma import MODES, find_positives, positive_recall
from avssl.losses import AVIDCriterion, CMACriterion
from avssl.memory import MemoryBankMismatchError


def _banks(n=120, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1), F.normalize(torch.randn(n, d, generator=g), dim=1)


def _brute(v, a, k, mode):
    sv, sa = v @ v.T, a @ a.T
    s = {"consensus": torch.minimum(sv, sa), "union": torch.maximum(sv, sa), "video": sv, "audio": sa}[mode]
    s.fill_diagonal_(-float("inf"))
    return s.topk(k, dim=1).indices


@pytest.mark.parametrize("mode", MODES)
def test_modes_match_brute_force(mode):
    v, a = _banks()
    got = find_positives(v, a, k=7, mode=mode, chunk_size=1000)
    ref = _brute(v, a, 7, mode)
    assert torch.equal(got, ref)
    assert not (got == torch.arange(120).unsqueeze(1)).any()


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_equals_one_shot(chunk):
    v, a = _banks(200, 6, seed=1)
    one = find_positives(v, a, k=5, chunk_size=200)
    assert torch.equal(find_positives(v, a, k=5, chunk_size=chunk), one)
    assert torch.equal(find_positives(v, a, k=5, max_chunk_bytes=2000), one)


def test_self_excluded_even_with_duplicate_rows():
    v, a = _banks(30, 4)
    v[1], a[1] = v[0], a[0]
    pos = find_positives(v, a, k=3)
    assert 1 in pos[0].tolist() and 0 not in pos[0].tolist()


def test_approximate_recall_reported():
    v, a = _banks(300, 16, seed=2)
    exact = find_positives(v, a, k=5)
    approx = find_positives(v, a, k=5, approximate=True, projection_dim=8, oversample=20)
    r = positive_recall(approx, exact)
    assert 0.0 <= r <= 1.0 and r > 0.5
    assert positive_recall(exact, exact) == 1.0


def test_cma_negatives_never_in_positive_set_and_loss():
    avid = AVIDCriterion(80, dim=8, num_negatives=40, index_fingerprint="fp")
    g = torch.Generator().manual_seed(0)
    avid(torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g), torch.arange(6))
    cma = CMACriterion.from_avid(avid, num_negatives=40, num_negatives_within=8, num_positives=10)
    assert cma.partition == avid.partition
    assert torch.equal(cma.video_bank.bank, avid.video_bank.bank)
    pos = cma.refresh_positives()
    idx = torch.arange(80)
    negs = cma.video_bank.sample_negatives(idx, 500, generator=g, exclude=pos)
    assert not (negs.unsqueeze(2) == pos.unsqueeze(1)).any()
    assert not (negs == idx.unsqueeze(1)).any()
    v = torch.randn(5, 8, generator=g, requires_grad=True)
    a = torch.randn(5, 8, generator=g, requires_grad=True)
    loss, stats = cma(v, a, torch.tensor([1, 2, 3, 4, 5]))
    loss.backward()
    assert v.grad.norm() > 0
    expected = 0.5 * stats["loss/xmodal_inst"] + 0.5 * stats["loss/wmodal_pos"]
    assert torch.allclose(loss.detach(), expected)
    assert "loss/wmodal_pos/v2v" in stats


def test_cma_optional_terms_and_state_roundtrip():
    cma = CMACriterion(60, dim=8, num_negatives=20, num_negatives_within=5, wmodal_inst=1.0,
                       xmodal_pos=1.0, num_positives=4)
    cma.refresh_positives()
    g = torch.Generator().manual_seed(1)
    loss, stats = cma(torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g), torch.tensor([0, 1, 2]))
    assert {"loss/wmodal_inst", "loss/xmodal_pos"} <= set(stats)
    other = CMACriterion(60, dim=8, num_negatives=20, num_negatives_within=5, num_positives=4)
    other.load_state_dict(cma.state_dict())
    assert torch.equal(other.positives, cma.positives)


def test_cma_refuses_other_index_and_missing_positives():
    avid = AVIDCriterion(40, dim=8, num_negatives=10, index_fingerprint="A")
    cma = CMACriterion(40, dim=8, num_negatives=10, num_negatives_within=5, index_fingerprint="B")
    with pytest.raises(MemoryBankMismatchError):
        cma.load_avid_state(avid.state_dict())
    with pytest.raises(RuntimeError, match="positive sets"):
        cma(torch.randn(2, 8), torch.randn(2, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="own instance"):
        cma.set_positives(torch.arange(40).unsqueeze(1).repeat(1, 2))
