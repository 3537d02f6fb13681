"""Golden tests of the evaluator presets: hand-built maps with ties, boxes, and expected numbers
derived by hand from each public evaluator's formula (counted pixel by pixel in the comments)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from avssl.localization import metrics
from avssl.localization.protocols import PRESETS, Annotation, free_protocol, get_protocol, score_maps, summarize, upsample


def at(name, size):
    """A preset evaluated at size x size instead of 224 (same rules, hand-countable pixels)."""
    return replace(get_protocol(name), size=size)


def quadrant_map():
    """8x8 map of four 4x4 blocks: top-left 0.9, top-right 0.5, bottom-left 0.5, bottom-right 0.1.
    Sorted: 16 x 0.1, 32 x 0.5, 16 x 0.9; the threshold element sort[int(64 * 0.5)] = sort[32]
    falls inside the 32 tied 0.5 pixels."""
    m = np.full((8, 8), 0.5, np.float32)
    m[:4, :4] = 0.9
    m[4:, 4:] = 0.1
    return m


TOP_LEFT = Annotation("q", ((0.0, 0.0, 0.5, 0.5),), "vggss")  # rows 0:4, cols 0:4 = 16 px


def test_lvs_and_ezvsl_differ_on_a_tie():
    m = quadrant_map()[None]
    # LVS: 1 - minmax(-S) = 1 / .5 / .5 / 0; thr = .5; keeps > .5 -> top-left only (16 px).
    # GT union = top-left 16 px -> cIoU = 16 / (16 + 0) = 1.
    lvs = score_maps(m, [TOP_LEFT], at("lvs", 8))
    assert lvs.kept.tolist() == [16] and lvs.ciou[0] == 1.0
    # SSL-Align: minmax, keeps > thr -> the same 16 px.
    assert score_maps(m, [TOP_LEFT], at("sslalign", 8)).ciou[0] == 1.0
    # FNAC (EZ-VSL's >=, binary VGG-SS GT): keeps every tied .5 pixel -> 48 px; 16 / (16 + 32) = 1/3.
    fnac = score_maps(m, [TOP_LEFT], at("fnac", 8))
    assert fnac.kept.tolist() == [48] and fnac.ciou[0] == pytest.approx(1 / 3, abs=1e-15)
    # EZ-VSL: >= as FNAC, and its dataset code builds the VGG-SS GT with the Flickr rule (no
    # format passed): one box -> G = 0.5 on it. inter = 16 * .5 = 8, sum G = 8, kept outside = 32:
    # 8 / (8 + 32) = 0.2.
    ez = score_maps(m, [TOP_LEFT], at("ezvsl", 8))
    assert ez.kept.tolist() == [48] and ez.ciou[0] == pytest.approx(0.2, abs=1e-15)
    # avssl's free rule at kept share .5 is EZ-VSL's >= with the dataset GT: FNAC's number.
    assert score_maps(m, [TOP_LEFT], replace(free_protocol(0.5), size=8)).ciou[0] == pytest.approx(1 / 3, abs=1e-15)
    # one sample crosses the 0.5 bar under one rule and not the other
    assert lvs.summary["ciou_at"] == 1.0 and fnac.summary["ciou_at"] == 0.0


def test_flickr_consensus_with_column_ties():
    # Three annotator boxes in pixels of the 256x256 frame; at size 8 a pixel is int(8 * v / 256):
    # A (0,0,128,128) -> rows 0:4 cols 0:4; B (0,0,64,128) -> rows 0:4 cols 0:2; C (128,128,256,256)
    # -> rows 4:8 cols 4:8. Consensus min(sum / 2, 1): A&B 8 px = 1, A only 8 px = .5, C 16 px = .5;
    # sum G = 8 + 4 + 8 = 20.
    ann = Annotation("f", ((0, 0, 128, 128), (0, 0, 64, 128), (128, 128, 256, 256)), "flickr", frame=(256, 256))
    # S[:, j] = 8 - j: each column is 8 tied pixels; sort[32] is column 3's value.
    m = np.tile(np.arange(8, 0, -1, dtype=np.float32), (8, 1))[None]
    # >= keeps columns 0..3 (32 px): inter = 8*1 + 8*.5 = 12, kept outside G = 32 - 16 = 16 -> 12 / 36.
    for name in ("ezvsl", "fnac"):
        r = score_maps(m, [ann], at(name, 8))
        assert r.kept.tolist() == [32] and r.ciou[0] == pytest.approx(1 / 3, abs=1e-15)
    # > keeps columns 0..2 (24 px): inter = 8*1 + 4*.5 = 10, kept outside G = 24 - 12 = 12 -> 10 / 32.
    for name in ("lvs", "sslalign"):
        r = score_maps(m, [ann], at(name, 8))
        assert r.kept.tolist() == [24] and r.ciou[0] == pytest.approx(10 / 32, abs=1e-15)


def test_lvs_keeps_tied_maxima_through_its_ones_rule():
    # 4x4: 10 pixels at 1 (rows 0:2 and row 2 cols 0:2), 6 at 0. sort[8] = 1, so "> thr" keeps
    # nothing; LVS then zeroes values < 1 and keeps >= .5, which leaves the 10 maxima.
    s = np.zeros((4, 4), np.float32)
    s[:2] = 1.0
    s[2, :2] = 1.0
    g = np.zeros((1, 4, 4))
    g[0, :2] = 1.0  # 8 px
    lvs = score_maps(s[None], g, at("lvs", 4))
    assert lvs.kept.tolist() == [10] and lvs.ciou[0] == pytest.approx(0.8, abs=1e-15)  # 8 / (8 + 2)
    ssl = score_maps(s[None], g, at("sslalign", 4))  # plain > : nothing kept, 0 / 8
    assert ssl.kept.tolist() == [0] and ssl.ciou[0] == 0.0
    assert score_maps(s[None], g, at("fnac", 4)).ciou[0] == pytest.approx(0.8, abs=1e-15)  # >= : the same 10
    # constant maps: LVS leaves them un-normalised, P = 1 + S; kept iff 1 + S >= 1
    assert score_maps(np.full((1, 4, 4), 1.0, np.float32), g, at("lvs", 4)).kept.tolist() == [16]
    assert score_maps(np.full((1, 4, 4), -0.5, np.float32), g, at("lvs", 4)).kept.tolist() == [0]
    assert score_maps(np.full((1, 4, 4), 1.0, np.float32), g, at("sslalign", 4)).kept.tolist() == [0]
    assert score_maps(np.full((1, 4, 4), 1.0, np.float32), g, at("ezvsl", 4)).kept.tolist() == [16]


def test_sslalign_adaptive_threshold_is_gt_area():
    s = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    g = np.zeros((1, 4, 4))
    g.flat[11:] = 1.0  # the 5 pixels valued 11..15
    # thr = sort[16 - 5] = 11, kept > 11 -> 12..15 (4 px, all in G): 4 / 5
    r = score_maps(s, g, at("sslalign_adaptive", 4))
    assert r.kept.tolist() == [4] and r.ciou[0] == pytest.approx(0.8, abs=1e-15)
    # an empty GT uses N // 2 = 8: thr = sort[8] = 8, kept 9..15 = 7 px
    assert score_maps(s, np.zeros((1, 4, 4)), at("sslalign_adaptive", 4)).kept.tolist() == [7]


def test_slavc_relative_flag_vs_absolute_threshold():
    # 4x4 cosines 0.4 / 0.3 / 0.2 / 0.1 by column, value range (-1, 1): scores (v + 1) / 2 = .7 .65 .6 .55.
    v = np.tile(np.array([0.4, 0.3, 0.2, 0.1], np.float32), (4, 1))[None]
    left = Annotation("l", ((0.0, 0.0, 0.5, 1.0),), "vggss")  # columns 0:2, 8 px, binary (dataset rule)
    # --relative_prediction: minmax of the scores, thr = sort[int(16 * .5)] = column 1's value -> cols 0,1
    rel = score_maps(v, [left], at("slavc", 4), value_range=(-1, 1))
    assert rel.kept.tolist() == [8] and rel.ciou[0] == 1.0
    # default flags: scores >= 0.5 -> every pixel (all cosines > 0): 8 / (8 + 8)
    ab = score_maps(v, [left], at("slavc_absolute", 4), value_range=(-1, 1))
    assert ab.kept.tolist() == [16] and ab.ciou[0] == 0.5


def test_slavc_confidence_takes_ceil_of_a_quarter():
    # 3x3, value range (0, 8): scores k / 8 for k = 0..8. SLAVC slices [-n//4:] = [-3:] (Python
    # floors -9/4 to -3): mean(6, 7, 8) / 8 = 0.875 (n // 4 = 2 would give 0.9375).
    r = score_maps(np.arange(9, dtype=np.float32).reshape(1, 3, 3), [Annotation("c", ((0, 0, 1, 1),))],
                   at("slavc", 3), value_range=(0, 8))
    assert r.confidence[0] == pytest.approx(0.875, abs=1e-7)
    # 4x4 (n divisible by 4): scores k / 15, top 4 -> (12 + 13 + 14 + 15) / 60 = 0.9
    r = score_maps(np.arange(16, dtype=np.float32).reshape(1, 4, 4), [Annotation("c", ((0, 0, 1, 1),))],
                   at("slavc", 4), value_range=(0, 15))
    assert r.confidence[0] == pytest.approx(0.9, abs=1e-7)


# Six clips (confidence, source?, localised?): 0.9 pos hit, 0.8 negative, 0.7 pos hit,
# 0.6 pos miss, 0.5 negative, 0.4 pos hit.
CONF = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
POS = np.array([True, False, True, True, False, True])
CIOU = np.array([1.0, np.nan, 1.0, 0.0, np.nan, 1.0])


def test_slavc_open_set_hand_computed():
    # SLAVC thresholds: sort(conf)[:-1] walked down (N // 200 = 0 -> step 1): .8 .7 .6 .5 .4
    #   .8: TP1 FP1 FN3 -> P 1/2 R 1/4      .7: TP2 FP1 FN2 -> P 2/3 R 1/2
    #   .6: TP2 FP2 FN1 -> P 1/2 R 2/3 (the mislocalised clip is a FP, not a FN)
    #   .5: TP2 FP3 FN1 -> P 2/5 R 2/3      .4: TP3 FP3 FN0 -> P 1/2 R 1
    # envelope max(P[i:]) = 2/3 2/3 1/2 1/2 1/2; AP = 2/3*1/4 + 2/3*1/6 + 1/2*0 + 1/2*1/3 = 4/9
    assert metrics.slavc_average_precision(CIOU, CONF, POS) == pytest.approx(4 / 9, abs=1e-12)
    # F1 at sorted(conf)[::max(1, 6 // 10)] = every confidence, ascending:
    #   .4: 2/3  .5: P 2/5 R 2/3 -> 1/2  .6: 4/7  .7: 4/7  .8: P 1/2 R 1/4 -> 1/3  .9: P 1 R 1/4 -> 2/5
    f1 = metrics.slavc_f1_at_deciles(CIOU, CONF, POS)
    assert np.allclose(f1, [2 / 3, 1 / 2, 4 / 7, 4 / 7, 1 / 3, 2 / 5], atol=1e-12)
    assert metrics.slavc_precision_recall(CIOU, CONF, POS, -np.inf) == (0.5, 1.0)


def test_slavc_open_set_through_score_maps():
    # hit maps: the left-half map of the relative-flag test (cIoU 1); miss: mirrored (cIoU 0).
    hit = np.tile(np.array([0.4, 0.3, 0.2, 0.1], np.float32), (4, 1))
    maps = np.stack([hit, hit, hit, hit[:, ::-1], hit, hit])
    anns = [Annotation(f"s{i}", ((0.0, 0.0, 0.5, 1.0),)) if p else Annotation(f"s{i}", has_source=False)
            for i, p in enumerate(POS)]
    r = score_maps(maps, anns, at("slavc", 4), confidence=CONF, value_range=(-1, 1))
    s = r.summary
    assert np.isnan(r.ciou[~POS]).all() and r.ciou[POS].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert s["num_negatives"] == 2 and s["ciou_at"] == 0.75
    assert s["ap"] == pytest.approx(4 / 9, abs=1e-12) and s["max_f1"] == pytest.approx(2 / 3, abs=1e-12)
    assert s["precision_all"] == 0.5
    # success rate 1 at t = 0, 3/4 for 0 < t <= 1 (0.05 * 20 == 1.0): .05 * (1 + .75) / 2 + .95 * .75
    assert s["auc"] == pytest.approx(0.05 * 1.75 / 2 + 0.95 * 0.75, abs=1e-12)


def test_reference_auc_grid_float_excess():
    # a cIoU of exactly 3/20: the references' threshold 0.05 * 3 = 0.15000000000000002 rejects it.
    # reference: success 1, 1, 1, 0, ... -> .05 + .05 + .05 * 1/2 = .125; exact grid: .15 + .025 = .175
    c, pos = np.array([3 / 20]), np.array([True])
    assert summarize(c, pos, None, PRESETS["lvs"])["auc"] == pytest.approx(0.125, abs=1e-15)
    assert summarize(c, pos, None, free_protocol(0.5))["auc"] == pytest.approx(0.175, abs=1e-15)


def test_degenerate_box_scores_zero_like_the_references():
    # VGG-SS has zero-height boxes (y0 = y1 = 1.0): the GT map is empty; the references divide
    # 0 / (0 + kept) = 0 and count the clip as a failure (avssl's own metrics call it undefined).
    ann = Annotation("d", ((0.3, 1.0, 0.7, 1.0),))
    r = score_maps(quadrant_map()[None], [ann], at("lvs", 8))
    assert r.ciou[0] == 0.0 and r.summary["empty_gt"] == 1 and r.summary["ciou_at"] == 0.0
    # an inverted box (xmax < xmin) paints nothing in the references' slicing: counted, not fatal
    r = score_maps(quadrant_map()[None], [Annotation("i", ((0.5, 0.0, 0.25, 0.5), (0.0, 0.0, 0.5, 0.5)))], at("lvs", 8))
    assert r.ciou[0] == 1.0 and r.summary["inverted_boxes"] == 1


def test_upsampling_modes():
    m = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)[None]
    # EZ-VSL: bilinear, align_corners=True: output columns sample x = 0, 1/3, 2/3, 1
    assert np.allclose(upsample(m, at("ezvsl", 4))[0, 0], [0, 1 / 3, 2 / 3, 1], atol=1e-7)
    # LVS (cv2 INTER_LINEAR): half-pixel centres, x = (j + .5) / 2 - .5 = -.25 (held), .25, .75, 1.25 (held)
    assert np.allclose(upsample(m, at("lvs", 4))[0, 0], [0, 0.25, 0.75, 1], atol=1e-7)
    # SLAVC: bicubic, align_corners=True: corner cells are reproduced exactly
    u = upsample(m, at("slavc", 4))[0]
    assert u[0, 0] == 0.0 and u[0, 3] == 1.0 and u.dtype == np.float32
    # maps already at the size are left alone; heterogeneous shapes are accepted as a list
    same = np.random.default_rng(0).normal(size=(1, 4, 4)).astype(np.float32)
    assert np.array_equal(upsample([same[0], m[0]], at("slavc", 4))[0], same[0])
    with pytest.raises(ValueError, match="compares maps at"):
        upsample(m, replace(at("lvs", 4), upsample="none"))


def test_free_protocol_matches_avssl_metrics():
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(6, 16, 16)).astype(np.float32)
    gts = (rng.uniform(size=(6, 16, 16)) > 0.7).astype(np.float64)
    for share in (0.5, 0.3):
        p = replace(free_protocol(share), size=16)
        r = score_maps(maps, gts, p)
        assert np.array_equal(r.ciou, metrics.heatmap_ciou(maps, gts, share))
    # distinct values: kept = N - int(N * (1 - share)) = 256 - int(179.2) = 77
    assert (score_maps(maps, gts, replace(free_protocol(0.3), size=16)).kept == 77).all()
    assert get_protocol("free:0.3").kept_share == 0.3 and get_protocol("free", kept_share=0.2).kept_share == 0.2


def test_block_upsampled_224_maps_tie_and_lvs_differs_from_ezvsl():
    # a 4x4 map repeated into 56x56 blocks (a nearest-upsampled low-resolution map) at 224:
    # values 0..15 by block (3136 px each); blocks 0..7 fill sorted positions 0..25087, so
    # sort[25088] is the first pixel of block 8: >= keeps blocks 8..15 (25088 px), > drops the
    # whole tied block 8 and keeps 9..15 (7 * 3136 = 21952 px).
    low = np.arange(16, dtype=np.float32).reshape(4, 4)
    big = np.kron(low, np.ones((56, 56), np.float32))[None]
    ann = Annotation("b", ((0.0, 0.5, 1.0, 1.0),))  # bottom half = blocks 8..15: 25088 px
    ez = score_maps(big, [ann], "fnac")
    lvs = score_maps(big, [ann], "lvs")
    assert ez.kept.tolist() == [25088] and lvs.kept.tolist() == [21952]
    assert ez.ciou[0] == 1.0 and lvs.ciou[0] == pytest.approx(21952 / 25088, abs=1e-15)  # 0.875


def test_protocol_registry_errors_and_tensors():
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("nope")
    with pytest.raises(ValueError, match="kept_share"):
        free_protocol(0.0)
    with pytest.raises(ValueError, match="kept_share is for the free"):
        get_protocol("lvs", kept_share=0.3)
    with pytest.raises(ValueError, match="needs value_range"):
        replace(PRESETS["lvs"], normalize="fixed")
    with pytest.raises(ValueError, match="maps but"):
        score_maps(np.zeros((2, 4, 4)), [TOP_LEFT], at("lvs", 4))
    t = torch.from_numpy(quadrant_map())[None]
    assert score_maps(t, [TOP_LEFT], at("lvs", 8)).ciou[0] == 1.0


def test_evaluation_items_score_like_annotations():
    from avssl.localization.evaluate import LocalizationItem
    from avssl.localization.protocols import annotations_from_items

    # a Flickr item stores boxes as fractions of the 256 frame: same pixels as the pixel boxes
    px = ((0, 0, 128, 128), (0, 0, 64, 128), (128, 128, 256, 256))
    item = LocalizationItem("f", "v.mp4", 0.0, [[v / 256 for v in b] for b in px], "flickr")
    neg = LocalizationItem("n", "v.mp4", 0.0, [], "vggss", has_source=False)
    anns = annotations_from_items([item, neg])
    assert not anns[1].has_source and anns[0].frame is None
    m = np.tile(np.arange(8, 0, -1, dtype=np.float32), (8, 1))
    direct = score_maps(m[None], [Annotation("f", px, "flickr", frame=(256, 256))], at("lvs", 8))
    via = score_maps(np.stack([m, m]), anns, at("lvs", 8))
    assert via.ciou[0] == direct.ciou[0] == pytest.approx(10 / 32, abs=1e-15) and np.isnan(via.ciou[1])
