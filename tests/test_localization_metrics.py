"""Localization metrics and ground-truth maps on hand-made heatmaps/boxes with known answers."""

import numpy as np
import pytest
import torch

from avssl.localization import gt, metrics
from avssl.localization.heatmap import centre_prior_maps, whole_image_maps


def ramp_rows(h=4, w=4):
    # values 0..h*w-1 row by row: the top half of the pixels is the bottom half of the rows
    return np.arange(h * w, dtype=np.float64).reshape(h, w)


def test_minmax_normalize_and_constant_map():
    s = ramp_rows() * 3 + 7
    n = metrics.minmax_normalize(s)
    assert n.min() == 0 and n.max() == 1
    np.testing.assert_allclose(n, ramp_rows() / 15)
    const = np.full((3, 3), 2.5)
    np.testing.assert_array_equal(metrics.minmax_normalize(const), const)


def test_top_half_is_exactly_half_without_ties():
    rng = np.random.default_rng(0)
    s = rng.random((5, 20, 30))
    p = metrics.binarize_top_fraction(s, 0.5)
    assert (p.reshape(5, -1).sum(1) == 300).all()
    # every kept pixel ranks above every dropped one
    for si, pi in zip(s, p):
        assert si[pi].min() > si[~pi].max()


def test_ciou_hand_computed():
    s = ramp_rows()  # prediction = rows 2, 3 (8 pixels)
    g = np.zeros((4, 4))
    g[2:4, 0:2] = 1  # 4 pixels, all inside the prediction
    # inter = 4, sum(G) = 4, predicted outside G = 8 - 4 = 4  -> 4 / 8
    assert metrics.heatmap_ciou(s, g)[0] == pytest.approx(4 / (4 + 4))
    g2 = np.zeros((4, 4))
    g2[1:3, :] = 1  # rows 1, 2: 8 pixels, 4 of them predicted
    # inter = 4, sum(G) = 8, predicted outside G = rows 3 = 4 -> 4 / 12
    assert metrics.heatmap_ciou(s, g2)[0] == pytest.approx(4 / (8 + 4))
    g3 = np.zeros((4, 4))
    g3[2:, :] = 1
    assert metrics.heatmap_ciou(s, g3)[0] == 1.0
    assert metrics.heatmap_ciou(s, 1 - g3)[0] == 0.0


def test_ciou_with_flickr_half_weights():
    s = ramp_rows()
    g = np.zeros((4, 4))
    g[3, :] = 1.0  # consensus row, inside prediction
    g[0, :] = 0.5  # one annotator only, outside prediction
    # inter = 4*1, sum(G) = 4 + 2 = 6, predicted where G == 0: row 2 = 4 -> 4 / 10
    assert metrics.heatmap_ciou(s, g)[0] == pytest.approx(4 / 10)


def test_ciou_empty_gt_is_nan_and_rejected_by_summaries():
    c = metrics.heatmap_ciou(ramp_rows(), np.zeros((4, 4)))
    assert np.isnan(c[0])
    with pytest.raises(ValueError):
        metrics.ciou_at(c)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        metrics.heatmap_ciou(np.zeros((2, 4, 4)), np.zeros((2, 5, 4)))


def test_auc_and_ciou_at_hand_computed():
    c = np.array([0.0, 0.5, 1.0])
    # success rate: 1 at t=0, 2/3 for t in 0.05..0.5 (10 points), 1/3 for t in 0.55..1 (10 points)
    expected = (1 + 2 / 3) / 2 * 0.05 + 9 * 0.05 * 2 / 3 + (2 / 3 + 1 / 3) / 2 * 0.05 + 9 * 0.05 * 1 / 3
    assert metrics.ciou_auc(c) == pytest.approx(expected)
    assert metrics.ciou_at(c, 0.5) == pytest.approx(2 / 3)
    assert metrics.ciou_at(c, 0.6) == pytest.approx(1 / 3)
    s = metrics.summarize(c)
    assert s.mean_ciou == pytest.approx(0.5) and s.ap is None and s.num_negatives == 0


