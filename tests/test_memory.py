import math

import pytest
import torch
import torch.nn.functional as F

from avssl.memory import MemoryBank, MemoryBankMismatchError, average_duplicates


def test_initial_bank_is_unit_norm_and_seeded():
    a = MemoryBank(50, 8, seed=3)
    b = MemoryBank(50, 8, seed=3)
    c = MemoryBank(50, 8, seed=4)
    assert torch.allclose(a.bank.norm(dim=1), torch.ones(50), atol=1e-6)
    assert torch.equal(a.bank, b.bank)
    assert not torch.equal(a.bank, c.bank)


def test_update_formula_matches_hand_computation():
    bank = MemoryBank(10, 4, momentum=0.5)
    old = bank.bank.clone()
    idx = torch.tensor([2, 7])
    new = torch.randn(2, 4)
    bank.update(idx, new)
    for row, i in enumerate(idx.tolist()):
        n = new[row] / new[row].norm()
        expected = 0.5 * old[i] + 0.5 * n
        expected = expected / expected.norm()
        assert torch.allclose(bank.bank[i], expected, atol=1e-6)
    untouched = [i for i in range(10) if i not in (2, 7)]
    assert torch.equal(bank.bank[untouched], old[untouched])


def test_update_with_other_momentum():
    bank = MemoryBank(5, 3, momentum=0.9)
    old = bank.bank[1].clone()
    new = torch.tensor([[0.0, 3.0, 4.0]])
    bank.update(torch.tensor([1]), new)
    expected = 0.9 * old + 0.1 * torch.tensor([0.0, 0.6, 0.8])
    assert torch.allclose(bank.bank[1], expected / expected.norm(), atol=1e-6)


def test_duplicate_ids_are_averaged_and_order_independent():
    torch.manual_seed(0)
    bank = MemoryBank(20, 6)
    old = bank.bank.clone()
    idx = torch.tensor([4, 9, 4, 4, 9, 1])
    new = F.normalize(torch.randn(6, 6), dim=1)
    bank.update(idx, new)
    mean4 = new[[0, 2, 3]].mean(0)
    exp4 = F.normalize(0.5 * old[4] + 0.5 * mean4, dim=0)
    assert torch.allclose(bank.bank[4], exp4, atol=1e-6)
    # Same pairs in another order: the result is the same (duplicates resolved by mean).
    perm = torch.tensor([5, 3, 1, 0, 4, 2])
    bank2 = MemoryBank(20, 6)
    bank2.update(idx[perm], new[perm])
    assert torch.allclose(bank.bank, bank2.bank, atol=1e-6)
    # And repeated runs are bitwise identical.
    bank3 = MemoryBank(20, 6)
    bank3.update(idx, new)
    assert torch.equal(bank.bank, bank3.bank)


def test_average_duplicates_exact():
    ids = torch.tensor([3, 1, 3, 2, 1, 3])
    vals = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    uniq, means = average_duplicates(ids, vals)
    assert uniq.tolist() == [1, 2, 3]
    assert torch.allclose(means[0], (vals[1] + vals[4]) / 2)
    assert torch.allclose(means[1], vals[3])
    assert torch.allclose(means[2], (vals[0] + vals[2] + vals[5]) / 3)


def test_negatives_never_positive_and_uniform():
    n, k = 40, 4000
    bank = MemoryBank(n, 4)
    idx = torch.tensor([0, 17, 39])
    gen = torch.Generator().manual_seed(1)
    neg = bank.sample_negatives(idx, k, generator=gen)
    assert neg.shape == (3, k) and neg.dtype == torch.long
    assert not (neg == idx.unsqueeze(1)).any()
    assert int(neg.min()) >= 0 and int(neg.max()) < n
    for row in range(3):
        counts = torch.bincount(neg[row], minlength=n).double()
        allowed = torch.ones(n, dtype=torch.bool)
        allowed[idx[row]] = False
        expected = k / (n - 1)
        chi2 = float(((counts[allowed] - expected) ** 2 / expected).sum())
        # 38 degrees of freedom: mean 38, sd ~8.7; 90 is beyond the 0.9999 quantile.
        assert chi2 < 90, chi2
        assert counts[~allowed].sum() == 0


def test_negatives_with_exclusion_sets():
    n, k = 30, 6000
    bank = MemoryBank(n, 4)
    idx = torch.tensor([5, 29])
    exclude = torch.tensor([[4, 6, 6, 5, 0], [28, 0, 1, 2, 3]])  # duplicates and self allowed
    neg = bank.sample_negatives(idx, k, generator=torch.Generator().manual_seed(2), exclude=exclude)
    for row in range(2):
        forbidden = set(exclude[row].tolist()) | {int(idx[row])}
        got = set(neg[row].tolist())
        assert not (got & forbidden)
        allowed = [i for i in range(n) if i not in forbidden]
        assert got == set(allowed)  # every allowed id reachable
        counts = torch.bincount(neg[row], minlength=n).double()[allowed]
        expected = k / len(allowed)
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 3 * len(allowed), chi2


def test_negatives_reproducible_with_generator():
    bank = MemoryBank(100, 4)
    idx = torch.arange(8)
    a = bank.sample_negatives(idx, 16, generator=torch.Generator().manual_seed(5))
    b = bank.sample_negatives(idx, 16, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_negatives_when_everything_forbidden_raises():
    bank = MemoryBank(4, 2)
    with pytest.raises(ValueError, match="nothing left"):
        bank.sample_negatives(torch.tensor([0]), 3, exclude=torch.tensor([[1, 2, 3]]))


def test_state_dict_roundtrip_and_fingerprint_checks():
    bank = MemoryBank(12, 4, index_fingerprint="abc")
    bank.update(torch.tensor([1, 2]), torch.randn(2, 4))
    state = bank.state_dict()
    assert "bank" in state and state["_extra_state"]["index_fingerprint"] == "abc"
    same = MemoryBank(12, 4, index_fingerprint="abc", seed=9)
    same.load_state_dict(state)
    assert torch.equal(same.bank, bank.bank)
    other = MemoryBank(12, 4, index_fingerprint="xyz")
    with pytest.raises(MemoryBankMismatchError, match="abc"):
        other.load_state_dict(state)
    bigger = MemoryBank(13, 4, index_fingerprint="abc")
    with pytest.raises(MemoryBankMismatchError, match="shape"):
        bigger.load_state_dict(state)
    unknown = MemoryBank(12, 4)  # no fingerprint yet: adopts the saved one
    unknown.load_state_dict(state)
    assert unknown.index_fingerprint == "abc"


def test_bad_inputs_raise():
    bank = MemoryBank(10, 4)
    with pytest.raises(IndexError):
        bank.update(torch.tensor([10]), torch.randn(1, 4))
    with pytest.raises(ValueError):
        bank.update(torch.tensor([1]), torch.randn(1, 5))
    with pytest.raises(TypeError):
        bank.sample_negatives(torch.tensor([1.0]), 3)
    assert math.isclose(bank.momentum, 0.5)
