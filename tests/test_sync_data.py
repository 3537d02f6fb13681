"""Shifted audio windows on real encoded files: the temporal hard negatives of training
(`AVClipDataset(shifted_audio=...)`, also from RAM) and the synchronization test's trials
(`SyncTrialDataset`): every window equals `read_clip` at that offset, lies inside the file, and a
window that cannot fit is flagged, never a silent zero-filled negative."""

import numpy as np
import pytest
import torch

from avssl.data import AVClipDataset, build_index
from avssl.data.decoded import DecodedClipDataset
from avssl.data.sync import SyncTrialDataset
from avssl.io.read import read_clip
from avssl.io.sampling import audio_room, shift_feasible, sync_trial_starts
from avssl.io.types import ClipSpec
from media import write_coded

SPEC = ClipSpec(num_frames=4, fps=8.0, frame_size=(48, 80), audio_rate=16000, audio_channels=1, audio_duration=1.0)


def test_anchor_and_room_geometry():
    # the CPU preset's geometry: 3 s files, 2 s video and audio windows: windows [0, 2) and [1, 3)
    assert sync_trial_starts(3.0, 2.0, 2.0, 1.0) == [(0.0, 1.0), (1.0, -1.0)]
    # 0.5 s: windows [0.25, 2.25) and [0.75, 2.75), equally far from the file's ends
    assert sync_trial_starts(3.0, 2.0, 2.0, 0.5) == [(0.25, 0.5), (0.75, -0.5)]
    assert sync_trial_starts(3.0, 2.0, 2.0, 1.01) == []  # two 2 s windows 1.01 s apart do not fit in 3 s
    # a 0.5 s video with a 1 s audio window (the tiny preset): the video sits in its window's middle
    assert sync_trial_starts(2.0, 0.5, 1.0, 1.0) == [(0.25, 1.0), (1.25, -1.0)]
    assert audio_room(3.0, 0.0, 2.0, 2.0) == (0.0, 1.0)
    assert shift_feasible(3.0, 0.0, 2.0, 2.0, 1.0) and not shift_feasible(3.0, 0.0, 2.0, 2.0, 1.01)
    assert shift_feasible(3.0, 1.0, 2.0, 2.0, -1.0) and not shift_feasible(3.0, 1.0, 2.0, 2.0, 0.5)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    d = tmp_path_factory.mktemp("v")
    for i in range(2):
        write_coded(d / f"v{i}.mp4", seconds=2.5, fps=16.0, size=(48, 80), audio_rate=16000)
    write_coded(d / "short.mp4", seconds=1.0, fps=16.0, size=(48, 80), audio_rate=16000)
    m, rep = build_index(d, root=d, workers=1, progress=False)
    assert len(m) == 3 and not rep.bad
    return m


def _ref(base, row, start, offset):
    return read_clip(base._path(row), start, SPEC, av_offset=offset).audio


@pytest.mark.parametrize("decoded", [False, True])
def test_training_items_carry_a_shifted_window_inside_the_file(collection, decoded):
    base = AVClipDataset(collection, SPEC, mode="train", seed=3, clips_per_video=4, shifted_audio=(0.4, 0.9))
    ds = DecodedClipDataset(base, progress=False) if decoded else base
    shifts = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for idx in range(len(ds)):
            item = ds[idx]
            row, _, start, off = ds.sample_plan(idx)
            dur = float(collection.duration[row])
            shift = item["shift"]
            if shift == 0.0:  # no room for 0.4 s either way: no negative, and silence, not a stale window
                assert max(audio_room(dur, start, SPEC.video_duration, SPEC.audio_duration, off)) < 0.4
                assert item["audio_shifted"].abs().max() == 0
                continue
            shifts.append(shift)
            assert 0.4 - 1e-9 <= abs(shift) <= 0.9 + 1e-9
            assert shift_feasible(dur, start, SPEC.video_duration, SPEC.audio_duration, off + shift)
            assert torch.allclose(item["audio"], _ref(base, row, start, off), atol=1e-4)
            assert torch.allclose(item["audio_shifted"], _ref(base, row, start, off + shift), atol=1e-4)
            assert not torch.allclose(item["audio_shifted"], item["audio"], atol=1e-3)
    assert len(shifts) > 8 and min(shifts) < 0 < max(shifts)  # both directions drawn
    # the short file (1 s, 0.5 s clips, 1 s audio) has no room: its items carry shift 0
    short = int(np.flatnonzero(collection.duration < 1.5)[0])
    assert all(ds[i]["shift"] == 0.0 for i in range(len(ds)) if ds.sample_plan(i)[0] == short)
    # deterministic per (seed, epoch, item)
    ds.set_epoch(1)
    assert ds[5]["shift"] == ds[5]["shift"]


@pytest.mark.parametrize("decoded", [False, True])
def test_sync_trials_are_own_and_shifted_windows_of_one_clip(collection, decoded):
    base = AVClipDataset(collection, SPEC, mode="eval")
    ds = SyncTrialDataset(DecodedClipDataset(base, progress=False) if decoded else base, shifts=[1.0, 0.5, 1.4])
    short_id = int(collection.id[np.flatnonzero(collection.duration < 1.5)[0]])
    # the 1 s file holds two 1 s windows at most 0 s apart: no shift fits; the 2.5 s files hold all three
    assert ds.untested == {1.0: [short_id], 0.5: [short_id], 1.4: [short_id]}
    assert len(ds) == 2 * 3 * (len(collection) - 1)
    pairs = {}
    for i in range(len(ds)):
        item = ds[i]
        row = int(np.flatnonzero(collection.id == item["index"])[0])
        dur = float(collection.duration[row])
        shift = item["shift"]
        assert abs(shift) == (1.0, 0.5, 1.4)[item["shift_index"]]
        assert item["audio"].shape == (2, 1, SPEC.audio_samples)
        ref = read_clip(base._path(row), item["start"], SPEC)
        assert torch.equal(item["video"], ref.video)
        assert torch.allclose(item["audio"][0], ref.audio, atol=1e-4)
        assert torch.allclose(item["audio"][1], _ref(base, row, item["start"], shift), atol=1e-4)
        # both windows inside the file, mirror images of each other about its middle
        centre = item["start"] + SPEC.video_duration / 2
        assert shift_feasible(dur, item["start"], SPEC.video_duration, SPEC.audio_duration, shift)
        assert abs(item["start"] * SPEC.fps - round(item["start"] * SPEC.fps)) < 1e-9  # on the frame grid
        assert (centre + shift / 2) == pytest.approx(dur / 2, abs=0.5 / SPEC.fps + 1e-9)
        pairs.setdefault((item["index"], abs(shift)), []).append(shift)
    assert all(sorted(v) == [-k[1], k[1]] for k, v in pairs.items())  # the two trials: +s and -s
