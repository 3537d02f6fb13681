"""Write real encoded test media whose content says where it is in time.

Video: frame i shows its index as a binary bar code of vertical stripes (a white start stripe,
BITS bits most-significant first, a black end stripe), so any read frame can be decoded back to
its index, even resized, and a wrongly rotated or flipped frame decodes to garbage.
Audio: a tone whose frequency names the second it is in (BASE_HZ + STEP_HZ * second) plus seeded
band-limited noise, so reads can be checked both coarsely (which second) and to the sample
(cross-correlation with the known source).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from avssl.io.writer import write_av

BITS = 10
BASE_HZ = 400.0
STEP_HZ = 150.0


@dataclass
class Media:
    path: Path
    frame_times: np.ndarray  # presentation time (s) of every written frame, media timeline
    audio: np.ndarray | None  # the source written [C, S] at audio_rate
    audio_rate: int
    audio_start: float  # media time of audio sample 0
    display_hw: tuple[int, int]

    @property
    def duration(self) -> float:
        return float(self.frame_times[-1] + (self.frame_times[-1] - self.frame_times[-2]))

    def expected_index(self, t) -> np.ndarray:
        """Index of the frame displayed at each time t (last frame with time <= t, clipped)."""
        idx = np.searchsorted(self.frame_times, np.asarray(t) + 1e-4, side="right") - 1
        return np.clip(idx, 0, len(self.frame_times) - 1)


# ---------------------------------------------------------------- video content
def code_frame(index: int, h: int, w: int) -> np.ndarray:
    """uint8 [h, w, 3] showing `index` as vertical stripes (start, BITS bits, end)."""
    bits = [1] + [(index >> (BITS - 1 - b)) & 1 for b in range(BITS)] + [0]
    edges = np.linspace(0, w, len(bits) + 1).round().astype(int)
    img = np.zeros((h, w, 3), np.uint8)
    for b, (x0, x1) in zip(bits, zip(edges[:-1], edges[1:])):
        if b:
            img[:, x0:x1] = 255
    img[..., 2] = 128  # a constant blue plane: RGB/BGR swaps show up in the colour check
    return img


def decode_frame(img) -> int:
    """Inverse of `code_frame` on a (possibly resized, lossy) frame [H, W, 3]; -1 if the marker stripes are wrong."""
    img = img.numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    w = img.shape[1]
    n = BITS + 2
    edges = np.linspace(0, w, n + 1)
    rows = slice(img.shape[0] // 4, max(img.shape[0] * 3 // 4, img.shape[0] // 4 + 1))
    vals = []
    for x0, x1 in zip(edges[:-1], edges[1:]):
        c0, c1 = int(x0 + (x1 - x0) * 0.3), int(np.ceil(x0 + (x1 - x0) * 0.7))
        vals.append(img[rows, c0:max(c1, c0 + 1), 0].mean() > 128)
    if not vals[0] or vals[-1]:
        return -1
    return int(sum(int(v) << (BITS - 1 - i) for i, v in enumerate(vals[1:-1])))


def coded_video(n: int, h: int, w: int) -> np.ndarray:
    return np.stack([code_frame(i, h, w) for i in range(n)])


# ---------------------------------------------------------------- audio content
def coded_audio(seconds: float, rate: int, channel_gains=(1.0,), seed: int = 0) -> np.ndarray:
    """[C, S] float32: per-second tone code + band-limited (< 6 kHz) seeded noise, channel c scaled by gains[c]."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    freq = BASE_HZ + STEP_HZ * np.floor(t)
    phase = 2 * np.pi * np.cumsum(freq) / rate
    noise = np.random.default_rng(seed).standard_normal(n)
    spec = np.fft.rfft(noise)
    spec[np.fft.rfftfreq(n, 1 / rate) > 6000] = 0
    noise = np.fft.irfft(spec, n)
    noise *= 0.15 / noise.std()
    mono = 0.35 * np.sin(phase) + noise
    return np.stack([g * mono for g in channel_gains]).astype(np.float32)


