"""Scoring another method's saved .npy heatmaps: folder matching, coverage, baselines, CSV, command line."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from avssl.localization.external import load_annotations, score_external
from avssl.localization.protocols import score_maps

ROOT = Path(__file__).resolve().parents[1]

VGGSS = [
    {"file": "zpWuikVorYg_000032", "class": "elk bugling", "bbox": [[0.403125, 0.253125, 0.6, 0.75]]},
    {"file": "gg6yoeBoYxg_000000", "class": "children shouting", "bbox": [[0.13125, 0, 1.0, 0.31875]]},
    {"file": "ORaz32CQ29k_000130", "class": "coyote howling",
     "bbox": [[0.121875, 0.171875, 0.6, 0.853125], [0.765625, 0.275, 0.984375, 0.565625]]},
    {"file": "M1P1xla8rg0_000000", "class": "playing tambourine", "bbox": [[0.26875, 0.5, 0.753125, 1.0]]},
    {"file": "-oSzD8P2BtU_000030", "class": "reversing beeps", "bbox": [[0.471875, 0.303125, 0.9, 0.66875]]},
]
PLUS = ("video,audio,label\n9PmzQI8ZYpg_000147,9PmzQI8ZYpg_000147,non-sounding\n"
        "pnsntPDPfxg_000064,BbWdsbZ9TsM_000130,non-sounding\n")


@pytest.fixture()
def bench(tmp_path):
    (tmp_path / "vggss.json").write_text(json.dumps(VGGSS))
    (tmp_path / "plus.csv").write_text(PLUS)
    maps = tmp_path / "maps"
    (maps / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(maps / "zpWuikVorYg_000032.npy", rng.normal(size=(1, 1, 7, 7)).astype(np.float32))  # saved model output
    top = np.zeros((224, 224), np.float32)
    top[:71] = 1.0
    np.save(maps / "gg6yoeBoYxg_000000.npy", top)  # already at 224: the top band
    np.save(maps / "sub" / "ORaz32CQ29k_000130.npy", rng.normal(size=(14, 14)))  # nested, float64
    np.save(maps / "M1P1xla8rg0_000000.npy", np.full((7, 7), np.nan, np.float32))  # bad: NaN
    np.save(maps / "extra_000001.npy", np.zeros((7, 7), np.float32))  # no annotation
    np.save(maps / "9PmzQI8ZYpg_000147.npy", rng.normal(size=(7, 7)).astype(np.float32))  # negative by image id
    np.save(maps / "pnsntPDPfxg_000064@BbWdsbZ9TsM_000130.npy", rng.normal(size=(7, 7)).astype(np.float32))
    return tmp_path


def test_score_external_coverage_rows_and_baselines(bench):
    res = score_external(bench / "maps", bench / "vggss.json", ["lvs", "sslalign", "slavc"], extended=bench / "plus.csv",
                         progress=False)
    c = res.coverage
    # 5 annotated positives + 2 negatives; -oSzD8P2BtU has no map, M1P1xla8rg0's map is NaN
    assert (c["annotated"], c["scored"], c["missing"], c["bad"], c["unannotated_maps"]) == (7, 5, 2, 1, 1)
    assert c["missing_ids"] == ["-oSzD8P2BtU_000030"] and "non-finite" in c["bad_maps"]["M1P1xla8rg0_000000"]
    assert c["unannotated_map_ids"] == ["extra_000001"]
    assert res.coverage_line().startswith("annotated 7 / scored 5 / missing 2")
    rows = {r["sample_id"]: r for r in res.rows}
    assert set(rows) == {"zpWuikVorYg_000032", "gg6yoeBoYxg_000000", "ORaz32CQ29k_000130",
                         "9PmzQI8ZYpg_000147@9PmzQI8ZYpg_000147", "pnsntPDPfxg_000064@BbWdsbZ9TsM_000130"}
    assert rows["zpWuikVorYg_000032"]["map_shape"] == "7x7" and rows["9PmzQI8ZYpg_000147@9PmzQI8ZYpg_000147"]["silent"]
    # the gg6 box is columns 29:224 of rows 0:71 (13845 px); the map keeps rows 0:71 (15904 px) under >=...
    # LVS: values 1 on rows 0:71; 1 - minmax(-S) leaves 1 / 0; sort[25088] = 0, so > keeps the 15904 px
    g = rows["gg6yoeBoYxg_000000"]
    assert g["ciou[lvs]"] == pytest.approx(13845 / 15904, abs=1e-12)
    # whole image: LVS keeps everything (1 + 1 >= 1): 13845 / 50176; SSL-Align's > keeps nothing: 0
    assert g["ciou[lvs]:whole_image"] == pytest.approx(13845 / 50176, abs=1e-12)
    assert g["ciou[sslalign]:whole_image"] == 0.0
    assert rows["9PmzQI8ZYpg_000147@9PmzQI8ZYpg_000147"]["ciou[lvs]"] is None
    # per-sample numbers are score_maps on the loaded maps
    anns, _ = load_annotations(bench / "vggss.json")
    z = next(a for a in anns if a.sample_id == "zpWuikVorYg_000032")
    m = np.load(bench / "maps" / "zpWuikVorYg_000032.npy")[0, 0]
    assert rows[z.sample_id]["ciou[lvs]"] == score_maps(m[None], [z], "lvs").ciou[0]
    s = res.summaries
    assert set(s) == {"lvs", "sslalign", "slavc"} and set(s["lvs"]) == {"external", "centre_prior", "whole_image", "oracle_box"}
    assert s["lvs"]["external"]["num_samples"] == 5 and s["lvs"]["external"]["num_negatives"] == 2
    assert s["lvs"]["external"]["ap"] is None and s["slavc"]["oracle_box"]["ap"] is not None
    # the oracle ranks negatives last: every source clip is found before any negative
    assert s["slavc"]["oracle_box"]["max_f1"] >= s["slavc"]["external"]["max_f1"]
    paths = res.write(bench / "out")
    with open(paths["csv"]) as f:
        got = list(csv.DictReader(f))
    assert len(got) == 5 and "ciou[slavc]:oracle_box" in got[0] and "confidence[slavc]" in got[0]
    assert "| lvs | external |" in paths["md"].read_text()
    assert json.loads(paths["json"].read_text())["coverage"]["scored"] == 5


def test_no_matching_map_is_one_clear_error(bench, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    np.save(empty / "other.npy", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no map in"):
        score_external(empty, bench / "vggss.json", "lvs", progress=False)
    np.save(empty / "zpWuikVorYg_000032.npy", np.zeros((2, 3, 3)))  # a stack, not one map
    with pytest.raises(ValueError, match="no map in"):
        score_external(empty, bench / "vggss.json", "lvs", progress=False)


def test_command_line(bench, monkeypatch, capsys):
    from avssl.cli import score_heatmaps as tool

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("score_heatmaps", overrides=[f"maps_dir={bench / 'maps'}", f"annotations={bench / 'vggss.json'}",
                                                   "protocol=[lvs,free]", "kept_share=0.3", f"out_dir={bench / 'cli'}",
                                                   "progress=false"])
    res = tool.score_from_config(cfg)
    assert set(res.summaries) == {"lvs", "free0.3"} and (bench / "cli" / "per_sample.csv").exists()
    # the Hydra entry point itself: a user mistake is one line on stderr and exit status 2
    monkeypatch.setattr(sys, "argv", ["score_heatmaps.py", f"maps_dir={bench / 'nope'}",
                                      f"annotations={bench / 'vggss.json'}", f"out_dir={bench / 'cli2'}"])
    with pytest.raises(SystemExit) as e:
        tool.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("score_heatmaps.py: error: heatmap folder"), err
