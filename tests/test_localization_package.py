"""Benchmark packages as the public test sets ship (frames/<id>.jpg + audio/<id>.wav + VGG-SS JSON +
*_plus_silent.csv), written by the generated world's exporter, localized from a trained checkpoint and
scored again from the saved .npy maps: the same per-sample cIoU under every protocol."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from avssl.localization.job import run_localization
from avssl.utils.configs import compose_config
from avssl.utils.errors import UserError

SMALL = ["progress=false", "batch_size=4", "package.input_size=64"]
PROTOCOLS = ["lvs", "ezvsl", "slavc", "free:0.5"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _replace(path: Path, data: bytes | None = None, src: Path | None = None) -> None:
    """Write a new file at ``path`` (never through a hard link into the world)."""
    if path.exists():
        path.unlink()
    if src is not None:
        shutil.copyfile(src, path)
    else:
        path.write_bytes(data)


@pytest.fixture(scope="module")
def package(tiny_world, tmp_path_factory):
    """The tiny world's test split as a VGG-SS package, plus four broken samples: a jpg that is not
    an image, a wav that is not audio, a sample without sound and one without a frame."""
    from avssl.synth.export import export_localization_package

    pkg = export_localization_package(tiny_world, tmp_path_factory.mktemp("pkg") / "vggss")
    anns = json.loads((pkg / "vggss.json").read_text())
    good = anns[0]["file"]
    extra = []
    for name in ("broken_jpg", "broken_wav", "no_sound", "no_frame"):
        extra.append({"file": name, "class": "horn", "bbox": [[0.1, 0.1, 0.5, 0.5]]})
    _replace(pkg / "frames" / "broken_jpg.jpg", b"\xff\xd8 this is not a picture")
    _replace(pkg / "audio" / "broken_jpg.wav", src=pkg / "audio" / f"{good}.wav")
    _replace(pkg / "frames" / "broken_wav.jpg", src=pkg / "frames" / f"{good}.jpg")
    _replace(pkg / "audio" / "broken_wav.wav", b"RIFF....WAVEfmt garbage")
    _replace(pkg / "frames" / "no_sound.jpg", src=pkg / "frames" / f"{good}.jpg")
    _replace(pkg / "vggss.json", json.dumps(anns + extra).encode())
    return pkg


@pytest.fixture(scope="module")
def checkpoint(tiny_world, tmp_path_factory):
    """A tiny AVID run on the tiny world (one epoch): a real trained checkpoint."""
    from avssl.engine.pretrain import train

    run = tmp_path_factory.mktemp("run") / "avid"
    train(compose_config("pretrain", ["experiment=tiny", f"run_dir={run}", f"data.world_dir={tiny_world}",
                                      "trainer.epochs=1", "seed=0"]))
    return run


def test_exporter_writes_the_public_layout(tiny_world, tmp_path):
    from PIL import Image

    from avssl.data.formats.extended import negatives, parse_plus_silent
    from avssl.data.formats.lists import read_id_list
    from avssl.data.formats.vggss import parse_vggss
    from avssl.synth.export import export_localization_package

    pkg = export_localization_package(tiny_world, tmp_path / "vggss")
    with open(tiny_world / "gt.csv", newline="") as f:
        test = [r for r in csv.DictReader(f) if r["split"] == "test"]
    visible = {r["clip_id"]: r for r in test if int(r["sounding_object"]) >= 0 and int(r["mid_box_x0"]) >= 0}
    silent = {r["clip_id"] for r in test} - set(visible)
    assert silent, "the tiny world's test split has a clip without a visible source"
    ents = parse_vggss(pkg / "vggss.json")
    assert {e.file for e in ents} == set(visible) == set(read_id_list(pkg / "vggss_test.csv"))
    for e in ents:  # the box of the annotated (middle) frame, as fractions of the frame
        r = visible[e.file]
        w, h = int(r["width"]), int(r["height"])
        assert np.allclose(np.array(e.boxes[0]) * [w, h, w, h], [int(r[f"mid_box_{k}"]) for k in ("x0", "y0", "x1", "y1")],
                           atol=1e-3)
    neg = negatives(parse_plus_silent(pkg / "vggss_test_plus_silent.csv"))
    assert {n.video for n in neg} == silent and all(n.own_audio for n in neg)
    assert {p.stem for p in (pkg / "frames").iterdir()} == {r["clip_id"] for r in test}
    assert {p.stem for p in (pkg / "audio").iterdir()} == {r["clip_id"] for r in test}
    # the frame is the world's middle frame (what the ground truth annotates)
    clip = sorted(visible)[0]
    gt = json.loads((tiny_world / "gt" / f"{clip}.json").read_text())
    with Image.open(pkg / "frames" / f"{clip}.jpg") as im:
        assert im.size == (gt["width"], gt["height"])
    assert visible[clip]["mid_frame"] == str(gt["num_frames"] // 2)


def test_package_from_checkpoint_and_from_saved_maps_agree(package, checkpoint, tmp_path):
    from avssl.localization.external import score_external

    out = tmp_path / "loc"
    rep = run_localization(compose_config("localize", SMALL + [
        f"annotations={package}", f"checkpoint={checkpoint}", f"out_dir={out}", "save_maps=true",
        f"eval.protocols=[{','.join(PROTOCOLS)}]"]))
    assert rep["model"]["weights"] != "random"
    cov = rep["eval"]["coverage"]
    # 7 world samples + 4 broken: 2 missing (no sound, no frame), 2 unreadable (bad jpg, bad wav), listed
    assert (cov["annotated"], cov["found"], cov["missing"], cov["readable"], cov["unreadable"]) == (11, 9, 2, 7, 2)
    assert {m["name"] for m in cov["missing_items"]} == {"no_sound", "no_frame"}
    assert {u["item_id"]: u["reason"] for u in cov["unreadable_items"]} == {"broken_jpg": "unreadable-image",
                                                                           "broken_wav": "corrupt"}
    summary = (out / "eval" / "summary.md").read_text()
    assert summary.startswith("coverage: 11 annotated, 9 found (2 missing") and "7 readable (2 unreadable" in summary
    for name in ("per_sample.csv", "results.json", "protocols.json", "grid_best.png", "grid_worst.png"):
        assert (out / "eval" / name).stat().st_size > 0
    rows = {r["item_id"]: r for r in _rows(out / "eval" / "per_sample.csv")}
    assert len(rows) == 7 and [k for k, r in rows.items() if r["silent"] == "True"] == ["clip_000011@clip_000011"]
    protos = json.loads((out / "eval" / "protocols.json").read_text())
    assert set(protos) == {"lvs", "ezvsl", "slavc", "free0.5"}
    assert all({"model", "centre_prior", "whole_image"} <= set(by) for by in protos.values())
    # the whole-image baseline keeps every pixel under LVS: cIoU = the box's share of the 224x224 GT frame
    boxes = {a["file"]: a["bbox"][0] for a in json.loads((package / "vggss.json").read_text())}
    for sid, r in rows.items():
        if r["silent"] == "True":
            assert r["ciou[lvs]"] == ""
            continue
        x0, y0, x1, y1 = (int(224 * v) for v in boxes[sid])
        assert float(r["ciou[lvs]:whole_image"]) == pytest.approx((x1 - x0) * (y1 - y0) / 224**2, abs=1e-9)

    maps = out / "eval" / "maps"
    assert sorted(p.stem for p in maps.glob("*.npy")) == sorted(rows)
    ext = score_external(maps, package / "vggss.json", PROTOCOLS, extended=package / "vggss_test_plus_silent.csv",
                         value_range=(-1.0, 1.0), method="model", progress=False)
    assert ext.coverage["annotated"] == 11 and ext.coverage["scored"] == 7
    ext_rows = {r["sample_id"]: r for r in ext.rows}  # the negative is keyed <image>@<audio> by both
    assert set(ext_rows) == set(rows)
    cols = [f"ciou[{p}]" for p in ("lvs", "ezvsl", "slavc", "free0.5")]
    compared = 0
    for sid, r in rows.items():
        for col in cols + [c + ":centre_prior" for c in cols]:
            a, b = r[col], ext_rows[sid][col]
            if b is None:
                assert a == ""
            else:
                assert float(a) == pytest.approx(b, abs=1e-12)
                compared += 1
    assert compared == 6 * 8
    for p in ("lvs", "slavc"):
        for key in ("ciou_at", "auc", "mean_ciou"):
            assert protos[p]["model"][key] == pytest.approx(ext.summaries[p]["model"][key], abs=1e-12)


def test_single_frame_path_and_saved_embeddings(package, tmp_path):
    """A package item = the video encoder on its frame repeated to the clip length, stretched to the
    input size, with the window of the wav centred on its middle; a saved audio embedding gives the
    same map as the sound it was computed from."""
    from PIL import Image

    from avssl.io import read_clip
    from avssl.localization.heatmap import compute_heatmaps
    from avssl.localization.job import build_inputs

    pkg = tmp_path / "pkg"
    (pkg / "frames").mkdir(parents=True)
    (pkg / "audio").mkdir()
    (pkg / "embeddings").mkdir()
    anns = [a for a in json.loads((package / "vggss.json").read_text()) if not a["file"].startswith(("broken", "no_"))][:3]
    (pkg / "vggss.json").write_text(json.dumps(anns))
    for a in anns:
        shutil.copyfile(package / "frames" / f"{a['file']}.jpg", pkg / "frames" / f"{a['file']}.jpg")
        shutil.copyfile(package / "audio" / f"{a['file']}.wav", pkg / "audio" / f"{a['file']}.wav")
    base = [f"annotations={pkg}", "save_maps=true", "eval.protocols=[lvs]", "package.input_size=48"]
    run_localization(compose_config("localize", SMALL + base + [f"out_dir={tmp_path / 'wav'}"]))
    saved = {p.stem: np.load(p) for p in (tmp_path / "wav" / "eval" / "maps").glob("*.npy")}

    cfg = compose_config("localize", SMALL + base)
    model, spec, video_t, audio_t, _ = build_inputs(cfg, package=True)
    sid = anns[0]["file"]
    with Image.open(pkg / "frames" / f"{sid}.jpg") as im:
        frame = torch.from_numpy(np.asarray(im.convert("RGB").resize((48, 48), Image.BILINEAR)).copy())
    wav = read_clip(pkg / "audio" / f"{sid}.wav", 1.0 - spec.video_duration / 2, spec, video=False).audio  # 2 s file
    video = video_t(frame[None, None].expand(1, spec.num_frames, 48, 48, 3))
    with torch.no_grad():
        emb = model.embed_audio(audio_t(wav[None]))
        hm = compute_heatmaps(model, video, audio_emb=emb)
    slot = hm.low_res[0, hm.low_res.shape[1] // 2].numpy()
    assert slot.shape == saved[sid].shape
    # torchvision's antialiased resize vs Pillow's bilinear differ by a grey level here and there
    assert np.corrcoef(slot.ravel(), saved[sid].ravel())[0, 1] > 0.99

    # the first sample brings its embedding instead of its sound
    (pkg / "audio" / f"{sid}.wav").unlink()
    np.save(pkg / "embeddings" / f"{sid}.npy", emb[0].numpy())
    run_localization(compose_config("localize", SMALL + base + [f"out_dir={tmp_path / 'emb'}"]))
    again = {p.stem: np.load(p) for p in (tmp_path / "emb" / "eval" / "maps").glob("*.npy")}
    assert set(again) == set(saved)
    for k in saved:
        assert np.allclose(again[k], saved[k], atol=1e-5), k

    np.save(pkg / "embeddings" / f"{sid}.npy", np.zeros(3, np.float32))  # wrong size: counted, not fatal
    rep = run_localization(compose_config("localize", SMALL + base + [f"out_dir={tmp_path / 'bad'}"]))
    (bad,) = rep["eval"]["coverage"]["unreadable_items"]
    assert bad["item_id"] == sid and bad["reason"] == "bad-embedding"


def test_package_mistakes_are_one_line(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "frames").mkdir(parents=True)
    (pkg / "frames" / "a.jpg").write_bytes(b"not a jpg")
    with pytest.raises(UserError, match="no annotations"):
        run_localization(compose_config("localize", SMALL + [f"annotations={pkg}", f"out_dir={tmp_path / 'o'}"]))
    (pkg / "audio").mkdir()
    (pkg / "audio" / "a.wav").write_bytes(b"not a wav")
    (pkg / "vggss.json").write_text(json.dumps([{"file": "a", "class": "x", "bbox": [[0, 0, 0.5, 0.5]]}]))
    with pytest.raises(UserError, match="no item could be read"):
        run_localization(compose_config("localize", SMALL + [f"annotations={pkg}", f"out_dir={tmp_path / 'o'}"]))


def test_flickr_package_and_test_list(tiny_world, tmp_path):
    """The world's Flickr export is a package too (frames/ + audio/ + Annotations/): consensus boxes
    as fractions of the annotated frame; a test list keeps its ids and counts the unannotated."""
    from avssl.data.formats.flickr import load_flickr_annotations
    from avssl.localization.package import load_package

    pkg = tiny_world / "flickr"
    items = load_package(pkg)
    anns = load_flickr_annotations(pkg / "Annotations")
    assert {it.item_id for it in items} == set(anns) and items.coverage()["missing"] == 0
    for it in items:
        a = anns[it.item_id]
        assert it.media == "image" and it.style == "flickr" and len(it.boxes) == len(a.boxes)
        assert np.allclose(np.array(it.boxes) * ([a.width, a.height] * 2), a.boxes)
        assert Path(it.video_path).parent.name == "frames" and Path(it.audio_path).suffix == ".wav"
    keep = sorted(anns)[:2]
    (tmp_path / "flickr_test.csv").write_text("".join(f"{k},1\n" for k in keep) + "not_annotated,1\n")
    some = load_package(pkg, test_list=tmp_path / "flickr_test.csv")
    assert [it.item_id for it in some] == keep and some.report["unannotated"] == ["not_annotated"]
