"""Readers of the published localization benchmark files, on small files written in their layouts."""

import json

import pytest

from avssl.data import formats as F
from avssl.localization.external import load_annotations

# first entries of hche11/.../metadata/vggss.json, incl. integer 0 / 1 and a zero-height box
VGGSS = [
    {"file": "zpWuikVorYg_000032", "class": "elk bugling", "bbox": [[0.403125, 0.253125, 0.6, 0.75]]},
    {"file": "gg6yoeBoYxg_000000", "class": "children shouting", "bbox": [[0.13125, 0, 1.0, 0.31875]]},
    {"file": "ORaz32CQ29k_000130", "class": "coyote howling",
     "bbox": [[0.121875, 0.171875, 0.6, 0.853125], [0.765625, 0.275, 0.984375, 0.565625]]},
    {"file": "M1P1xla8rg0_000000", "class": "playing tambourine", "bbox": [[0.26875, 1.0, 0.753125, 1.0]]},
    {"file": "-oSzD8P2BtU_000030", "class": "reversing beeps", "bbox": [[0.471875, 0.303125, 1.2, 0.66875]]},
]


def write_vggss(tmp_path, data=VGGSS):
    p = tmp_path / "vggss.json"
    p.write_text(json.dumps(data))
    return p


def test_vggss_json_keys_classes_and_errors(tmp_path):
    ents = F.parse_vggss(write_vggss(tmp_path))
    assert [e.file for e in ents] == [d["file"] for d in VGGSS]
    assert ents[1].boxes == [(0.13125, 0.0, 1.0, 0.31875)] and ents[4].boxes[0][2] == 1.0  # clipped
    assert len(ents[2].boxes) == 2 and ents[3].label == "playing tambourine"
    assert F.vggss_classes(ents) == sorted(d["class"] for d in VGGSS)
    with pytest.raises(ValueError, match="entry 0 lacks"):
        F.parse_vggss(write_vggss(tmp_path, [{"class": "x", "bbox": []}]))
    with pytest.raises(ValueError, match="annotated twice"):
        F.parse_vggss(write_vggss(tmp_path, VGGSS[:1] * 2))
    with pytest.raises(ValueError, match="not 4 numbers"):
        F.parse_vggss(write_vggss(tmp_path, [{"file": "a", "bbox": [[0, 0, 1]]}]))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="Expecting"):
        F.parse_vggss(tmp_path / "bad.json")


def test_id_lists_in_published_layouts(tmp_path):
    (tmp_path / "vggss_test.csv").write_text("zpWuikVorYg_000032\ngEvCUcZ6w88_000030\n-oSzD8P2BtU_000030\n")
    assert F.read_id_list(tmp_path / "vggss_test.csv") == ["zpWuikVorYg_000032", "gEvCUcZ6w88_000030",
                                                           "-oSzD8P2BtU_000030"]
    (tmp_path / "flickr_test.csv").write_text("10000130166,202\n10007936344,0\n")
    assert F.read_id_list(tmp_path / "flickr_test.csv") == ["10000130166", "10007936344"]
    (tmp_path / "test_list.txt").write_text("2432219254.png\n2542659118.png\r\n\n")
    assert F.read_id_list(tmp_path / "test_list.txt") == ["2432219254", "2542659118"]
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(ValueError, match="duplicated"):
        F.read_id_list(tmp_path / "dup.txt")
    with pytest.raises(FileNotFoundError):
        F.read_id_list(tmp_path / "none.csv")


