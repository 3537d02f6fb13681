"""Per-item spatial policy (avssl.data.spatial): every mode gives the configured shape on frames of
any size / aspect ratio, random resized crops follow torchvision's rule and are seeded, resize_crop
is torchvision's Resize + CenterCrop, placements map output pixels back to the source frame; and
end to end, files of mixed sizes and aspect ratios pretrain, fine-tune, extract and localize."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
from hydra import compose, initialize_config_dir

from avssl.data.spatial import (MODES, Placement, SpatialPolicy, map_to_source, policy_from_config,
                                sample_resized_crop)
from media import write_coded

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")
# (H, W): 16:9, 4:3, 9:16, 1:1 and odd sizes (853x480 and 202x360 as W x H)
SIZES = [(180, 320), (120, 160), (320, 180), (96, 96), (480, 853), (360, 202)]


def frames(h, w, t=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, h, w, 3), dtype=torch.uint8, generator=g)


# ---------------------------------------------------------------------------------------- modes


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("mode", [m for m in MODES if m != "none"])
@pytest.mark.parametrize("size", [56, (48, 64)])
def test_every_mode_gives_the_configured_shape(hw, mode, size):
    pol = SpatialPolicy(mode, size)
    out, placement = pol.apply(frames(*hw), np.random.default_rng(0))
    want = (size, size) if isinstance(size, int) else size
    assert out.shape == (2, *want, 3) and out.dtype == torch.uint8 and out.is_contiguous()
    p = Placement.from_tensor(placement)
    assert p.out_hw == want and p.src_hw == hw
    t, l, ch, cw = p.crop
    assert t >= 0 and l >= 0 and t + ch <= hw[0] + 1e-6 and l + cw <= hw[1] + 1e-6
    ct, cl, cch, ccw = p.content
    assert ct >= 0 and cl >= 0 and ct + cch <= want[0] and cl + ccw <= want[1]
    if mode == "letterbox":  # whole frame, aspect kept to a pixel
        assert p.crop == (0.0, 0.0, *map(float, hw))
        assert abs(cch / ccw - hw[0] / hw[1]) <= 1.0 / min(cch, ccw) + 1e-6
        assert cch == want[0] or ccw == want[1]
    if mode in ("stretch", "resize_crop", "random_resized_crop"):
        assert p.content == (0.0, 0.0, *map(float, want))
    if mode == "stretch":
        assert p.crop == (0.0, 0.0, *map(float, hw))


def test_none_keeps_frames_and_letterbox_pads_with_the_mean_colour():
    v = frames(90, 160)
    out, p = SpatialPolicy("none").apply(v)
    assert out is v and Placement.from_tensor(p) == Placement.identity(90, 160)
    white = torch.full((1, 90, 160, 3), 255, dtype=torch.uint8)
    out, p = SpatialPolicy("letterbox", 64).apply(white)
    t, _, ch, _ = (int(x) for x in Placement.from_tensor(p).content)
    assert (t, ch) == (14, 36)  # 90 * 64 / 160 = 36 rows, centred
    assert (out[0, :t] == torch.tensor([124, 116, 104], dtype=torch.uint8)).all()
    assert (out[0, t + 1 : t + ch - 1] == 255).all()
    with pytest.raises(ValueError, match="spatial mode"):
        SpatialPolicy("crop", 32)
    with pytest.raises(ValueError, match="positive size"):
        SpatialPolicy("letterbox")


@pytest.mark.parametrize("hw", SIZES)
def test_resize_crop_is_torchvision_resize_and_centre_crop(hw):
    v = frames(*hw, t=3, seed=1)
    for crop, ratio in ((56, 0.875), (32, 0.875), (64, 1.0)):
        ours, _ = SpatialPolicy("resize_crop", crop, resize_ratio=ratio).apply(v)
        ref = T.Compose([T.Resize(int(crop / ratio), antialias=True), T.CenterCrop(crop)])(v.permute(0, 3, 1, 2))
        assert torch.equal(ours, ref.permute(0, 2, 3, 1))


def test_random_resized_crop_boxes_follow_the_rule_and_the_seed():
    h, w = 180, 320
    boxes = np.array([sample_resized_crop(h, w, (0.08, 1.0), (3 / 4, 4 / 3), np.random.default_rng([7, i]))
                      for i in range(3000)], dtype=np.float64)
    top, left, ch, cw = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + ch <= h).all() and (left + cw <= w).all()
    frac, aspect = ch * cw / (h * w), cw / ch
    # rounding to whole pixels moves area and aspect by under a pixel's worth
    assert frac.min() >= 0.08 * 0.9 and frac.max() <= 1.0
    assert aspect.min() >= 0.75 * 0.93 and aspect.max() <= 4 / 3 * 1.07
    # the same distribution as torchvision's own sampler (global torch RNG) on the same frame
    torch.manual_seed(0)
    tv = np.array([T.RandomResizedCrop.get_params(torch.zeros(3, h, w), [0.08, 1.0], [3 / 4, 4 / 3])
                   for _ in range(3000)], dtype=np.float64)
    tv_frac, tv_aspect = tv[:, 2] * tv[:, 3] / (h * w), tv[:, 3] / tv[:, 2]
    assert abs(frac.mean() - tv_frac.mean()) < 0.02 and abs(np.log(aspect).mean() - np.log(tv_aspect).mean()) < 0.02
    assert abs(frac.std() - tv_frac.std()) < 0.02
    # reproducible from the seed, different across seeds; one box for all frames of a clip
    pol = SpatialPolicy("random_resized_crop", 32)
    v = frames(h, w, t=1).expand(4, h, w, 3).contiguous()
    a, pa = pol.apply(v, np.random.default_rng([3, 0, 5, 1]))
    b, pb = pol.apply(v, np.random.default_rng([3, 0, 5, 1]))
    c, pc = pol.apply(v, np.random.default_rng([3, 1, 5, 1]))
    assert torch.equal(a, b) and torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert all(torch.equal(a[0], a[k]) for k in range(4))
    # a frame too thin for any drawn box: the fallback is the centred, clamped-aspect box
    assert sample_resized_crop(10, 400, (0.9, 1.0), (3 / 4, 4 / 3), np.random.default_rng(0)) == (0, 193, 10, 13)


# ---------------------------------------------------------------------------------------- placement


def _centroid(img: torch.Tensor) -> tuple[float, float]:
    m = img.float()
    m = m - m.min()
    ys, xs = torch.meshgrid(torch.arange(m.shape[0]), torch.arange(m.shape[1]), indexing="ij")
    return float((m * ys).sum() / m.sum()), float((m * xs).sum() / m.sum())


@pytest.mark.parametrize("hw", [(180, 320), (320, 180), (480, 853), (360, 202)])
@pytest.mark.parametrize("mode", ["random_resized_crop", "resize_crop", "letterbox", "stretch"])
def test_a_marker_lands_where_the_placement_says_and_maps_back(hw, mode):
    h, w = hw
    pol = SpatialPolicy(mode, 64, scale=(0.3, 1.0), fill=(0, 0, 0))
    p = pol.place(h, w, np.random.default_rng(11))
    t, l, ch, cw = p.crop
    # a bright square marker inside the crop box, off its centre
    side = max(6, round(min(ch, cw) / 8))
    y0, x0 = int(t + 0.25 * ch), int(l + 0.6 * cw)
    v = torch.zeros(1, h, w, 3, dtype=torch.uint8)
    v[:, y0 : y0 + side, x0 : x0 + side] = 255
    out, placement = pol.apply(v, np.random.default_rng(11))
    assert torch.equal(placement, p.to_tensor())
    src_c = (y0 + side / 2, x0 + side / 2)  # pixel-edge coordinates of the marker's centre
    ct, cl, cch, ccw = p.content
    want = (ct + (src_c[0] - t) * cch / ch - 0.5, cl + (src_c[1] - l) * ccw / cw - 0.5)  # output pixel index
    got = _centroid(out[0, :, :, 0])
    assert got == pytest.approx(want, abs=0.75)
    # and back: the output map put on the source frame peaks on the marker, at the frame's aspect
    back = map_to_source(out[0, :, :, 0].float(), placement)
    assert back.shape == (h, w)
    assert _centroid(back) == pytest.approx((src_c[0] - 0.5, src_c[1] - 0.5), abs=max(1.0, 0.5 * h / 64))
    # at another resolution of the same frame (the file's own size): the same relative place
    big = map_to_source(out[0, :, :, 0].float(), placement, size=(2 * h, 2 * w))
    assert _centroid(big) == pytest.approx((2 * src_c[0] - 0.5, 2 * src_c[1] - 0.5), abs=max(2.0, h / 64))


def test_frame_parts_outside_the_crop_get_the_fill():
    p = SpatialPolicy("resize_crop", 32, resize_ratio=1.0).place(32, 64)  # the central 32x32 of a 32x64 frame
    assert p.crop == (0.0, 16.0, 32.0, 32.0)
    m = torch.rand(32, 32) + 1.0
    back = map_to_source(m, p.to_tensor(), fill=0.0)
    assert (back[:, :16] == 0).all() and (back[:, 48:] == 0).all() and (back[:, 16:48] >= 1).all()
    assert torch.allclose(back[:, 16:48], m, atol=1e-5)  # the crop itself is the identity
    assert (map_to_source(m, p.to_tensor())[:, :16] == m.min()).all()  # default: the map's minimum


def test_policy_from_config_reads_the_transform_keys():
    cfg = {"crop_size": 56, "scale": [0.4, 1.0], "jitter": [0.2, 0.2, 0.2, 0.0], "eval_resize_ratio": 0.8}
    tr, ev = policy_from_config(cfg, train=True), policy_from_config(cfg, train=False)
    assert (tr.mode, tr.size, tr.scale, tr.ratio) == ("random_resized_crop", (56, 56), (0.4, 1.0), (0.75, 4 / 3))
    assert (ev.mode, ev.size, ev.resize_ratio) == ("resize_crop", (56, 56), 0.8)
    assert policy_from_config({**cfg, "eval_mode": "letterbox"}, train=False).mode == "letterbox"
    assert policy_from_config(None, train=False) == SpatialPolicy("resize_crop", 224)  # the reference recipe
    with pytest.raises(ValueError, match="eval_mode"):
        policy_from_config({"eval_mode": "random_resized_crop"}, train=False)
    from avssl.transforms.video import VideoAugment

    assert VideoAugment(**cfg, train=True, geometry=False).input_policy == tr
    assert VideoAugment(**cfg, train=False, geometry=False).input_policy == ev
    assert VideoAugment(**cfg, train=False).input_policy.mode == "none"  # it crops the batch itself


def test_upsample_composes_cell_offsets_with_a_letterbox():
    """A one-hot 7x7 map of a 56 px letterboxed input (stride 8, offset 0): cell (3, 5) sits on
    input pixel (24, 40), i.e. on the source pixel the placement maps there."""
    from avssl.localization.heatmap import upsample_maps

    p = SpatialPolicy("letterbox", 56).place(90, 160)  # content rows 12..44 (32 of 56)
    assert p.content == (12.0, 0.0, 32.0, 56.0)
    m = torch.zeros(1, 7, 7)
    m[0, 3, 5] = 1.0
    up = upsample_maps(m, (90, 160), input_size=(56, 56), cell_offset=0.0, placement=p.to_tensor())[0]
    y, x = np.unravel_index(int(up.argmax()), up.shape)
    want_y, want_x = (24 + 0.5 - 12) * 90 / 32 - 0.5, (40 + 0.5) * 160 / 56 - 0.5
    assert abs(y - want_y) <= 1.5 and abs(x - want_x) <= 1.5
    # placed maps of a batch: one placement per map
    two = upsample_maps(torch.stack([m[0], m[0].flip(-1)]), (90, 160), input_size=56, placement=torch.stack(
        [p.to_tensor(), SpatialPolicy("stretch", 56).place(90, 160).to_tensor()]))
    assert two.shape == (2, 90, 160)


# ---------------------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Real H.264 files of mixed sizes and aspect ratios (W x H 320x180, 240x180, 180x240, 202x360,
    96x96), one of them stored rotated (displayed 180x320 upright)."""
    d = tmp_path_factory.mktemp("mixed")
    for i, (size, rot) in enumerate([((180, 320), 0), ((180, 240), 0), ((240, 180), 0), ((360, 202), 0),
                                     ((96, 96), 0), ((320, 180), 90)]):
        write_coded(d / f"v{i}_{size[1]}x{size[0]}.mp4", seconds=2.0, fps=16.0, size=size, audio_rate=16000,
                    rotation=rot)
    return d


