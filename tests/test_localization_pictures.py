"""Heatmap maths, overlays (PNG / array / Figure / grid) and the MP4 writer on real encoded media."""

import av
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from avssl.io.errors import MissingFile, NoAudioStream
from avssl.io.writer import write_av
from avssl.localization import heatmap as hmod
from avssl.localization import overlay


# ---------------------------------------------------------------- heatmap maths


def test_similarity_maps_peaks_where_video_matches_audio():
    g = torch.Generator().manual_seed(0)
    b, d, t, h, w = 2, 16, 3, 4, 5
    dense = torch.randn(b, d, t, h, w, generator=g)
    audio = torch.randn(b, d, generator=g)
    dense[0, :, 1, 2, 3] = 5.0 * audio[0]  # same direction, other length
    dense[1, :, :, 0, 0] = -audio[1][:, None]
    s = hmod.similarity_maps(audio, dense)
    assert s.shape == (b, t, h, w)
    assert s[0, 1, 2, 3].item() == pytest.approx(1.0, abs=1e-5)
    assert s[0].flatten().argmax().item() == np.ravel_multi_index((1, 2, 3), (t, h, w))
    assert torch.allclose(s[1, :, 0, 0], torch.tensor(-1.0), atol=1e-5)
    assert s.abs().max() <= 1 + 1e-5
    cross = hmod.cross_similarity_maps(audio, dense)
    assert cross.shape == (b, b, t, h, w)
    assert torch.allclose(cross[0, 0], s[0]) and torch.allclose(cross[1, 1], s[1])
    with pytest.raises(ValueError):
        hmod.similarity_maps(audio[:, :8], dense)


def test_upsample_and_normalize():
    low = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    up = hmod.upsample_maps(low, (4, 6))
    assert up.shape == (1, 4, 6)
    assert up.min() >= 0 and up.max() <= 3 and up[0, -1, -1] > up[0, 0, 0]
    n = hmod.normalize_maps(up)
    assert n.amin().item() == 0.0 and n.amax().item() == 1.0
    f = hmod.normalize_maps(torch.tensor([[-1.0, 0.0, 1.0, 3.0]]).view(1, 2, 2), "fixed")
    assert f.flatten().tolist() == [0.0, 0.5, 1.0, 1.0]
    assert hmod.normalize_maps(torch.ones(2, 3, 3)).abs().sum() == 0


def test_centre_prior_and_whole_image_shapes():
    c = hmod.centre_prior_maps(3, (6, 8))
    assert c.shape == (3, 6, 8) and c.max() <= 1
    # symmetric about the centre; the four centre pixels are the largest
    assert torch.allclose(c[0], c[0].flip(0)) and torch.allclose(c[0], c[0].flip(1))
    assert c[0, 2:4, 3:5].min() == c[0].max()
    assert hmod.whole_image_maps(2, 5).unique().tolist() == [1.0]


def test_track_nearest_slot_and_global_normalisation():
    maps = torch.stack([torch.full((2, 2), v) for v in (0.0, 0.5, 1.0)])
    tr = hmod.HeatmapTrack(times=np.array([1.0, 0.0, 2.0]), maps=maps[[1, 0, 2]], clip_starts=np.array([0.0]))
    assert tr.times.tolist() == [0.0, 1.0, 2.0]  # sorted, maps follow
    assert tr.index_at([-5, 0.4, 0.6, 1.49, 1.51, 9]).tolist() == [0, 0, 1, 1, 2, 2]
    fm = tr.frame_maps([0.1, 1.1, 2.1], (3, 4))
    assert fm.shape == (3, 3, 4)
    assert [round(float(m.mean()), 4) for m in fm] == [0.0, 0.5, 1.0]
    assert hmod.clip_starts_for(3.0, 1.0, 0.5).tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert hmod.clip_starts_for(0.3, 1.0, 0.5).tolist() == [0.0]


# ---------------------------------------------------------------- pictures


