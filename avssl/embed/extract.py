"""Extract per-clip and per-video embeddings of a whole collection into shards (see `shards`).

Work is cut into shards of ``shard_size`` consecutive videos (manifest order). Under
torchrun / any initialised process group, rank ``r`` of ``W`` takes the shards ``k`` with
``k % W == r``: the shares are disjoint and together cover every video exactly once, and
because a batch never mixes two shards, each shard's rows are computed from exactly the same
batches whatever the number of processes. Finished shards are skipped on restart.

Per clip: ``N = clips_per_video`` evenly spaced clips (`avssl.io.sampling.eval_clip_starts`).
Per video: the mean over its N clips; in the projection space (layer ``"proj"``) clip
embeddings are L2-normalised and the per-video mean is normalised again. Backbone layers
(any name of the encoder's ``forward_features``) are globally average-pooled over time and
space to ``[C]`` and left unnormalised.

With the audio modality, each clip's audio level is stored too (``clip-audio-rms_db``, dBFS of
the decoded window; per video the power mean, ``video-audio-rms_db``): `avssl.embed.agreement`
tells silent tracks from unrelated ones with it, and its scores are written at the end
(agreement.csv) when both modalities' projections were extracted.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from avssl.data.spatial import SpatialPolicy, input_policy_of
from avssl.io.errors import MediaError
from avssl.io.types import ClipSpec
from avssl.transforms.config import default_transforms  # noqa: F401  (re-exported: embed users call it)

from . import shards as sh
from .agreement import RMS_LAYER, pool_rms_db, rms_db

PROJ = "proj"
MODALITIES = ("video", "audio")
MISSING_AUDIO = ("zeros", "fail")
# Which of a video's clips share one decode (avssl.io.read_clips; avssl.io.sampling.read_groups): a clip
# joins the previous one's decode when the keyframe its own read would start from lies at most MERGE_GAP s
# after the previous clip's end (files whose index lists no keyframe: the whole video when it lasts at
# most WHOLE_VIDEO_MAX s). Other clips are read alone. Measured in benchmarks/extract_speed.md.
WHOLE_VIDEO_MAX = 20.0
MERGE_GAP = 0.0


# ------------------------------------------------------------------------------ the collection


@dataclass
class VideoList:
    """The columns extraction needs from a collection: ids, paths, durations (s), and whether the
    index found decodable audio (`has_audio`; None: unknown, the reader finds out)."""

    id: np.ndarray
    path: np.ndarray
    duration: np.ndarray
    fingerprint: str
    has_audio: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.id)


def _column(manifest, name):
    col = getattr(manifest, name, None)
    if col is None:
        try:
            col = manifest[name]
        except (KeyError, TypeError, IndexError):
            raise TypeError(f"collection {type(manifest).__name__} has no column {name!r}") from None
    return np.asarray(col)


def as_video_list(collection, *, workers: int = 0) -> tuple[VideoList, object]:
    """``(VideoList, index report or None)`` from a Manifest (or anything with ``id, path,
    duration`` columns), a folder or a list of files (indexed here; the report lists rejects)."""
    report = None
    if isinstance(collection, VideoList):
        return collection, None
    if isinstance(collection, (str, os.PathLike)) or (
        isinstance(collection, Sequence) and collection and isinstance(collection[0], (str, os.PathLike))
    ):
        from avssl.data.index import build_index  # the indexer owns folder walking and probing

        collection, report = build_index(collection, workers=max(1, workers), progress=False)
    ids = _column(collection, "id").astype(np.int64)
    if callable(getattr(collection, "resolve", None)):  # avssl.data.index.Manifest: paths joined with its root
        paths = np.array([collection.resolve(i) for i in range(len(ids))], dtype=object)
    else:
        paths = np.array([str(p) for p in _column(collection, "path")], dtype=object)
    durations = _column(collection, "duration").astype(np.float64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("collection ids are not unique")
    fp = collection.fingerprint() if hasattr(collection, "fingerprint") else None
    if fp is None:
        h = hashlib.sha256()
        for i, p in zip(ids.tolist(), paths.tolist()):
            h.update(f"{i}\0{p}\0".encode())
        fp = "paths-sha256:" + h.hexdigest()
    has_audio = getattr(collection, "has_audio", None)  # a Manifest: False also for an undecodable audio track
    has_audio = np.asarray(has_audio, dtype=bool) if has_audio is not None and len(has_audio) == len(ids) else None
    return VideoList(ids, paths, durations, str(fp), has_audio), report


# ------------------------------------------------------------------------------ decoding


class VideoClipsDataset(Dataset):
    """Item = one video's N eval clips, decoded together (in a DataLoader worker).

    Own dataset rather than the per-clip training one because a video's clips must succeed or
    fail together (its pooled row needs all of them) and a failure must keep its reason.
    ``spatial`` (an eval `avssl.data.spatial.SpatialPolicy`) brings every clip to one shape, so
    videos of any size and aspect ratio batch.
    Returns ``{"pos", "starts" [N], "video" uint8 [N,T,h,w,3]?, "placement" [N,12]?, "audio" [N,C,S]?}``
    or ``{"pos", "error": (reason, detail)}``.
    """

    def __init__(self, videos: VideoList, spec: ClipSpec, clips_per_video: int, modalities, backend=None,
                 missing_audio: str = "zeros", spatial: SpatialPolicy | None = None,
                 whole_video_max: float = WHOLE_VIDEO_MAX, merge_gap: float = MERGE_GAP):
        self.whole_video_max, self.merge_gap = float(whole_video_max), float(merge_gap)
        if missing_audio not in MISSING_AUDIO:
            raise ValueError(f"missing_audio must be one of {MISSING_AUDIO}, got {missing_audio!r}")
        self.spatial = spatial if spatial is not None else SpatialPolicy("none")
        if self.spatial.random:
            raise ValueError("extraction clips are evaluation clips: give a deterministic spatial policy")
        self.videos, self.spec, self.n = videos, spec, int(clips_per_video)
        self.want_video, self.want_audio = "video" in modalities, "audio" in modalities
        self.backend, self.missing_audio = backend, missing_audio

    def __len__(self) -> int:
        return len(self.videos)

    def clip_starts(self, pos: int) -> np.ndarray:
        from avssl.io.sampling import eval_clip_starts

        return eval_clip_starts(float(self.videos.duration[pos]), self.spec.video_duration, self.n)

    def _read(self, path, starts, audio: bool, duration: float | None = None):
        """The clips at `starts`, in that order. Clips that share a decode (`avssl.io.sampling.read_groups`
        on the file's keyframes: clips with no keyframe between them) come from one `read_clips` call,
        the others from one `read_clip` each; both give the same frames and samples."""
        from avssl.io import keyframe_times, read_clip, read_clips
        from avssl.io.sampling import read_groups

        kw = {"backend": self.backend, "video": self.want_video, "audio": audio}
        dur = float("inf") if duration is None or not np.isfinite(duration) else float(duration)
        keyframes = None
        if len(starts) > 1 and self.want_video and np.isfinite(self.merge_gap):
            try:
                keyframes = keyframe_times(path)  # the container's index: no decoding
            except Exception:  # noqa: BLE001 - only a planning hint; the reads report real problems
                keyframes = None
        out = [None] * len(starts)
        for group in read_groups(starts, self.spec.video_duration, dur, keyframes=keyframes,
                                 whole_video_max=self.whole_video_max, merge_gap=self.merge_gap):
            if len(group) == 1:
                out[group[0]] = read_clip(path, starts[group[0]], self.spec, **kw)
                continue
            for i, clip in zip(group, read_clips(path, [starts[i] for i in group], self.spec, **kw)):
                out[i] = clip
        return out

    def __getitem__(self, pos: int) -> dict:
        from avssl.io.errors import NoAudioStream

        path = self.videos.path[pos]
        has_audio = True
        try:
            starts = self.clip_starts(pos)
            try:
                if self.want_audio and self.videos.has_audio is not None and not self.videos.has_audio[pos]:
                    # the index found no decodable audio (none, or a track no decoder reads): not worth a read
                    raise NoAudioStream(path, "the index found no decodable audio")
                clips = self._read(path, starts, self.want_audio, float(self.videos.duration[pos]))
            except NoAudioStream:
                if self.missing_audio != "zeros" or not self.want_video:
                    raise
                has_audio = False  # silence, as the index's 'zeros' policy does; flagged in the tables
                clips = self._read(path, starts, False, float(self.videos.duration[pos]))
        except MediaError as e:
            return {"pos": pos, "error": (e.reason, e.detail or str(e))}
        except Exception as e:  # noqa: BLE001 - a bad file must be listed, never stop the run
            return {"pos": pos, "error": ("error", f"{type(e).__name__}: {e}")}
        item = {"pos": pos, "starts": torch.from_numpy(np.asarray(starts, dtype=np.float64)),
                "has_audio": torch.tensor(has_audio)}
        if self.want_video:
            shaped = [self.spatial.apply(c.video) for c in clips]
            item["video"] = torch.stack([v for v, _ in shaped])
            item["placement"] = torch.stack([p for _, p in shaped])
        if self.want_audio:
            item["audio"] = (torch.stack([c.audio for c in clips]) if has_audio else
                             torch.zeros(len(starts), self.spec.audio_channels, self.spec.audio_samples))
        return item


def _collate(items: list[dict]) -> dict:
    good = [it for it in items if "error" not in it]
    out = {"failed": [(it["pos"], *it["error"]) for it in items if "error" in it],
           "pos": [it["pos"] for it in good]}
    for key in ("starts", "has_audio", "video", "placement", "audio"):
        if good and key in good[0]:
            try:
                out[key] = torch.stack([it[key] for it in good])
            except RuntimeError as e:  # videos of different sizes under spatial mode 'none'
                shapes = sorted({tuple(it[key].shape) for it in good})
                raise ValueError(f"cannot batch {key} of different shapes {shapes}: give a spatial policy "
                                 f"(e.g. the default transforms' resize_crop) or spec.frame_size=(H, W)") from e
    return out


class ShardBatches:
    """Batch sampler: the pending shards' videos in order, batches never crossing a shard."""

    def __init__(self, shard_ranges: list[tuple[int, int, int]], videos_per_batch: int):
        self.batches = []
        for _, lo, hi in shard_ranges:
            self.batches += [list(range(b, min(b + videos_per_batch, hi))) for b in range(lo, hi, videos_per_batch)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


# ------------------------------------------------------------------------------ the model side


def _normalise_layers(layers, modalities) -> dict[str, tuple[str, ...]]:
    if isinstance(layers, str):
        layers = (layers,)
    if isinstance(layers, Mapping):
        out = {m: tuple([layers[m]] if isinstance(layers[m], str) else layers[m]) for m in modalities if m in layers}
        missing = [m for m in modalities if m not in out]
        if missing:
            raise ValueError(f"layers gives no layer for modalities {missing}")
    else:
        out = {m: tuple(layers) for m in modalities}
    for m, names in out.items():
        if not names or len(set(names)) != len(names):
            raise ValueError(f"layers for {m} must be non-empty and unique, got {names}")
    return out


def _encoder(model, modality):
    enc = getattr(model, modality, None) or getattr(model, f"{modality}_encoder", None)
    if enc is None or not hasattr(enc, "forward_features"):
        raise TypeError(f"model has no {modality} encoder with forward_features() for backbone layers")
    return enc


def _pool(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).mean(-1) if x.ndim > 2 else x


@torch.no_grad()
def embed_clips(model, modality: str, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Embeddings of a batch of model inputs, one ``[B, D]`` float32 tensor per named layer.

    ``"proj"`` is ``model.embed_<modality>`` L2-normalised; other names are pooled maps of the
    encoder's ``forward_features``.
    """
    out = {}
    if PROJ in layers:
        out[PROJ] = F.normalize(getattr(model, f"embed_{modality}")(x).float(), dim=1)
    named = [n for n in layers if n != PROJ]
    if named:
        feats = _encoder(model, modality).forward_features(x)
        for n in named:
            if n not in feats:
                raise KeyError(f"{modality} encoder has no layer {n!r}; available: {list(feats)}")
            out[n] = _pool(feats[n]).float()
    return out


def pool_clips(per_clip: torch.Tensor, layer: str) -> torch.Tensor:
    """Per-video embeddings ``[V, D]`` from per-clip ``[V, N, D]``: the mean over clips; for
    ``"proj"`` put back on the unit sphere (a mean of unit vectors is shorter than 1)."""
    pooled = per_clip.mean(1)
    return F.normalize(pooled, dim=1) if layer == PROJ else pooled


def model_digest(model: torch.nn.Module) -> str:
    """sha256 over the state dict (names, shapes, values): which weights produced a collection."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ------------------------------------------------------------------------------ distributed


def _dist():
    import torch.distributed as dist

    on = dist.is_available() and dist.is_initialized()
    return (dist.get_rank(), dist.get_world_size(), dist.barrier) if on else (0, 1, lambda: None)


# ------------------------------------------------------------------------------ extraction


@dataclass
class ExtractReport:
    """What one rank did in this call (`computed_shards`, `videos`, `clips`, `failed`: its own work, so
    under torchrun each rank reports part of the collection) and, on the rank that merged the tables
    once every shard was done (rank 0), the whole collection's rows in `collection`: ``{"videos",
    "clips", "failed"}`` with `failed` counting the index's rejects too (videos + failed = files)."""

    out_dir: str
    rank: int
    world_size: int
    num_shards: int
    computed_shards: list[int] = field(default_factory=list)
    skipped_shards: list[int] = field(default_factory=list)
    videos: int = 0
    clips: int = 0
    failed: int = 0
    seconds: float = 0.0
    complete: bool = False  # every shard of the collection done (and tables merged)
    collection: dict = field(default_factory=dict)  # rank 0 of a complete run: the merged tables' row counts

    @property
    def videos_per_s(self) -> float:
        return (self.videos + self.failed) / self.seconds if self.seconds > 0 else float("nan")


_IDENTITY_KEYS = ("index_fingerprint", "model_digest", "transforms", "layers", "modalities", "clips_per_video", "spec",
                  "missing_audio", "dtype",
                  "shard_size", "num_videos", "num_shards")


def _check_or_write_meta(out_dir: Path, meta: dict, rank: int, barrier, overwrite: bool) -> None:
    path = out_dir / "meta.json"
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        if path.exists() and not overwrite:
            old = sh.read_meta(out_dir)
            diff = [k for k in _IDENTITY_KEYS if old.get(k) != meta.get(k)]
            if diff:
                raise sh.CollectionMismatch(
                    f"{out_dir} holds a collection extracted with other settings ({', '.join(diff)}); "
                    "use another out_dir or overwrite=True")
        elif overwrite and sh.shards_dir(out_dir).exists():
            import shutil

            shutil.rmtree(sh.shards_dir(out_dir))
        if not path.exists() or overwrite:
            sh.write_json_atomic(path, meta)
    barrier()
    if rank != 0:
        old = sh.read_meta(out_dir)
        diff = [k for k in _IDENTITY_KEYS if old.get(k) != meta.get(k)]
        if diff:
            raise sh.CollectionMismatch(f"rank {rank}: settings differ from rank 0's on {diff}")


def _jsonable(x):
    # what meta.json will read back as (tuples become lists), so old and new compare equal
    import json

    return json.loads(json.dumps(x, default=str, sort_keys=True))


def extract(
    collection,
    model: torch.nn.Module,
    out_dir: str | os.PathLike,
    *,
    clips_per_video: int = 10,
    layers: Sequence[str] | Mapping[str, Sequence[str]] = (PROJ,),
    modalities: Sequence[str] = MODALITIES,
    spec: ClipSpec | None = None,
    batch_size: int = 32,
    num_workers: int = 2,
    device: str | torch.device | None = None,
    amp: bool = True,
    shard_size: int = 256,
    dtype: str = "float16",
    backend: str | None = None,
    video_transform: Callable | None = None,
    audio_transform: Callable | None = None,
    transforms_config: Mapping | None = None,
    model_info: dict | None = None,
    config: dict | None = None,
    overwrite: bool = False,
    max_shards: int | None = None,
    on_shard_done: Callable[[int], None] | None = None,
    progress: bool = True,
    index_failures=None,
    missing_audio: str = "zeros",
    spatial: SpatialPolicy | None = None,
    agreement_scores: bool = True,
    whole_video_max: float = WHOLE_VIDEO_MAX,
    merge_gap: float = MERGE_GAP,
) -> ExtractReport:
    """Embed every video of ``collection`` into ``out_dir`` (resumable; see module doc).

    ``transforms_config`` configures the default eval transforms (see `default_transforms`);
    ``video_transform`` / ``audio_transform`` replace them. ``batch_size`` counts clips per
    forward pass (a loader batch holds ``batch_size // clips_per_video`` videos, at least one).
    ``amp`` applies on CUDA only (float16 autocast).
    ``max_shards`` stops after computing that many shards on this rank (e.g. to cut a long job
    in pieces); ``on_shard_done(shard)`` is called after each shard is on disk. Bad files go to
    ``failed.csv`` with their reason and are skipped; ``index_failures`` (the indexer's report,
    or ``(path, reason, detail)`` rows) adds the files that never made it into the index
    (``video_id`` -1). A file without an audio stream is embedded with silence and flagged
    ``has_audio=0`` in the tables (``missing_audio="zeros"``, the index's default policy) or
    listed as failed (``"fail"``). ``spatial``: each clip's resize/crop before batching
    (default: what the video transform declares, ``input_policy_of``; the default transforms'
    is the eval resize + centre crop). ``whole_video_max`` / ``merge_gap`` (s): which of a video's clips
    share one decode (`avssl.io.sampling.read_groups`; ``whole_video_max=0, merge_gap=-inf``: every clip
    read alone); the embeddings are the same either way. ``agreement_scores``: once the collection is
    complete, rank 0 writes `avssl.embed.agreement` scores (needs both modalities' ``proj``). Returns this
    rank's `ExtractReport`.
    """
    t0 = time.perf_counter()
    spec = spec or ClipSpec()
    modalities = tuple(modalities)
    bad = [m for m in modalities if m not in MODALITIES]
    if bad or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {modalities}")
    if clips_per_video < 1 or shard_size < 1 or batch_size < 1:
        raise ValueError("clips_per_video, shard_size and batch_size must be >= 1")
    if dtype not in sh.DTYPES:
        raise ValueError(f"dtype must be one of {list(sh.DTYPES)}")
    layer_map = _normalise_layers(layers, modalities)
    videos, own_report = as_video_list(collection, workers=num_workers)
    if index_failures is None:
        index_failures = own_report
    out_dir = Path(out_dir)
    rank, world, barrier = _dist()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    use_amp = bool(amp) and device.type == "cuda"
    vt, at = video_transform, audio_transform
    if ("video" in modalities and vt is None) or ("audio" in modalities and at is None):
        dvt, dat = default_transforms(spec, device, transforms_config)
        vt, at = vt or dvt, at or dat
    if spatial is None:
        spatial = input_policy_of(vt) if "video" in modalities else SpatialPolicy("none")

    n_videos = len(videos)
    num_shards = max(1, math.ceil(n_videos / shard_size))
    meta = _jsonable({
        "format": sh.FORMAT, "version": sh.VERSION,
        "index_fingerprint": videos.fingerprint, "model_digest": model_digest(model),
        "model": model_info or {"class": type(model).__name__}, "config": config or {},
        "transforms": {"config": transforms_config,
                       "video": _callable_name(video_transform), "audio": _callable_name(audio_transform),
                       "spatial": spatial.as_dict()},
        "layers": {m: list(v) for m, v in layer_map.items()}, "modalities": list(modalities),
        "clips_per_video": clips_per_video, "spec": asdict(spec), "missing_audio": missing_audio,
        "dtype": dtype, "shard_size": shard_size,
        "num_videos": n_videos, "num_shards": num_shards,
        "arrays": [sh.array_name(lv, m, ly) for lv in sh.LEVELS for m in modalities for ly in layer_map[m]]
        + ([sh.array_name(lv, "audio", RMS_LAYER) for lv in sh.LEVELS] if "audio" in modalities else []),
    })
    _check_or_write_meta(out_dir, meta, rank, barrier, overwrite)
    if rank == 0:
        pre = failures_table(index_failures)
        tmp = out_dir / f".{sh.INDEX_FAILED}.{os.getpid()}.tmp"
        sh.write_table(tmp, pre, "failed")
        os.replace(tmp, out_dir / sh.INDEX_FAILED)

    mine = [k for k in range(num_shards) if k % world == rank]
    done = set(sh.done_shards(out_dir))
    report = ExtractReport(str(out_dir), rank, world, num_shards, skipped_shards=[k for k in mine if k in done])
    pending = [k for k in mine if k not in done]
    if max_shards is not None:
        pending = pending[: max(0, int(max_shards))]
    sh.remove_partial_shards(out_dir, pending)

    if pending and n_videos:
        model = model.to(device).eval()
        ranges = [(k, k * shard_size, min((k + 1) * shard_size, n_videos)) for k in pending]
        dataset = VideoClipsDataset(videos, spec, clips_per_video, modalities, backend, missing_audio, spatial,
                                    whole_video_max=whole_video_max, merge_gap=merge_gap)
        loader = DataLoader(
            dataset, batch_sampler=ShardBatches(ranges, max(1, batch_size // clips_per_video)),
            num_workers=num_workers, collate_fn=_collate, pin_memory=device.type == "cuda",
            persistent_workers=False, worker_init_fn=_worker_init if num_workers else None,
            multiprocessing_context="spawn" if num_workers and _needs_spawn() else None,
        )
        bar = tqdm(total=sum(hi - lo for _, lo, hi in ranges), unit="video", disable=not progress,
                   desc=f"extract[{rank}/{world}]" if world > 1 else "extract", position=rank if world > 1 else None,
                   dynamic_ncols=True)
        acc = _ShardAccumulator(videos, ranges, layer_map, spec, clips_per_video)
        try:
            for batch in loader:
                acc.add_failed(batch["failed"])
                if batch["pos"]:
                    embs = {}
                    for m in modalities:
                        x = batch[m].flatten(0, 1)  # [V*N, ...]
                        for i in range(0, x.shape[0], batch_size):
                            xb = x[i : i + batch_size].to(device, non_blocking=True)
                            xb = (vt if m == "video" else at)(xb)  # transforms in float32
                            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                                for ly, e in embed_clips(model, m, xb, layer_map[m]).items():
                                    embs.setdefault((m, ly), []).append(e.float().cpu())
                    rms = rms_db(batch["audio"].numpy()) if "audio" in modalities else None  # [V, N] dBFS
                    acc.add(batch["pos"], batch["starts"], batch["has_audio"],
                            {k: torch.cat(v) for k, v in embs.items()}, rms)
                bar.update(len(batch["pos"]) + len(batch["failed"]))
                for k in acc.finished_shards():
                    arrays, clips, vids, failed = acc.pop(k)
                    sh.write_shard(out_dir, k, arrays, clips, vids, failed, dtype=dtype,
                                   info={"host": socket.gethostname(), "pid": os.getpid(), "rank": rank})
                    report.computed_shards.append(k)
                    report.videos += len(vids["video_id"])
                    report.clips += len(clips["video_id"])
                    report.failed += len(failed["video_id"])
                    if on_shard_done is not None:
                        on_shard_done(k)
        finally:
            bar.close()

    report.seconds = time.perf_counter() - t0
    barrier()
    all_done = set(sh.done_shards(out_dir)) >= set(range(num_shards))
    if all_done and rank == 0:
        report.collection = sh.finalize(out_dir, num_shards)
        if agreement_scores and all(PROJ in layer_map.get(m, ()) for m in MODALITIES) and n_videos:
            from .agreement import agreement

            agreement(out_dir, progress=progress)
    report.complete = all_done
    barrier()
    return report


def failures_table(index_failures) -> dict[str, np.ndarray]:
    """failed-table rows (video_id -1) for files the indexer rejected.

    Accepts None, ``(path, reason[, detail])`` rows, or a report object holding such records
    in ``failures`` / ``bad`` / ``errors`` (records may be tuples, dicts or objects with
    ``path`` / ``reason`` / ``detail``).
    """
    if index_failures is None:
        return sh.empty_table("failed")
    rows = index_failures
    for attr in ("failures", "bad", "errors", "bad_files"):
        if hasattr(index_failures, attr):
            rows = getattr(index_failures, attr)
            break
    if isinstance(rows, Mapping):  # {path: reason}
        rows = list(rows.items())
    out = []
    for r in rows:
        if isinstance(r, Mapping):
            out.append((str(r["path"]), str(r.get("reason", "error")), str(r.get("detail", ""))))
        elif isinstance(r, (tuple, list)):
            out.append((str(r[0]), str(r[1]) if len(r) > 1 else "error", str(r[2]) if len(r) > 2 else ""))
        else:
            out.append((str(r.path), str(getattr(r, "reason", "error")), str(getattr(r, "detail", "") or "")))
    return {"video_id": np.full(len(out), -1, dtype=np.int64),
            "path": np.array([o[0] for o in out], dtype=object),
            "reason": np.array([o[1] for o in out], dtype=object),
            "detail": np.array([o[2] for o in out], dtype=object)}


def _callable_name(fn) -> str | None:
    if fn is None:
        return None
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


def _needs_spawn() -> bool:
    # forking after CUDA (or in a process that holds threads of a process group) is unsafe
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _worker_init(_):
    torch.set_num_threads(1)


class _ShardAccumulator:
    """Collects rows per shard until all its videos are seen, then hands out the shard."""

    def __init__(self, videos: VideoList, ranges, layer_map, spec: ClipSpec, n: int):
        self.videos, self.layer_map, self.spec, self.n = videos, layer_map, spec, n
        self.range = {k: (lo, hi) for k, lo, hi in ranges}
        self.owner = {}
        for k, lo, hi in ranges:
            self.owner.update({p: k for p in range(lo, hi)})
        self.seen = {k: 0 for k in self.range}
        self.rows = {k: [] for k in self.range}  # (pos, starts, {(m, layer): [N, D]})
        self.failed = {k: [] for k in self.range}

    def add_failed(self, failed):
        for pos, reason, detail in failed:
            k = self.owner[pos]
            self.failed[k].append((pos, reason, detail))
            self.seen[k] += 1

    def add(self, positions, starts, has_audio, embs, rms=None):
        n = self.n
        for j, pos in enumerate(positions):
            k = self.owner[pos]
            self.rows[k].append((pos, starts[j], {key: e[j * n : (j + 1) * n] for key, e in embs.items()},
                                 bool(has_audio[j]), None if rms is None else rms[j]))
            self.seen[k] += 1

    def finished_shards(self):
        return [k for k, (lo, hi) in self.range.items() if self.seen[k] == hi - lo]

    def pop(self, k):
        rows, failed = sorted(self.rows.pop(k), key=lambda r: r[0]), sorted(self.failed.pop(k))
        del self.range[k], self.seen[k]
        n, v = self.n, self.videos
        pos = np.array([r[0] for r in rows], dtype=np.int64)
        starts = np.concatenate([r[1].numpy() for r in rows]) if rows else np.zeros(0)
        has_audio = np.array([r[3] for r in rows], dtype=np.int64)
        clips = {
            "video_id": np.repeat(v.id[pos], n), "path": np.repeat(v.path[pos], n),
            "clip_index": np.tile(np.arange(n), len(pos)),
            "clip_start": starts, "clip_end": starts + self.spec.video_duration,
            "has_audio": np.repeat(has_audio, n), "shard": np.full(len(pos) * n, k), "row": np.arange(len(pos) * n),
        }
        vids = {"video_id": v.id[pos], "path": v.path[pos], "num_clips": np.full(len(pos), n), "has_audio": has_audio,
                "shard": np.full(len(pos), k), "row": np.arange(len(pos))}
        fpos = np.array([f[0] for f in failed], dtype=np.int64)
        fail = {"video_id": v.id[fpos], "path": v.path[fpos],
                "reason": np.array([f[1] for f in failed], dtype=object),
                "detail": np.array([f[2] for f in failed], dtype=object)}
        arrays = {}
        for m, names in self.layer_map.items():
            for ly in names:
                if rows:
                    per_clip = torch.stack([r[2][(m, ly)] for r in rows])  # [V, N, D]
                    pooled = pool_clips(per_clip, ly)
                    arrays[sh.array_name("clip", m, ly)] = per_clip.flatten(0, 1).numpy()
                    arrays[sh.array_name("video", m, ly)] = pooled.numpy()
                else:
                    arrays[sh.array_name("clip", m, ly)] = np.zeros((0, 0), np.float32)
                    arrays[sh.array_name("video", m, ly)] = np.zeros((0, 0), np.float32)
        if "audio" in self.layer_map:
            rms = np.stack([r[4] for r in rows]) if rows else np.zeros((0, n))  # [V, N] dBFS
            arrays[sh.array_name("clip", "audio", RMS_LAYER)] = rms.reshape(-1, 1)
            arrays[sh.array_name("video", "audio", RMS_LAYER)] = pool_rms_db(rms, axis=1).reshape(-1, 1)
        return arrays, clips, vids, fail
