"""`SyncTrialDataset`: the items of a synchronization test on a held-out dataset.

For each video and each shift s, the two trials of `avssl.io.sampling.sync_trial_starts`: two audio
windows s apart, centred in the file; the video clip synchronized with one of them is scored with its
own window and with the other (its audio shifted by +s or -s). Own and shifted windows are the same
pair, equally far from the file's ends (to within half a frame: starts are put on the clip's frame
grid), so only their timing tells them apart. The scoring is
`avssl.metrics.sync_metrics`.
"""

from __future__ import annotations

import logging

import torch
from torch.utils.data import Dataset

from avssl.io.errors import MediaError
from avssl.io.sampling import sync_trial_starts

log = logging.getLogger(__name__)

__all__ = ["SyncTrialDataset"]


class SyncTrialDataset(Dataset):
    """Items ``{"video": uint8 [T,H,W,3], "audio": float32 [2,C,S] (own window, then the same video's
    window shifted by ``shift``), "shift": float (signed, s), "shift_index": int (position in ``shifts``),
    "index": video id, "start": float}``.

    ``base``: an eval-mode `AVClipDataset` or `DecodedClipDataset` (its ``read_at``, spatial policy,
    manifest and spec are used). ``untested[shift]``: ids of the videos too short for that shift."""

    def __init__(self, base, shifts):
        shifts = [float(s) for s in shifts]
        if not shifts or any(s <= 0 for s in shifts):
            raise ValueError(f"shifts must be positive seconds, got {shifts}")
        self.base = base
        self.shifts = shifts
        spec = base.spec
        self.plan: list[tuple[int, int, float, float]] = []  # (pos in base.rows, shift index, start, signed shift)
        self.untested: dict[float, list[int]] = {s: [] for s in shifts}
        for pos, row in enumerate(base.rows):
            duration = float(base.manifest.duration[int(row)])
            for k, s in enumerate(shifts):
                trials = sync_trial_starts(duration, spec.video_duration, spec.audio_duration, s)
                if not trials:
                    self.untested[s].append(int(base.manifest.id[int(row)]))
                for start, signed in trials:
                    # on the frame grid (as `DecodedClipDataset` cuts clips): the own window stays the video's
                    start = round(start * spec.fps) / spec.fps
                    self.plan.append((pos, k, start, signed))

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int):
        pos, k, start, signed = self.plan[i]
        try:
            got = self.base.read_at(i, pos, start, [0.0, signed])
        except MediaError as e:
            log.warning("SyncTrialDataset: skipping trial %d: %s", i, e)
            return None
        if got is None:
            return None
        video, _, audio, _ = got
        return {"video": video, "audio": audio, "shift": signed, "shift_index": k,
                "index": int(self.base.manifest.id[int(self.base.rows[pos])]), "start": float(start)}
