"""AVClipDataset on real encoded files: shapes, seeded determinism, eval clips, audio policy, bad files in workers."""

import os
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avssl.data import AVClipDataset, build_index, collate_skip_bad
from avssl.io.errors import NoAudioStream
from avssl.io.sampling import eval_clip_starts
from avssl.io.types import ClipSpec
from media import decode_frame, write_coded

SPEC = ClipSpec(num_frames=4, fps=8.0, frame_size=(48, 80), audio_rate=8000, audio_channels=1, audio_duration=1.0)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    for i in range(3):
        write_coded(d / f"v{i}.mp4", seconds=3.0, fps=16.0, size=(48, 80), audio_rate=16000)
    write_coded(d / "mute.mp4", seconds=3.0, fps=16.0, size=(48, 80), audio_rate=None)
    m, rep = build_index(d, root=d, workers=1, progress=False)
    assert len(m) == 4 and not rep.bad
    return d, m


def test_train_items_shapes_and_content(collection):
    _, m = collection
    ds = AVClipDataset(m, SPEC, mode="train", av_jitter=0.25, seed=3)
    assert len(ds) == 4
    row = int(np.flatnonzero(m.has_audio)[0])
    item = ds[row]
    assert item["video"].dtype == torch.uint8 and item["video"].shape == (4, 48, 80, 3)
    assert item["audio"].dtype == torch.float32 and item["audio"].shape == (1, 8000)
    assert item["index"] == int(m.id[row]) and item["clip_index"] == 0
    assert 0.0 <= item["start"] <= 3.0 - SPEC.video_duration and abs(item["av_offset"]) <= 0.25
    # the frames are the ones displayed at start + i/fps (the file is 16 fps, frame k at k/16)
    got = [decode_frame(f.numpy()) for f in item["video"]]
    want = [int(np.floor((item["start"] + i / SPEC.fps) * 16 + 1e-4)) for i in range(4)]
    assert got == want
    assert item["audio"].abs().max() > 0.05


def test_train_sampling_reproducible_from_seed_and_epoch(collection):
    _, m = collection
    a = AVClipDataset(m, SPEC, av_jitter=0.5, seed=7)
    b = AVClipDataset(m, SPEC, av_jitter=0.5, seed=7)
    plans_a = [a.sample_plan(i) for i in range(len(a))]
    assert plans_a == [b.sample_plan(i) for i in range(len(b))]
    assert torch.equal(a[1]["video"], b[1]["video"]) and torch.equal(a[1]["audio"], b[1]["audio"])
    a.set_epoch(1)
    assert [a.sample_plan(i) for i in range(len(a))] != plans_a
    c = AVClipDataset(m, SPEC, av_jitter=0.5, seed=8)
    assert [c.sample_plan(i) for i in range(len(c))] != plans_a
    offsets = [AVClipDataset(m, SPEC, av_jitter=0.5, seed=s).sample_plan(0)[3] for s in range(40)]
    assert min(offsets) < -0.2 and max(offsets) > 0.2 and all(abs(o) <= 0.5 for o in offsets)


def test_eval_mode_gives_evenly_spaced_clips(collection):
    _, m = collection
    ds = AVClipDataset(m, SPEC, mode="eval", clips_per_video=3, labels=[5, 6, 7, 8])
    assert len(ds) == 12
    starts = [ds[i]["start"] for i in range(3, 6)]
    assert starts == pytest.approx(eval_clip_starts(float(m.duration[1]), SPEC.video_duration, 3).tolist())
    assert [ds[i]["clip_index"] for i in range(3, 6)] == [0, 1, 2]
    assert {ds[i]["label"] for i in range(3, 6)} == {6} and ds[4]["index"] == int(m.id[1])


def test_missing_audio_policies(collection):
    _, m = collection
    mute_row = int(np.flatnonzero(~m.has_audio)[0])
    z = AVClipDataset(m, SPEC, mode="eval", missing_audio="zeros")
    item = z[mute_row]
    assert item["audio"].shape == (1, 8000) and torch.count_nonzero(item["audio"]) == 0
    s = AVClipDataset(m, SPEC, mode="eval", missing_audio="skip")
    assert len(s) == 3 and int(m.id[mute_row]) not in [s[i]["index"] for i in range(len(s))]
    with pytest.raises(NoAudioStream):
        AVClipDataset(m, SPEC, missing_audio="error")


def test_corrupt_file_in_two_worker_loader_is_skipped_and_counted(collection, tmp_path):
    d, m = collection
    ds = AVClipDataset(m, SPEC, mode="eval", root=str(tmp_path))
    for i in range(len(m)):  # a copy of the collection where one file went bad after indexing
        data = (d / m.path(i)).read_bytes()
        (tmp_path / m.path(i)).write_bytes(data[: len(data) // 3] if i == 2 else data)  # moov lost
    assert len(pickle.dumps(ds)) < 4000  # light for workers
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_skip_bad,
                        worker_init_fn=lambda _: torch.set_num_threads(1))
    batches = list(loader)
    assert all(b is not None for b in batches)
    assert sum(b["dropped"] for b in batches) == 1
    ids = torch.cat([b["index"] for b in batches]).tolist()
    assert sorted(ids) == sorted(int(i) for r, i in enumerate(m.id) if r != 2)
    assert batches[0]["video"].shape[1:] == (4, 48, 80, 3)


def test_collate_whole_bad_batch_is_none():
    assert collate_skip_bad([None, None]) is None
    b = collate_skip_bad([None, {"x": torch.ones(2)}])
    assert b["dropped"] == 1 and b["x"].shape == (1, 2)
