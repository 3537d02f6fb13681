"""The stages after the reader on the wild collection (tests/wild.py), one seam at a time, in process:
what tests/test_wild_end_to_end.py found broken when it ran every command over the collection.

- localization: a video without (decodable) sound is skipped and listed with its reason, the others
  still localized; the heatmap MP4 of an AVI without per-frame pts (Xvid packed B-frames) and of files
  with a damaged video packet is written, frame k at the reader's time;
- extraction: a file whose audio track never decodes is embedded with silence and flagged, not failed;
- training data account: items carry the reader's damaged-packet count, and a pretraining run says how
  many used clips had damaged packets (summary, data_failures.json with the files, TensorBoard).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SMALL_MODEL = {"video": "tiny", "audio": "tiny", "proj_dim": [32, 32, 16]}


def entry(wild, name):
    for e in wild:
        if e.name == name:
            return e
    pytest.skip(f"{name}: not written on this machine (encoder missing)")


def _folder_of(tmp_path, entries) -> Path:
    """A folder holding links to `entries` (the shared collection stays untouched)."""
    d = tmp_path / "in"
    d.mkdir()
    for e in entries:
        (d / e.path.name).symlink_to(e.path)
    return d


# ------------------------------------------------------------------------------ localization
def test_localize_skips_and_lists_videos_without_sound(wild, tmp_path):
    from avssl.localization.job import run_localization
    from avssl.utils.configs import compose_config

    names = ["h264_aac_16x9", "no_audio", "audio_undecodable"]
    folder = _folder_of(tmp_path, [entry(wild, n) for n in names])
    out = tmp_path / "out"
    cfg = compose_config("localize", [
        f"input={folder}", f"out_dir={out}", "overlays=1", "progress=false", "batch_size=4", "stride=1.0",
        "clip={num_frames: 4, fps: 8.0, frame_size: 48, audio_rate: 16000, audio_channels: 1, audio_duration: 1.0}",
        "transforms={video: {crop_size: 32}, audio: {preset: avid}}"])
    report = run_localization(cfg)
    assert [Path(p).stem for p in report["files"]] == ["h264_aac_16x9"]
    failed = {Path(f["path"]).stem: f for f in report["failed"]}
    assert set(failed) == {"no_audio", "audio_undecodable"}  # localized + skipped = files
    assert {f["reason"] for f in failed.values()} == {"no-audio-stream"}
    assert json.loads((out / "files" / "failed.json").read_text()) == report["failed"]


def _zero_maps(seen):
    def fn(times, hw):
        seen.extend(float(t) for t in times)
        return np.zeros((len(times), *hw), np.float32)
    return fn


@pytest.mark.parametrize("name", ["xvid_packed_mp3", "mpeg4_bframes_ac3"])
def test_heatmap_mp4_of_avi_without_pts(wild, tmp_path, name):
    """UCF101-style AVI: the stored times are the demuxer's guesses (Xvid's packed B-frames make them
    go backwards). The MP4 shows every decodable frame, frame k at k / fps as the reader reads it,
    with the file's sound."""
    from avssl.io import probe
    from avssl.localization.overlay import write_heatmap_video

    e = entry(wild, name)
    seen: list[float] = []
    dst = write_heatmap_video(e.path, tmp_path / f"{name}.mp4", _zero_maps(seen), audio="source", progress=False)
    n = len(e.media.frame_times)
    np.testing.assert_allclose(seen, np.arange(n) / 25.0, atol=1e-9)
    with av.open(str(dst)) as c:
        v = c.streams.video[0]
        pts = [f.pts * v.time_base for f in c.decode(v)]
    assert len(pts) == n and np.allclose(np.diff(np.asarray(pts, dtype=float)), 1 / 25.0)
    assert probe(dst).has_audio
    assert list(tmp_path.glob(".*")) == []  # no temporary file left behind


@pytest.mark.parametrize("name", ["h264_bad_video_packet", "mpeg4_bad_video_packet"])
def test_heatmap_mp4_of_a_file_with_a_damaged_video_packet(wild, tmp_path, name):
    """One packet the decoder rejects is skipped (as the clip reader skips it), not the whole file."""
    from avssl.localization.overlay import write_heatmap_video

    e = entry(wild, name)
    seen: list[float] = []
    dst = write_heatmap_video(e.path, tmp_path / f"{name}.mp4", _zero_maps(seen), audio=None, progress=False)
    n = len(e.media.frame_times)
    with av.open(str(dst)) as c:
        written = sum(1 for _ in c.decode(video=0))
    assert n - 2 <= written <= n and written == len(seen)  # the damaged frame (and what needs it) at most
    assert np.all(np.diff(seen) > 0) and seen[-1] == pytest.approx(e.media.frame_times[-1], abs=1e-3)


# ------------------------------------------------------------------------------ extraction
def test_extract_embeds_a_file_whose_audio_never_decodes_as_silent(wild, tmp_path):
    from avssl.data.index import build_index
    from avssl.embed import shards as sh
    from avssl.embed.api import load_model
    from avssl.io.types import ClipSpec

    ex = importlib.import_module("avssl.embed.extract")
    folder = _folder_of(tmp_path, [entry(wild, n) for n in ("h264_aac_16x9", "audio_undecodable", "no_audio")])
    manifest, report = build_index(str(folder), workers=1, progress=False)
    assert len(manifest) == 3 and report.audio_undecodable  # indexed, its audio marked undecodable
    model, info = load_model(model_config=SMALL_MODEL, seed=0)
    spec = ClipSpec(num_frames=4, fps=8.0, frame_size=40, audio_rate=16000, audio_channels=1, audio_duration=0.5)
    rep = ex.extract(manifest, model, tmp_path / "emb", clips_per_video=2, spec=spec, batch_size=4, num_workers=0,
                     device="cpu", dtype="float32", transforms_config={"video": {"crop_size": 32}, "audio": {"preset": "avid"}},
                     model_info=info, progress=False)
    assert rep.complete and rep.videos == 3 and rep.failed == 0
    _, table = sh.load_collection(tmp_path / "emb", "video", "audio", "proj")
    flags = {Path(p).stem: int(a) for p, a in zip(table["path"], table["has_audio"])}
    assert flags == {"h264_aac_16x9": 1, "audio_undecodable": 0, "no_audio": 0}
    assert torch.isfinite(torch.from_numpy(np.asarray(sh.load_collection(tmp_path / "emb", "video", "video", "proj")[0],
                                                      dtype=np.float32))).all()


