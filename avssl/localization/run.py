"""Whole-file localization products, as ``avssl-localize`` writes them.

For each video: a ``HeatmapTrack`` (sliding audio window), overlay PNGs at a few times,
and an MP4 with the heatmap in every frame and the original sound (or, in mismatched
mode, another file's sound, looped over the video as the heatmaps were computed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from avssl.localization.heatmap import HeatmapTrack, video_heatmap_track
from avssl.localization.overlay import save_grid, save_overlay, write_heatmap_video


def decode_audio(path: str | os.PathLike) -> tuple[np.ndarray, int, float]:
    """The whole first audio stream at its native rate: ``(float32 [C, S], rate, start_s)``.

    ``start_s`` is the audio start on the media timeline (relative to the first video
    frame when there is video). A clip reader returns windows; the MP4 needs the file.
    """
    with av.open(str(path)) as c:
        if not c.streams.audio:
            from avssl.io.errors import NoAudioStream

            raise NoAudioStream(path)
        a = c.streams.audio[0]
        rate = a.codec_context.sample_rate
        resampler = av.AudioResampler(format="fltp", layout=a.codec_context.layout.name, rate=rate)
        chunks = []
        for frame in c.decode(a):
            for f in resampler.resample(frame):
                chunks.append(f.to_ndarray())
        for f in resampler.resample(None):
            chunks.append(f.to_ndarray())
        t_a = float(a.start_time * a.time_base) if a.start_time is not None else 0.0
        v = c.streams.video[0] if c.streams.video else None
        t_v = float(v.start_time * v.time_base) if v is not None and v.start_time is not None else t_a
    return np.concatenate(chunks, axis=1).astype(np.float32), int(rate), t_a - t_v


def looped_audio(wav: np.ndarray, rate: int, duration: float, span: float) -> np.ndarray:
    """``wav`` ``[C, S]`` restricted to its first ``span`` seconds and tiled to ``duration`` s
    (the playback that matches ``video_heatmap_track``'s looping of another file's sound)."""
    n_span = max(int(round(span * rate)), 1)
    base = wav[:, :n_span]
    reps = int(np.ceil(duration * rate / base.shape[1]))
    return np.tile(base, (1, reps))[:, : int(round(duration * rate))]


def video_frame_times(path: str | os.PathLike) -> np.ndarray:
    """Presentation times (s, media timeline: 0 = first frame) of every video frame, sorted,
    from the packets alone (no decoding)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        pts = sorted(p.pts for p in c.demux(v) if p.pts is not None)
    t = np.asarray(pts, dtype=np.float64) * float(v.time_base)
    return t - t[0] if t.size else t


def file_frame_heatmaps(track: HeatmapTrack, path: str | os.PathLike, size=None, norm: str = "global"):
    """``(times [N], maps [N, H, W] in [0, 1])``: a heatmap for every frame of ``path``
    (``size`` defaults to the displayed frame size) from its ``video_heatmap_track``."""
    from avssl.io.probe import probe

    times = video_frame_times(path)
    if size is None:
        info = probe(path)
        size = (info.height, info.width) if info.rotation % 180 == 0 else (info.width, info.height)
    return times, track.frame_maps(times, size, norm=norm)


@dataclass
class FileProducts:
    path: str
    track: HeatmapTrack
    outputs: dict[str, str] = field(default_factory=dict)
    frames: list[np.ndarray] = field(default_factory=list)
    maps: list[np.ndarray] = field(default_factory=list)


def _frame_at(path, t: float, backend=None) -> np.ndarray:
    from avssl.io import read_clip
    from avssl.io.types import ClipSpec

    clip = read_clip(path, t, ClipSpec(num_frames=1, fps=1.0), backend=backend, audio=False)
    return clip.video[0].numpy()


