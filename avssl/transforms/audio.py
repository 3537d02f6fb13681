"""Audio front end: batched log-spectrograms in torch (CPU or GPU), the AVID recipe as a preset.

The ``"avid"`` preset reproduces the reference's ``SpectrogramLibrosa2`` (AVID-CMA
``datasets/preprocessing.py``, configs ``n_fft: 512``, ``spectrogram_fps: 100``):

1. mono (mean over channels), 2 s of 24 kHz -> 48000 samples;
2. STFT with n_fft 1024 (= 2 x 512), window length 1024, periodic Hann window, hop 240 samples
   (10 ms), centred with reflect padding (librosa < 0.10 defaults, which the reference used);
3. power ``|X|^2``, 513 bins -> 257: bin 0 kept, bins 1..512 averaged in adjacent pairs;
4. the first ``S // hop`` frames kept (200 for 2 s; centring yields 201);
5. ``power_to_db`` with ref 1.0, amin 1e-10, top_db 100, the ceiling taken per clip over the
   kept frames (the reference trims *before* the dB step);
6. per-frequency z-norm ``(x - mean) / (std + 1e-5)`` with the shipped 257-value stats
   (``avssl/assets/audio-spectDB-24k-513-norm-stats.npz``; named after the reference's n_fft+1).

Output layout: ``[B, 1, F, T]`` = ``[B, 1, 257, 200]`` (the library contract). The reference
net consumed ``[B, 1, T, F]`` (200 x 257); `avssl.models.avid_audio` transposes internally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torchaudio
from torch import nn

ASSETS = Path(__file__).resolve().parent.parent / "assets"
AVID_NORM_STATS = ASSETS / "audio-spectDB-24k-513-norm-stats.npz"

PRESETS = {
    "avid": dict(n_fft=1024, hop_seconds=0.01, pair_average=True, top_db=100.0, normalize="avid",
                 center=True, pad_mode="reflect"),
    # the same STFT without the shipped statistics (e.g. other sample rates)
    "avid_unnormalized": dict(n_fft=1024, hop_seconds=0.01, pair_average=True, top_db=100.0, normalize=None,
                              center=True, pad_mode="reflect"),
    # a log-mel alternative: 128 mel bands on the same STFT
    "mel128": dict(n_fft=1024, hop_seconds=0.01, n_mels=128, top_db=80.0, normalize=None,
                   center=True, pad_mode="reflect"),
}


class LogSpectrogram(nn.Module):
    """Waveforms ``[B, C, S]`` (float in [-1, 1]) -> log-power spectrograms ``[B, 1, F, T]``.

    Args:
        preset: ``"avid"`` (default; see module doc), ``"avid_unnormalized"``, ``"mel128"`` or None;
            explicit keyword arguments override the preset's values.
        sample_rate: input rate (Hz); the hop is ``round(hop_seconds * sample_rate)`` unless
            ``hop_length`` is given.
        n_fft, win_length, hop_length, center, pad_mode: the STFT (periodic Hann window).
        pair_average: merge bins 1.. in adjacent pairs (n_fft/2+1 -> n_fft/4+1), bin 0 kept.
        n_mels: if set, a mel filterbank (torchaudio ``MelScale``) instead of ``pair_average``.
        num_frames: frames kept; None -> ``S // hop_length`` (200 for 2 s at 100 frames/s).
        top_db: dB floor below each clip's maximum (None: no floor). ``amin`` 1e-10, ref 1.
        normalize: ``"avid"`` (the shipped stats), a path to an ``.npz`` with ``mean``/``std``,
            or None.
        freq_mask, time_mask, num_masks: SpecAugment-style masking (torchaudio
            ``FrequencyMasking`` / ``TimeMasking``, independent per clip) applied only in
            training mode and only if > 0.
        compute_dtype: the STFT/dB precision (float64 keeps low bins exact to 1e-3 dB next to a
            100 dB louder peak; float32 is faster and within ~0.05 dB there).
    """

    def __init__(self, preset: Optional[str] = "avid", sample_rate: int = 24000, *, n_fft: Optional[int] = None,
                 win_length: Optional[int] = None, hop_length: Optional[int] = None,
                 hop_seconds: Optional[float] = None, center: Optional[bool] = None,
                 pad_mode: Optional[str] = None, pair_average: Optional[bool] = None,
                 n_mels: Optional[int] = None, num_frames: Optional[int] = None,
                 top_db: Optional[float] = ..., amin: float = 1e-10, normalize=...,
                 freq_mask: int = 0, time_mask: int = 0, num_masks: int = 1,
                 compute_dtype: torch.dtype | str = torch.float64):
        super().__init__()
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown LogSpectrogram preset {preset!r}; choose from {sorted(PRESETS)}")
        p = dict(PRESETS[preset]) if preset else {}
        pick = lambda name, value, default: value if value is not None and value is not ... else p.get(name, default)
        self.sample_rate = int(sample_rate)
        self.n_fft = int(pick("n_fft", n_fft, 1024))
        self.win_length = int(pick("win_length", win_length, self.n_fft))
        hop_s = pick("hop_seconds", hop_seconds, 0.01)
        self.hop_length = int(hop_length) if hop_length is not None else int(round(hop_s * self.sample_rate))
        self.center = bool(pick("center", center, True))
        self.pad_mode = pick("pad_mode", pad_mode, "reflect")
        self.n_mels = pick("n_mels", n_mels, None)
        self.pair_average = bool(pick("pair_average", pair_average, False)) and self.n_mels is None
        self.num_frames = num_frames
        self.top_db = p.get("top_db", None) if top_db is ... else top_db
        self.amin = float(amin)
        if isinstance(compute_dtype, str):
            compute_dtype = getattr(torch, compute_dtype)
        self.compute_dtype = compute_dtype
        if self.pair_average and self.n_fft % 4:
            raise ValueError(f"pair_average needs n_fft divisible by 4, got {self.n_fft}")

        self.stft = torchaudio.transforms.Spectrogram(
            n_fft=self.n_fft, win_length=self.win_length, hop_length=self.hop_length,
            window_fn=torch.hann_window, wkwargs={"dtype": torch.float64}, power=2.0, center=self.center, pad_mode=self.pad_mode)
        self.mel = (torchaudio.transforms.MelScale(n_mels=int(self.n_mels), sample_rate=self.sample_rate,
                                                   n_stft=self.n_fft // 2 + 1) if self.n_mels else None)
        self.num_bins = int(self.n_mels) if self.n_mels else (
            self.n_fft // 4 + 1 if self.pair_average else self.n_fft // 2 + 1)

        norm = p.get("normalize", None) if normalize is ... else normalize
        if norm is not None:
            stats = np.load(AVID_NORM_STATS if norm == "avid" else norm)
            mean, std = np.asarray(stats["mean"], np.float64), np.asarray(stats["std"], np.float64)
            if mean.shape != (self.num_bins,) or std.shape != (self.num_bins,):
                raise ValueError(f"normalisation stats have {mean.shape[0]} bins, the spectrogram {self.num_bins}")
            self.register_buffer("norm_mean", torch.from_numpy(mean).float()[:, None], persistent=False)
            self.register_buffer("norm_std", torch.from_numpy(std).float()[:, None], persistent=False)
        else:
            self.norm_mean = self.norm_std = None
        self.masks = nn.ModuleList()
        for _ in range(int(num_masks)):
            if freq_mask > 0:
                self.masks.append(torchaudio.transforms.FrequencyMasking(int(freq_mask), iid_masks=True))
            if time_mask > 0:
                self.masks.append(torchaudio.transforms.TimeMasking(int(time_mask), iid_masks=True))

    def power_db(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, C, S] -> [B, 1, F, T]`` dB spectrogram, before normalisation and masking."""
        if wave.ndim != 3:
            raise ValueError(f"LogSpectrogram expects waveforms [B, C, S], got shape {tuple(wave.shape)}")
        if not wave.is_floating_point():
            raise TypeError(f"LogSpectrogram expects float waveforms, got {wave.dtype}")
        mono = wave.mean(1).to(self.compute_dtype)  # [B, S]
        if self.stft.window.dtype != mono.dtype:  # the window is built in float64, cast once if needed
            self.stft.window = self.stft.window.to(mono.dtype)
        spec = self.stft(mono)  # [B, n_fft/2+1, frames]  # [B, n_fft/2+1, frames]
        if self.pair_average:
            b, f, t = spec.shape
            spec = torch.cat([spec[:, :1], spec[:, 1:].reshape(b, (f - 1) // 2, 2, t).mean(2)], 1)
        elif self.mel is not None:
            self.mel.fb = self.mel.fb.to(spec)
            spec = self.mel(spec)
        frames = self.num_frames if self.num_frames is not None else mono.shape[-1] // self.hop_length
        if spec.shape[-1] < frames:
            raise ValueError(f"{mono.shape[-1]} samples give {spec.shape[-1]} frames, fewer than num_frames={frames}")
        spec = spec[..., :frames]
        db = 10.0 * torch.log10(spec.clamp_min(self.amin))  # ref = 1.0
        if self.top_db is not None:  # floor relative to each clip's own maximum
            db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - float(self.top_db))
        return db[:, None]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        out_dtype = wave.dtype if wave.dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.float32
        x = self.power_db(wave).float()
        if self.norm_mean is not None:
            x = (x - self.norm_mean) / (self.norm_std + 1e-5)
        if self.training:
            for m in self.masks:
                x = m(x)
        return x.to(out_dtype)
