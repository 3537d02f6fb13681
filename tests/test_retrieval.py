"""Exact chunked search and retrieval metrics on embeddings whose answers are known."""

import math

import pytest
import torch
import torch.nn.functional as F

from avssl.embed.retrieval import (
    RankCounts,
    cross_modal_retrieval,
    nearest,
    positive_rank_counts,
    rank_metrics,
)


def _unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1)


def test_nearest_matches_full_sort_and_chunking_does_not_matter():
    q, c = _unit(37, 16, 0), _unit(501, 16, 1)
    ref_s, ref_i = torch.sort(q @ c.T, dim=1, descending=True, stable=True)
    s1, i1 = nearest(q, c, k=7, chunk=10_000, query_chunk=1000, device="cpu")
    assert torch.equal(i1, ref_i[:, :7])
    assert torch.allclose(s1, ref_s[:, :7])
    for chunk, qchunk in [(1, 5), (7, 3), (64, 37), (500, 1)]:
        s2, i2 = nearest(q, c, k=7, chunk=chunk, query_chunk=qchunk, device="cpu")
        assert torch.equal(i2, i1), (chunk, qchunk)
        assert torch.allclose(s2, s1)


def test_nearest_ties_go_to_lower_index_for_any_chunk():
    # duplicated collection rows: equal scores everywhere; lower index must win.
    base = _unit(5, 8, 2)
    c = base.repeat(4, 1)  # rows i, i+5, i+10, i+15 are identical
    q = base[:2]
    for chunk in (1, 3, 5, 7, 20):
        _, idx = nearest(q, c, k=4, chunk=chunk, device="cpu")
        assert idx[0].tolist() == [0, 5, 10, 15]
        assert idx[1].tolist() == [1, 6, 11, 16]


def test_nearest_caps_k_and_accepts_one_query_and_float16():
    c = _unit(6, 4, 3)
    s, i = nearest(c[2], c.half(), k=50, device="cpu")
    assert i.shape == (6,) and i[0].item() == 2
    assert s[0].item() == pytest.approx(1.0, abs=1e-3)


def test_hand_built_ranks():
    # query i points along axis i; collection row j = axis j scaled, positives chosen by hand.
    d = 6
    coll = torch.eye(d) * torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])[:, None]
    q = torch.zeros(3, d)
    q[0, 5] = 1.0  # best item = row 5 (score 6)
    q[1] = 1.0  # scores = 1..6, positive row 2 (score 3) -> 3 items above -> rank 4
    q[2, 0] = 1.0  # positive row 0 scores 1, the rest score 0 -> rank 1
    counts = positive_rank_counts(q, coll, positives=torch.tensor([5, 2, 0]), chunk=2, query_chunk=2, device="cpu")
    assert counts.greater.tolist() == [0, 3, 0]
    assert counts.tied.tolist() == [0, 0, 0]
    m = rank_metrics(counts, ks=(1, 4))
    assert m["R@1"] == pytest.approx(2 / 3)
    assert m["R@4"] == pytest.approx(1.0)
    assert m["median_rank"] == 1.0 and m["mean_rank"] == pytest.approx(2.0)


def test_ties_policies():
    # every item scores the same: g=0, t=N-1 for every query
    n = 10
    v = torch.ones(n, 3)
    counts = positive_rank_counts(v, v, chunk=3, device="cpu")
    assert counts.greater.tolist() == [0] * n and counts.tied.tolist() == [n - 1] * n
    assert rank_metrics(counts, ties="pessimistic")["R@1"] == 0.0
    assert rank_metrics(counts, ties="optimistic")["R@1"] == 1.0
    mean = rank_metrics(counts, ks=(1, 5), ties="mean")
    assert mean["R@1"] == pytest.approx(1 / n) and mean["R@5"] == pytest.approx(5 / n)
    assert mean["mean_rank"] == pytest.approx((n + 1) / 2)
    with pytest.raises(ValueError):
        counts.ranks("random")


def test_chunked_counts_equal_one_shot():
    a, v = _unit(300, 12, 4), _unit(300, 12, 5)
    v = F.normalize(v + 0.8 * a, dim=1)  # correlated, so ranks spread out
    ref = positive_rank_counts(a, v, chunk=10**6, query_chunk=10**6, device="cpu")
    s = a @ v.T
    pos = s.diagonal()
    assert torch.equal(ref.greater, (s > pos[:, None]).sum(1))
    for chunk, qchunk in [(1, 7), (17, 300), (299, 13)]:
        got = positive_rank_counts(a, v, chunk=chunk, query_chunk=qchunk, device="cpu")
        assert torch.equal(got.greater, ref.greater) and torch.equal(got.tied, ref.tied)


