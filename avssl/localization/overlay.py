"""Pictures a person can look at: heatmap overlays (PNG / array / Figure), grids, and MP4s.

Rendering uses matplotlib's object API (``Figure`` + Agg canvas, no pyplot state), so it
works headless, in worker processes and in notebooks (a returned ``Figure`` displays
inline). The MP4 writer decodes the source with PyAV, blends the heatmap into every
frame and *remuxes the source's audio packets unchanged*, so the sound is bit-identical.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from avssl.io.errors import CorruptMedia, MissingFile, NoAudioStream, NoVideoStream
from avssl.io.timestamps import file_verdict

PAD_PX = 8  # gap between panels
TITLE_PX = 28  # band above the panels for titles
CBAR_PX = 60  # colour bar + its tick labels


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _frame_u8(frame) -> np.ndarray:
    f = _np(frame)
    if f.ndim != 3 or f.shape[-1] != 3:
        raise ValueError(f"frame must be [H,W,3], got {f.shape}")
    if f.dtype != np.uint8:
        f = np.clip(np.round(f * 255.0 if f.max() <= 1.0 else f), 0, 255).astype(np.uint8)
    return f


def _heat(heatmap, shape_hw) -> np.ndarray:
    h = _np(heatmap).astype(np.float32)
    if h.shape != tuple(shape_hw):
        raise ValueError(f"heatmap {h.shape} must match the frame's (H, W) {tuple(shape_hw)}; upsample it first")
    return np.clip(h, 0.0, 1.0)


def colorize(heatmap, cmap: str = "jet") -> np.ndarray:
    """uint8 ``[H, W, 3]`` colour image of a [0, 1] heatmap ``[H, W]``."""
    h = np.clip(_np(heatmap).astype(np.float32), 0.0, 1.0)
    return (colormaps[cmap](h)[..., :3] * 255.0 + 0.5).astype(np.uint8)


def blend(frame, heatmap, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """uint8 ``[H, W, 3]``: ``(1 - alpha) * frame + alpha * colour(heatmap)``."""
    f = _frame_u8(frame)
    c = colorize(_heat(heatmap, f.shape[:2]), cmap)
    return (f.astype(np.float32) * (1.0 - alpha) + c.astype(np.float32) * alpha + 0.5).astype(np.uint8)


def _draw_boxes(ax, boxes, color="lime"):
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.5))


def overlay_size(frame_hw: tuple[int, int], panel_px: int = 256) -> tuple[int, int]:
    """(height, width) in pixels of the picture ``overlay_figure`` renders for a frame of ``frame_hw``."""
    h, w = frame_hw
    ph = max(int(round(panel_px * h / w)), 1)
    return ph + TITLE_PX + PAD_PX, 3 * panel_px + 4 * PAD_PX + CBAR_PX


def overlay_figure(
    frame,
    heatmap,
    boxes: Sequence[Sequence[float]] | None = None,
    *,
    title: str | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    panel_px: int = 256,
    dpi: int = 100,
) -> Figure:
    """Three panels -- frame | heatmap | blended -- with a colour bar, as a matplotlib ``Figure``.

    ``frame`` uint8 (or [0, 1] float) ``[H, W, 3]``; ``heatmap`` ``[H, W]`` in [0, 1];
    ``boxes`` pixel ``(xmin, ymin, xmax, ymax)`` on the frame, drawn on frame and blend.
    """
    f = _frame_u8(frame)
    hm = _heat(heatmap, f.shape[:2])
    fig_h, fig_w = overlay_size(f.shape[:2], panel_px)
    ph = fig_h - TITLE_PX - PAD_PX
    fig = Figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    panels = [(f, "frame", None), (hm, "heatmap", cmap), (blend(f, hm, alpha, cmap), "blended", None)]
    for i, (img, name, cm) in enumerate(panels):
        left = PAD_PX + i * (panel_px + PAD_PX)
        ax = fig.add_axes((left / fig_w, PAD_PX / fig_h, panel_px / fig_w, ph / fig_h))
        ax.imshow(img, cmap=cm, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        ax.set_title(name if title is None or i != 0 else f"{title}", fontsize=9, pad=3)
        if boxes is not None and len(boxes) and i != 1:
            _draw_boxes(ax, boxes)
    cax = fig.add_axes(((4 * PAD_PX + 3 * panel_px) / fig_w, PAD_PX / fig_h, 12 / fig_w, ph / fig_h))
    fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap), cax=cax)
    cax.tick_params(labelsize=7)
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a ``Figure`` to uint8 RGB ``[H, W, 3]``."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def overlay_array(frame, heatmap, boxes=None, **kwargs) -> np.ndarray:
    """The overlay of ``overlay_figure`` as uint8 RGB ``[H, W, 3]`` (notebook / tensorboard use)."""
    return figure_to_array(overlay_figure(frame, heatmap, boxes, **kwargs))


def save_overlay(path: str | os.PathLike, frame, heatmap, boxes=None, **kwargs) -> Path:
    """Write the three-panel overlay as PNG; returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_array(frame, heatmap, boxes, **kwargs)).save(path)
    return path


