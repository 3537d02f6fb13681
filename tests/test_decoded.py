"""DecodedClipDataset on real encoded files: items equal read_clip's at the same (grid) start and
offset, bad files yield None without stopping the others, the saved store is reused."""

import numpy as np
import torch

from avssl.data import AVClipDataset, build_index
from avssl.data.decoded import DecodedClipDataset
from avssl.io.read import read_clip
from avssl.io.types import ClipSpec
from media import decode_frame, write_coded

# the files' own audio rate: a window resampled on its own and one cut from the resampled track
# differ by the resampler's phase (under one native sample), which would hide real off-by-N errors
SPEC = ClipSpec(num_frames=4, fps=8.0, frame_size=(48, 80), audio_rate=16000, audio_channels=1, audio_duration=1.0)


def _same_audio(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.shape == want.shape and torch.allclose(got, want, atol=1e-5)


def _collection(d):
    for i in range(3):
        write_coded(d / f"v{i}.mp4", seconds=3.0, fps=16.0, size=(48, 80), audio_rate=16000)
    write_coded(d / "mute.mp4", seconds=3.0, fps=16.0, size=(48, 80), audio_rate=None)
    m, rep = build_index(d, root=d, workers=1, progress=False)
    assert len(m) == 4 and not rep.bad
    return m


def test_items_match_read_clip_and_store_is_reused(tmp_path):
    m = _collection(tmp_path / "v")
    (tmp_path / "v").mkdir(exist_ok=True)
    base = AVClipDataset(m, SPEC, mode="train", av_jitter=0.3, seed=5, clips_per_video=2)
    ds = DecodedClipDataset(base, cache_dir=tmp_path / "cache", progress=False)
    assert len(ds) == len(base) == 8
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for idx in range(len(ds)):
            item = ds[idx]
            row, _, start, off = ds.sample_plan(idx)
            assert abs(start * SPEC.fps - round(start * SPEC.fps)) < 1e-9  # on the frame grid
            assert abs(start - base.sample_plan(idx)[2]) <= 0.5 / SPEC.fps + 1e-9
            ref = read_clip(base._path(row), start, SPEC, av_offset=off, audio=bool(m.has_audio[row]))
            assert torch.equal(item["video"], ref.video)
            want = ref.audio if ref.audio is not None else torch.zeros(1, SPEC.audio_samples)
            assert item["audio"].shape == want.shape
            assert _same_audio(item["audio"], want)
            assert item["index"] == int(m.id[row]) and item["av_offset"] == off
            # the frames shown are those at start + i / fps of the 16 fps file
            got = [decode_frame(f.numpy()) for f in item["video"]]
            assert got == [int(np.floor((start + i / SPEC.fps) * 16 + 1e-4)) for i in range(4)]
    files = list((tmp_path / "cache").glob("decoded_*.pt"))
    assert len(files) == 1
    again = DecodedClipDataset(base, cache_dir=tmp_path / "cache", progress=False)
    assert torch.equal(again.frames, ds.frames) and torch.equal(again[3]["audio"], ds[3]["audio"])
    # a different spec is a different store, never a wrong one
    other = AVClipDataset(m, ClipSpec(num_frames=2, fps=8.0, frame_size=(48, 80), audio_rate=16000), mode="eval")
    DecodedClipDataset(other, cache_dir=tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").glob("decoded_*.pt"))) == 2


def test_clip_reaching_past_the_end_repeats_last_frame_and_zero_pads_audio(tmp_path):
    m = _collection(tmp_path / "v")
    base = AVClipDataset(m, SPEC, mode="eval", clips_per_video=3)
    ds = DecodedClipDataset(base, progress=False)
    row0 = int(np.flatnonzero(m.has_audio)[0])
    idx = 3 * row0 + 2  # last eval clip of a video with sound: ends at its end, audio reaches past it
    row, _, start, _ = ds.sample_plan(idx)
    ref = read_clip(base._path(row), start, SPEC)
    assert torch.equal(ds[idx]["video"], ref.video)
    assert _same_audio(ds[idx]["audio"], ref.audio)
    assert ds[idx]["audio"][:, -100:].abs().max() == 0  # past the end of the audio stream: zeros


def test_bad_file_yields_none_and_others_survive(tmp_path):
    m = _collection(tmp_path / "v")
    (tmp_path / "v" / "v1.mp4").write_bytes(b"\x00" * 2048)  # corrupted after indexing
    base = AVClipDataset(m, SPEC, mode="train")
    ds = DecodedClipDataset(base, progress=False)
    bad = [i for i in range(len(m)) if m.path(i).endswith("v1.mp4")][0]
    assert ds[bad] is None
    assert all(ds[i] is not None for i in range(len(m)) if i != bad)
