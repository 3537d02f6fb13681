"""Annotated localization sets whose videos are named the way downloaders name them.

VGG-SS annotates `<id>_000000`; Kinetics-style downloads are `<id>_000000_000010.mp4`, VGGSound's
`<id>_000000.mp4`, others `<id>.mp4`, in any sub-folder. avssl-localize must match all of them,
skip the annotations without a video and count them (annotated / found / missing) in its report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from avssl.localization.job import run_localization
from tests.media import write_coded

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["clip={num_frames: 4, fps: 8.0, frame_size: null, audio_rate: 24000, audio_channels: 1, audio_duration: 1.0}",
         "transforms={video: {crop_size: 32}, audio: {preset: avid}}", "progress=false", "batch_size=4",
         "eval.eval_size=64", "overlays=1"]


def _cfg(overrides):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("localize", overrides=overrides)


def _video(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_coded(path, seconds=1.5, fps=16.0, size=(48, 64), audio_rate=24000)
    return path


def test_vggss_annotations_find_kinetics_named_videos_and_count_the_rest(tmp_path):
    media = tmp_path / "vggsound"
    _video(media / "train" / "dog barking" / "AAAAAAAAAAA_000000_000010.mp4")  # Kinetics-style downloader
    _video(media / "BBBBBBBBBBB_000030.mp4")                                    # VGGSound's own name
    _video(media / "sub" / "CCCCCCCCCCC.mkv")                                   # the id alone
    ann = [{"file": "AAAAAAAAAAA_000000", "class": "dog barking", "bbox": [[0.1, 0.1, 0.6, 0.7]]},
           {"file": "BBBBBBBBBBB_000030", "class": "cat purring", "bbox": [[0.2, 0.2, 0.5, 0.5]]},
           {"file": "CCCCCCCCCCC_000000", "class": "drum", "bbox": [[0.0, 0.0, 0.5, 1.0]]},
           {"file": "DDDDDDDDDDD_000050", "class": "drum", "bbox": [[0.3, 0.3, 0.6, 0.6]]}]
    (tmp_path / "vggss.json").write_text(json.dumps(ann))
    out = tmp_path / "out"
    rep = run_localization(_cfg(SMALL + [f"annotations={tmp_path / 'vggss.json'}", "annotation_format=vggss",
                                          f"media_root={media}", f"out_dir={out}"]))
    cov = rep["eval"]["coverage"]
    assert (cov["annotated"], cov["found"], cov["missing"]) == (4, 3, 1)
    assert cov["missing_items"][0]["name"] == "DDDDDDDDDDD_000050"
    assert "DDDDDDDDDDD_000050_000060" in cov["missing_items"][0]["tried"]
    assert rep["eval"]["summaries"]["model"]["num_samples"] == 3
    saved = json.loads((out / "eval" / "results.json").read_text())
    assert saved["settings"]["coverage"]["missing"] == 1
    assert sorted(r["item_id"] for r in saved["samples"]) == ["AAAAAAAAAAA_000000", "BBBBBBBBBBB_000030",
                                                             "CCCCCCCCCCC_000000"]


def test_flickr_annotations_match_ids_in_sub_folders(tmp_path):
    from avssl.localization import evaluate as ev

    media = tmp_path / "flickr" / "videos"
    _video(media / "a" / "10000130166.mp4")
    _video(media / "10000276319_000000_000010.mp4")
    anns = tmp_path / "flickr" / "Annotations"
    anns.mkdir(parents=True)
    box = "<object><bbox><x>0</x><xmin>10</xmin><ymin>20</ymin><xmax>120</xmax><ymax>200</ymax></bbox></object>"
    for name in ("10000130166", "10000276319", "10000999999"):
        (anns / f"{name}.xml").write_text(f"<annotation>{box}</annotation>")
    items = ev.load_items(anns, "flickr", media_root=media)
    assert isinstance(items, ev.AnnotatedItems) and len(items) == 2
    assert items.coverage()["missing"] == 1 and items.missing[0]["name"] == "10000999999"
    assert "1 missing" in items.coverage_line()
    with pytest.raises(ValueError, match="no annotated video found"):
        (tmp_path / "empty").mkdir()
        ev.load_items(anns, "flickr", media_root=tmp_path / "empty")  # a folder without any of the videos