def _frame(h=48, w=64):
    f = np.zeros((h, w, 3), np.uint8)
    f[:, : w // 2] = (200, 200, 200)
    return f


def _left_hot(h=48, w=64):
    m = np.zeros((h, w), np.float32)
    m[:, : w // 2] = 1.0
    return m


def test_blend_and_colorize():
    f = np.full((4, 4, 3), 128, np.uint8)
    b = overlay.blend(f, _left_hot(4, 4), alpha=0.5, cmap="jet")
    assert b.dtype == np.uint8 and b.shape == (4, 4, 3)
    assert b[0, 0, 0] > b[0, 0, 2]  # hot -> red side of jet
    assert b[0, 3, 2] > b[0, 3, 0]  # cold -> blue side
    np.testing.assert_array_equal(overlay.blend(f, _left_hot(4, 4), alpha=0.0), f)
    with pytest.raises(ValueError):
        overlay.blend(f, np.zeros((3, 4)))


def test_overlay_png_has_expected_size_and_content(tmp_path):
    f, hm = _frame(), _left_hot()
    p = overlay.save_overlay(tmp_path / "o.png", f, hm, boxes=[[2, 2, 30, 40]], title="clip 7", panel_px=128)
    assert p.stat().st_size > 1000
    img = np.asarray(Image.open(p).convert("RGB"))
    assert img.shape[:2] == overlay.overlay_size(f.shape[:2], 128) == (96 + 28 + 8, 3 * 128 + 32 + 60)
    # the three panels differ (frame, colour heatmap, blend)
    top = overlay.TITLE_PX + 10
    panels = [img[top : top + 60, overlay.PAD_PX + i * (128 + overlay.PAD_PX) :][:, :120] for i in range(3)]
    assert all(np.abs(panels[i].astype(int) - panels[j]).mean() > 5 for i, j in ((0, 1), (1, 2), (0, 2)))


def test_overlay_figure_and_array_for_notebooks():
    f, hm = _frame(), _left_hot()
    fig = overlay.overlay_figure(f, hm, panel_px=100)
    assert isinstance(fig, Figure) and len(fig.axes) == 4  # 3 panels + colour bar
    arr = overlay.overlay_array(f, hm, panel_px=100)
    assert arr.dtype == np.uint8 and arr.shape == (*overlay.overlay_size(f.shape[:2], 100), 3)
    with_box = overlay.overlay_array(f, hm, boxes=[[5, 5, 20, 20]], panel_px=100)
    assert np.abs(with_box.astype(int) - arr).sum() > 0


def test_grid_png(tmp_path):
    frames = [_frame() for _ in range(5)]
    hms = [np.roll(_left_hot(), 8 * i, axis=1) for i in range(5)]
    p = overlay.save_grid(tmp_path / "g.png", frames, hms, titles=[f"cIoU {i / 5:.2f}" for i in range(5)], ncols=3, cell_px=80)
    img = Image.open(p)
    assert img.size == (3 * (80 + 8) + 8, 2 * (80 + 18 + 8) + 8)
    with pytest.raises(ValueError):
        overlay.grid_figure(frames, hms[:2])


# ---------------------------------------------------------------- MP4


def _source(path, n=30, fps=15.0, rate=44100, **kw):
    rng = np.random.default_rng(0)
    frames = np.full((n, 64, 96, 3), 128, np.uint8)
    frames[:, :, :, 1] = rng.integers(100, 156, size=(n, 1, 1), dtype=np.uint8)  # changes per frame
    t = np.arange(int(rate * n / fps)) / rate
    wav = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)))[None].astype(np.float32)
    write_av(path, frames, fps, wav, rate, **kw)
    return frames, wav


def _decode(path):
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        info = (a.sample_rate, a.codec_context.name, float(a.start_time * a.time_base))
        audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=-1)
    return frames, audio, info


def test_mp4_keeps_source_audio_and_frame_count(tmp_path):
    src, dst = tmp_path / "src.mp4", tmp_path / "heat.mp4"
    _source(src)
    overlay.write_heatmap_video(src, dst, lambda t, hw: np.broadcast_to(_left_hot(*hw), (len(t), *hw)), progress=False)
    sf, sa, sinfo = _decode(src)
    of, oa, oinfo = _decode(dst)
    assert len(of) == len(sf) == 30
    assert oinfo == sinfo  # same codec, rate, start
    assert oa.shape == sa.shape and np.array_equal(oa, sa)  # packets remuxed: bit-identical sound
    # heatmap blended: jet(1) = dark red takes blue from the hot left, jet(0) = dark blue red from the right
    assert of[5][:, :40, 2].mean() < sf[5][:, :40, 2].mean() - 40
    assert of[5][:, 56:, 0].mean() < sf[5][:, 56:, 0].mean() - 40
    assert abs(of[5][:, :40, 0].mean() - sf[5][:, :40, 0].mean()) < 5


def test_mp4_heatmap_follows_frame_times_and_rotation(tmp_path):
    src, dst = tmp_path / "rot.mp4", tmp_path / "rot_heat.mp4"
    _source(src, audio_start=0.25, rotation=90)
    seen = []

    def fn(t, hw):
        seen.append(float(t[0]))
        return np.zeros((len(t), *hw)) if t[0] < 1.0 else np.ones((len(t), *hw))

    overlay.write_heatmap_video(src, dst, fn, progress=False)
    np.testing.assert_allclose(sorted(seen), np.arange(30) / 15.0, atol=1e-3)
    of, oa, oinfo = _decode(dst)
    _, sa, sinfo = _decode(src)
    assert of[0].shape == (96, 64, 3)  # display orientation of a 96x64 frame rotated by 90
    assert oinfo == sinfo and np.array_equal(oa, sa)  # delayed audio start survives
    assert of[3][..., 2].mean() > of[3][..., 0].mean() and of[25][..., 0].mean() > of[25][..., 2].mean()


def test_mp4_mismatched_audio(tmp_path):
    src, dst = tmp_path / "src.mp4", tmp_path / "other.mp4"
    _source(src)
    rate = 24000
    other = (0.5 * np.sign(np.sin(2 * np.pi * 220 * np.arange(rate) / rate)))[None].astype(np.float32)
    overlay.write_heatmap_video(src, dst, lambda t, hw: np.zeros((len(t), *hw)), audio=(other, rate), progress=False)
    of, oa, (r, codec, _) = _decode(dst)
    assert len(of) == 30 and r == rate and codec == "aac"
    # AAC adds priming/padding; the decoded sound lines up with the given one
    n = other.shape[1]
    best = max(np.corrcoef(oa[0, k : k + n - 2048], other[0, : n - 2048])[0, 1] for k in range(0, 2049, 1))
    assert best > 0.95
    with pytest.raises(MissingFile):
        overlay.write_heatmap_video(tmp_path / "none.mp4", dst, lambda t, hw: None, progress=False)
    silent = tmp_path / "silent.mp4"
    write_av(silent, np.zeros((4, 32, 32, 3), np.uint8), 8.0)
    with pytest.raises(NoAudioStream):
        overlay.write_heatmap_video(silent, dst, lambda t, hw: np.zeros((1, *hw)), progress=False)
    overlay.write_heatmap_video(silent, dst, lambda t, hw: np.zeros((1, *hw)), audio=None, progress=False)
    with av.open(str(dst)) as c:
        assert not c.streams.audio and c.streams.video[0].frames == 4
