"""Same-class twins: does a heatmap prefer the sounding object to its silent twin of the same class?
Known answers on hand-made maps, the score's summaries, and the twins' boxes read from the generated
world's ground truth and from its VGG-SS-style export alike."""

import numpy as np
import pytest
import torch

from avssl.localization import evaluate as ev
from avssl.localization.metrics import region_preference
from avssl.synth import generate_world


def test_region_preference_known_answers():
    maps = np.zeros((4, 4, 4))
    maps[0, :, :2] = 1.0  # hot left
    maps[1, :, 2:] = 1.0  # hot right
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    a[:, :, :2], b[:, :, 2:] = True, True  # A left, B right
    b[3] = a[3]  # item 3: B inside A -> no exclusive region of B
    pref = region_preference(maps, a, b)
    assert pref[0] == 1.0 and pref[1] == 0.0 and pref[2] == 0.5 and np.isnan(pref[3])
    # overlapping boxes: only the exclusive parts count
    m = np.zeros((4, 4))
    m[:, 1] = 5.0  # hot on the shared column
    m[:, 0] = 1.0
    aa = np.zeros((4, 4), bool)
    bb = np.zeros((4, 4), bool)
    aa[:, :2], bb[:, 1:3] = True, True
    assert region_preference(m, aa, bb)[0] == 1.0  # A-only column 0 (1) beats B-only column 2 (0)
    with pytest.raises(ValueError):
        region_preference(maps, a[:2], b[:2])


def test_score_reports_twin_preference_per_method():
    left, right = [[0.0, 0.0, 0.5, 1.0]], [[0.5, 0.0, 1.0, 1.0]]
    items = [ev.LocalizationItem("a", "a.mp4", 1.0, left, twin_boxes=right),
             ev.LocalizationItem("b", "b.mp4", 1.0, right, twin_boxes=left),
             ev.LocalizationItem("c", "c.mp4", 1.0, left),  # no twin: not counted
             ev.LocalizationItem("d", "d.mp4", 1.0, [], has_source=False)]
    hot_left = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    maps = torch.stack([hot_left, hot_left, hot_left, hot_left])
    res = ev.score(items, maps, eval_size=32)
    m = res.summaries["model"]
    assert m["twin_items"] == 2 and m["twin_preference"] == 0.5  # right on a, wrong on b
    assert res.summaries["oracle_box"]["twin_preference"] == 1.0
    assert res.summaries["whole_image"]["twin_preference"] == 0.5  # a flat map prefers neither
    rows = {r["item_id"]: r for r in res.rows}
    assert rows["a"]["twin_preference"] == 1.0 and rows["b"]["twin_preference"] == 0.0
    assert rows["c"]["twin_preference"] is None
    assert "twin pref." in ev.summary_table(res)
    plain = ev.score(items[2:], maps[2:], eval_size=32)  # no twins: no figure, no column of Nones
    assert plain.summaries["model"]["twin_preference"] is None and "twin_preference" not in plain.rows[0]


def test_twin_boxes_from_world_gt_and_vggss_export(tmp_path):
    world = generate_world(tmp_path / "w", "tiny", seed=0, workers=2, progress=False)
    gt_items = ev.load_items(world.root, "world")
    twins = {it.item_id.split("@")[0]: it.twin_boxes for it in gt_items if it.twin_boxes}
    held_out_twins = [r["clip_id"] for r in world.rows() if int(r["twin"]) and r["split"] == "test"]
    assert sorted(twins) == sorted(held_out_twins) and twins
    for cid, boxes in twins.items():
        g = world.clip_gt(cid)
        t = g["objects"][g["twin_object"]]["boxes"][g["num_frames"] // 2]
        assert boxes == [[t[0] / g["width"], t[1] / g["height"], t[2] / g["width"], t[3] / g["height"]]]
    exp = ev.load_items(world.root / "vggss" / "vggss.json", "vggss", media_root=world.root / "vggss" / ".." / "videos")
    exp_twins = {it.item_id: it.twin_boxes for it in exp if it.twin_boxes}
    assert sorted(exp_twins) == sorted(twins)
    for cid in twins:
        assert np.allclose(exp_twins[cid], twins[cid], atol=1e-4)
