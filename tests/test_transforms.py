"""Batch transforms: LogSpectrogram vs a librosa implementation of the AVID recipe; VideoAugment."""

from __future__ import annotations

from pathlib import Path

import av
import librosa
import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from avssl.io.writer import write_av
from avssl.transforms import IMAGENET_MEAN, IMAGENET_STD, LogSpectrogram, VideoAugment
from avssl.transforms.audio import AVID_NORM_STATS

RATE = 24000
# a real recording where the system has one (a speech sample shipped by a Debian package)
SPEECH = Path("/usr/share/tuxpaint/stamps/symbols/money/us/coins/025quarter_desc_es.ogg")


def librosa_avid(y: np.ndarray) -> np.ndarray:
    """The reference recipe (AVID-CMA SpectrogramLibrosa2, n_fft 512 at 24 kHz, 100 frames/s) in
    librosa, float64: [257, 200] dB before normalisation."""
    spec = np.abs(librosa.stft(y.astype(np.float64), n_fft=1024, hop_length=240, pad_mode="reflect")) ** 2
    spec = np.concatenate([spec[:1], spec[1:].reshape(256, 2, -1).mean(1)], 0)[:, :200]
    return librosa.power_to_db(spec, ref=1.0, amin=1e-10, top_db=100)


def decoded_aac(tmp_path: Path, seconds: float = 2.5) -> np.ndarray:
    """A broadband signal (harmonic tones, chirp, noise bursts, a silent gap) through a real AAC
    encode + decode, mono at 24 kHz."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    sig = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 660 * t)
    sig += 0.1 * np.sin(2 * np.pi * (100 + 2000 * t) * t) + 0.05 * rng.standard_normal(t.size) * (np.sin(6 * t) > 0)
    sig[int(1.2 * RATE):int(1.4 * RATE)] = 0.0
    path = write_av(tmp_path / "a.mp4", None, 16.0, sig[None].astype(np.float32), audio_rate=RATE)
    with av.open(str(path)) as c:
        res = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        chunks = [f.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for f in res.resample(fr)]
    out = np.concatenate(chunks)
    assert out.size >= 2 * RATE and np.abs(out).max() > 0.1
    return out


def real_clips(tmp_path) -> list[np.ndarray]:
    clips = [decoded_aac(tmp_path)[:2 * RATE]]
    if SPEECH.exists():
        y, _ = librosa.load(SPEECH, sr=RATE, mono=True)
        clips.append(np.pad(y, (0, max(0, 2 * RATE - y.size)))[:2 * RATE])
    return clips


def test_avid_preset_matches_librosa_within_1e3_db(tmp_path):
    clips = real_clips(tmp_path)
    wave = torch.from_numpy(np.stack(clips)).float()[:, None]  # [B, 1, 48000]
    tf = LogSpectrogram("avid", sample_rate=RATE)
    db = tf.power_db(wave).double().numpy()
    assert db.shape == (len(clips), 1, 257, 200)
    for i, y in enumerate(clips):
        ref = librosa_avid(wave[i, 0].double().numpy())
        assert (ref <= ref.max() - 100 + 1e-9).any()  # the top_db floor is reached (quiet parts)
        assert np.abs(db[i, 0] - ref).max() < 1e-3
    # the z-norm uses the shipped stats: (x - mean) / (std + 1e-5)
    stats = np.load(AVID_NORM_STATS)
    z = tf(wave).double().numpy()
    want = (db - stats["mean"][:, None]) / (stats["std"][:, None] + 1e-5)
    assert z.shape == (len(clips), 1, 257, 200) and np.abs(z - want).max() < 1e-4


def test_top_db_ceiling_is_per_clip_and_batching_changes_nothing(tmp_path):
    y = decoded_aac(tmp_path)[:2 * RATE]
    loud, quiet = torch.from_numpy(y).float(), torch.from_numpy(y).float() * 1e-4
    tf = LogSpectrogram("avid", sample_rate=RATE)
    both = tf.power_db(torch.stack([loud, quiet])[:, None])
    alone = tf.power_db(quiet[None, None])
    assert torch.allclose(both[1], alone[0], atol=1e-6)
    assert np.abs(both[1, 0].numpy() - librosa_avid(quiet.double().numpy())).max() < 1e-3
    # stereo is averaged to mono first
    st = tf.power_db(torch.stack([loud, loud])[None])
    assert torch.allclose(st, both[:1], atol=1e-6)


def test_float32_compute_is_close_and_options():
    torch.manual_seed(0)
    wave = torch.randn(3, 1, 2 * RATE) * 0.1
    f64 = LogSpectrogram(sample_rate=RATE).power_db(wave)
    f32 = LogSpectrogram(sample_rate=RATE, compute_dtype="float32").power_db(wave)
    assert (f64 - f32).abs().max() < 0.05
    mel = LogSpectrogram("mel128", sample_rate=RATE)
    assert mel(wave).shape == (3, 1, 128, 200)
    with pytest.raises(ValueError, match="waveforms"):
        LogSpectrogram()(torch.randn(2 * RATE))
    with pytest.raises(ValueError, match="preset"):
        LogSpectrogram("nope")


def test_spec_augment_masks_only_in_training():
    torch.manual_seed(0)
    wave = torch.randn(4, 1, 2 * RATE) * 0.1
    tf = LogSpectrogram(sample_rate=RATE, freq_mask=30, time_mask=40, num_masks=2)
    clean = tf.eval()(wave)
    masked = tf.train()(wave)
    assert torch.equal(tf.eval()(wave), clean)
    changed = (masked != clean)
    assert changed.any() and (masked[changed] == 0).all()  # masked cells are set to 0
    # masks differ between clips (iid)
    assert not torch.equal(changed[0], changed[1])


# ------------------------------------------------------------------------------------- video
def clips(b=4, t=8, h=48, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, h, w, 3), dtype=torch.uint8, generator=g)


def unnormalize(x):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return x * std + mean


def test_train_augment_shapes_range_and_generator_determinism():
    v = clips()
    aug = VideoAugment(32, train=True)
    out = aug(v, generator=torch.Generator().manual_seed(1))
    assert out.shape == (4, 3, 8, 32, 32) and out.dtype == torch.float32
    x = unnormalize(out)
    assert x.min() >= -1e-5 and x.max() <= 1 + 1e-5
    again = aug(v, generator=torch.Generator().manual_seed(1))
    other = aug(v, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out, again) and not torch.allclose(out, other)


def test_same_crop_and_jitter_for_all_frames_of_a_clip_different_across_clips():
    frame = clips(1, 1, 48, 64)[:, :1]
    v = frame.expand(3, 8, 48, 64, 3).contiguous()  # 3 clips, each 8 copies of one frame
    out = VideoAugment(24)(v, generator=torch.Generator().manual_seed(0))
    for i in range(3):
        assert torch.allclose(out[i, :, :1].expand_as(out[i]), out[i], atol=1e-6)
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])


def test_crop_boxes_follow_random_resized_crop_rules():
    aug = VideoAugment(224, scale=(0.08, 1.0))
    boxes = aug.sample_crops(2000, 180, 320, torch.Generator().manual_seed(0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 180).all() and (left + w <= 320).all()
    frac = h * w / (180 * 320)
    assert frac.min() > 0.07 and frac.max() <= 1.0 and frac.std() > 0.1
    aspect = w / h
    assert aspect.min() > 0.7 and aspect.max() < 1.4


def test_full_frame_crop_with_flip_is_exact():
    v = clips(2, 3, 32, 32)
    aug = VideoAugment(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_prob=1.0, jitter=None)
    out = unnormalize(aug(v, generator=torch.Generator().manual_seed(0)))
    want = v.permute(0, 4, 1, 2, 3).float().div(255).flip(-1)
    assert (out - want).abs().max() < 1e-4


def test_eval_transform_is_resize_and_centre_crop():
    v = clips(2, 4, 90, 120)
    aug = VideoAugment(56, train=False)
    out = aug(v)
    assert out.shape == (2, 3, 4, 56, 56)
    assert torch.equal(out, aug(v))
    frames = v.permute(0, 1, 4, 2, 3).reshape(8, 3, 90, 120).float() / 255
    ref = TF.center_crop(TF.resize(frames, [64], antialias=True), [56, 56])  # int(56 / 0.875) = 64
    ref = ref.reshape(2, 4, 3, 56, 56).permute(0, 2, 1, 3, 4)
    assert (unnormalize(out) - ref).abs().max() < 1e-5


def test_video_input_checks():
    with pytest.raises(TypeError, match="uint8"):
        VideoAugment(32)(torch.zeros(1, 2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"\[B, T, H, W, 3\]"):
        VideoAugment(32)(torch.zeros(1, 3, 2, 8, 8, dtype=torch.uint8))


def test_without_geometry_only_flip_jitter_and_normalise():
    """geometry=False (the datasets cropped every item): eval is normalisation alone; train flips
    whole clips and jitters, never moves pixels otherwise; inputs of another size are refused."""
    v = clips(6, 3, 32, 32)
    x = v.permute(0, 4, 1, 2, 3).float() / 255
    ev = VideoAugment(32, train=False, geometry=False)
    assert (unnormalize(ev(v)) - x).abs().max() < 1e-5
    tr = VideoAugment(32, train=True, geometry=False, jitter=None, flip_prob=0.5)
    out = unnormalize(tr(v, generator=torch.Generator().manual_seed(0)))
    flipped = [bool((out[i] - x[i].flip(-1)).abs().max() < 1e-5) for i in range(6)]
    kept = [bool((out[i] - x[i]).abs().max() < 1e-5) for i in range(6)]
    assert all(f != k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    jit = VideoAugment(32, train=True, geometry=False)(v, generator=torch.Generator().manual_seed(0))
    assert jit.shape == (6, 3, 3, 32, 32) and not torch.allclose(unnormalize(jit), out, atol=1e-3)
    with pytest.raises(ValueError, match="32x32"):
        ev(clips(1, 2, 32, 40))
    # geometry=True keeps doing the recipe's eval crop on the batch: letterbox / stretch too
    wide = clips(1, 2, 30, 60)
    lb = unnormalize(VideoAugment(32, train=False, eval_mode="letterbox")(wide))
    bar = torch.tensor([124, 116, 104]).view(1, 3, 1, 1, 1) / 255  # the mean colour: ~0 once normalised
    assert lb.shape == (1, 3, 2, 32, 32) and torch.allclose(lb[..., :8, :], bar.expand(1, 3, 2, 8, 32), atol=1e-3)
    assert VideoAugment(32, train=False, eval_mode="stretch")(wide).shape == (1, 3, 2, 32, 32)