# ------------------------------------------------------------------------------ damaged packets in the account
DAMAGED = ("h264_bad_video_packet", "mpeg4_bad_video_packet", "mpeg4_ac3_bad_packet")


def _compose(name: str, overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return OmegaConf.to_container(compose(name, overrides=overrides), resolve=True)


def test_dataset_items_carry_the_readers_damage_count(wild, tmp_path):
    from avssl.data import AVClipDataset, build_index
    from avssl.data.decoded import DecodedClipDataset
    from avssl.io import read_clip
    from avssl.io.types import ClipSpec

    folder = _folder_of(tmp_path, [entry(wild, n) for n in ("h264_bad_video_packet", "h264_aac_16x9")])
    manifest, _ = build_index(str(folder), workers=1, progress=False)
    spec = ClipSpec(num_frames=4, fps=8.0, frame_size=32, audio_rate=16000, audio_channels=1, audio_duration=0.5)
    ds = AVClipDataset(manifest, spec, mode="eval", clips_per_video=3)
    got = {}
    for i in range(len(ds)):
        row, _, start, _ = ds.sample_plan(i)
        clip = read_clip(ds._path(row), start, spec, audio=bool(manifest.has_audio[row]))
        assert ds[i]["decode_errors"] == clip.decode_errors
        got.setdefault(Path(manifest.path(row)).stem, []).append(clip.decode_errors)
    assert max(got["h264_bad_video_packet"]) >= 1 and got["h264_aac_16x9"] == [0, 0, 0]
    # decoded once: every clip of the damaged video carries the whole video's count
    dec = DecodedClipDataset(ds, None, progress=False)
    per_video = {Path(manifest.path(ds.sample_plan(i)[0])).stem: dec[i]["decode_errors"] for i in range(len(dec))}
    assert per_video["h264_bad_video_packet"] >= 1 and per_video["h264_aac_16x9"] == 0


@pytest.mark.filterwarnings("ignore::avssl.io.errors.DamagedMediaWarning")
@pytest.mark.parametrize("decoded", [None, "memory"], ids=["read", "decoded"])
def test_pretraining_account_counts_clips_with_damaged_packets(wild, tmp_path, decoded):
    """One step over every video of a folder holding the three damaged files: the run's account says how
    many used clips had damaged packets (summary, data_failures.json with the files, TensorBoard)."""
    from avssl.data import AVClipDataset, build_index
    from avssl.engine.pretrain import train
    from avssl.io import read_clip
    from avssl.io.types import ClipSpec

    entries = [entry(wild, n) for n in (*DAMAGED, "h264_aac_16x9", "no_audio", "vfr_aac")]
    folder = _folder_of(tmp_path, entries)
    n = len(entries)
    over = ["experiment=tiny", "data.source=files", f"data.train_source={folder}", "eval.enabled=false",
            f"run_dir={tmp_path / 'run'}", f"data.batch_size={n}", "trainer.epochs=1", "trainer.tensorboard=true",
            "data.spec={num_frames: 4, fps: 8.0, frame_size: 32, audio_rate: 16000, audio_channels: 1, audio_duration: 1.0}"]
    if decoded:
        over.append(f"data.decoded_cache={decoded}")
    cfg = _compose("pretrain", over)
    summary = train(cfg)
    data = summary["data"]
    assert data["requested"] == data["used"] == n and data["failed"] == 0

    # what the reader says about the clips the step used (same plan: seed, epoch 0, every item once)
    manifest, _ = build_index(str(folder), workers=1, progress=False)
    spec = ClipSpec(**cfg["data"]["spec"])
    ds = AVClipDataset(manifest, spec, mode="train", av_jitter=cfg["data"]["av_jitter"], seed=cfg["seed"])
    expect = {}
    for i in range(len(ds)):
        row, _, start, offset = ds.sample_plan(i)
        name = Path(manifest.path(row)).stem
        if decoded:  # each video decoded whole, once: every damaged file's clip carries its damage
            errors = int(name in DAMAGED)
        else:
            errors = read_clip(ds._path(row), start, spec, av_offset=offset,
                               audio=bool(manifest.has_audio[row])).decode_errors
        if errors:
            expect[name] = errors
    assert expect and set(expect) <= set(DAMAGED) and (set(expect) == set(DAMAGED) or not decoded)
    assert data["damaged"] == len(expect) and data["damaged_files"] == len(expect)
    assert data["decode_errors"] >= len(expect)
    report = json.loads((tmp_path / "run" / "data_failures.json").read_text())
    assert report["counts"]["damaged"] == len(expect) and report["files"] == []
    assert {Path(f["path"]).stem: f["clips"] for f in report["damaged_files"]} == {k: 1 for k in expect}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    tb.Reload()
    assert tb.Scalars("data/damaged")[-1].value == len(expect)
    assert "had damaged packets" in (tmp_path / "run" / "train.log").read_text()