def test_av_dataset_and_decoded_cache_batch_mixed_sizes(mixed, tmp_path):
    from torch.utils.data import DataLoader

    from avssl.data import AVClipDataset, build_index, collate_skip_bad
    from avssl.data.decoded import DecodedClipDataset
    from avssl.io.read import read_clip
    from avssl.io.types import ClipSpec

    spec = ClipSpec(num_frames=4, fps=8.0, frame_size=48, audio_rate=16000, audio_duration=0.5)
    m, rep = build_index(mixed, workers=1, progress=False)
    assert len(m) == 6 and not rep.bad
    tr = AVClipDataset(m, spec, mode="train", seed=3, spatial=SpatialPolicy("random_resized_crop", 32))
    ev = AVClipDataset(m, spec, mode="eval", clips_per_video=2, spatial=SpatialPolicy("letterbox", 32))
    for ds in (tr, ev):
        batch = next(iter(DataLoader(ds, batch_size=len(ds), collate_fn=collate_skip_bad)))
        assert batch["video"].shape == (len(ds), 4, 32, 32, 3) and batch["placement"].shape == (len(ds), 12)
        assert batch["dropped"] == 0
    # decoded (H, W) at short side 48, rotation applied (the rotated file shows 320x180 upright)
    decoded = {(48, 85), (48, 64), (64, 48), (86, 48), (48, 48), (85, 48)}
    assert {tuple(int(v) for v in ev[2 * r]["placement"][2:4]) for r in range(6)} == decoded
    # train crops: a pure function of (seed, epoch, idx), new each epoch
    a = tr[1]["placement"]
    assert torch.equal(a, tr[1]["placement"])
    tr.set_epoch(1)
    assert not torch.equal(a, tr[1]["placement"])
    # the RAM cache keeps every video at its own size and gives the same items for the same plan
    for base in (tr, ev):
        dec = DecodedClipDataset(base, cache_dir=tmp_path / "cache", progress=False)
        assert {tuple(hw) for hw in dec.frame_sizes.tolist()} == decoded and dec.frames.ndim == 1
        for idx in range(len(dec)):
            item = dec[idx]
            row, _, start, off = dec.sample_plan(idx)
            ref = read_clip(base._path(row), start, spec, av_offset=off)
            want, placement = base.shape_item(ref.video, idx)
            assert torch.equal(item["video"], want) and torch.equal(item["placement"], placement)
        batch = next(iter(DataLoader(dec, batch_size=len(dec), collate_fn=collate_skip_bad)))
        assert batch["video"].shape == (len(dec), 4, 32, 32, 3)