def test_auc_approximates_mean_ciou():
    # area under a survival curve is the mean; the 0.05 grid errs by at most one step
    c = np.random.default_rng(1).random(2000)
    assert abs(metrics.ciou_auc(c) - c.mean()) < 0.05


def test_accepts_torch_tensors():
    s = torch.tensor(ramp_rows())
    g = torch.zeros(4, 4)
    g[2:, :] = 1
    assert metrics.heatmap_ciou(s, g)[0] == 1.0


# ---------------------------------------------------------------- ground truth


def test_vggss_union_of_normalised_boxes():
    m = gt.vggss_gt_map([[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]], size=8)
    # box 1 -> rows/cols 0:4, box 2 -> 2:6; union area 16 + 16 - 4
    assert m.shape == (8, 8) and set(np.unique(m)) == {0.0, 1.0}
    assert m.sum() == 16 + 16 - 4
    assert m[0, 0] == 1 and m[5, 5] == 1 and m[6, 6] == 0 and m[0, 5] == 0


def test_vggss_clips_and_truncates_like_reference():
    # int(224 * max(x, 0)): -0.1 -> 0, 0.30 -> 67 (67.2), 1.2 -> clipped to 224
    px = gt.scale_boxes([[-0.1, 0.30, 1.2, 0.5]], 224, normalized=True)
    assert px.tolist() == [[0, 67, 224, 112]]


def test_flickr_consensus_from_256_pixel_boxes():
    a = [0, 0, 128, 128]  # -> 0:112 on 224
    b = [64, 64, 192, 192]  # -> 56:168
    m = gt.flickr_gt_map([a, b], size=224)
    assert m[10, 10] == 0.5  # one annotator
    assert m[100, 100] == 1.0  # both
    assert m[150, 150] == 0.5 and m[200, 200] == 0.0
    # three overlapping boxes still clip at 1
    assert gt.flickr_gt_map([a, a, a], size=224).max() == 1.0
    # expected mass: 0.5 * (112^2 + 112^2) since no pixel exceeds 2 annotators
    assert m.sum() == pytest.approx(0.5 * 2 * 112 * 112)


def test_gt_non_square_and_errors():
    m = gt.vggss_gt_map([[0, 0, 50, 20]], size=(10, 20), normalized=False, source_size=(40, 100))
    # x: 20*50/100 = 10 columns, y: 10*20/40 = 5 rows
    assert m.sum() == 50 and m[:5, :10].all()
    with pytest.raises(ValueError):
        gt.vggss_gt_map([[0.5, 0, 0.2, 1]], size=8)
    with pytest.raises(ValueError):
        gt.gt_map([[0, 0, 1, 1]], "coco")
    assert gt.vggss_gt_map([], size=8).sum() == 0


# ---------------------------------------------------------------- baselines


def test_whole_image_baseline_ciou_is_box_area_fraction():
    g = gt.vggss_gt_map([[0.0, 0.0, 0.5, 0.25]], size=64)
    c = metrics.heatmap_ciou(whole_image_maps(1, 64), g)[0]
    # constant map -> every pixel predicted: a / (a + N - a) = a / N
    assert c == pytest.approx(g.sum() / g.size) and c == pytest.approx(0.125)


def test_centre_prior_predicts_central_disc():
    n = 224
    g = np.zeros((n, n))
    g[62:162, 62:162] = 1  # centred 100x100 box, inside the disc of half the image area
    c = metrics.heatmap_ciou(centre_prior_maps(1, n), g)[0]
    # top half of a centred Gaussian = disc of area N/2 containing the box
    expected = 100 * 100 / (100 * 100 + (n * n / 2 - 100 * 100))
    assert c == pytest.approx(expected, abs=0.01)
    # the prior beats the whole image on centred objects and loses on corner ones
    assert c > metrics.heatmap_ciou(whole_image_maps(1, n), g)[0]
    corner = gt.vggss_gt_map([[0, 0, 0.2, 0.2]], size=n)
    assert metrics.heatmap_ciou(centre_prior_maps(1, n), corner)[0] < metrics.heatmap_ciou(whole_image_maps(1, n), corner)[0]