def grid_figure(
    frames: Sequence,
    heatmaps: Sequence,
    *,
    titles: Sequence[str] | None = None,
    boxes: Sequence | None = None,
    ncols: int = 4,
    alpha: float = 0.5,
    cmap: str = "jet",
    cell_px: int = 160,
    dpi: int = 100,
) -> Figure:
    """A grid of blended frames (one cell per sample, titled, boxes optional)."""
    n = len(frames)
    if n == 0 or len(heatmaps) != n:
        raise ValueError(f"need equal, non-zero numbers of frames ({n}) and heatmaps ({len(heatmaps)})")
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    cell_h = cell_px + 18
    fig_w, fig_h = ncols * (cell_px + PAD_PX) + PAD_PX, nrows * (cell_h + PAD_PX) + PAD_PX
    fig = Figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    for i in range(n):
        r, c = divmod(i, ncols)
        left = PAD_PX + c * (cell_px + PAD_PX)
        bottom = fig_h - (r + 1) * (cell_h + PAD_PX)
        ax = fig.add_axes((left / fig_w, bottom / fig_h, cell_px / fig_w, cell_px / fig_h))
        f = _frame_u8(frames[i])
        ax.imshow(blend(f, heatmaps[i], alpha, cmap), interpolation="nearest", aspect="equal")  # frame's own aspect
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=7, pad=2)
        if boxes is not None and boxes[i] is not None and len(boxes[i]):
            _draw_boxes(ax, boxes[i])
    return fig


def save_grid(path: str | os.PathLike, frames, heatmaps, **kwargs) -> Path:
    """Write ``grid_figure`` as PNG; returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(figure_to_array(grid_figure(frames, heatmaps, **kwargs))).save(path)
    return path


# ---------------------------------------------------------------- video


def to_display_orientation(img: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate a decoded frame by its display-matrix ``rotation`` (degrees, PyAV
    ``VideoFrame.rotation``: counter-clockwise) into the orientation a player shows."""
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(img, k=k)) if k else img