# ---------------------------------------------------------------------------------------- end to end


def test_pretraining_on_mixed_aspect_files_runs_and_evaluates(mixed, tmp_path):
    """Issue #16: `experiment=tiny data.source=files` on mixed-aspect H.264 files stopped on the first batch."""
    from omegaconf import OmegaConf

    from avssl.engine.pretrain import train

    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("pretrain", overrides=["experiment=tiny", "data.source=files", f"data.train_source={mixed}",
                                             f"data.eval_source={mixed}", f"run_dir={tmp_path / 'run'}",
                                             "trainer.epochs=1", "data.batch_size=3"])
    out = train(OmegaConf.to_container(cfg, resolve=True))
    assert out["global_step"] == 2 and out["dropped_samples"] == 0
    assert out["retrieval"]["num_clips"] == 6


def _ucf_folder(root: Path, sizes) -> Path:
    """A UCF101-style layout (classInd, trainlist01, testlist01, UCF-101/<Class>/v_<Class>_gXX_cYY.mp4)."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    classes = ["Drum", "Violin"]
    train, test = [], []
    for ci, c in enumerate(classes):
        for g in range(1, 4):
            rel = f"{c}/v_{c}_g{g:02d}_c01.mp4"
            size = sizes[(ci * 3 + g) % len(sizes)]
            write_coded(root / "UCF-101" / rel, seconds=1.5, fps=16.0, size=size, audio_rate=16000)
            (test if g == 3 else train).append(rel)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    (lists / "trainlist01.txt").write_text("".join(f"{p} {classes.index(p.split('/')[0]) + 1}\n" for p in train))
    (lists / "testlist01.txt").write_text("".join(f"{p}\n" for p in test))
    return root


def test_finetuning_on_a_ucf_folder_of_mixed_sizes(tmp_path):
    from omegaconf import OmegaConf

    from avssl.downstream.finetune import finetune

    root = _ucf_folder(tmp_path / "ucf", [(180, 320), (240, 180), (96, 96), (360, 202)])
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("finetune", overrides=["finetune=tiny", f"run_dir={tmp_path / 'ft'}", "dataset.embedded=null",
                                             f"dataset.root={root}", "dataset.val_fraction=0.3",
                                             "optim.epochs=1", "optim.warmup_epochs=0"])
    out = finetune(OmegaConf.to_container(cfg, resolve=True))
    m = out["per_fold"][0]
    assert m["num_test_videos"] == 2 and m["num_clips"] == 2 * 3 and 0 <= m["video_top1"] <= 1


def test_extraction_of_a_mixed_folder(mixed, tmp_path):
    from avssl.embed import shards as sh

    overrides = [f"input={mixed}", "model=tiny", f"out_dir={tmp_path / 'emb'}", "clips_per_video=2",
                 "spec={num_frames: 4, fps: 8.0, frame_size: 40, audio_rate: 16000, audio_channels: 1,"
                 " audio_duration: 0.5}", "transforms={video: {crop_size: 32}, audio: {preset: avid}}",
                 "num_workers=0", "shard_size=4", "progress=false", "device=cpu", "dtype=float32"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="extract", overrides=overrides)
    from avssl.embed.job import run_extraction

    summary = run_extraction(cfg)
    assert summary["complete"] and summary["videos"] == 6
    v, table = sh.load_collection(tmp_path / "emb", "video", "video")
    assert v.shape[0] == 6 and np.isfinite(v).all()
    assert sh.read_meta(tmp_path / "emb")["transforms"]["spatial"]["mode"] == "resize_crop"


# ---------------------------------------------------------------------------------------- localization


class ColourModel(torch.nn.Module):
    """Fixed weights: a video position embeds its (normalised) colour, audio embeds 'red' -> the map is
    the red channel's share, so a red object must light up wherever it is."""

    dense_cell_offset = None  # pooled 4 px cells: plain placement

    def video_dense_embeddings(self, video):  # [B,3,T,H,W] -> [B,3,T,H/4,W/4]
        return torch.nn.functional.avg_pool3d(video, (1, 4, 4))

    def embed_audio(self, spec):
        return torch.tensor([[1.0, 0.0, 0.0]]).expand(spec.shape[0], 3)


