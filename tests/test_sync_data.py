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
from avssl.io.sampling import audio_room, shift_feasible, sync_anchor_starts
from avssl.io.types import ClipSpec
from media import write_coded

SPEC = ClipSpec(num_frames=4, fps=8.0, frame_size=(48, 80), audio_rate=16000, audio_channels=1, audio_duration=1.0)


def test_anchor_and_room_geometry():
    # the CPU preset's geometry: 3 s files, 2 s video and audio windows
    assert sync_anchor_starts(3.0, 2.0, 2.0) == ((0.0, 1), (1.0, -1))
    assert audio_room(3.0, 0.0, 2.0, 2.0) == (0.0, 1.0)
    assert shift_feasible(3.0, 0.0, 2.0, 2.0, 1.0) and not shift_feasible(3.0, 0.0, 2.0, 2.0, 1.01)
    assert shift_feasible(3.0, 1.0, 2.0, 2.0, -1.0) and not shift_feasible(3.0, 1.0, 2.0, 2.0, 0.5)
    # a 0.5 s video with a 1 s audio window: the early clip starts 0.25 s in, so its audio starts at 0
    (e, _), (l, _) = sync_anchor_starts(2.0, 0.5, 1.0)
    assert (e, l) == (0.25, 1.25)
    assert sync_anchor_starts(0.8, 0.5, 1.0) is None  # the own window does not fit


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
    assert ds.untestable == []  # the 1 s file still holds its own 1 s window
    assert len(ds) == 2 * len(collection)
    seen = set()
    for i in range(len(ds)):
        item = ds[i]
        row = int(np.flatnonzero(collection.id == item["index"])[0])
        dur = float(collection.duration[row])
        sign = 1 if item["anchor"] == 0 else -1
        assert item["audio"].shape == (4, 1, SPEC.audio_samples)
        want_valid = [shift_feasible(dur, item["start"], SPEC.video_duration, SPEC.audio_duration, sign * s)
                      for s in (1.0, 0.5, 1.4)]
        assert item["valid"].tolist() == want_valid
        ref = read_clip(base._path(row), item["start"], SPEC)
        assert torch.equal(item["video"], ref.video)
        assert torch.allclose(item["audio"][0], ref.audio, atol=1e-4)
        for k, s in enumerate((1.0, 0.5, 1.4)):
            if want_valid[k]:
                assert torch.allclose(item["audio"][k + 1], _ref(base, row, item["start"], sign * s), atol=1e-4)
            else:
                assert item["audio"][k + 1].abs().max() == 0
        seen.add((item["index"], tuple(want_valid)))
    # 2.5 s files: shifts 1.0 and 0.5 fit (1.5 s of room), 1.4 fits too; the 1 s file fits none
    assert (short_id, (False, False, False)) in seen
    assert any(v == (True, True, True) for _, v in seen)
