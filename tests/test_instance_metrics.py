"""Instance-level retrieval metrics on hand-made embeddings whose answers are known, chance levels included."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avssl.metrics import class_level_metrics, instance_report, pair_scores, sync_metrics, within_class_retrieval


def _class_only(labels, dim=16, seed=0):
    """Embeddings that know the class and nothing else: every clip of class c is the same vector."""
    g = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(int(max(labels)) + 1, dim, generator=g), dim=1)
    return protos[torch.as_tensor(labels)]


def test_class_matching_model_is_at_within_class_chance():
    labels = [0] * 4 + [1] * 2 + [2] * 6  # class sizes 4, 2, 6
    e = _class_only(labels)
    cls = class_level_metrics(e, e, labels, labels)
    assert cls["class_top1"] == 1.0
    assert cls["chance_class_top1"] == pytest.approx((4 * 4 + 2 * 2 + 6 * 6) / 12 / 12)
    wc = within_class_retrieval(e, e, labels)
    # all scores tie inside a class: pessimistic rank = class size, so R@1 = 0 ...
    assert wc["within_R@1"] == 0.0
    assert wc["within_chance_R@1"] == pytest.approx((4 / 4 + 2 / 2 + 6 / 6) / 12)
    assert wc["within_chance_median_rank"] == 2.5  # (n_c + 1) / 2 per query: 2.5 x4, 1.5 x2, 3.5 x6
    assert wc["mean_class_size"] == pytest.approx((16 + 4 + 36) / 12)
    # ... and the expectation under random order of ties is exactly the chance level
    mean = within_class_retrieval(e, e, labels, ties="mean")
    assert mean["within_R@1"] == pytest.approx(wc["within_chance_R@1"])
    assert mean["within_mean_rank"] == pytest.approx(np.mean([2.5] * 4 + [1.5] * 2 + [3.5] * 6))


def test_instance_model_is_perfect_within_class_and_a_wrong_one_is_not():
    labels = np.repeat(np.arange(3), 5)
    g = torch.Generator().manual_seed(1)
    inst = F.normalize(torch.randn(15, 32, generator=g), dim=1)
    e = F.normalize(_class_only(labels, 32) * 3 + inst, dim=1)  # class + instance part
    wc = within_class_retrieval(e, e, labels)
    assert wc["within_R@1"] == 1.0 and wc["within_median_rank"] == 1.0
    assert wc["within_chance_R@1"] == pytest.approx(1 / 5)
    # the collection permuted within each class: the own item is now never first
    perm = torch.arange(15).view(3, 5).roll(1, dims=1).reshape(-1)
    wrong = within_class_retrieval(e, e[perm], labels, positives=torch.argsort(perm))
    assert wrong["within_R@1"] == 1.0  # positives follow the permutation: still found
    shifted = within_class_retrieval(e, e[perm], labels)  # positives = arange: the wrong rows
    assert shifted["within_R@1"] == 0.0 and shifted["within_median_rank"] > 1


def test_within_class_ranks_only_against_own_class():
    # query 0 (class 0) is nearer a class-1 item than its own: overall rank 2, within class rank 1
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    c = torch.tensor([[0.8, 0.6], [0.99, 0.14], [0.0, 1.0]])
    labels = [0, 1, 1]
    wc = within_class_retrieval(q, c, labels, normalize=True)
    assert wc["num_queries"] == 3
    # query 0 alone in class 0 -> rank 1; queries 1, 2 (class 1): q1 = q2 = [0, 1]; c2 scores 1, c1 0.14
    assert wc["within_R@1"] == pytest.approx(2 / 3)
    cls = class_level_metrics(q, c, labels, labels, normalize=True)
    assert cls["class_top1"] == pytest.approx(2 / 3)  # query 0's top-1 is the class-1 item c1


def test_bad_inputs_are_refused():
    e = torch.eye(3)
    with pytest.raises(ValueError, match="labels"):
        within_class_retrieval(e, e, [0, 1])
    with pytest.raises(ValueError, match="positive"):
        within_class_retrieval(e, e, [0, 1, 1], positives=[1, 1, 2])  # query 0's positive is class 1
    with pytest.raises(ValueError, match="paired"):
        sync_metrics([1.0, 2.0], [1.0])


def test_sync_metrics_known_answers():
    own = torch.tensor([0.9, 0.8, 0.1, 0.5])
    shifted = torch.tensor([0.1, 0.2, 0.3, 0.5])
    s = sync_metrics(own, shifted)
    assert s["acc"] == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    assert s["num_trials"] == 4
    # AUC over pooled scores: pairs (own, shifted) with own > shifted, ties 1/2
    pairs = [(o > x) + 0.5 * (o == x) for o in own.tolist() for x in shifted.tolist()]
    assert s["auc"] == pytest.approx(np.mean(pairs))
    same = sync_metrics(own, own)
    assert same["acc"] == 0.5 and same["auc"] == 0.5
    assert np.isnan(sync_metrics([], [])["acc"])


def test_pair_scores_and_instance_report():
    v = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    a = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert pair_scores(v, a).tolist() == [1.0, 2.0]
    assert pair_scores(v, a, normalize=True).tolist() == pytest.approx([2 ** -0.5, 1.0])
    labels = np.repeat(np.arange(2), 3)
    e = _class_only(labels)
    rep = instance_report(e, e, labels)
    assert rep["a2v_class_top1"] == 1.0 and rep["v2a_class_top1"] == 1.0
    assert rep["a2v_within_R@1"] == 0.0 and rep["within_chance_R@1"] == pytest.approx(1 / 3)
