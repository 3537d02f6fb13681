"""Scoring an annotated set: per-sample rows, summaries with baselines, result files and grids."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from avssl.localization import evaluate as ev


def _items():
    left = [[0.0, 0.0, 0.5, 1.0]]
    corner = [[0.0, 0.0, 0.25, 0.25]]
    return [
        ev.LocalizationItem("left", "a.mp4", 1.0, left, label="drum"),
        ev.LocalizationItem("corner", "b.mp4", 1.0, corner, label="bell"),
        ev.LocalizationItem("silent", "c.mp4", 1.0, [], has_source=False, label="silent"),
        ev.LocalizationItem("flickr", "d.mp4", 1.0, [[0, 0, 0.5, 1.0], [0, 0, 0.5, 1.0]], style="flickr"),
    ]


def _maps():
    hot_left = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    hot_right = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    return torch.stack([hot_left, 0.7 * hot_right, 0.1 * hot_left, hot_left]) * 0.8


def test_score_known_answers():
    res = ev.score(_items(), _maps(), eval_size=64)
    rows = {r["item_id"]: r for r in res.rows}
    # left-hot map predicts exactly the left half (bilinear keeps left > right)
    assert rows["left"]["ciou"] == pytest.approx(1.0)
    # corner box (16x16 on 64) missed entirely: 0 / (256 + 2048)
    assert rows["corner"]["ciou"] == 0.0
    assert rows["silent"]["ciou"] is None
    # two annotators agree on the left half -> consensus 1 there -> cIoU 1
    assert rows["flickr"]["ciou"] == pytest.approx(1.0)
    # whole-image baseline: area fractions 1/2, 1/16, 1/2
    assert rows["left"]["ciou_whole_image"] == pytest.approx(0.5)
    assert rows["corner"]["ciou_whole_image"] == pytest.approx(1 / 16)
    m = res.summaries["model"]
    assert m["ciou_at"] == pytest.approx(2 / 3) and m["mean_ciou"] == pytest.approx(2 / 3)
    assert m["num_negatives"] == 1 and m["ap"] is not None
    # confidence ranking: left = flickr (TP, TP) > corner (FP: mislocalised) > silent (FP)
    # recall steps 0 -> 2/3 at precision 1, then only FPs: AP = 2/3; best F1 at P=1, R=2/3 -> 0.8
    assert m["ap"] == pytest.approx(2 / 3)
    assert m["max_f1"] == pytest.approx(0.8)
    assert set(res.summaries) == {"model", "centre_prior", "whole_image", "oracle_box"}
    # the ceiling: left half = exactly the kept half -> 1; a 1/16 corner box -> (1/16) / (1/2)
    assert rows["left"]["ciou_oracle_box"] == pytest.approx(1.0)
    assert rows["corner"]["ciou_oracle_box"] == pytest.approx(1 / 8, abs=2e-3)  # ties at the band edge
    assert res.summaries["whole_image"]["ciou_at"] == pytest.approx(2 / 3)  # 1/2, 1/16, 1/2
    with pytest.raises(ValueError):
        ev.score(_items(), _maps()[:2])


def test_items_validate():
    with pytest.raises(ValueError):
        ev.LocalizationItem("x", "x.mp4", 0.0, [], has_source=True)
    with pytest.raises(ValueError):
        ev.LocalizationItem("x", "x.mp4", 0.0, [[0, 0, 1, 1]], style="coco")


def test_write_results_and_grids(tmp_path):
    res = ev.score(_items(), _maps(), eval_size=32)
    res.frames = [np.full((24, 32, 3), 60 * i, np.uint8) for i in range(4)]
    paths = res.write(tmp_path, grid_size=2)
    data = json.loads(paths["json"].read_text())
    assert data["summaries"]["model"]["ciou_at"] == res.summaries["model"]["ciou_at"]
    assert len(data["samples"]) == 4
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["item_id"] for r in rows] == ["left", "corner", "silent", "flickr"]
    assert rows[2]["ciou"] == ""  # undefined for negatives, not zero
    for name in ("grid_best", "grid_worst"):
        assert Image.open(paths[name]).size[0] > 100
    table = ev.summary_table({"demo": res})
    assert table.count("\n") == 1 + 4 and "centre_prior" in table


def test_clip_start_for():
    assert ev.clip_start_for(1.0, 3.0, 0.5) == 0.75
    assert ev.clip_start_for(0.1, 3.0, 0.5) == 0.0
    assert ev.clip_start_for(2.9, 3.0, 0.5) == 2.5
    assert ev.clip_start_for(0.2, 0.3, 0.5) == 0.0


def _fake_world(root):
    """Three clips in the generated world's ground-truth layout (gt.csv + gt/<id>.json)."""
    import json as _json

    def clip(cid, cls, sounding, objects, silent=False):
        return {"clip_id": cid, "split": "test", "path": f"videos/{cid}.mp4", "width": 100, "height": 50,
                "num_frames": 5, "frame_times": [i / 10 for i in range(5)], "source_class": cls,
                "silent": silent, "offscreen": sounding is None and not silent, "sounding_object": sounding,
                "objects": objects}

    def obj(cls, sounding, box):
        return {"class": cls, "sounding": sounding, "boxes": [box] * 5}

    clips = [
        clip("a", "drum", 0, [obj("drum", True, [10, 5, 30, 25]), obj("bell", False, [60, 10, 90, 40])]),
        clip("b", "bell", 0, [obj("bell", True, [0, 0, 50, 50])]),
        clip("c", "horn", None, [obj("drum", False, [-1, -1, -1, -1])], silent=True),
    ]
    (root / "gt").mkdir(parents=True)
    for c in clips:
        (root / "gt" / f"{c['clip_id']}.json").write_text(_json.dumps(c))
    with open(root / "gt.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["clip_id", "split"])
        w.writeheader()
        w.writerows({"clip_id": c["clip_id"], "split": c["split"]} for c in clips)


def test_items_from_world_layout(tmp_path):
    _fake_world(tmp_path)
    items = {it.item_id: it for it in ev.items_from_world(tmp_path, "test")}
    assert set(items) == {"a@2", "b@2", "c@2"}
    a = items["a@2"]
    assert a.has_source and a.time == pytest.approx(0.2) and a.label == "drum"
    assert a.boxes == [[0.1, 0.1, 0.3, 0.5]]  # pixels / (100, 50)
    assert not items["c@2"].has_source and items["c@2"].label == "silent"
    assert len(ev.items_from_world(tmp_path, "test", frames=3)) == 9
    # mismatched: clip a's silent bell distractor gets clip b's bell sound; GT = the distractor
    (m,) = ev.items_from_world(tmp_path, "test", mismatched=True)
    assert m.video_path.endswith("a.mp4") and m.audio_path.endswith("b.mp4")
    assert m.boxes == [[0.6, 0.2, 0.9, 0.8]] and m.label == "bell" and m.audio_time == pytest.approx(0.2)
    # control: the same items and boxes with the clip's own sound
    (c,) = ev.items_from_world(tmp_path, "test", mismatched="control")
    assert c.item_id == m.item_id and c.boxes == m.boxes and c.audio_path is None and c.audio_time is None
    with pytest.raises(ValueError, match="control"):
        ev.items_from_world(tmp_path, "test", mismatched="yes")
    with pytest.raises(ValueError):
        ev.items_from_world(tmp_path, "train")
    with pytest.raises(ValueError):
        ev.load_items(tmp_path, "vggss")  # needs media_root