def tone_second(segment, rate: int) -> int:
    """Which second's tone dominates `segment` (1-D)."""
    x = np.asarray(segment, dtype=np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    band = (freqs > BASE_HZ - STEP_HZ / 2) & (freqs < 5000)
    f = freqs[band][np.argmax(spec[band])]
    return int(round((f - BASE_HZ) / STEP_HZ))


def expected_audio(media: Media, t0: float, n: int, rate: int) -> np.ndarray:
    """Mono mix of the written source at `rate`, samples at media times t0 + k/rate; zeros outside."""
    import torchaudio.functional as AF

    ref = torch.from_numpy(media.audio.mean(axis=0, keepdims=True))
    if media.audio_rate != rate:
        ref = AF.resample(ref, media.audio_rate, rate)
    ref = ref[0].numpy()
    first = int(round((t0 - media.audio_start) * rate))
    out = np.zeros(n, np.float32)
    lo, hi = max(first, 0), min(first + n, len(ref))
    if hi > lo:
        out[lo - first : hi - first] = ref[lo:hi]
    return out


def audio_lag(got, media: Media, t0: float, rate: int, max_lag: float = 0.1) -> tuple[float, float]:
    """(lag s, normalised correlation) of `got` (1-D, read at media time t0) against the source.

    Positive lag: the read audio is late (its content belongs to earlier media times)."""
    got = np.asarray(got, dtype=np.float64)
    L = int(round(max_lag * rate))
    ext = expected_audio(media, t0 - L / rate, len(got) + 2 * L, rate).astype(np.float64)
    best, best_c = 0, -2.0
    for lag in range(-L, L + 1):
        ref = ext[L - lag : L - lag + len(got)]
        den = np.linalg.norm(ref) * np.linalg.norm(got)
        c = float(ref @ got / den) if den > 0 else 0.0
        if c > best_c:
            best, best_c = lag, c
    return best / rate, best_c


# ---------------------------------------------------------------- files
def write_coded(path, *, seconds: float = 3.0, fps: float = 30.0, size=(96, 160), audio_rate: int | None = 48000,
                channel_gains=(1.0,), audio_start: float = 0.0, rotation: int = 0, **write_kw) -> Media:
    """A coded video (and audio) file via avssl.io.writer.write_av. `size` is the DISPLAYED (H, W);
    with `rotation` the stored frames are turned so that a correct reader shows `size` upright."""
    n = int(round(seconds * fps))
    h, w = size
    frames = coded_video(n, h, w)
    if rotation:
        # player turns stored frames clockwise by `rotation` -> store them turned the other way
        frames = np.ascontiguousarray(np.rot90(frames, k=rotation // 90, axes=(1, 2)))
    wav = None
    if audio_rate:
        wav = coded_audio(seconds, audio_rate, channel_gains)
    write_av(path, frames, fps, wav, audio_rate or 48000, audio_start=audio_start, rotation=rotation or None, **write_kw)
    return Media(Path(path), np.arange(n) / fps, wav, audio_rate or 0, audio_start, (h, w))


def write_vfr(path, durations_ms=(20, 50, 33, 80, 40), seconds: float = 3.0, size=(96, 160)) -> Media:
    """H.264 mp4 with irregular frame durations (variable frame rate), written with PyAV directly."""
    pts, t = [], 0
    i = 0
    while t < seconds * 1000:
        pts.append(t)
        t += durations_ms[i % len(durations_ms)]
        i += 1
    h, w = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.time_base = Fraction(1, 1000)
        vs.codec_context.time_base = Fraction(1, 1000)
        vs.options = {"preset": "veryfast", "bf": "0"}
        for k, p in enumerate(pts):
            vf = av.VideoFrame.from_ndarray(code_frame(k, h, w), format="rgb24")
            vf.pts = p
            vf.time_base = Fraction(1, 1000)
            for pkt in vs.encode(vf):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    return Media(Path(path), np.array(pts) / 1000.0, None, 0, 0.0, (h, w))


# ---------------------------------------------------------------- headers that over-report
def write_overreported(d, kind: str, seconds: float = 2.0, fps: float = 25.0) -> Media:
    """A coded file whose header announces more frames/time than its packets hold (real patched bytes).

    kind 'avi': AVI main header dwTotalFrames and video strh dwLength set to 4x the frames;
    'mkv': Matroska Segment Duration set to 4x; 'mp4_empty': the last 10 MP4 samples' sizes set to
    0 in `stsz` (the sample table still counts them: nb_frames 50, 40 packets with data);
    'mp4_garbage': the last 10 samples' bytes zeroed (listed and present, but undecodable)."""
    import struct

    d = Path(d)
    ext = {"avi": ".avi", "mkv": ".mkv"}.get(kind, ".mp4")
    src = d / f"over_src_{kind}{ext}"
    media = write_coded(src, seconds=seconds, fps=fps, audio_rate=None, gop=10,
                        **({} if kind == "avi" else {"bframes": 0}))
    b = bytearray(src.read_bytes())
    n = len(media.frame_times)
    if kind == "avi":
        i = b.find(b"avih")
        struct.pack_into("<I", b, i + 8 + 16, 4 * n)  # dwTotalFrames
        j = b.find(b"strh")
        assert b[j + 8 : j + 12] == b"vids"
        struct.pack_into("<I", b, j + 8 + 32, 4 * n)  # dwLength (frames)
    elif kind == "mkv":
        i = b.find(b"\x44\x89")  # Info/Duration, an 8-byte float in ms here
        assert b[i + 2] == 0x88
        struct.pack_into(">d", b, i + 3, 4 * 1000.0 * seconds)
    elif kind == "mp4_empty":
        i = b.find(b"stsz")
        fixed, count = struct.unpack_from(">II", b, i + 8)
        assert fixed == 0 and count == n
        for k in range(n - 10, n):
            struct.pack_into(">I", b, i + 16 + 4 * k, 0)
        media = Media(src, media.frame_times[: n - 10], None, 0, 0.0, media.display_hw)
    elif kind == "mp4_garbage":
        with av.open(str(src)) as c:
            pk = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
        for pos, size in pk[-10:]:
            b[pos : pos + size] = bytes(size)
    else:
        raise ValueError(kind)
    out = d / f"over_{kind}{ext}"
    out.write_bytes(bytes(b))
    return Media(out, media.frame_times, None, 0, 0.0, media.display_hw)