def write_heatmap_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    heatmap_fn: Callable[[np.ndarray, tuple[int, int]], np.ndarray | torch.Tensor],
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
    audio: str | tuple[np.ndarray, int] | None = "source",
    crf: int = 20,
    preset: str = "veryfast",
    progress: bool = True,
) -> Path:
    """Write ``dst`` (.mp4, H.264): every frame of ``src`` with its heatmap blended in.

    ``heatmap_fn(times, (H, W))`` returns ``[N, H, W]`` in [0, 1] for a batch of frame times
    (s, media timeline: 0 at the first video frame), e.g. ``HeatmapTrack.frame_maps``.
    Frames keep their source timestamps (variable frame rate survives) and display
    orientation is applied. ``audio``: ``"source"`` remuxes the source's audio packets
    unchanged; ``(waveform [C, S], rate)`` encodes that sound (AAC) from t = 0 instead
    (mismatched-audio mode); ``None`` writes no audio.
    """
    from tqdm.auto import tqdm

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.tmp{os.getpid()}{dst.suffix}")
    display_hw = _first_frame_display_size(src)
    # H.264 4:2:0 needs even sizes: an odd last row/column is cropped.
    even_hw = (display_hw[0] // 2 * 2, display_hw[1] // 2 * 2)
    # Frame times as the clip reader gives them (avssl.io.timestamps): the file's pts, or for a file
    # whose pts are guesses (AVI with B-frames) frame k at k / fps, so each frame gets the heatmap
    # of the time the model saw it at and the encoder gets increasing timestamps.
    synthesized = not file_verdict(str(src)).trusted
    try:
        with av.open(str(src)) as inp:
            iv = inp.streams.video[0]
            ia = inp.streams.audio[0] if (audio == "source" and inp.streams.audio) else None
            if audio == "source" and ia is None:
                raise NoAudioStream(src, "no audio stream to keep; pass audio=None")
            t0 = float(iv.start_time * iv.time_base) if iv.start_time is not None else 0.0
            rate = iv.average_rate or iv.guessed_rate or iv.base_rate or Fraction(25)
            # Stream delays are edit lists in the movie timescale (1000 by default: whole ms);
            # the audio rate keeps a delayed audio start sample-exact, as in avssl.io.writer.
            a_rate = ia.rate if ia is not None else (int(audio[1]) if isinstance(audio, tuple) else None)
            opts = {"movie_timescale": str(int(a_rate))} if a_rate else {}
            with av.open(str(tmp), mode="w", format="mp4", options=opts) as out:
                # every stream must exist before the first packet is muxed
                ov = _add_video_stream(out, iv, even_hw, crf, preset)
                oa = out.add_stream_from_template(ia) if ia is not None else None
                oa_wave = _add_audio_stream(out, *audio) if isinstance(audio, tuple) else None
                bar = tqdm(total=iv.frames or None, desc=f"mp4 {dst.name}", unit="frame", disable=not progress)
                k, last_pts = 0, None  # frames (and failed video packets) so far; last pts written
                for pkt in inp.demux(*(s for s in (iv, ia) if s is not None)):
                    if pkt.stream is ia:
                        if pkt.dts is None:  # demuxer's flush packet
                            continue
                        pkt.stream = oa
                        out.mux(pkt)
                        continue
                    try:
                        frames = pkt.decode()
                    except av.error.FFmpegError:  # a damaged packet: skipped as the reader does (keeps its slot)
                        k += 1
                        continue
                    for frame in frames:
                        if synthesized:
                            t, k = k / float(rate), k + 1
                            pts = int(round(t / iv.time_base))
                        elif frame.pts is not None:
                            t, pts = float(frame.pts * iv.time_base) - t0, frame.pts
                        else:
                            continue  # no time at all: nothing honest to show it at
                        if last_pts is not None and pts <= last_pts:
                            continue  # a repeated time (broken muxer): the encoder needs increasing pts
                        last_pts = pts
                        img = to_display_orientation(frame.to_ndarray(format="rgb24"), frame.rotation)
                        img = img[: even_hw[0], : even_hw[1]]
                        hm = _np(heatmap_fn(np.array([t]), img.shape[:2]))[0]
                        vf = av.VideoFrame.from_ndarray(blend(img, hm, alpha, cmap), format="rgb24")
                        vf.pts = pts
                        vf.time_base = iv.time_base
                        for p in ov.encode(vf):
                            out.mux(p)
                        bar.update(1)
                for p in ov.encode():
                    out.mux(p)
                bar.close()
                if oa_wave is not None:
                    _encode_waveform(out, oa_wave, audio[0], audio[1])
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no partial file behind
    return dst


def _first_frame_display_size(src: Path) -> tuple[int, int]:
    if not src.exists():
        raise MissingFile(src)
    try:
        with av.open(str(src)) as inp:
            if not inp.streams.video:
                raise NoVideoStream(src)
            for frame in inp.decode(video=0):
                hw = (frame.height, frame.width)
                return hw[::-1] if int(round(frame.rotation / 90.0)) % 2 else hw
    except av.FFmpegError as e:
        raise CorruptMedia(src, str(e)) from e
    raise CorruptMedia(src, "no video frame decoded")


def _add_video_stream(out, iv, hw, crf, preset):
    rate = iv.average_rate or iv.guessed_rate or Fraction(25)
    ov = out.add_stream("libx264", rate=rate)
    ov.height, ov.width = hw
    ov.pix_fmt = "yuv420p"
    ov.time_base = iv.time_base
    ov.codec_context.time_base = iv.time_base
    ov.options = {"crf": str(crf), "preset": preset}
    return ov


def _add_audio_stream(out, wav, rate: int):
    channels = _np(wav).shape[0]
    layout = {1: "mono", 2: "stereo"}.get(channels)
    if layout is None:
        raise ValueError(f"unsupported channel count {channels}")
    oa = out.add_stream("aac", rate=int(rate))
    oa.layout = layout
    return oa


def _encode_waveform(out, oa, wav, rate: int) -> None:
    wav = np.clip(_np(wav).astype(np.float32), -1.0, 1.0)
    if wav.ndim != 2:
        raise ValueError(f"audio must be [C, S], got {wav.shape}")
    size = oa.codec_context.frame_size or 1024
    layout = oa.layout.name
    for s0 in range(0, wav.shape[1], size):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav[:, s0 : s0 + size]), format="fltp", layout=layout)
        af.sample_rate = int(rate)
        af.pts = s0
        af.time_base = Fraction(1, int(rate))
        for p in oa.encode(af):
            out.mux(p)
    for p in oa.encode():
        out.mux(p)
