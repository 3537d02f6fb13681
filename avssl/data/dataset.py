"""`AVClipDataset`: one synchronized audio-video clip per item, read from a `Manifest`.

Train mode draws a random clip start and a uniform A/V offset in [-av_jitter, av_jitter]
from `np.random.default_rng([seed, epoch, item])`, so every item is reproducible and
independent of worker count/order; call `set_epoch(e)` once per epoch. Eval mode gives
`clips_per_video` evenly spaced clips per video, each a separate item.

`spatial` (`avssl.data.spatial.SpatialPolicy`) brings every item's frames to one shape before
collation (train: random resized crop; eval: resize + centre crop, letterbox or stretch), so
files of any size and aspect ratio batch; its random box comes from a second stream of the same
seed, `default_rng([seed, epoch, item, 1])` (the clip plan's draws are unchanged by it). Items
carry the `placement` (float32 [12]) that maps output pixels back to the decoded frame.

`shifted_audio=(min_shift, max_shift)` (training with temporal hard negatives, as AVTS / GDT): each
item also carries ``audio_shifted``, the same video's audio window moved by ``shift`` s (signed,
|shift| in [min_shift, max_shift], drawn from a third stream ``default_rng([seed, epoch, item, 2])``)
and kept inside the file, so it differs from the own window only by its timing, never by zero-filled
silence. Where the file leaves no room for min_shift either way, ``shift`` is 0.0 and
``audio_shifted`` is silence: the loss leaves such items out (`avssl.methods.terms.TemporalNegatives`).

A file that fails at read time (`MediaError`) yields None and a logged warning;
`avssl.data.collate.collate_skip_bad` drops it and counts it. The dataset holds only the
columnar manifest and a few scalars, so it pickles small into DataLoader workers.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

from avssl.data.index import MISSING_AUDIO_POLICIES, Manifest
from avssl.data.spatial import SpatialPolicy
from avssl.io.errors import MediaError, NoAudioStream
from avssl.io.read import read_clip
from avssl.io.sampling import audio_room, eval_clip_starts, train_clip_start
from avssl.io.types import ClipSpec

log = logging.getLogger(__name__)

__all__ = ["AVClipDataset"]


class AVClipDataset(Dataset):
    """Items: {"video": uint8 [T,H,W,3], "audio": float32 [C,S], "index": manifest id (int),
    "clip_index": int, "start": float (s), "av_offset": float (s), "placement": float32 [12]
    (`avssl.data.spatial.Placement`), "decode_errors": int (damaged packets the reader skipped for
    this clip, `Clip.decode_errors`; 0 on a clean file), "label": int (if labels)}.

    `spatial`: the per-item resize/crop policy (None: frames as decoded, which batch only when
    every file decodes to the same size).

    `labels`: array-like aligned with manifest rows, or a dict {id: label}.
    `shifted_audio`: (min_shift, max_shift) s, or None: items also carry ``audio_shifted`` (float32
    [C,S]) and ``shift`` (float, s; 0.0 where no shift fits in the file) -- see the module doc.
    `missing_audio`: 'zeros' (silence for videos without audio), 'skip' (such videos are
    left out of the dataset) or 'error' (raise at construction).
    """

    last_failure = None  # (path, reason, detail) of the last item this process failed to read

    def __init__(self, manifest: Manifest, spec: ClipSpec, mode: str = "train", clips_per_video: int = 1,
                 av_jitter: float = 0.0, missing_audio: str = "zeros", backend: str | None = None,
                 seed: int = 0, labels=None, root: str | None = None, spatial: SpatialPolicy | None = None,
                 shifted_audio: tuple[float, float] | None = None):
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if missing_audio not in MISSING_AUDIO_POLICIES:
            raise ValueError(f"missing_audio must be one of {MISSING_AUDIO_POLICIES}, got {missing_audio!r}")
        if int(clips_per_video) < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {clips_per_video}")
        if av_jitter < 0:
            raise ValueError(f"av_jitter must be >= 0, got {av_jitter}")
        if shifted_audio is not None:
            lo, hi = (float(x) for x in shifted_audio)
            if not 0 < lo <= hi:
                raise ValueError(f"shifted_audio must be (min_shift, max_shift) with 0 < min <= max, got {shifted_audio}")
            shifted_audio = (lo, hi)
        self.shifted_audio = shifted_audio
        self.manifest = manifest
        self.spec = spec
        self.mode = mode
        self.clips_per_video = int(clips_per_video)
        self.av_jitter = float(av_jitter)
        self.missing_audio = missing_audio
        self.backend = backend
        self.seed = int(seed)
        self.epoch = 0
        self.spatial = spatial if spatial is not None else SpatialPolicy("none")
        self.root = root if root is not None else manifest.root
        rows = np.arange(len(manifest), dtype=np.int64)
        silent = ~manifest.has_audio
        if silent.any():
            if missing_audio == "error":
                first = int(np.flatnonzero(silent)[0])
                raise NoAudioStream(manifest.path(first), f"{int(silent.sum())} videos without audio, missing_audio='error'")
            if missing_audio == "skip":
                log.warning("AVClipDataset: leaving out %d videos without audio (missing_audio='skip')", int(silent.sum()))
                rows = rows[~silent]
        self.rows = rows
        self.labels = None
        if labels is not None:
            if isinstance(labels, dict):
                self.labels = np.array([labels[int(i)] for i in manifest.id], dtype=np.int64)
            else:
                self.labels = np.asarray(labels, dtype=np.int64)
                if self.labels.shape != (len(manifest),):
                    raise ValueError(f"labels must have one entry per manifest row ({len(manifest)}), got {self.labels.shape}")
        # Clips must cover the longer of the video and audio windows.
        self._clip_span = max(spec.video_duration, spec.audio_duration)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows) * self.clips_per_video

    def _path(self, row: int) -> str:
        import os

        p = self.manifest.path(row)
        return p if self.root is None or os.path.isabs(p) else os.path.join(self.root, p)

    def sample_plan(self, idx: int) -> tuple[int, int, float, float]:
        """(row, clip_index, start, av_offset) of item `idx`: pure function of seed, epoch, idx."""
        if not 0 <= idx < len(self):
            raise IndexError(f"item {idx} out of range ({len(self)})")
        row = int(self.rows[idx // self.clips_per_video])
        clip_index = idx % self.clips_per_video
        duration = float(self.manifest.duration[row])
        if self.mode == "train":
            rng = np.random.default_rng([self.seed, self.epoch, idx])
            start = train_clip_start(duration, self.spec.video_duration, rng)
            offset = float(rng.uniform(-self.av_jitter, self.av_jitter)) if self.av_jitter > 0 else 0.0
        else:
            start = float(eval_clip_starts(duration, self.spec.video_duration, self.clips_per_video)[clip_index])
            offset = 0.0
        return row, clip_index, start, offset

    def sample_shift(self, idx: int, row: int, start: float, offset: float) -> float:
        """Signed shift (s) of item `idx`'s shifted audio window (`shifted_audio`): a direction with room
        for at least min_shift (at random when both have), a size uniform in [min_shift, min(max_shift,
        room)]; 0.0 when neither direction has room. Pure function of seed, epoch, idx."""
        lo, hi = self.shifted_audio
        spec = self.spec
        earlier, later = audio_room(float(self.manifest.duration[row]), start, spec.video_duration,
                                    spec.audio_duration, offset)
        rng = np.random.default_rng([self.seed, self.epoch, idx, 2])
        ways = [(sign, room) for sign, room in ((1.0, later), (-1.0, earlier)) if room >= lo - 1e-9]
        if not ways:
            return 0.0
        sign, room = ways[int(rng.integers(len(ways)))]
        return sign * float(rng.uniform(lo, max(min(hi, room), lo)))

    def read_at(self, idx: int, pos: int, start: float, offsets, video: bool = True):
        """``(video uint8 [T,H,W,3] shaped by the spatial policy (None if not `video`), placement,
        audio float32 [K,C,S] for the K audio offsets (s), damaged packets)`` of the clip at `start` of
        the video at position `pos` of ``self.rows`` (item `idx`'s spatial draws). The first offset is
        read with the frames, each further one by an audio-only read (so every window is exactly
        `read_clip`'s at that offset). Raises `MediaError`."""
        row = int(self.rows[pos])
        path = self._path(row)
        has_audio = bool(self.manifest.has_audio[row])
        offsets = [float(o) for o in offsets]
        clip = read_clip(path, start, self.spec, backend=self.backend, av_offset=offsets[0], audio=has_audio,
                         video=video)
        silence = torch.zeros(self.spec.audio_channels, self.spec.audio_samples, dtype=torch.float32)
        audio = [clip.audio if clip.audio is not None else silence]
        for o in offsets[1:]:
            other = read_clip(path, start, self.spec, backend=self.backend, av_offset=o, audio=has_audio,
                              video=False).audio if has_audio else None
            audio.append(other if other is not None else silence)
        frames, placement = (None, None)
        if video:
            frames, placement = self.shape_item(clip.video, idx)
        return frames, placement, torch.stack(audio), int(clip.decode_errors)

    def spatial_rng(self, idx: int) -> np.random.Generator | None:
        """The Generator of item `idx`'s random crop (None for deterministic policies)."""
        return np.random.default_rng([self.seed, self.epoch, idx, 1]) if self.spatial.random else None

    def shape_item(self, video: torch.Tensor, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames at the policy's shape, placement [12]) of item `idx`'s decoded frames."""
        return self.spatial.apply(video, self.spatial_rng(idx))

    def __getitem__(self, idx: int):
        row, clip_index, start, offset = self.sample_plan(idx)
        shift = self.sample_shift(idx, row, start, offset) if self.shifted_audio is not None else None
        offsets = [offset] if not shift else [offset, offset + shift]
        try:
            video, placement, audio, damaged = self.read_at(idx, idx // self.clips_per_video, start, offsets)
        except MediaError as e:
            log.warning("AVClipDataset: skipping item %d (id %d): %s", idx, int(self.manifest.id[row]), e)
            self.last_failure = (self._path(row), e.reason, e.detail)  # for avssl.data.collate.load_item's report
            return None
        item = {
            "video": video,
            "audio": audio[0],
            "index": int(self.manifest.id[row]),
            "clip_index": clip_index,
            "start": float(start),
            "av_offset": offset,
            "placement": placement,
            "decode_errors": damaged,
        }
        if shift is not None:
            item["audio_shifted"] = audio[1] if shift else torch.zeros_like(audio[0])
            item["shift"] = float(shift)
        if self.labels is not None:
            item["label"] = int(self.labels[row])
        return item
