"""compute_heatmaps + scoring end to end with a hand-built colour/pitch model whose answer is known.

The model is a real torch module with fixed weights: video positions embed their colour
(minus grey), audio embeds the energy of three frequency bands; band k 'sounds like'
colour channel k. So a low tone must light the red object and a high tone the blue one.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from avssl.localization import evaluate as ev
from avssl.localization import metrics
from avssl.localization.heatmap import compute_heatmaps, upsample_maps


class ColourPitchModel(nn.Module):
    def video_dense_embeddings(self, video):  # [B,3,T,H,W] in [0,1] -> [B,3,T/2,H/4,W/4]
        return F.normalize(F.avg_pool3d(video - 0.5, (2, 4, 4)), dim=1)

    def embed_audio(self, spec):  # [B,1,F,Tf], 3 bands over F -> [B,3]
        bands = spec[:, 0].mean(-1).reshape(spec.shape[0], 3, -1).mean(-1)
        return F.normalize(bands, dim=1)


def scene(b=2, t=4, h=32, w=32):
    v = torch.full((b, 3, t, h, w), 0.5)
    v[:, :, :, 4:12, 4:12] = torch.tensor([1.0, 0.0, 0.0])[None, :, None, None, None]  # red, top-left
    v[:, :, :, 20:28, 20:28] = torch.tensor([0.0, 0.0, 1.0])[None, :, None, None, None]  # blue, bottom-right
    return v


def tone(band, b=1, f=12, tf=10):
    s = torch.zeros(b, 1, f, tf)
    s[:, :, band * 4 : band * 4 + 4] = 1.0
    return s


def test_heatmap_shapes_and_range():
    hm = compute_heatmaps(ColourPitchModel(), scene(), torch.cat([tone(0), tone(2)]), size=(40, 48))
    assert hm.low_res.shape == (2, 2, 8, 8)
    assert hm.frames.shape == (2, 2, 40, 48) and hm.pooled.shape == (2, 40, 48)
    assert hm.low_res.abs().max() <= 1 + 1e-5
    n = hm.normalized()
    assert torch.allclose(n.pooled.amax(dim=(-2, -1)), torch.ones(2))
    assert torch.allclose(n.pooled.amin(dim=(-2, -1)), torch.zeros(2))
    with pytest.raises(ValueError):
        compute_heatmaps(ColourPitchModel(), scene(), tone(0, b=2), audio_emb=torch.zeros(2, 3))


def test_heatmap_follows_the_sound():
    model = ColourPitchModel()
    video = scene(b=2)
    hm = compute_heatmaps(model, video, torch.cat([tone(0), tone(2)]))
    red_peak = np.unravel_index(hm.pooled[0].argmax().item(), (32, 32))
    blue_peak = np.unravel_index(hm.pooled[1].argmax().item(), (32, 32))
    assert 4 <= red_peak[0] < 12 and 4 <= red_peak[1] < 12
    assert 20 <= blue_peak[0] < 28 and 20 <= blue_peak[1] < 28

    red_box, blue_box = [[4 / 32, 4 / 32, 12 / 32, 12 / 32]], [[20 / 32, 20 / 32, 28 / 32, 28 / 32]]
    items = [ev.LocalizationItem("low-tone", "v.mp4", 0.0, red_box), ev.LocalizationItem("high-tone", "v.mp4", 0.0, blue_box)]
    res = ev.score(items, hm.low_res.mean(1), eval_size=64)
    # the grey background ties at cosine 0 (the median), so the top-50% mask is everything
    # but the other-coloured object: it holds the whole box and none of the other object
    masks = metrics.binarize_top_fraction(metrics.minmax_normalize(upsample_maps(hm.low_res.mean(1), 64).numpy()))
    assert masks[0, 8:24, 8:24].all() and not masks[0, 40:56, 40:56].any()
    assert masks[1, 40:56, 40:56].all() and not masks[1, 8:24, 8:24].any()
    for r in res.rows:  # box 256 px of 4096, mask 4096 - 256 px -> 256 / (256 + 3584)
        assert r["ciou"] == pytest.approx(256 / (256 + 4096 - 2 * 256), abs=0.01)
        assert r["ciou"] > r["ciou_whole_image"] == pytest.approx(256 / 4096)

    # same pictures, swapped sounds (audio embeddings given directly): the maps swap too
    emb = model.embed_audio(torch.cat([tone(2), tone(0)]))
    swapped = compute_heatmaps(model, video, audio_emb=emb)
    assert torch.allclose(swapped.pooled[0], hm.pooled[1], atol=1e-6)


# ---------------------------------------------------------------- whole files (real encoded media)

RATE = 24000


def _video_u8_to_input(frames):  # uint8 [B,T,H,W,3] -> float [B,3,T,H,W] in [0,1], no crop
    return frames.permute(0, 4, 1, 2, 3).float() / 255.0


def _power_spectrogram(wav):  # [B,C,S] -> [B,1,F,Tf]; F = 12 bins -> bands of 4000 Hz at 24 kHz
    import torchaudio

    spec = torchaudio.transforms.Spectrogram(n_fft=22, hop_length=64, power=2.0)(wav.mean(1))
    return spec[:, None, :12]


def _write_scene(path, duration=3.0, fps=16, switch=1.5, low=1000.0, high=10000.0):
    from avssl.io.writer import write_av

    n = int(duration * fps)
    f = np.zeros((n, 64, 64, 3), np.uint8)
    f[..., 1] = 255  # green background: a clear direction (grey would be codec noise once normalised)
    f[:, 8:24, 8:24] = (255, 0, 0)
    f[:, 40:56, 40:56] = (0, 0, 255)
    t = np.arange(int(duration * RATE)) / RATE
    wav = 0.4 * np.where(t < switch, np.sin(2 * np.pi * low * t), np.sin(2 * np.pi * high * t))
    write_av(path, f, fps, wav[None].astype(np.float32), RATE)
    return path


def _peak(m):
    return np.unravel_index(int(np.argmax(m)), m.shape)


SPEC = dict(num_frames=4, fps=8.0, audio_rate=RATE, audio_duration=0.5)


def test_track_follows_sound_over_a_file(tmp_path):
    from avssl.io import ClipSpec
    from avssl.localization.heatmap import video_heatmap_track

    src = _write_scene(tmp_path / "scene.mp4")
    spec = ClipSpec(**SPEC)
    tr = video_heatmap_track(ColourPitchModel(), src, spec, _video_u8_to_input, _power_spectrogram,
                             stride=0.25, batch_size=4, progress=False)
    # windows every 0.25 s over 3 s with 0.5 s clips; 2 temporal slots (avg_pool over 2 frames) each
    assert tr.clip_starts.tolist() == list(np.arange(11) * 0.25) and len(tr.times) == 22
    early, late = tr.frame_maps([0.4, 2.6], (64, 64), norm="minmax").numpy()
    assert 8 <= _peak(early)[0] < 24 and 8 <= _peak(early)[1] < 24  # low tone -> red
    assert 40 <= _peak(late)[0] < 56 and 40 <= _peak(late)[1] < 56  # high tone -> blue

    from avssl.localization.run import file_frame_heatmaps

    times, maps = file_frame_heatmaps(tr, src)
    assert len(times) == 48 and maps.shape == (48, 64, 64)  # every frame of the 3 s, 16 fps file
    np.testing.assert_allclose(times, np.arange(48) / 16, atol=1e-3)
    assert maps.min() >= 0 and maps.max() <= 1
    assert 8 <= _peak(maps[2].numpy())[0] < 24 and 40 <= _peak(maps[45].numpy())[0] < 56


def test_localize_file_products_and_mismatched_audio(tmp_path):
    import av

    from avssl.io import ClipSpec
    from avssl.localization.run import localize_files

    src = _write_scene(tmp_path / "scene.mp4", duration=2.0, switch=10.0)  # low tone throughout
    other = _write_scene(tmp_path / "high.mp4", duration=1.0, switch=-1.0)  # high tone only
    spec = ClipSpec(**SPEC)
    out = tmp_path / "out"
    (prod,) = localize_files(ColourPitchModel(), [src], out, spec, _video_u8_to_input, _power_spectrogram,
                             stride=0.5, overlay_times=2, progress=False)
    assert {"overlay_0", "overlay_1", "mp4", "track"} <= set(prod.outputs)
    assert (out / "grid.png").stat().st_size > 0 and (out / "index.json").is_file()
    assert all(8 <= _peak(m)[0] < 24 for m in prod.maps)  # red object under the low tone
    with av.open(prod.outputs["mp4"]) as c:
        n_out = sum(1 for _ in c.decode(video=0))
    with av.open(str(src)) as c:
        n_src = sum(1 for _ in c.decode(video=0))
    assert n_out == n_src == 32

    (mis,) = localize_files(ColourPitchModel(), [src], out, spec, _video_u8_to_input, _power_spectrogram,
                            stride=0.5, overlay_times=2, audio_path=other, progress=False)
    assert all(40 <= _peak(m)[0] < 56 for m in mis.maps)  # the other file's high tone -> blue
    assert "__audio-high" in mis.outputs["mp4"]
    with av.open(mis.outputs["mp4"]) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac" and abs(float(c.duration) / 1e6 - 2.0) < 0.2


def test_evaluate_on_encoded_clips_with_negatives(tmp_path):
    from avssl.io import ClipSpec
    from avssl.io.writer import write_av
    from avssl.localization import evaluate as ev

    red = [[8 / 64, 8 / 64, 24 / 64, 24 / 64]]
    blue = [[40 / 64, 40 / 64, 56 / 64, 56 / 64]]
    low = _write_scene(tmp_path / "low.mp4", duration=1.0, switch=10.0)
    high = _write_scene(tmp_path / "high.mp4", duration=1.0, switch=-1.0)
    silent = tmp_path / "silent.mp4"
    f = np.zeros((16, 64, 64, 3), np.uint8)
    f[..., 1] = 255
    f[:, 8:24, 8:24] = (255, 0, 0)
    write_av(silent, f, 16, np.zeros((1, RATE), np.float32), RATE)
    items = [
        ev.LocalizationItem("low", str(low), 0.5, red),
        ev.LocalizationItem("high", str(high), 0.5, blue),
        ev.LocalizationItem("high-wrong-box", str(high), 0.5, red),  # GT disagrees with the sound
        ev.LocalizationItem("silent", str(silent), 0.5, [], has_source=False),
        # mismatched: the low clip's pictures with the high clip's sound -> the blue object
        ev.LocalizationItem("low<-high", str(low), 0.5, blue, audio_path=str(high), audio_time=0.5),
        ev.LocalizationItem("missing", str(tmp_path / "gone.mp4"), 0.5, red),  # reported, not fatal
    ]
    res = ev.evaluate(ColourPitchModel(), items, ClipSpec(**SPEC), _video_u8_to_input, _power_spectrogram,
                      batch_size=2, progress=False, eval_size=64, confidence="max")
    rows = {r["item_id"]: r for r in res.rows}
    assert "missing" not in rows and [s["item_id"] for s in res.settings["skipped"]] == ["missing"]
    assert res.settings["skipped"][0]["reason"] == "missing"
    # peaks of the kept low-res maps (64 / 4 = 16 px grid): red box cells 2..5, blue 10..13
    for i, cells in ((0, range(2, 6)), (1, range(10, 14)), (4, range(10, 14))):
        y, x = _peak(res.display_maps[i].numpy())
        assert y in cells and x in cells, items[i].item_id
    for k in ("low", "high", "low<-high"):
        # the whole box is predicted: its best top-half cIoU, 256 / 2048, or lower when background ties join in
        assert rows[k]["ciou"] >= rows[k]["ciou_whole_image"] == pytest.approx(256 / 4096)
    assert rows["high-wrong-box"]["ciou"] < rows["high"]["ciou"] / 2
    # silence embeds to the zero vector -> cosine 0 everywhere; sources peak near cos = 0.577
    assert rows["silent"]["ciou"] is None and rows["silent"]["confidence"] == pytest.approx(0.0, abs=1e-6)
    assert min(rows[k]["confidence"] for k in ("low", "high")) > 0.3
    assert res.summaries["model"]["num_negatives"] == 1 and res.summaries["model"]["ap"] is not None
    assert len(res.frames) == 5 and res.frames[0].shape == (64, 64, 3)
    paths = res.write(tmp_path / "eval")
    assert paths["grid_best"].is_file() and paths["grid_worst"].is_file()


def test_temporal_mean_averages_the_clip_slots(tmp_path):
    """The red object sits top-left in the clip's first slot and bottom-right in its second;
    the low tone plays throughout. 'slot' keeps the annotated frame's slot (top-left only),
    'mean' lights both places about equally."""
    from avssl.io import ClipSpec
    from avssl.io.writer import write_av

    f = np.zeros((4, 64, 64, 3), np.uint8)
    f[..., 1] = 255
    f[:2, 8:24, 8:24] = (255, 0, 0)
    f[2:, 40:56, 40:56] = (255, 0, 0)
    t = np.arange(RATE // 2) / RATE
    path = write_av(tmp_path / "moving.mp4", f, 8, (0.4 * np.sin(2 * np.pi * 1000.0 * t))[None].astype(np.float32), RATE)
    box = [[8 / 64, 8 / 64, 24 / 64, 24 / 64]]
    # the annotated frame in the first slot (t = 0.1 s) and in the second (t = 0.35 s)
    items = [ev.LocalizationItem("first", str(path), 0.1, box), ev.LocalizationItem("second", str(path), 0.35, box)]
    out = {}
    for mode in ("slot", "mean"):
        res = ev.evaluate(ColourPitchModel(), items, ClipSpec(**SPEC), _video_u8_to_input, _power_spectrogram,
                          progress=False, eval_size=64, temporal=mode)
        out[mode] = res.display_maps.numpy()  # [2, 16, 16]: cells of 4 px
        assert res.settings["temporal"] == mode
    tl, br = (slice(2, 6), slice(2, 6)), (slice(10, 14), slice(10, 14))
    first, second = out["slot"]
    assert first[tl].mean() > 0.5 and first[br].mean() < 0.1  # red (the tone's colour) top-left
    assert second[br].mean() > 0.5 and second[tl].mean() < 0.1
    # 'mean': one map per clip, the average of its slots, whichever frame is annotated
    assert np.allclose(out["mean"][0], (first + second) / 2, atol=1e-5)
    assert np.allclose(out["mean"][1], out["mean"][0], atol=1e-6)
    with pytest.raises(ValueError, match="temporal"):
        ev.evaluate(ColourPitchModel(), items, ClipSpec(**SPEC), _video_u8_to_input, _power_spectrogram,
                    progress=False, temporal="max")


def test_upsample_places_cells_on_their_receptive_field_centres():
    """A one-hot 7x7 map from a 56 px input (stride 8): with ``input_size`` cell (2, 5) lands on
    input pixel (16, 40) -> 224 px output around (66, 162); a plain resize puts it on the centre
    of band (2, 5), 3.5 input px further down-right."""
    from avssl.localization.heatmap import map_stride

    assert map_stride(56, 7) == 8 and map_stride(84, 11) == 8 and map_stride(112, 7) == 16 and map_stride(64, 64) == 1
    m = torch.zeros(1, 7, 7)
    m[0, 2, 5] = 1.0
    aligned = upsample_maps(m, 224, input_size=(56, 56))[0]
    plain = upsample_maps(m, 224)[0]
    centre = lambda a, axis: float((a.sum(axis) * torch.arange(224)).sum() / a.sum())  # noqa: E731
    # input pixel p covers output pixels [4p, 4p + 4): its centre is output 4p + 1.5
    assert centre(aligned, 1) == pytest.approx(4 * 16 + 1.5, abs=0.2) and centre(aligned, 0) == pytest.approx(4 * 40 + 1.5, abs=0.2)
    assert centre(plain, 1) == pytest.approx(4 * 19.5 + 1.5, abs=0.2) and centre(plain, 0) == pytest.approx(4 * 43.5 + 1.5, abs=0.2)
    # a constant map stays constant; non-square inputs / outputs (the frame of a 16:9 film)
    assert torch.allclose(upsample_maps(torch.full((2, 3, 4), 0.3), (90, 160), input_size=(24, 32)), torch.tensor(0.3))
    wide = upsample_maps(m, (720, 1280), input_size=(56, 56))[0]
    assert wide.argmax() // 1280 == pytest.approx(720 * 16.5 / 56, abs=13)


def test_model_maps_are_placed_with_the_encoders_cell_offset():
    """compute_heatmaps / infer_heatmaps use the AVModel's declared offset; a model that declares
    none (ColourPitchModel: pooled 4 px cells) keeps the plain resize."""
    from avssl.localization.heatmap import model_cell_offset
    from avssl.models import build_av_model

    model = build_av_model({"video": "tiny", "audio": "tiny", "proj_dim": [16, 16, 8],
                            "video_args": {"last_spatial_stride": 1}}).eval()
    assert model_cell_offset(model) == 0.0 and model_cell_offset(ColourPitchModel()) is None
    torch.manual_seed(0)
    video, spec = torch.randn(2, 3, 4, 56, 56), torch.randn(2, 1, 40, 100)
    hm = compute_heatmaps(model, video, spec)
    assert hm.low_res.shape[-2:] == (7, 7)
    assert torch.allclose(hm.frames, upsample_maps(hm.low_res, 56, input_size=(56, 56)), atol=1e-6)
    assert not torch.allclose(hm.frames, upsample_maps(hm.low_res, 56), atol=1e-3)
