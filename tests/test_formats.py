"""Every exporter round-trips through its parser; parsers accept real-format snippets."""

import csv

import pytest

from avssl.data import formats as F
from avssl.synth import ACTIONS, generate_world
from avssl.synth.world import ACTION_HMDB_NAMES, ACTION_UCF_NAMES, ucf_test_groups


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return generate_world(tmp_path_factory.mktemp("world_fmt"), "tiny", seed=0, workers=2, progress=False)


def test_kinetics_roundtrip(world):
    rows = {r["clip_id"]: r for r in world.rows()}
    ents = F.parse_kinetics_csv(world.root / "kinetics" / "train.csv") + F.parse_kinetics_csv(world.root / "kinetics" / "validate.csv")
    assert len(ents) == len(rows)
    for e in ents:
        assert e.label == rows[e.youtube_id]["source_class"]
        p = F.find_kinetics_video(world.root / "kinetics", e)
        assert p is not None and p.stat().st_size == (world.root / rows[e.youtube_id]["path"]).stat().st_size


def test_ucf101_roundtrip_group_aware(world):
    for fold in (1, 2, 3):
        classes, train, test = F.load_ucf101(world.root / "ucf101" / "ucfTrainTestlist", fold)
        assert classes == list(ACTION_UCF_NAMES)
        assert len(train) + len(test) == world.num_clips
        assert {e.group for e in test} <= ucf_test_groups(fold)
        assert not ({e.group for e in train} & {e.group for e in test})
        for e in train + test:
            assert (world.root / "ucf101" / "UCF-101" / e.path).exists()
            assert e.path.startswith(classes[e.label] + "/v_" + classes[e.label] + "_g")


def test_hmdb51_roundtrip(world):
    rows = {r["clip_id"]: r for r in world.rows()}
    for split in (1, 2, 3):
        classes, ents = F.load_hmdb51(world.root / "hmdb51" / "testTrainMulti_7030_splits", split)
        assert len(classes) == len(ACTIONS) and len(ents) == world.num_clips
        for e in ents:
            cid = e.path.split("/")[1].rsplit(".", 1)[0]
            assert ACTION_HMDB_NAMES[int(rows[cid]["action_index"])] == classes[e.label]
            assert (world.root / "hmdb51" / "videos" / e.path).exists()
        assert {e.tag for e in ents} <= {0, 1, 2}


def test_vggss_and_flickr_roundtrip(world):
    rows = {r["clip_id"]: r for r in world.rows()}
    vgg = F.parse_vggss(world.root / "vggss" / "vggss.json")
    fl = F.load_flickr_annotations(world.root / "flickr" / "Annotations")
    assert vgg and set(fl) == {a.file for a in vgg}
    for a in vgg:
        r = rows[a.file]
        assert r["split"] == "test" and int(r["sounding_object"]) >= 0
        x0, y0, x1, y1 = a.boxes[0]
        w, h = int(r["width"]), int(r["height"])
        assert (round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)) == tuple(int(r[f"mid_box_{k}"]) for k in ("x0", "y0", "x1", "y1"))
        f = fl[a.file]
        assert (f.width, f.height) == (w, h) and len(f.boxes) == world.preset.flickr_annotators
        assert f.boxes[0] == tuple(int(r[f"mid_box_{k}"]) for k in ("x0", "y0", "x1", "y1"))
        assert (world.root / "flickr" / "frames" / f"{a.file}.jpg").exists()


def test_esc50_roundtrip(world):
    ents = F.parse_esc50(world.root / "esc50")
    rows = [r for r in world.rows() if not int(r["silent"])]
    assert len(ents) == len(rows) and {e.fold for e in ents} <= {1, 2, 3, 4, 5}
    by_src = {r["index"]: r for r in rows}
    for e in ents:
        assert e.category == by_src[e.src_file]["source_class"]


def test_parsers_accept_real_format_snippets(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 ApplyLipstick\r\n")
    (tmp_path / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n")
    (tmp_path / "testlist01.txt").write_text("ApplyLipstick/v_ApplyLipstick_g01_c01.avi\r\n")
    classes, tr, te = F.load_ucf101(tmp_path, 1)
    assert classes == ["ApplyEyeMakeup", "ApplyLipstick"] and tr[0].group == 8 and te[0].label == 1
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split,is_cc\nabseiling,---QUuC4vJs,3,13,train,0\n")
    k = F.parse_kinetics_csv(tmp_path / "k.csv")[0]
    assert k.filename_stem == "---QUuC4vJs_000003_000013"
    h = tmp_path / "hm"
    h.mkdir()
    (h / "brush_hair_test_split1.txt").write_text("April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \n")
    assert F.load_hmdb51(h, 1)[1][0].tag == 1
    (tmp_path / "a.xml").write_text("<annotation><object><bbox><idx>0</idx><xmin>10</xmin><ymin>20</ymin>"
                                    "<xmax>100</xmax><ymax>200</ymax></bbox></object></annotation>")
    a = F.parse_flickr_xml(tmp_path / "a.xml")
    assert a.boxes == [(10, 20, 100, 200)] and a.width == 256
    with pytest.raises(ValueError):
        F.load_ucf101(tmp_path, 4)
    e = tmp_path / "esc" / "meta"
    e.mkdir(parents=True)
    with open(e / "esc50.csv", "w", newline="") as f:
        csv.writer(f).writerows([["filename", "fold", "target", "category", "esc10", "src_file", "take"],
                                 ["1-100032-A-0.wav", 1, 0, "dog", "True", 100032, "A"]])
    assert F.parse_esc50(tmp_path / "esc", check_files=False)[0].esc10
