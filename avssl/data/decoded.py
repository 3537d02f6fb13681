"""`DecodedClipDataset`: the items of `AVClipDataset`, served from videos decoded once into RAM.

On a small collection (the embedded world, a low-resolution UCF101 copy) decoding is most of a
CPU training step; decoding each video once and slicing clips out of memory removes it. Every
video is decoded whole on the clip grid (frame k shown at k / fps, the same rule as `read_clip`)
together with its audio from `margin` s before the first frame to `margin` s after the last, so
any clip start, A/V offset and audio window of the wrapped dataset can be cut out without
decoding again. Clip starts are rounded to the frame grid (at most half a frame, 31 ms at
16 fps, from where `AVClipDataset` would start); apart from that an item equals `read_clip`'s,
put through the wrapped dataset's spatial policy with the same draws (`AVClipDataset.shape_item`).

Every video is kept at its own decoded size, so collections of mixed sizes and aspect ratios fit.
Storage is columnar (one flat uint8 frame buffer with a start offset and an (H, W) per video, one
float32 audio tensor with an offset per video), so
DataLoader workers forked from the process share it without copying, and it can be saved to one
file keyed on the index fingerprint and the clip spec (`cache_dir`), which later runs on the same
index (the CMA stage, a resumed run) load in a second instead of decoding again.
A video that fails to decode is logged and its items yield None, like `AVClipDataset`'s. An item's
`decode_errors` is the damaged packets skipped while decoding its whole video (the clips of a damaged
video all carry it: where in the video the damage lies is not kept).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from avssl.data.dataset import AVClipDataset
from avssl.io.errors import MediaError
from avssl.io.read import read_clip
from avssl.io.types import ClipSpec

log = logging.getLogger(__name__)

__all__ = ["DecodedClipDataset"]

_CACHE_VERSION = 3  # 2: flat frame buffer, one (H, W) per video; 3: damaged packets per video


class _WholeVideos(Dataset):
    """Item r: (frames uint8 [N,H,W,3], audio float32 [C,S], damaged packets skipped) of the r-th row,
    or None if it fails."""

    def __init__(self, base: AVClipDataset, margin: float):
        self.base, self.margin = base, margin

    def __len__(self) -> int:
        return len(self.base.rows)

    def __getitem__(self, r: int):
        base, spec = self.base, self.base.spec
        row = int(base.rows[r])
        duration = float(base.manifest.duration[row])
        n = max(spec.num_frames, int(math.ceil(duration * spec.fps - 1e-6)))
        span = n / spec.fps
        whole = ClipSpec(num_frames=n, fps=spec.fps, frame_size=spec.frame_size, audio_rate=spec.audio_rate,
                         audio_channels=spec.audio_channels, audio_duration=span + 2 * self.margin)
        has_audio = bool(base.manifest.has_audio[row])
        try:
            clip = read_clip(base._path(row), 0.0, whole, backend=base.backend, audio=has_audio)
        except MediaError as e:
            log.warning("DecodedClipDataset: video id %d left out (%s)", int(base.manifest.id[row]), e)
            return None
        audio = clip.audio if clip.audio is not None else torch.zeros(spec.audio_channels, whole.audio_samples)
        return clip.video, audio, int(clip.decode_errors)


def _spec_key(base: AVClipDataset, margin: float, fingerprint: str) -> str:
    d = {"spec": asdict(base.spec), "margin": margin, "fingerprint": fingerprint, "rows": len(base.rows),
         "backend": base.backend, "version": _CACHE_VERSION}
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


class DecodedClipDataset(Dataset):
    """Wraps an `AVClipDataset`: same length, items, sample plans (starts rounded to the frame grid).

    Args:
        base: the dataset whose videos are decoded (its manifest, spec, mode, jitter, labels).
        cache_dir: folder for the decoded file (``decoded_<key>.pt``); None keeps it in RAM only.
        workers: decoding processes (DataLoader workers) while building.
        progress: a tqdm bar while decoding.
    """

    def __init__(self, base: AVClipDataset, cache_dir: str | os.PathLike | None = None, workers: int = 0,
                 progress: bool = True):
        self.base = base
        spec = base.spec
        # audio reaches half its window + the largest A/V offset outside the video clip
        self.margin = spec.audio_duration / 2.0 + base.av_jitter + spec.video_duration
        key = _spec_key(base, self.margin, base.manifest.fingerprint())
        path = Path(cache_dir) / f"decoded_{key}.pt" if cache_dir is not None else None
        if path is not None and path.exists():
            store = torch.load(path, weights_only=True)
            log.info("DecodedClipDataset: loaded %s", path)
        else:
            store = self._decode(workers, progress)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                torch.save(store, tmp)
                os.replace(tmp, path)  # atomic: a killed run never leaves half a cache
        self.frames, self.frame_offsets = store["frames"], store["frame_offsets"]
        self.frame_starts, self.frame_sizes = store["frame_starts"], store["frame_sizes"]
        self.audio, self.audio_offsets = store["audio"], store["audio_offsets"]
        self.ok = store["ok"]
        self.decode_errors = store["decode_errors"]  # damaged packets skipped while decoding each video
        self.cache_path = path

    def _decode(self, workers: int, progress: bool) -> dict:
        whole = _WholeVideos(self.base, self.margin)
        loader = DataLoader(whole, batch_size=None, num_workers=workers, collate_fn=lambda x: x)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(whole), desc="decoding videos into RAM", unit="video", dynamic_ncols=True)
        frames, audio, ok, damage = [], [], [], []
        spec = self.base.spec
        for item in loader:
            ok.append(item is not None)  # a failed row stays (positions line up), empty; its items yield None
            frames.append(item[0] if item is not None else None)
            audio.append(item[1] if item is not None else torch.zeros(spec.audio_channels, 0))
            damage.append(item[2] if item is not None else 0)
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        sizes = torch.tensor([list(f.shape[1:3]) if f is not None else [0, 0] for f in frames], dtype=torch.int64)
        counts = torch.tensor([0] + [f.shape[0] if f is not None else 0 for f in frames]).cumsum(0)
        flat = [f.reshape(-1) for f in frames if f is not None]
        starts = torch.tensor([0] + [f.numel() if f is not None else 0 for f in frames], dtype=torch.int64).cumsum(0)
        acounts = torch.tensor([0] + [a.shape[1] for a in audio]).cumsum(0)
        return {"frames": torch.cat(flat) if flat else torch.zeros(0, dtype=torch.uint8), "frame_offsets": counts,
                "frame_starts": starts, "frame_sizes": sizes, "audio": torch.cat(audio, dim=1),
                "audio_offsets": acounts, "ok": torch.tensor(ok), "decode_errors": torch.tensor(damage, dtype=torch.int64)}

    # ---------------------------------------------------------------- Dataset protocol
    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getattr__(self, name: str):
        # everything else (manifest, spec, labels, clips_per_video, mode, ...) is the wrapped dataset's
        if name in ("base", "__setstate__", "__getstate__") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.base, name)

    def sample_plan(self, idx: int) -> tuple[int, int, float, float]:
        """The base plan with the start rounded to the frame grid."""
        row, clip_index, start, offset = self.base.sample_plan(idx)
        k0 = int(round(start * self.base.spec.fps))
        return row, clip_index, k0 / self.base.spec.fps, offset

    def read_at(self, idx: int, pos: int, start: float, offsets, video: bool = True):
        """`AVClipDataset.read_at` from RAM: the clip at `start` (on the frame grid) of the video at
        position `pos` of ``base.rows`` with its audio at each of `offsets` (s). None if that video
        failed to decode. `start` is rounded to the frame grid (frames and audio alike)."""
        if not bool(self.ok[pos]):
            return None
        spec = self.base.spec
        k0 = int(round(start * spec.fps))
        start = k0 / spec.fps
        frames = placement = None
        if video:
            n_frames = int(self.frame_offsets[pos + 1] - self.frame_offsets[pos])
            h, w = (int(v) for v in self.frame_sizes[pos])
            b0 = int(self.frame_starts[pos])
            whole = self.frames[b0 : b0 + n_frames * h * w * 3].view(n_frames, h, w, 3)
            # times after the last frame show the last frame (read_clip's padding rule)
            ks = (k0 + torch.arange(spec.num_frames)).clamp_(0, n_frames - 1)
            frames, placement = self.base.shape_item(whole[ks], idx)
        a0, a1 = int(self.audio_offsets[pos]), int(self.audio_offsets[pos + 1])
        n = spec.audio_samples
        audio = torch.zeros(len(offsets), spec.audio_channels, n)
        for j, offset in enumerate(offsets):
            centre = start + spec.video_duration / 2.0 + float(offset)
            first = int(round((centre - spec.audio_duration / 2.0 + self.margin) * spec.audio_rate))
            lo, hi = max(first, 0), min(first + n, a1 - a0)
            if hi > lo:
                audio[j, :, lo - first : hi - first] = self.audio[:, a0 + lo : a0 + hi]
        # the damage met decoding the whole video this clip is cut from (where in it is not kept)
        return frames, placement, audio, int(self.decode_errors[pos])

    def __getitem__(self, idx: int):
        row, clip_index, start, offset = self.sample_plan(idx)
        r = idx // self.base.clips_per_video  # position in base.rows (= order of the decoded store)
        shift = self.base.sample_shift(idx, row, start, offset) if self.base.shifted_audio is not None else None
        got = self.read_at(idx, r, start, [offset] if not shift else [offset, offset + shift])
        if got is None:
            return None
        video, placement, audio, damaged = got
        item = {"video": video, "audio": audio[0], "index": int(self.base.manifest.id[row]), "clip_index": clip_index,
                "start": float(start), "av_offset": offset, "placement": placement, "decode_errors": damaged}
        if shift is not None:
            item["audio_shifted"] = audio[1] if shift else torch.zeros_like(audio[0])
            item["shift"] = float(shift)
        if self.base.labels is not None:
            item["label"] = int(self.base.labels[row])
        return item