# ---------------------------------------------------------------- open set


OPEN = dict(  # A..E, see test_open_set_hand_computed
    cious=np.array([0.8, np.nan, 0.2, 0.9, np.nan]),
    conf=np.array([0.9, 0.8, 0.7, 0.6, 0.1]),
    pos=np.array([True, False, True, True, False]),
)


def test_open_set_hand_computed_voc():
    # ranked: A (TP), B (neg: FP), C (mislocalised: FP), D (TP), E (neg: FP); 3 source clips
    # recall steps 0 -> 1/3 at precision 1 (A), 1/3 -> 2/3 at precision 2/4 (D)
    ap = metrics.open_set_ap(OPEN["cious"], OPEN["conf"], OPEN["pos"])
    assert ap == pytest.approx(1 / 3 * 1 + 1 / 3 * 0.5)
    # F1 at A: P=1, R=1/3 -> 0.5; at D: P=1/2, R=2/3 -> 4/7
    f1 = metrics.open_set_max_f1(OPEN["cious"], OPEN["conf"], OPEN["pos"])
    assert f1 == pytest.approx(4 / 7)


def test_open_set_hand_computed_slavc():
    # thresholds .9 .8 .7 .6 .1 -> (P, R): (1, 1/3) (1/2, 1/3) (1/3, 1/2) (1/2, 1) (2/5, 1)
    p, r, thr = metrics.open_set_pr(OPEN["cious"], OPEN["conf"], OPEN["pos"], variant="slavc")
    np.testing.assert_allclose(p, [1, 1 / 2, 1 / 3, 1 / 2, 2 / 5])
    np.testing.assert_allclose(r, [1 / 3, 1 / 3, 1 / 2, 1, 1])
    # envelope [1, .5, .5, .5, .4]; AP = sum env[i] * (r[i+1] - r[i]) = .5/6 + .5/2
    ap = metrics.open_set_ap(OPEN["cious"], OPEN["conf"], OPEN["pos"], variant="slavc")
    assert ap == pytest.approx(0.5 / 6 + 0.5 / 2)


def test_painting_every_silent_frame_is_penalised():
    rng = np.random.default_rng(0)
    n_pos, n_neg = 40, 40
    cious = np.concatenate([rng.uniform(0.5, 1.0, n_pos), np.full(n_neg, np.nan)])
    pos = np.arange(n_pos + n_neg) < n_pos
    aware = np.where(pos, rng.uniform(0.6, 1.0, pos.size), rng.uniform(0.0, 0.4, pos.size))
    paints = np.where(pos, aware, rng.uniform(0.6, 1.0, pos.size))  # same on sources, hot on silence
    s_aware = metrics.summarize(cious, aware, pos)
    s_paint = metrics.summarize(cious, paints, pos)
    assert s_aware.ciou_at == s_paint.ciou_at == 1.0  # cIoU alone cannot tell them apart
    assert s_aware.ap == pytest.approx(1.0) and s_aware.max_f1 == pytest.approx(1.0)
    assert s_paint.ap < 0.9 and s_paint.max_f1 < 0.9


def test_confidence_modes():
    h = np.zeros((1, 4, 4))
    h[0, 0, :] = [4, 3, 2, 1]
    assert metrics.confidence_scores(h, "max")[0] == 4
    assert metrics.confidence_scores(h)[0] == pytest.approx((4 + 3 + 2 + 1) / 4)  # top 16 // 4 = 4
    with pytest.raises(ValueError):
        metrics.confidence_scores(h, "median")


def test_summarize_requires_confidences_with_negatives():
    with pytest.raises(ValueError):
        metrics.summarize(OPEN["cious"], None, OPEN["pos"])