def test_flickr_xml_named_and_positional(tmp_path):
    d = tmp_path / "Annotations"
    d.mkdir()
    # named children after a non-coordinate first child
    (d / "10000130166.xml").write_text(
        "<annotation><object><bbox><idx>0</idx><xmin>10</xmin><ymin>20</ymin><xmax>100</xmax><ymax>200</ymax></bbox>"
        "</object><object><bbox><idx>1</idx><xmin>12</xmin><ymin>22</ymin><xmax>90</xmax><ymax>180</ymax></bbox>"
        "</object></annotation>")
    # the evaluators' positional reading: skip the first child, then xmin ymin xmax ymax
    (d / "10007936344.xml").write_text(
        "<annotation><object><bbox><annotator>a</annotator><c>0</c><c>128</c><c>64</c><c>256</c></bbox></object>"
        "</annotation>")
    anns = F.load_flickr_annotations(d)
    assert anns["10000130166"].boxes == [(10, 20, 100, 200), (12, 22, 90, 180)]
    assert anns["10007936344"].boxes == [(0, 128, 64, 256)] and anns["10007936344"].width == 256
    (d / "bad.xml").write_text("<annotation><object><bbox><a>1</a><b>2</b></bbox></object></annotation>")
    with pytest.raises(ValueError, match="bad.xml"):
        F.load_flickr_annotations(d)


PLUS_SILENT = ("video,audio,label\n"
               "9PmzQI8ZYpg_000147,9PmzQI8ZYpg_000147,non-sounding\n"
               "pnsntPDPfxg_000064,BbWdsbZ9TsM_000130,non-sounding\n"
               "zpWuikVorYg_000032,zpWuikVorYg_000032,sounding\n")


def test_plus_silent_csv(tmp_path):
    (tmp_path / "vggss_test_plus_silent.csv").write_text(PLUS_SILENT)
    ents = F.parse_plus_silent(tmp_path / "vggss_test_plus_silent.csv")
    assert len(ents) == 3 and [e.is_negative for e in ents] == [True, True, False]
    neg = F.negatives(ents)
    assert neg[0].own_audio and not neg[1].own_audio
    assert neg[1].sample_id == "pnsntPDPfxg_000064@BbWdsbZ9TsM_000130"
    (tmp_path / "bad.csv").write_text("video,audio,label\na,b\n")
    with pytest.raises(ValueError, match="row 2"):
        F.parse_plus_silent(tmp_path / "bad.csv")


def test_heard_unheard_class_split(tmp_path):
    j = write_vggss(tmp_path)
    (tmp_path / "vggss_heard_test.csv").write_text("zpWuikVorYg_000032\ngg6yoeBoYxg_000000\n")
    (tmp_path / "vggss_unheard_test.csv").write_text("ORaz32CQ29k_000130\nnot_in_json_000001\n")
    s = F.load_class_split(tmp_path / "vggss_heard_test.csv", tmp_path / "vggss_unheard_test.csv", j)
    assert s.heard_classes == ["children shouting", "elk bugling"] and s.unheard_classes == ["coyote howling"]
    assert s.overlap == [] and s.unannotated == ["not_in_json_000001"]
    (tmp_path / "u2.csv").write_text("zpWuikVorYg_000032\n")
    with pytest.raises(ValueError, match="in both"):
        F.load_class_split(tmp_path / "vggss_heard_test.csv", tmp_path / "u2.csv", j)


def test_load_annotations_test_list_and_extended(tmp_path):
    j = write_vggss(tmp_path)
    (tmp_path / "test.csv").write_text("zpWuikVorYg_000032\nORaz32CQ29k_000130\nmissing_000000\n")
    (tmp_path / "plus.csv").write_text(PLUS_SILENT)
    anns, rep = load_annotations(j, test_list=tmp_path / "test.csv", extended=tmp_path / "plus.csv")
    assert [a.sample_id for a in anns] == ["zpWuikVorYg_000032", "ORaz32CQ29k_000130",
                                          "9PmzQI8ZYpg_000147@9PmzQI8ZYpg_000147",
                                          "pnsntPDPfxg_000064@BbWdsbZ9TsM_000130"]
    assert [a.has_source for a in anns] == [True, True, False, False]
    assert anns[2].label == "silent" and anns[3].label == "offscreen" and anns[3].audio_id == "BbWdsbZ9TsM_000130"
    assert rep["unannotated"] == ["missing_000000"] and rep["not_in_test_list"] == 3 and rep["negatives"] == 2
    with pytest.raises(ValueError, match="fmt=vggss"):
        load_annotations(tmp_path / "test.csv")