def _wide_scene(path, h=72, w=128, n=16, fps=16, box=(10, 26, 84, 108)):
    from avssl.io.writer import write_av

    y0, y1, x0, x1 = box
    f = np.zeros((n, h, w, 3), np.uint8)
    f[..., 1] = 200  # green background
    f[:, y0:y1, x0:x1] = (255, 0, 0)  # red object, top right (off-centre)
    t = np.arange(int(n / fps * 24000)) / 24000
    write_av(path, f, fps, (0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32), 24000)
    return path


@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
def test_heatmap_of_a_16_9_file_lands_on_the_off_centre_object(tmp_path, mode):
    from avssl.io import ClipSpec
    from avssl.localization import evaluate as ev
    from avssl.localization.defaults import localization_inputs
    from avssl.localization.overlay import overlay_size
    from avssl.localization.run import localize_file

    src = _wide_scene(tmp_path / "wide.mp4")
    spec, vt, at = localization_inputs(ClipSpec(num_frames=4, fps=8.0, frame_size=None, audio_rate=24000,
                                                audio_duration=0.5), {"video": {"crop_size": 128}}, mode=mode)
    assert vt.input_policy == SpatialPolicy(mode, 128)
    prod = localize_file(ColourModel(), src, tmp_path / "out", spec, vt, at, overlay_times=1, mp4=False,
                         progress=False)
    frame, hm = prod.frames[0], prod.maps[0]
    assert frame.shape == (72, 128, 3) and hm.shape == (72, 128)  # the file's own 16:9 frame
    y, x = np.unravel_index(int(hm.argmax()), hm.shape)
    assert 10 <= y < 26 and 84 <= x < 108
    assert hm[10:26, 84:108].mean() > 0.8 and hm[40:, :60].mean() < 0.2
    assert prod.track.spatial is not None
    assert overlay_size((72, 128))[0] < overlay_size((128, 72))[0]  # the overlay panel keeps the 16:9 shape
    # scored against the box (fractions of the whole frame): the map covers it
    box = [[84 / 128, 10 / 72, 108 / 128, 26 / 72]]
    items = [ev.LocalizationItem("wide", str(src), 0.5, box)]
    res = ev.evaluate(ColourModel(), items, spec, vt, at, progress=False, eval_size=64, fraction=0.04)
    assert res.rows[0]["ciou"] > 0.8 > 0.1 > res.rows[0]["ciou_centre_prior"]
    assert res.spatial.shape == (1, 12) and res.frames[0].shape == (72, 128, 3)
    if mode == "letterbox":  # the same maps read as if the input were the whole frame: off the object
        assert ev.score(items, res.display_maps, eval_size=64, fraction=0.04).rows[0]["ciou"] < 0.5