def test_ids_make_every_clip_of_a_video_a_positive():
    # 4 videos x 3 clips; audio of clip (v, j) is close to video clip (v, (j+1) % 3) only
    vids = torch.arange(4).repeat_interleave(3)
    video = _unit(12, 32, 6)
    audio = video[torch.tensor([3 * (i // 3) + (i % 3 + 1) % 3 for i in range(12)])]
    paired = cross_modal_retrieval(video, audio, device="cpu", chunk=5)
    by_video = cross_modal_retrieval(video, audio, ids=vids, device="cpu", chunk=5)
    assert by_video["a2v"]["R@1"] == 1.0 and by_video["v2a"]["R@1"] == 1.0
    assert paired["a2v"]["R@1"] < 0.5
    with pytest.raises(ValueError):
        positive_rank_counts(video, audio, query_ids=torch.tensor([99] * 12), collection_ids=vids)


@pytest.mark.parametrize("n", [50, 200])
def test_random_embeddings_recall_is_chance(n):
    # R@1 of unrelated embeddings: hits ~ Binomial(n, 1/n) per seed; sum over seeds ~ Poisson-ish.
    seeds = 30
    hits, ranks = 0, []
    for seed in range(seeds):
        a, v = _unit(n, 16, 100 + 2 * seed), _unit(n, 16, 101 + 2 * seed)
        m = cross_modal_retrieval(v, a, device="cpu", chunk=64)["a2v"]
        hits += round(m["R@1"] * n)
        ranks.append(m["mean_rank"])
    expected = seeds * 1.0
    assert abs(hits - expected) < 5 * math.sqrt(expected) + 1
    # mean rank of a uniform rank on 1..n: (n+1)/2, sd of the average of seeds*n ~ n/sqrt(12 seeds n)
    sd = n / math.sqrt(12 * seeds * n)
    assert abs(sum(ranks) / seeds - (n + 1) / 2) < 5 * sd


def test_recall_mean_ties_formula():
    c = RankCounts(torch.tensor([0, 2, 9]), torch.tensor([3, 0, 0]))
    # query 0: positive uniformly in places 1..4 -> P(rank<=1)=1/4, P(<=5)=1
    assert c.recall_at(1, "mean") == pytest.approx((1 / 4 + 0 + 0) / 3)
    assert c.recall_at(5, "mean") == pytest.approx((1 + 1 + 0) / 3)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        nearest(torch.zeros(2, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError):
        positive_rank_counts(torch.zeros(2, 3), torch.zeros(4, 3), positives=torch.tensor([0, 4]))
    with pytest.raises(ValueError):
        cross_modal_retrieval(torch.zeros(2, 3), torch.zeros(3, 3))


def test_million_item_search_bounded_memory():
    # 10^6 x 64 float16 collection (128 MB); the search never allocates more than a block.
    import resource

    n, d = 1_000_000, 64
    g = torch.Generator().manual_seed(7)
    coll = torch.empty(n, d, dtype=torch.float16)
    for lo in range(0, n, 50_000):  # built in pieces so the peak before the search stays low
        coll[lo : lo + 50_000] = F.normalize(torch.randn(50_000, d, generator=g), dim=1).half()
    planted = torch.tensor([3, 499_999, 999_998])
    q = coll[planted].float()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s, i = nearest(q, coll, k=3, chunk=131072, device="cpu")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert i[:, 0].tolist() == planted.tolist()
    assert grown_mb < 200  # a full float32 copy alone would be 256 MB; a score matrix far more


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_search_matches_cpu():
    q, c = _unit(50, 32, 8), _unit(20_000, 32, 9).half()
    s_cpu, i_cpu = nearest(q, c, k=5, chunk=4096, device="cpu")
    s_gpu, i_gpu = nearest(q, c, k=5, chunk=4096, device="cuda")
    assert s_gpu.device.type == "cpu" and torch.allclose(s_gpu, s_cpu, atol=1e-4)
    assert (i_gpu == i_cpu).float().mean() > 0.99  # near-ties may flip across BLAS implementations
    a, v = _unit(300, 16, 10), _unit(300, 16, 11)
    cpu = cross_modal_retrieval(v, a, device="cpu", chunk=64)
    gpu = cross_modal_retrieval(v, a, device="cuda", chunk=64)
    assert abs(cpu["a2v"]["mean_rank"] - gpu["a2v"]["mean_rank"]) < 1.0