def localize_file(
    model,
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    clip_spec,
    video_transform,
    audio_transform,
    *,
    stride: float = 0.5,
    audio_path: str | os.PathLike | None = None,
    overlay_times: int | Sequence[float] = 3,
    mp4: bool = True,
    norm: str = "global",
    alpha: float = 0.5,
    batch_size: int = 8,
    device="cpu",
    backend: str | None = None,
    progress: bool = True,
    spatial=None,
) -> FileProducts:
    """Heatmap track, overlay PNGs (``overlay_times``: count spread over the file, or times)
    and the MP4 for one video. ``audio_path`` plays another file's sound (mismatched).
    ``spatial``: the clips' shape policy (default: the video transform's ``input_policy``); the
    overlays and the MP4 show the file's frames at their own size and aspect ratio, with each
    map put back where the model saw that part of the frame."""
    from avssl.io.probe import probe

    path = Path(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    track = video_heatmap_track(model, path, clip_spec, video_transform, audio_transform, stride=stride,
                                audio_path=audio_path, batch_size=batch_size, device=device, backend=backend,
                                progress=progress, spatial=spatial)
    info = probe(path)
    tag = path.stem if audio_path is None else f"{path.stem}__audio-{Path(audio_path).stem}"
    prod = FileProducts(str(path), track)
    if isinstance(overlay_times, int):
        times = list((np.arange(overlay_times) + 0.5) * info.duration / max(overlay_times, 1))
    else:
        times = [float(t) for t in overlay_times]
    for i, t in enumerate(times):
        frame = _frame_at(path, t, backend)
        hm = track.frame_maps([t], frame.shape[:2], norm=norm)[0].numpy()
        p = save_overlay(out / f"{tag}_t{t:07.2f}.png", frame, hm, title=f"{path.name} @ {t:.2f}s", alpha=alpha)
        prod.outputs[f"overlay_{i}"] = str(p)
        prod.frames.append(frame)
        prod.maps.append(hm)
    if mp4:
        audio = "source" if (audio_path is None and info.has_audio) else None
        if audio_path is not None:
            wav, rate, _ = decode_audio(audio_path)
            other = probe(audio_path)
            span = max(other.duration - clip_spec.audio_duration, 0.0) or other.duration
            audio = (looped_audio(wav, rate, info.duration, span), rate)
        dst = write_heatmap_video(path, out / f"{tag}_heatmap.mp4",
                                  lambda ts, hw: track.frame_maps(ts, hw, norm=norm), alpha=alpha, audio=audio,
                                  progress=progress)
        prod.outputs["mp4"] = str(dst)
    extra = {k: np.asarray(v) for k, v in track.placement.items()}
    if track.spatial is not None:
        extra["spatial_placement"] = track.spatial.numpy()  # avssl.data.spatial.Placement.to_tensor layout
    np.savez_compressed(out / f"{tag}_track.npz", times=track.times, maps=track.maps.numpy(),
                        clip_starts=track.clip_starts, **extra)
    prod.outputs["track"] = str(out / f"{tag}_track.npz")
    return prod


def _skippable(exc: BaseException) -> bool:
    """A failure of one input file (unreadable, not a video, no frames) rather than of the code."""
    from avssl.io.errors import MediaError

    return isinstance(exc, (MediaError, av.error.FFmpegError, OSError, EOFError))


def localize_files(model, paths: Sequence[str | os.PathLike], out_dir, clip_spec, video_transform, audio_transform,
                   *, failures: list[dict] | None = None, **kwargs) -> list[FileProducts]:
    """``localize_file`` over many videos plus one grid PNG (one cell per file, middle overlay)
    and an ``index.json`` listing every output.

    A file that cannot be read (`MediaError`, a PyAV/FFmpeg error, an OS error) is skipped, never
    stopping the rest: it is logged, appended to ``failures`` (when given) as ``{"path", "reason",
    "error", "type"}`` (``reason``: the `MediaError.reason`, e.g. 'no-audio-stream' for a video without
    decodable sound), and listed in ``failed.json`` next to ``index.json``. The return value holds the
    files that worked.
    """
    import logging

    log = logging.getLogger(__name__)
    out = Path(out_dir)
    products, failed = [], []
    for p in paths:
        try:
            products.append(localize_file(model, p, out, clip_spec, video_transform, audio_transform, **kwargs))
        except Exception as exc:
            if not _skippable(exc):
                raise
            failed.append({"path": str(p), "reason": getattr(exc, "reason", type(exc).__name__), "error": str(exc),
                           "type": type(exc).__name__})
            log.warning("skipped %s: %s", p, exc)
    if failures is not None:
        failures.extend(failed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "failed.json").unlink(missing_ok=True)  # a file fixed since an earlier run is not listed again
    if failed:
        (out / "failed.json").write_text(json.dumps(failed, indent=1))
    cells = [(p.frames[len(p.frames) // 2], p.maps[len(p.maps) // 2], Path(p.path).name) for p in products if p.frames]
    if cells:
        save_grid(out / "grid.png", [c[0] for c in cells], [c[1] for c in cells], titles=[c[2] for c in cells])
    (out / "index.json").write_text(json.dumps({p.path: p.outputs for p in products}, indent=1))
    return products


def find_videos(folder: str | os.PathLike) -> list[Path]:
    """Video files under ``folder`` (recursive, sorted), by extension."""
    from avssl.io.probe import VIDEO_EXTENSIONS

    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such file or folder (check input=)")
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."))
    if not found:
        raise FileNotFoundError(f"no video files under {folder}")
    return found

