"""Notebook API: one file (or waveform) in, one embedding out.

    >>> from avssl.embed import embed_video, embed_audio
    >>> v = embed_video("clip.mp4", model="runs/pretrain")        # [D], unit norm
    >>> a = embed_audio(waveform, rate=44100, model=model)          # [D]
    >>> (v @ a).item()                                              # cosine similarity

Both use the same N evenly spaced clips and the same pooling as `avssl.embed.extract`, so
``embed_video(path)`` equals that video's row of an extracted collection.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from avssl.data.spatial import input_policy_of
from avssl.io.types import ClipSpec
from avssl.utils.errors import UserError

from avssl.models.loading import LoadedModel, preprocessing_of
from avssl.models.loading import build_model, load_model, spec_from  # noqa: F401  (re-exported: the notebook API)

from .extract import PROJ, default_transforms, embed_clips, pool_clips

CHECKPOINT_ENV = "AVSSL_CHECKPOINT"


@functools.lru_cache(maxsize=2)
def _cached_model(checkpoint: str, device: str):
    return load_model(checkpoint, device=device)


def resolve_model(model, device) -> tuple[torch.nn.Module, dict]:
    """``(model, info)``: an nn.Module as is; an ``avssl.load_model`` object's module; a checkpoint
    path / run directory / exported folder loaded (cached); None -> ``$AVSSL_CHECKPOINT``. ``info``
    carries the clip spec and transforms the model was trained on (empty for a bare module that
    carries none: see `preprocessing_of`)."""
    pre = preprocessing_of(model)
    if isinstance(model, LoadedModel):
        model = model.module
    if isinstance(model, torch.nn.Module):
        info = pre.to_config() if pre is not None else {}
        return model.to(device).eval(), info
    if model is None:
        model = os.environ.get(CHECKPOINT_ENV)
        if not model:
            raise ValueError(f"no model: pass model= (avssl.load_model(...), an AVModel or a checkpoint path) "
                             f"or set ${CHECKPOINT_ENV}")
    return _cached_model(str(model), str(device))


def _setup(model, spec, device, transform, index, transforms=None, caller="embed_video"):
    """``(module, spec, device, transform)``. The clip spec and transforms are, in order: the ones
    given, else the ones the model carries (a checkpoint's / ``avssl.load_model``'s); a bare module
    carrying none gets the defaults with a warning naming what is missing -- never silently other
    inputs than the caller meant."""
    if device is None and isinstance(model, LoadedModel):
        device = model.device
    device = _device(device)
    model, info = resolve_model(model, device)
    missing = [name for name, given in (("spec=", spec is not None), ("transforms=", transform is not None
                                                                       or transforms is not None)) if not given]
    if not info and missing:  # info: what a checkpoint / loaded model carries ({} for a bare module)
        warnings.warn(f"{caller}: the model is a bare module that carries no clip settings and no "
                      f"{' / '.join(missing)} was given: using the defaults ({ClipSpec()!r}, default transforms), "
                      f"which may not be what it was trained on. Open it with avssl.load_model(<run or checkpoint>) "
                      f"or pass spec= and transforms= (the training config's data.spec and transforms)",
                      UserWarning, stacklevel=3)
    spec = spec or spec_from(info.get("spec")) or ClipSpec()
    tcfg = transforms if transforms is not None else info.get("transforms")
    transform = transform or default_transforms(spec, device, tcfg)[index]
    return model, spec, device, transform


def _device(device):
    return torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _run(model, modality, batch, transform, layer, device, amp):
    x = transform(batch.to(device))
    with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
        per_clip = embed_clips(model, modality, x, (layer,))[layer].float()
    return per_clip


def _clip_starts(duration: float, spec: ClipSpec, n: int) -> np.ndarray:
    from avssl.io.sampling import eval_clip_starts

    return eval_clip_starts(duration, spec.video_duration, n)


@torch.no_grad()
def embed_video(
    path: str | os.PathLike | torch.Tensor,
    model=None,
    *,
    clips_per_video: int = 10,
    spec: ClipSpec | None = None,
    layer: str = PROJ,
    pool: bool = True,
    device=None,
    amp: bool = True,
    transform=None,
    backend: str | None = None,
    transforms=None,
) -> torch.Tensor:
    """Video embedding of a file: ``[D]`` pooled over ``clips_per_video`` clips, or ``[N, D]``.

    ``path`` may also be decoded frames, uint8 ``[T, H, W, 3]`` (one clip) or ``[N, T, H, W, 3]``
    (N clips, e.g. ``read_clip(...).video`` at the model's ``spec``): each is shaped and
    normalised as a file's clips are. ``layer="proj"`` (unit norm) or a backbone layer name
    (average-pooled channels). ``model``: ``avssl.load_model(...)``, a checkpoint / run / exported
    folder, or an nn.Module (its own clip settings when it carries them, else pass ``spec=`` and
    ``transforms=``, the training config's ``data.spec`` / ``transforms`` sections).
    """
    model, spec, device, transform = _setup(model, spec, device, transform, 0, transforms, "embed_video")
    shape = input_policy_of(transform).apply  # the per-clip resize/crop the transform expects (as extraction)
    if isinstance(path, torch.Tensor):
        clips = path[None] if path.ndim == 4 else path
        if clips.ndim != 5 or clips.shape[-1] != 3 or clips.dtype != torch.uint8:
            raise ValueError(f"video frames must be uint8 [T, H, W, 3] or [N, T, H, W, 3], got {clips.dtype} "
                             f"{tuple(path.shape)}")
        frames = torch.stack([shape(c)[0] for c in clips])
    else:
        from avssl.io import read_clip
        from avssl.io.probe import probe

        starts = _clip_starts(probe(path).duration, spec, clips_per_video)
        frames = torch.stack([shape(read_clip(path, s, spec, backend=backend, audio=False).video)[0] for s in starts])
    return _pool_or_not(_run(model, "video", frames, transform, layer, device, amp).cpu(), layer, pool)


def _decode_audio_file(path: str) -> tuple[torch.Tensor, int]:
    """Whole audio stream of a file at its own rate: (float32 [C, S], rate).

    Resampling is left to `_windows` (torchaudio), so a file and the same waveform passed
    in memory are windowed and resampled identically.
    """
    import av

    from avssl.io.errors import CorruptMedia, NoAudioStream

    try:
        with av.open(path) as c:
            if not c.streams.audio:
                raise NoAudioStream(path, "the file has no audio stream")
            stream = c.streams.audio[0]
            rate = stream.codec_context.sample_rate
            rs = av.AudioResampler(format="fltp", layout=stream.codec_context.layout.name, rate=rate)
            chunks = []
            for frame in c.decode(stream):
                chunks += [f.to_ndarray() for f in rs.resample(frame)]
            chunks += [f.to_ndarray() for f in rs.resample(None)]
    except av.error.FFmpegError as e:
        raise CorruptMedia(path, f"{type(e).__name__}: {e}") from e
    if not chunks:
        raise CorruptMedia(path, "no decodable audio")
    return torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32)), int(rate)


def _has_video(path: str) -> bool:
    import av

    try:
        with av.open(path) as c:
            return bool(c.streams.video)
    except av.error.FFmpegError:
        return False


@torch.no_grad()
def embed_audio(
    path_or_waveform,
    rate: int | None = None,
    model=None,
    *,
    clips_per_video: int = 10,
    spec: ClipSpec | None = None,
    layer: str = PROJ,
    pool: bool = True,
    device=None,
    amp: bool = True,
    transform=None,
    transforms=None,
) -> torch.Tensor:
    """Audio embedding of a file or a waveform: ``[D]`` pooled over N windows, or ``[N, D]``.

    A video file uses the windows centred on its N eval clips (as extraction does); an audio
    file or a waveform (``[S]`` or ``[C, S]`` at ``rate`` Hz; channels averaged, resampled to
    ``spec.audio_rate``) is cut into N evenly spaced windows of ``spec.audio_duration``
    (zero-padded when shorter).
    """
    model, spec, device, transform = _setup(model, spec, device, transform, 1, transforms, "embed_audio")
    if isinstance(path_or_waveform, (str, os.PathLike)):
        path = str(path_or_waveform)
        if rate is not None:
            raise ValueError("rate is for waveforms; a file's own rate is read from it")
        if _has_video(path):
            from avssl.io import read_clip
            from avssl.io.probe import probe

            starts = _clip_starts(probe(path).duration, spec, clips_per_video)
            windows = torch.stack([read_clip(path, s, spec, video=False).audio for s in starts])
            return _pool_or_not(_run(model, "audio", windows, transform, layer, device, amp).cpu(), layer, pool)
        wav, rate = _decode_audio_file(path)
    else:
        if rate is None:
            raise ValueError("a waveform needs its sample rate: embed_audio(wav, rate=...)")
        wav = torch.as_tensor(np.asarray(path_or_waveform) if not isinstance(path_or_waveform, torch.Tensor)
                              else path_or_waveform).float()
        if wav.ndim == 1:
            wav = wav[None]
        if wav.ndim != 2:
            raise ValueError(f"waveform must be [S] or [C, S], got {tuple(wav.shape)}")
    windows = _windows(wav, int(rate), spec, clips_per_video)
    return _pool_or_not(_run(model, "audio", windows, transform, layer, device, amp).cpu(), layer, pool)


def _pool_or_not(per_clip, layer, pool):
    return pool_clips(per_clip[None], layer)[0] if pool else per_clip


def _windows(wav: torch.Tensor, rate: int, spec: ClipSpec, n: int) -> torch.Tensor:
    import torchaudio.functional as AF

    wav = wav.mean(0, keepdim=True) if spec.audio_channels == 1 else wav
    if wav.shape[0] != spec.audio_channels:
        wav = wav[:1].expand(spec.audio_channels, -1) if wav.shape[0] == 1 else wav[: spec.audio_channels]
    if rate != spec.audio_rate:
        wav = AF.resample(wav, rate, spec.audio_rate)
    length = spec.audio_samples
    duration = wav.shape[1] / spec.audio_rate
    from avssl.io.sampling import eval_clip_starts

    starts = eval_clip_starts(duration, spec.audio_duration, n)
    out = torch.zeros(n, wav.shape[0], length)
    for i, s in enumerate(starts):
        seg = wav[:, int(round(s * spec.audio_rate)):][:, :length]
        out[i, :, : seg.shape[1]] = seg
    return out


# ------------------------------------------------------------------------------ collections


def collection_model(out_dir, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model an extracted collection was made with; refuse other weights.

    Works for checkpoints and for seeded random initialisations (same seed, same weights).
    Returns ``(model, meta)``.
    """
    from .extract import model_digest
    from .shards import CollectionMismatch, read_meta

    meta = read_meta(out_dir)
    info = meta.get("model") or {}
    if "model_config" not in info:
        raise CollectionMismatch(f"{out_dir}: meta.json does not say how to rebuild its model (extracted from a "
                                 "Python object); embed queries yourself and use nearest()")
    model, _ = load_model(info.get("checkpoint"), info["model_config"], device=device, seed=info.get("seed") or 0)
    if model_digest(model) != meta["model_digest"]:
        raise CollectionMismatch(f"{out_dir}: the rebuilt model's weights differ from those used for extraction "
                                 f"(checkpoint {info.get('checkpoint')} changed?)")
    return model, meta


def query_collection(
    out_dir,
    *,
    file=None,
    embedding=None,
    query_modality: str = "audio",
    target_modality: str | None = None,
    level: str = "video",
    layer: str = PROJ,
    k: int = 10,
    device=None,
    exact: bool = False,
) -> list[dict]:
    """Nearest collection items to a query file (embedded with the collection's own model) or
    to a given embedding ``[D]`` / ``[Q, D]``. Default target: the other modality (cross-modal search).

    Searched through the target array's index when one was built (`avssl.embed.search`; scores
    are exact dot products of the candidates it returns; a stale index is refused), exactly
    otherwise or with ``exact=True``.
    Returns ``[{"query", "rank", "score", "video_id", "path", "method", ("clip_index", "clip_start")}]``.
    """
    from .search import search_collection, table_rows
    from .shards import MappedRows

    if (file is None) == (embedding is None):
        raise ValueError("give exactly one of file= or embedding=")
    target_modality = target_modality or ("video" if query_modality == "audio" else "audio")
    dim = MappedRows(out_dir, level, target_modality, layer).dim
    if file is not None:
        q = embed_query_file(out_dir, file, query_modality, level=level, layer=layer, device=device)
    else:
        q = torch.as_tensor(np.asarray(embedding) if not isinstance(embedding, torch.Tensor) else embedding).float()
    q = q.reshape(-1, dim)
    scores, idx, method = search_collection(out_dir, q, level=level, modality=target_modality, layer=layer, k=k,
                                            exact=exact, device=device)
    found = idx >= 0
    table = table_rows(out_dir, level, idx[found])
    results, j = [], 0
    for qi in range(q.shape[0]):
        for r, (s, i) in enumerate(zip(scores[qi].tolist(), idx[qi].tolist()), 1):
            if i < 0:
                continue
            row = {"query": qi, "rank": r, "score": s, "video_id": int(table["video_id"][j]),
                   "path": table["path"][j], "method": method}
            if level == "clip":
                row.update(clip_index=int(table["clip_index"][j]), clip_start=float(table["clip_start"][j]))
            results.append(row)
            j += 1
    return results


def embed_query_file(out_dir, file, modality: str, *, level: str = "video", layer: str = PROJ,
                     device=None) -> torch.Tensor:
    """A file embedded as the collection's rows were: its model (rebuilt and checked against
    meta.json), clip spec, transforms and clips per video; ``[D]`` pooled for ``level="video"``,
    ``[N, D]`` (one row per clip) for ``"clip"``."""
    dev = _device(device)
    model, meta = collection_model(out_dir, dev)
    spec = spec_from(meta["spec"])
    tcfg = (meta.get("transforms") or {}).get("config")
    kw = dict(clips_per_video=meta["clips_per_video"], spec=spec, layer=layer, device=dev, pool=level == "video")
    vt, at = default_transforms(spec, dev, tcfg)
    if modality == "video":
        return embed_video(file, model, transform=vt, **kw)
    return embed_audio(str(file), model=model, transform=at, **kw)


def collection_retrieval(out_dir, *, level: str = "video", layer: str = PROJ, ks=(1, 5, 10),
                         ties: str = "pessimistic", device=None, labels: dict | None = None,
                         sync_shifts=()) -> dict:
    """Audio->video and video->audio metrics over an extracted collection.

    ``level="video"``: pooled rows, the positive is the same video. ``level="clip"``: every
    clip row is a query and any clip of the same video counts as a hit.

    ``labels`` ({file name: class}, e.g. `load_labels`): also the class-level and within-class
    figures of the pooled video rows with their chance levels (``res["instance"]``,
    `avssl.metrics.instance_report`; files without a label are left out of it and counted).
    ``sync_shifts``: the synchronization test from the clip rows (``res["sync"][f"{s:g}s"]``): each
    clip's video with its own audio against the audio of another clip of the same video starting at
    least s seconds away (`avssl.metrics.shifted_clip_pairs`), both audio windows inside the file.
    """
    from avssl.metrics.instance import instance_report, pair_scores, shifted_clip_pairs, sync_metrics

    from .retrieval import cross_modal_retrieval
    from .shards import load_collection, read_meta

    v, table = load_collection(out_dir, level, "video", layer)
    a, table_a = load_collection(out_dir, level, "audio", layer)
    if not np.array_equal(table["video_id"], table_a["video_id"]):
        raise ValueError(f"{out_dir}: video and audio rows are not paired")
    keep = table["has_audio"] == 1  # silent files embed silence: no audio to retrieve by
    v, a = np.asarray(v)[keep], np.asarray(a)[keep]
    ids = torch.from_numpy(table["video_id"][keep]) if level == "clip" else None
    res = cross_modal_retrieval(torch.from_numpy(v), torch.from_numpy(a), ids, ks=ks,
                                ties=ties, normalize=layer != PROJ, device=device)
    n_videos = len(np.unique(table["video_id"][keep]))
    res["num_videos"] = n_videos
    res["excluded_without_audio"] = int(len(np.unique(table["video_id"][~keep])))
    res["chance"] = {f"R@{k}": min(k / n_videos, 1.0) for k in ks}
    if labels:
        vv, tv = load_collection(out_dir, "video", "video", layer)
        va, _ = load_collection(out_dir, "video", "audio", layer)
        names = [os.path.basename(str(p)) for p in tv["path"]]
        lab = np.array([labels.get(n, -1) for n in names], dtype=np.int64)
        ok = (tv["has_audio"] == 1) & (lab >= 0)
        if ok.sum() >= 2:
            rep = instance_report(torch.from_numpy(np.asarray(vv)[ok]), torch.from_numpy(np.asarray(va)[ok]),
                                  torch.from_numpy(lab[ok]), ties=ties, normalize=layer != PROJ, device=device)
            res["instance"] = {**rep, "num_videos": int(ok.sum()), "unlabelled": int(((tv["has_audio"] == 1) & (lab < 0)).sum())}
    if sync_shifts:
        cv, ct = load_collection(out_dir, "clip", "video", layer)
        ca, _ = load_collection(out_dir, "clip", "audio", layer)
        spec = read_meta(out_dir)["spec"]
        vdur = spec["num_frames"] / spec["fps"]
        ends = {}  # the last clip ends at the file's end (evenly spaced eval clips): its duration
        for vid, end in zip(ct["video_id"], ct["clip_end"]):
            ends[int(vid)] = max(ends.get(int(vid), 0.0), float(end))
        dur = np.array([ends[int(x)] for x in ct["video_id"]])
        lo = ct["clip_start"] + vdur / 2.0 - spec["audio_duration"] / 2.0
        inside = (ct["has_audio"] == 1) & (lo >= -1e-6) & (lo + spec["audio_duration"] <= dur + 1e-6)
        cv, ca = torch.from_numpy(np.asarray(cv)), torch.from_numpy(np.asarray(ca))
        res["sync"] = {}
        for s in sync_shifts:
            i, j = shifted_clip_pairs(ct["video_id"], ct["clip_start"], float(s), inside)
            own = pair_scores(cv[i], ca[i], normalize=layer != PROJ)
            shifted = pair_scores(cv[i], ca[j], normalize=layer != PROJ)
            res["sync"][f"{float(s):g}s"] = sync_metrics(own, shifted)
    return res


def load_labels(path) -> dict[str, int]:
    """``{file name: class}`` for `collection_retrieval`: a generated world's root (its gt.csv: the sound
    source's class) or a CSV with ``path`` and ``label`` columns (labels: integers or names, coded in
    order of first appearance)."""
    import csv

    p = Path(path)
    if p.is_dir():
        if not (p / "gt.csv").exists():
            raise UserError(f"labels={p}: a folder must be a generated world (no gt.csv in it)")
        with open(p / "gt.csv", newline="") as f:
            return {Path(r["path"]).name: int(r["source_index"]) for r in csv.DictReader(f)}
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise UserError(f"labels={p}: expected a CSV with 'path' and 'label' columns")
    codes: dict[str, int] = {}
    out = {}
    for r in rows:
        lab = r["label"].strip()
        out[Path(r["path"]).name] = int(lab) if lab.lstrip("-").isdigit() else codes.setdefault(lab, len(codes))
    return out


def instance_table(results: dict[str, dict]) -> str:
    """Markdown: the class-level / within-class / sync figures of `collection_retrieval` results (one row
    per collection), each beside its chance level."""
    head = ["collection", "class top-1 a2v (chance)", "within-class R@1 a2v (chance)",
            "within-class median rank a2v (chance)"]
    shifts = sorted({s for r in results.values() for s in (r.get("sync") or {})}, key=lambda s: -float(s[:-1]))
    head += [f"sync {s} acc / AUC (trials)" for s in shifts]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        ins = r.get("instance")
        cells = [name]
        if ins:
            cells += [f"{ins['a2v_class_top1']:.3f} ({ins['chance_class_top1']:.3f})",
                      f"{ins['a2v_within_R@1']:.3f} ({ins['within_chance_R@1']:.3f})",
                      f"{ins['a2v_within_median_rank']:g} ({ins['within_chance_median_rank']:g})"]
        else:
            cells += ["–"] * 3
        for s in shifts:
            m = (r.get("sync") or {}).get(s)
            cells.append("–" if not m or not m["num_trials"] else f"{m['acc']:.3f} / {m['auc']:.3f} ({m['num_trials']})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
