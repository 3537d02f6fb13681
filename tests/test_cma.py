import pytest
import torch
import torch.nn.functional as F

from avssl.cma import MODES, find_positives, positive_recall
from avssl.methods import AVIDCriterion, CMACriterion
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


# ---------------------------------------------------------------- method="blocks" (default)
def _full_scores(v, a, mode):
    sv, sa = v @ v.T, a @ a.T
    s = {"consensus": torch.minimum(sv, sa), "union": torch.maximum(sv, sa), "video": sv, "audio": sa}[mode]
    return s.fill_diagonal_(-float("inf"))


def assert_exact_topk(got, scores, k, same_rows=0.99):
    """``got`` is the top-k of every row of ``scores`` (brute force, diagonal -inf), in order:
    the score at each position equals the brute-force k-th... 1st best (up to float rounding,
    which may swap exact or ulp-level ties), ids unique per row, never the row itself, rows
    by decreasing score; and at least ``same_rows`` of the rows have exactly the brute-force ids."""
    n = scores.shape[0]
    ref = scores.topk(k, dim=1)
    assert got.shape == (n, k) and got.dtype == torch.long
    assert not (got == torch.arange(n).unsqueeze(1)).any()
    assert (got.sort(dim=1).values.diff(dim=1) != 0).all()
    vals = scores.gather(1, got)
    torch.testing.assert_close(vals, ref.values, atol=1e-6, rtol=0)
    assert (vals.diff(dim=1) <= 1e-6).all()
    assert (got == ref.indices).all(1).float().mean() >= same_rows


@pytest.mark.parametrize("mode", MODES)
def test_blocks_match_brute_force(mode):
    for n, d in ((1000, 16), (1237, 32)):
        v, a = _banks(n, d, seed=n)
        scores = _full_scores(v, a, mode)
        for block in (None, 64, 100, 333, n):  # 64 / 100 / 333 do not divide 1237 (nor 1000 for 64, 333)
            for k in (1, 32):
                got = find_positives(v, a, k=k, mode=mode, chunk_size=block)
                assert_exact_topk(got, scores, k)


@pytest.mark.parametrize("mode", MODES)
def test_blocks_all_others_and_tiny_blocks(mode):
    v, a = _banks(120, 8, seed=3)
    scores = _full_scores(v, a, mode)
    for block in (3, 7, 40):  # blocks smaller than k: rows start with fewer than k entries
        assert_exact_topk(find_positives(v, a, k=119, mode=mode, chunk_size=block), scores, 119, same_rows=0.5)
        assert_exact_topk(find_positives(v, a, k=20, mode=mode, chunk_size=block), scores, 20)


@pytest.mark.parametrize("mode", MODES)
def test_blocks_equal_rows_method(mode):
    v, a = _banks(2000, 32, seed=4)
    blocks = find_positives(v, a, k=16, mode=mode, method="blocks")
    rows = find_positives(v, a, k=16, mode=mode, method="rows")
    scores = _full_scores(v, a, mode)
    torch.testing.assert_close(scores.gather(1, blocks), scores.gather(1, rows), atol=1e-6, rtol=0)
    assert (blocks == rows).all(1).float().mean() >= 0.995
    assert_exact_topk(blocks, scores, 16)


def test_blocks_prune_audio_in_consensus(monkeypatch):
    import avssl.cma.positives as positives
    v, a = _banks(3000, 128, seed=5)
    scores = _full_scores(v, a, "consensus")
    nb = -(-3000 // 256)
    diag = sum(min(256, 3000 - 256 * i) ** 2 for i in range(nb))
    results = {}
    for share in (1.0, 0.0, positives.CPU_DENSE_AUDIO_SHARE):  # never / always / default dense audio
        monkeypatch.setattr(positives, "CPU_DENSE_AUDIO_SHARE", share)
        st = {}
        got = find_positives(v, a, k=8, chunk_size=256, stats=st)
        assert_exact_topk(got, scores, 8)
        assert st["blocks"] == nb * (nb + 1) // 2
        assert st["pairs"] == sum(min(256, 3000 - 256 * i) * min(256, 3000 - 256 * j)
                                  for i in range(nb) for j in range(i, nb))
        results[share] = (got, st)
    off = results[1.0][1]["pairs"] - diag
    sparse, dense = results[1.0][1], results[0.0][1]
    # pruned: the audio cosine of the off-diagonal pairs only where the video one reaches a threshold
    assert sparse["dense_audio_blocks"] == 0 and sparse["audio_pairs"] == diag + sparse["candidates"]
    assert sparse["candidates"] < 0.2 * off
    assert dense["dense_audio_blocks"] == nb * (nb - 1) // 2 and dense["audio_pairs"] == dense["pairs"]
    assert diag < results[positives.CPU_DENSE_AUDIO_SHARE][1]["audio_pairs"] < dense["pairs"]
    assert sparse["seconds"]["matmul"] > 0 and sparse["seconds"]["sampled"] > 0
    st_video = {}
    find_positives(v, a, k=8, mode="video", chunk_size=256, stats=st_video)
    assert st_video["audio_pairs"] == 0 and st_video["blocks"] == sparse["blocks"]


def test_block_schedule_covers_every_pair_once():
    from avssl.cma.positives import block_schedule
    for nb in (1, 2, 7):
        for world in (1, 2, 3, 5):
            shares = [block_schedule(nb, world, r) for r in range(world)]
            flat = [p for s in shares for p in s]
            assert sorted(flat) == [(i, j) for i in range(nb) for j in range(i, nb)]
            for s in shares:  # each rank: its diagonal blocks first
                d = [p[0] == p[1] for p in s]
                assert d == sorted(d, reverse=True)


def test_method_validated():
    v, a = _banks(20, 4)
    with pytest.raises(ValueError, match="method"):
        find_positives(v, a, k=3, method="columns")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_blocks_on_cuda_match_brute_force():
    v, a = _banks(1500, 32, seed=6)
    for mode in MODES:
        got = find_positives(v, a, k=16, mode=mode, chunk_size=256, device="cuda", method="blocks")
        assert got.device.type == "cpu"
        assert_exact_topk(got, _full_scores(v, a, mode), 16)
