"""`SyncTrialDataset`: the items of a synchronization test on a held-out dataset.

For each video, the two anchor clips of `avssl.io.sampling.sync_anchor_starts` (early: its own audio
starts at the file's start, compared with audio shifted later; late: its own audio ends at the
file's end, compared with audio shifted earlier), each with its own audio window and the same
video's window shifted by every |shift| asked for. A shifted window lies inside the file, so it
differs from the own one by its timing only. The scoring is `avssl.metrics.sync_metrics`.
"""

from __future__ import annotations

import logging

import torch
from torch.utils.data import Dataset

from avssl.io.errors import MediaError
from avssl.io.sampling import shift_feasible, sync_anchor_starts

log = logging.getLogger(__name__)

__all__ = ["SyncTrialDataset"]


class SyncTrialDataset(Dataset):
    """Items ``{"video": uint8 [T,H,W,3], "audio": float32 [1+K,C,S] (own window, then shifted by
    sign x shifts[k]), "valid": bool [K] (shift k fits inside the file; else that audio is silence and
    the trial does not count), "index": video id, "anchor": 0 (early, shifts later) | 1 (late, earlier),
    "start": float}``.

    ``base``: an eval-mode `AVClipDataset` or `DecodedClipDataset` (its ``read_at``, spatial policy,
    manifest and spec are used). Videos too short for their own audio window give no item
    (``untestable`` lists their ids)."""

    def __init__(self, base, shifts):
        shifts = [float(s) for s in shifts]
        if not shifts or any(s <= 0 for s in shifts):
            raise ValueError(f"shifts must be positive seconds, got {shifts}")
        self.base = base
        self.shifts = shifts
        spec = base.spec
        self.plan: list[tuple[int, int, float, int]] = []  # (pos in base.rows, anchor, start, sign)
        self.untestable: list[int] = []
        for pos, row in enumerate(base.rows):
            duration = float(base.manifest.duration[int(row)])
            anchors = sync_anchor_starts(duration, spec.video_duration, spec.audio_duration)
            if anchors is None:
                self.untestable.append(int(base.manifest.id[int(row)]))
                continue
            for a, (start, sign) in enumerate(anchors):
                self.plan.append((pos, a, start, sign))

    def __len__(self) -> int:
        return len(self.plan)

    def valid(self, i: int) -> list[bool]:
        pos, _, start, sign = self.plan[i]
        spec = self.base.spec
        duration = float(self.base.manifest.duration[int(self.base.rows[pos])])
        return [shift_feasible(duration, start, spec.video_duration, spec.audio_duration, sign * s) for s in self.shifts]

    def __getitem__(self, i: int):
        pos, anchor, start, sign = self.plan[i]
        valid = self.valid(i)
        offsets = [0.0] + [sign * s if ok else 0.0 for s, ok in zip(self.shifts, valid)]
        try:
            got = self.base.read_at(i, pos, start, offsets)
        except MediaError as e:
            log.warning("SyncTrialDataset: skipping trial %d: %s", i, e)
            return None
        if got is None:
            return None
        video, _, audio, _ = got
        for k, ok in enumerate(valid):
            if not ok:
                audio[k + 1].zero_()
        return {"video": video, "audio": audio, "valid": torch.tensor(valid),
                "index": int(self.base.manifest.id[int(self.base.rows[pos])]), "anchor": anchor, "start": float(start)}
