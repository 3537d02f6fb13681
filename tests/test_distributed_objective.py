"""Real 2-process gloo runs of the memory bank, AVID criterion and CMA search."""
import pytest
import torch
import torch.nn.functional as F

from avssl.cma import find_positives
from avssl.utils.distributed import all_gather_varlen, run_distributed
from avssl.losses import global_batch_max_position_infonce
from avssl.methods import AVIDCriterion


def _dense():
    g = torch.Generator().manual_seed(5)
    return F.normalize(torch.randn(B, D, 2, 3, 3, generator=g), dim=1)

pytestmark = [pytest.mark.distributed, pytest.mark.slow]  # spawn of 2 processes: ~15-20 s on the shared CPU

N, D, K, B = 64, 8, 16, 6


def _data():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(B, D, generator=g)
    a = torch.randn(B, D, generator=g)
    idx = torch.tensor([3, 9, 3, 40, 9, 63])  # duplicates within and across ranks
    crit = AVIDCriterion(N, D, num_negatives=K)
    negs = crit.video_bank.sample_negatives(idx, K, generator=g)
    return v, a, idx, negs


def _rank_job(rank, world):
    v, a, idx, negs = _data()
    share = slice(rank * B // world, (rank + 1) * B // world)
    crit = AVIDCriterion(N, D, num_negatives=K)
    loss, stats = crit(v[share], a[share], idx[share], negatives=negs[share])
    # a second step: Z must stay frozen and banks stay in sync
    loss2, _ = crit(a[share], v[share], idx[share], negatives=negs[share])
    gathered = all_gather_varlen(torch.arange(rank + 1) + 10 * rank)  # varying sizes
    pos = find_positives(crit.video_bank, crit.audio_bank, k=5, mode="consensus", chunk_size=7)
    # in-batch cross terms: every rank's rows gathered (with gradient) as negatives
    vg, ag = v[share].clone().requires_grad_(), a[share].clone().requires_grad_()
    live = AVIDCriterion(N, D, num_negatives=K, loss="infonce", in_batch=True)
    loss_live, _ = live(vg, ag, idx[share], negatives=negs[share])
    loss_live.backward()
    # the localization term: the same global batch as negatives
    dg, ag2 = _dense()[share].clone().requires_grad_(), a[share].clone().requires_grad_()
    loss_loc = global_batch_max_position_infonce(dg, ag2, idx[share], temperature=0.1)
    loss_loc.backward()
    return {"loss_live": float(loss_live.detach()), "grad_live": torch.cat([vg.grad, ag.grad], 1),
            "loss_loc": float(loss_loc.detach()), "grad_loc": (dg.grad, ag2.grad),
            "loss": float(loss), "loss2": float(loss2), "z": crit.partition,
            "vbank": crit.video_bank.bank.clone(), "abank": crit.audio_bank.bank.clone(),
            "gathered": gathered, "pos": pos, "cma_blocks": _cma_blocks_job(rank, world)}


@pytest.fixture(scope="module")
def ranks():
    """One spawn of 2 real gloo processes for all the tests of this module."""
    return run_distributed(_rank_job, 2)


def test_two_ranks_match_one_process(ranks):
    v, a, idx, negs = _data()
    crit = AVIDCriterion(N, D, num_negatives=K)
    loss, _ = crit(v, a, idx, negatives=negs)
    loss2, _ = crit(a, v, idx, negatives=negs)
    r0, r1 = ranks
    # identical banks on both ranks, equal to the single process with the whole batch
    assert torch.equal(r0["vbank"], r1["vbank"]) and torch.equal(r0["abank"], r1["abank"])
    assert torch.allclose(r0["vbank"], crit.video_bank.bank, atol=1e-6)
    assert torch.allclose(r0["abank"], crit.audio_bank.bank, atol=1e-6)
    # Z: per-rank estimates averaged across ranks == whole-batch estimate (equal shares)
    assert r0["z"] == r1["z"]
    assert abs(r0["z"] - crit.partition) / crit.partition < 1e-6
    # global loss = mean of the rank losses (equal batch shares)
    assert abs((r0["loss"] + r1["loss"]) / 2 - float(loss)) < 1e-4
    assert abs((r0["loss2"] + r1["loss2"]) / 2 - float(loss2)) < 1e-4
    # in-batch terms: mean of rank losses == whole-batch loss; the summed gradients of the ranks'
    # losses (what DDP averages, times world size) == the whole-batch gradient of each row
    vg, ag = v.clone().requires_grad_(), a.clone().requires_grad_()
    live = AVIDCriterion(N, D, num_negatives=K, loss="infonce", in_batch=True)
    loss_live, _ = live(vg, ag, idx, negatives=negs)
    loss_live.backward()
    assert abs((r0["loss_live"] + r1["loss_live"]) / 2 - float(loss_live.detach())) < 1e-5
    whole = torch.cat([vg.grad, ag.grad], 1)
    assert torch.allclose(torch.cat([r0["grad_live"], r1["grad_live"]]) / 2, whole, atol=1e-6)
    # localization term: the same identities (mean loss, summed rank gradients)
    dg, ag2 = _dense().requires_grad_(), a.clone().requires_grad_()
    loss_loc = global_batch_max_position_infonce(dg, ag2, idx, temperature=0.1)
    loss_loc.backward()
    assert abs((r0["loss_loc"] + r1["loss_loc"]) / 2 - float(loss_loc.detach())) < 1e-5
    assert torch.allclose(torch.cat([r0["grad_loc"][0], r1["grad_loc"][0]]) / 2, dg.grad, atol=1e-6)
    assert torch.allclose(torch.cat([r0["grad_loc"][1], r1["grad_loc"][1]]) / 2, ag2.grad, atol=1e-6)
    # variable-size gather, rank order
    assert r0["gathered"].tolist() == [0, 10, 11] == r1["gathered"].tolist()
    # distributed CMA search == one-shot search on the same banks
    one_shot = find_positives(crit.video_bank, crit.audio_bank, k=5, mode="consensus", chunk_size=N)
    assert torch.equal(r0["pos"], one_shot) and torch.equal(r1["pos"], one_shot)


def _cma_banks():
    g = torch.Generator().manual_seed(11)
    v, a = torch.randn(500, 48, generator=g), torch.randn(500, 48, generator=g)
    return F.normalize(v, dim=1), F.normalize(a, dim=1)


CMA_CASES = [("consensus", 64, 12), ("consensus", 500, 12), ("union", 96, 5), ("video", 200, 1)]


def _cma_blocks_job(rank, world):
    v, a = _cma_banks()
    out = []
    for mode, block, k in CMA_CASES:
        st = {}
        pos = find_positives(v, a, k=k, mode=mode, chunk_size=block, method="blocks", stats=st)
        out.append((pos, st["blocks"], st["pairs"]))
    return out


def test_two_ranks_cma_blocks_identical_and_equal_one_process(ranks):
    """find_positives(method="blocks"): each rank computes a disjoint share of the block
    pairs (pruning with its own thresholds), the partial top-k tables are all-gathered and
    merged: identical on both ranks, equal to one process (a block size of N puts the one
    diagonal block on rank 0 alone)."""
    v, a = _cma_banks()
    for c, (mode, block, k) in enumerate(CMA_CASES):
        (p0, b0, n0), (p1, b1, n1) = ranks[0]["cma_blocks"][c], ranks[1]["cma_blocks"][c]
        assert torch.equal(p0, p1)
        st = {}
        one = find_positives(v, a, k=k, mode=mode, chunk_size=block, method="blocks", stats=st)
        assert torch.equal(p0, one), (mode, block, k)
        assert b0 + b1 == st["blocks"] and n0 + n1 == st["pairs"]  # disjoint shares, all pairs
        if block < 500:
            assert b0 > 0 and b1 > 0
        sv, sa = v @ v.T, a @ a.T
        s = {"consensus": torch.minimum(sv, sa), "union": torch.maximum(sv, sa), "video": sv}[mode]
        s.fill_diagonal_(-float("inf"))
        torch.testing.assert_close(s.gather(1, p0), s.topk(k, dim=1).values, atol=1e-6, rtol=0)