def test_localize_tool_on_a_non_square_file(tmp_path):
    src = _wide_scene(tmp_path / "in" / "wide.mp4", h=54, w=96, box=(6, 20, 60, 84))
    small = ["clip={num_frames: 4, fps: 8.0, frame_size: null, audio_rate: 24000, audio_channels: 1, audio_duration: 0.5}",
             "transforms={video: {crop_size: 32}, audio: {preset: avid}}", "progress=false", "batch_size=4",
             f"input={src}", f"out_dir={tmp_path / 'out'}", "overlays=1"]
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("localize", overrides=small)
    assert cfg.spatial_mode == "letterbox"
    from avssl.localization.job import run_localization

    rep = run_localization(cfg)
    (outputs,) = rep["files"].values()
    from PIL import Image

    from avssl.localization.overlay import overlay_size

    assert Image.open(outputs["overlay_0"]).size[::-1] == overlay_size((54, 96))
    track = np.load(outputs["track"])
    assert Placement.from_tensor(torch.from_numpy(track["spatial_placement"])).content == (7.0, 0.0, 18.0, 32.0)
    import av

    with av.open(outputs["mp4"]) as c:
        s = c.streams.video[0]
        assert (s.height, s.width) == (54, 96)
    assert math.isfinite(json.loads((tmp_path / "out" / "report.json").read_text())["clip_spec"]["fps"])
