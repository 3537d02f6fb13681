"""avssl-localize's work (run_localization) end to end with the real tiny AVModel (random init) on encoded media."""

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from avssl.io.writer import write_av
from avssl.localization.job import run_localization

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["clip={num_frames: 4, fps: 8.0, frame_size: null, audio_rate: 24000, audio_channels: 1, audio_duration: 1.0}",
         "transforms={video: {crop_size: 32}, audio: {preset: avid}}", "progress=false", "batch_size=4"]


def _cfg(overrides):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("localize", overrides=overrides)


def _clip(path, w=64, h=48, n=24, fps=16.0, rate=24000, silent=False):
    rng = np.random.default_rng(len(str(path)))
    f = rng.integers(0, 255, size=(n, h, w, 3), dtype=np.uint8)
    t = np.arange(int(rate * n / fps)) / rate
    wav = np.zeros_like(t) if silent else 0.3 * np.sin(2 * np.pi * 440 * t)
    write_av(path, f, fps, wav[None].astype(np.float32), rate)
    return path


def test_real_avmodel_heatmaps_shapes():
    from avssl.localization import compute_heatmaps
    from avssl.models.registry import build_av_model
    from avssl.transforms.audio import LogSpectrogram

    torch.manual_seed(0)
    m = build_av_model("tiny").eval()
    spec = LogSpectrogram(sample_rate=24000)(0.1 * torch.randn(3, 1, 24000))
    video = torch.randn(3, 3, 4, 32, 32)
    hm = compute_heatmaps(m, video, spec, size=(48, 80))
    with torch.no_grad():
        d = m.video_dense_embeddings(video)
        a = m.embed_audio(spec)
    assert hm.low_res.shape == (3, *d.shape[2:]) and hm.frames.shape == (3, d.shape[2], 48, 80)
    assert hm.low_res.abs().max() <= 1 + 1e-5
    # the dense map agrees with the model's own audio-video geometry: cos = <a, v_pos>
    assert torch.allclose(hm.low_res, torch.einsum("bd,bdthw->bthw", a, d), atol=1e-5)
    n = hm.normalized().pooled
    assert torch.allclose(n.amax(dim=(1, 2)), torch.ones(3)) and torch.allclose(n.amin(dim=(1, 2)), torch.zeros(3))


def test_tool_files_and_mismatched_audio(tmp_path):
    src = _clip(tmp_path / "in" / "a.mp4")
    _clip(tmp_path / "in" / "b.mp4", w=48, h=64)
    other = _clip(tmp_path / "other.mp4", n=8)
    out = tmp_path / "out"
    rep = run_localization(_cfg(SMALL + [f"input={src.parent}", f"out_dir={out}", "overlays=1"]))
    assert len(rep["files"]) == 2 and rep["model"]["weights"] == "random"
    idx = json.loads((out / "files" / "index.json").read_text())
    mp4 = idx[str(src)]["mp4"]
    with av.open(mp4) as c:
        assert sum(1 for _ in c.decode(video=0)) == 24
    assert (out / "files" / "grid.png").stat().st_size > 0 and (out / "report.json").is_file()

    rep = run_localization(_cfg(SMALL + [f"input={src}", f"audio_from={other}", f"out_dir={out}/mis", "overlays=1"]))
    (outputs,) = rep["files"].values()
    assert "__audio-other" in outputs["mp4"]


def test_tool_annotation_set(tmp_path):
    # a two-clip world in the generator's GT layout, with real encoded videos
    root = tmp_path / "world"
    (root / "gt").mkdir(parents=True)
    (root / "videos").mkdir()
    rows = []
    for cid, silent in (("c0", False), ("c1", True), ("c2", False)):
        _clip(root / "videos" / f"{cid}.mp4", silent=silent)
        box = [-1, -1, -1, -1] if silent else [8, 8, 40, 40]
        gt = {"clip_id": cid, "split": "test", "path": f"videos/{cid}.mp4", "width": 64, "height": 48,
              "num_frames": 24, "frame_times": [i / 16 for i in range(24)], "source_class": "drum",
              "silent": silent, "sounding_object": None if silent else 0,
              "objects": [{"class": "drum", "sounding": not silent, "boxes": [box] * 24}]}
        (root / "gt" / f"{cid}.json").write_text(json.dumps(gt))
        rows.append(f"{cid},test")
    (root / "gt.csv").write_text("clip_id,split\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    rep = run_localization(_cfg(SMALL + [f"annotations={root}", f"out_dir={out}", "eval.eval_size=64"]))
    s = rep["eval"]["summaries"]
    assert set(s) == {"model", "centre_prior", "whole_image", "oracle_box"}
    assert s["model"]["num_samples"] == 3 and s["model"]["num_negatives"] == 1 and s["model"]["ap"] is not None
    # whole image on a 32x32 box in 64x48: cIoU = area fraction = 1024 / 3072
    res = json.loads((out / "eval" / "results.json").read_text())
    whole = [r["ciou_whole_image"] for r in res["samples"] if r["has_source"]]
    assert np.allclose(whole, (32 * 32) / (64 * 48), atol=0.02)
    for name in ("per_sample.csv", "grid_best.png", "grid_worst.png"):
        assert (out / "eval" / name).stat().st_size > 0


@pytest.mark.slow
def test_generated_world_exports_agree_and_evaluate(tmp_path):
    from avssl.localization import evaluate as ev
    from avssl.synth.generate import generate_world

    w = generate_world(tmp_path / "world", "tiny", seed=0, workers=1, progress=False)
    world = {it.item_id.split("@")[0]: it for it in ev.items_from_world(w.root, "test") if it.has_source}
    vggss = ev.load_items(w.exports["vggss"] / "vggss.json", "vggss", media_root=w.root / "videos")
    flickr = ev.load_items(w.exports["flickr"] / "Annotations", "flickr", media_root=w.root / "videos")
    assert {it.item_id for it in vggss} == set(world) == {it.item_id for it in flickr}
    for it in vggss:  # the export's middle-frame box is the world's own GT (5-decimal rounding)
        ref = world[it.item_id]
        assert it.video_path == ref.video_path and it.time == pytest.approx(ref.time)
        assert np.allclose(it.boxes, ref.boxes, atol=1e-4)
    for it in flickr:  # annotators jitter around the true box
        assert it.style == "flickr" and len(it.boxes) >= 2
        assert np.allclose(np.mean(it.boxes, 0), world[it.item_id].boxes[0], atol=0.08)
    out = tmp_path / "out"
    rep = run_localization(_cfg(SMALL + [f"annotations={w.exports['flickr'] / 'Annotations'}", "annotation_format=flickr",
                                          f"media_root={w.root / 'videos'}", f"out_dir={out}"]))
    assert rep["eval"]["summaries"]["model"]["num_samples"] == len(flickr)
