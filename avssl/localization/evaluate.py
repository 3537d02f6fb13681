"""Localization evaluation over an annotated set: per-sample cIoU, summaries, baselines, grids.

The set is a list of ``LocalizationItem`` (one annotated frame of one video, its boxes as
[0, 1] fractions of the frame, and whether a visible source exists). Loaders build it
from the generated world's ground truth (``items_from_world``, also the mismatched-audio
variant) and from VGG-SS-style JSON / Flickr-SoundNet-style XML exports.

Pipeline: ``infer_heatmaps`` (decode the clip around each annotated frame, run the model,
keep the low-resolution cosine map of the temporal slot holding that frame, or with
``temporal="mean"`` the mean over the clip's slots) ->
``score`` (GT map and heatmap both at ``eval_size`` x ``eval_size`` as in the field's
224x224 protocol; cIoU for the model and the centre-prior / whole-image baselines;
confidences for the open-set AP / max-F1) -> ``EvaluationResult.write`` (results.json,
per_sample.csv, best/worst grids).

Geometry: boxes are fractions of the *whole* displayed frame. Each clip is shaped by a spatial
policy (``avssl.data.spatial``; ``localization_inputs``' default: letterbox, the whole frame at
its aspect ratio; ``stretch`` is what the public evaluators do at 224x224) and its placement is
kept, so the heatmap is put back on the whole frame (then, like the GT, at ``eval_size`` x
``eval_size``) wherever in the model input the frame was; cropped-away parts score lowest.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avssl.localization import metrics
from avssl.localization.gt import gt_map
from avssl.localization.heatmap import (DenseAVModel, centre_prior_maps, compute_heatmaps, map_placement, upsample_maps,
                                        whole_image_maps)

log = logging.getLogger(__name__)


@dataclass
class LocalizationItem:
    """One annotated frame. ``boxes``: (x0, y0, x1, y1) as fractions of the frame's width /
    height; ``style``: 'vggss' (union) or 'flickr' (one box per annotator, consensus).
    ``time``: media time (s) of the annotated frame. ``audio_path`` / ``audio_time``: play
    another file's sound (mismatched audio); the GT then marks *that* sound's object.
    ``media="image"`` (a benchmark package's sample, ``avssl.localization.package``): ``video_path``
    is a picture, repeated to the clip length; the sound is ``audio_path`` (window centred on
    ``audio_time``, default the file's middle) or the saved embedding ``audio_embedding`` (``.npy``)."""

    item_id: str
    video_path: str
    time: float
    boxes: list[list[float]] = field(default_factory=list)
    style: str = "vggss"
    has_source: bool = True
    label: str = ""
    audio_path: str | None = None
    audio_time: float | None = None
    media: str = "video"
    audio_embedding: str | None = None
    # the generated world: boxes of a silent object of the sounding object's class (its "twin"): does the
    # map prefer the sounding one? (`metrics.region_preference`)
    twin_boxes: list[list[float]] = field(default_factory=list)

    def __post_init__(self):
        if self.has_source and not self.boxes:
            raise ValueError(f"{self.item_id}: an item with a source needs at least one box")
        if self.style not in ("vggss", "flickr"):
            raise ValueError(f"{self.item_id}: unknown box style {self.style!r}")
        if self.media not in ("video", "image"):
            raise ValueError(f"{self.item_id}: unknown media {self.media!r} (video | image)")
        if self.media == "image" and self.audio_path is None and self.audio_embedding is None:
            raise ValueError(f"{self.item_id}: an image item needs audio_path or audio_embedding")


# ---------------------------------------------------------------- loaders


def _norm_box(b, w, h) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in b)
    return [x0 / w, y0 / h, x1 / w, y1 / h]


def items_from_world(
    root: str | os.PathLike,
    split: str | None = "test",
    *,
    frames: str | int = "mid",
    mismatched: bool | str = False,
    seed: int = 0,
) -> list[LocalizationItem]:
    """Items from the generated world's per-clip ground truth (``gt/<clip_id>.json``).

    ``frames``: 'mid' (the middle frame, as the exports' keyframes) or n evenly spaced frames
    per clip. Silent and off-screen clips become negatives (no visible source).
    ``mismatched=True``: for each clip with a visible silent distractor of class k, play the
    sound of another clip (same split) whose sounding object is of class k; the GT is the
    distractor's box, so a model that listens moves its heatmap onto the distractor.
    ``mismatched="control"``: the same items (distractor boxes) with the clip's own sound: how
    much of the distractor a heatmap covers anyway (the comparison that says it *moved*).
    """
    if mismatched not in (False, True, "control"):
        raise ValueError(f"mismatched must be false, true or 'control', got {mismatched!r}")
    root = Path(root)
    with open(root / "gt.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if split is None or r["split"] == split]
    if not rows:
        raise ValueError(f"{root}: no clips in split {split!r}")
    gts = {r["clip_id"]: json.loads((root / "gt" / f"{r['clip_id']}.json").read_text()) for r in rows}
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = {}
    for cid, g in gts.items():
        if g["sounding_object"] is not None:
            by_class.setdefault(g["source_class"], []).append(cid)

    items = []
    for cid in sorted(gts):
        g = gts[cid]
        n = g["num_frames"]
        idx = [n // 2] if frames == "mid" else sorted({int(round(x)) for x in np.linspace(0, n - 1, int(frames) + 2)[1:-1]})
        for k in idx:
            t = float(g["frame_times"][k])
            iid = f"{cid}@{k}"
            if not mismatched:
                s = g["sounding_object"]
                box = None if s is None else g["objects"][s]["boxes"][k]
                visible = box is not None and box[0] >= 0
                tw = g.get("twin_object")
                tbox = None if tw is None else g["objects"][tw]["boxes"][k]
                items.append(LocalizationItem(
                    iid, str(root / g["path"]), t, [_norm_box(box, g["width"], g["height"])] if visible else [],
                    "vggss", visible, g["source_class"] if visible else ("silent" if g["silent"] else "offscreen"),
                    twin_boxes=[_norm_box(tbox, g["width"], g["height"])] if visible and tbox and tbox[0] >= 0 else [],
                ))
                continue
            for j, ob in enumerate(g["objects"]):
                box = ob["boxes"][k]
                donors = [d for d in by_class.get(ob["class"], []) if d != cid]
                if ob["sounding"] or box[0] < 0 or not donors:
                    continue
                donor = gts[donors[int(rng.integers(len(donors)))]]
                items.append(LocalizationItem(
                    f"{iid}:obj{j}<-{donor['clip_id']}", str(root / g["path"]), t,
                    [_norm_box(box, g["width"], g["height"])], "vggss", True, ob["class"],
                    audio_path=None if mismatched == "control" else str(root / donor["path"]),
                    audio_time=None if mismatched == "control" else float(donor["frame_times"][donor["num_frames"] // 2]),
                ))
    return items


def find_annotation_media(index, name: str) -> tuple[str | None, list[str]]:
    """The file an annotation names, by the dataset's naming rules: ``(path relative to the
    index root or None, stems tried)``. ``index``: an ``avssl.data.sources.MediaIndex`` of the
    media root. VGG-SS ``<id>_000000`` matches ``<id>_000000.mp4``, Kinetics-style
    ``<id>_000000_000010.mp4``, ``<id>_0``, ``<id>.mp4`` (any video extension, any sub-folder), then
    any ``<id>_000000_*``; Flickr-SoundNet ``<id>`` matches ``<id>.mp4`` then ``<id>_*``."""
    from avssl.data.sources import annotation_stems

    stems = annotation_stems(name)
    hit = index.find(stems)
    if hit is None:
        prefixed = index.find_prefix(stems[0])
        hit = prefixed[0] if prefixed else None
    return hit, stems + [f"{stems[0]}_*"]


class AnnotatedItems(list):
    """The items of an annotated set whose media were found, plus the coverage: ``annotated``
    (entries in the annotations), ``missing`` (one dict per entry without a video: its name and
    the file names tried). ``len(self) + len(missing) == annotated``."""

    def __init__(self, items=(), annotated: int | None = None, missing: list[dict] | None = None,
                 media_root: str | None = None):
        super().__init__(items)
        self.missing = list(missing or [])
        self.annotated = len(self) + len(self.missing) if annotated is None else int(annotated)
        self.media_root = media_root
        self.media = "a video"  # what "found" means, for the coverage line
        self.annotations: dict = {}  # item id -> protocols.Annotation (benchmark packages: the published boxes)
        self.report: dict = {}  # the annotation reader's counts (test list, negatives)

    def coverage(self) -> dict:
        return {"annotated": self.annotated, "found": self.annotated - len(self.missing),
                "missing": len(self.missing), "media_root": self.media_root, "missing_items": self.missing}

    def coverage_line(self) -> str:
        c = self.coverage()
        first = f" (first: {self.missing[0]['name']}, tried {', '.join(self.missing[0]['tried'][:3])}, ...)" \
            if self.missing else ""
        return f"annotations: {c['annotated']} annotated, {c['found']} with {self.media}, {c['missing']} missing{first}"


def _mid_frame_time(path: Path) -> float:
    """Time of frame ``num_frames // 2`` (the exports annotate the middle frame)."""
    from avssl.io.probe import probe

    info = probe(path)
    return (info.num_frames // 2) / info.fps


def load_items(
    source: str | os.PathLike,
    fmt: str = "world",
    *,
    media_root: str | os.PathLike | None = None,
    split: str | None = "test",
    frames: str | int = "mid",
    mismatched: bool | str = False,
    seed: int = 0,
    package: dict | None = None,
) -> list[LocalizationItem]:
    """Items from ``fmt``: 'world' (generated world root), 'vggss' (VGG-SS-style JSON),
    'flickr' (folder of Flickr-SoundNet-style XML) or 'package' (a benchmark package folder:
    frames/ + audio/ + annotations, ``avssl.localization.package.load_package(source, **package)``;
    ``package`` holds its keywords: annotations, fmt, extended, test_list, frames, audio, embeddings).
    For the exports, each annotation names a
    video found under ``media_root`` (``find_annotation_media``: the dataset's naming rules, any
    sub-folder) and marks its middle frame; an entry without boxes is a negative (no visible
    source). Annotations without a video are skipped and counted: the result is an
    ``AnnotatedItems`` list whose ``coverage()`` gives annotated / found / missing."""
    if fmt == "world":
        return items_from_world(source, split, frames=frames, mismatched=mismatched, seed=seed)
    if fmt == "package":
        if mismatched:
            raise ValueError("mismatched audio needs per-object ground truth: use annotation_format=world")
        from avssl.localization.package import load_package

        return load_package(source, **(package or {}))
    if mismatched:
        raise ValueError("mismatched audio needs per-object ground truth: use annotation_format=world")
    if media_root is None:
        raise ValueError(f"annotation_format={fmt} needs media_root (where the videos are)")
    from avssl.data.sources import MediaIndex

    media_root = Path(media_root)
    if fmt == "vggss":
        from avssl.data.formats.vggss import parse_vggss

        parsed = parse_vggss(source)
        entries = [(e.file, [list(b) for b in e.boxes], e.label) for e in parsed]
        twins = {e.file: [list(b) for b in e.twin_boxes] for e in parsed if e.twin_boxes}
        style = "vggss"
    elif fmt == "flickr":
        from avssl.data.formats.flickr import load_flickr_annotations

        entries = [(name, [list(b) for b in e.normalised()], "") for name, e in load_flickr_annotations(source).items()]
        twins = {}
        style = "flickr"
    else:
        raise ValueError(f"unknown annotation format {fmt!r} (world | vggss | flickr | package)")
    index = MediaIndex(media_root)  # one walk of the media folder; annotations are matched by name
    items, missing = [], []
    for name, boxes, label in entries:
        rel, tried = find_annotation_media(index, str(name))
        if rel is None:
            missing.append({"name": str(name), "tried": tried})
            continue
        video = media_root / rel
        items.append(LocalizationItem(str(name), str(video), _mid_frame_time(video), [list(map(float, b)) for b in boxes],
                                      style, bool(boxes), label or "", twin_boxes=twins.get(str(name), [])))
    out = AnnotatedItems(items, len(entries), missing, str(media_root))
    if entries and not items:
        raise ValueError(f"{source}: no annotated video found under media_root {media_root} ({out.coverage_line()})")
    if missing:
        log.warning("%s", out.coverage_line())
    return out


# ---------------------------------------------------------------- inference


def clip_start_for(time: float, duration: float, clip_duration: float) -> float:
    """Start of the clip centred on ``time``, kept inside ``[0, duration - clip_duration]``."""
    return float(min(max(time - clip_duration / 2.0, 0.0), max(duration - clip_duration, 0.0)))


class NothingReadable(RuntimeError):
    """Every item's media failed to read (each is listed in the log); nothing to score."""


@dataclass
class InferredMaps:
    """Low-resolution raw cosine maps ``[N, h, w]`` and the annotated frames (uint8 ``[H, W, 3]``)
    of the items that could be read (``kept``: their indices); ``skipped``: the others, with
    the media error's path and reason (counted and reported, never silently dropped)."""

    maps: torch.Tensor
    frames: list[np.ndarray]
    kept: list[int] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    placement: dict = field(default_factory=dict)  # ``map_placement``: where the cells sit ({} = plain resize)
    spatial: torch.Tensor | None = None  # [N, 12] each item's spatial placement (``avssl.data.spatial``)


@torch.no_grad()
def infer_heatmaps(
    model: DenseAVModel,
    items: Sequence[LocalizationItem],
    clip_spec,
    video_transform: Callable[[torch.Tensor], torch.Tensor],
    audio_transform: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    backend: str | None = None,
    progress: bool = True,
    temporal: str = "slot",
    spatial=None,
) -> InferredMaps:
    """Decode the clip around each item's frame, run the model, keep the slot holding it
    (``temporal="slot"``) or average the clip's slots (``"mean"``: the clip's whole window of
    sound against every slot; steadier when the encoder's slots are few and long).
    ``spatial``: each clip's shape policy (default: the video transform's ``input_policy``);
    the frames kept for pictures are the decoded ones, whole."""
    if temporal not in ("slot", "mean"):
        raise ValueError(f"temporal must be 'slot' or 'mean', got {temporal!r}")
    from tqdm.auto import tqdm

    from avssl.data.spatial import input_policy_of
    from avssl.io import MediaError, read_clip
    from avssl.io.probe import probe

    from avssl.localization import package as pk

    policy = spatial if spatial is not None else input_policy_of(video_transform)
    durations: dict[str, float] = {}
    emb_dim: list[int] = []  # the model's audio embedding size, found once when an item brings its own

    def duration(p):
        if p not in durations:
            durations[p] = probe(p).duration
        return durations[p]

    def model_dim() -> int:
        if not emb_dim:
            silence = torch.zeros(1, clip_spec.audio_channels, clip_spec.audio_samples, device=device)
            emb_dim.append(int(model.embed_audio(audio_transform(silence)).shape[-1]))
        return emb_dim[0]

    def read_item(it):
        """(frames uint8 [T, H, W, 3] shaped by the policy, placement, waveform | embedding, whole frame,
        relative time of the annotated frame in the clip)."""
        if it.media == "image":
            frame = pk.read_image(it.video_path)
            shaped, where = policy.apply(torch.from_numpy(frame)[None])  # one frame, repeated: every slot sees it
            shaped = shaped.expand(clip_spec.num_frames, *shaped.shape[1:])
            if it.audio_path is not None:
                sound = ("wav", pk.read_sound_window(it.audio_path, clip_spec, it.audio_time, backend))
            else:
                sound = ("emb", pk.read_embedding(it.audio_embedding, model_dim()))
            return shaped, where, sound, frame, 0.5
        start = clip_start_for(it.time, duration(it.video_path), clip_spec.video_duration)
        clip = read_clip(it.video_path, start, clip_spec, backend=backend, audio=it.audio_path is None)
        if it.audio_path is None:
            wav = clip.audio
        else:
            a_time = it.time if it.audio_time is None else it.audio_time
            a_start = clip_start_for(a_time, duration(it.audio_path), clip_spec.video_duration)
            wav = read_clip(it.audio_path, a_start, clip_spec, backend=backend, video=False).audio
        shaped, where = policy.apply(clip.video)
        ft = clip.frame_times.double().numpy()
        frame = clip.video[int(np.argmin(np.abs(ft - it.time)))].numpy()
        return shaped, where, ("wav", wav), frame, (it.time - start) / clip_spec.video_duration

    maps, frames, kept, skipped, placement, wheres = [], [], [], [], {}, []
    bar = tqdm(total=len(items), desc="localization", unit="item", disable=not progress)
    for b0 in range(0, len(items), batch_size):
        chunk = items[b0 : b0 + batch_size]
        vids, sounds, slots_at = [], [], []
        for j, it in enumerate(chunk):
            try:
                shaped, where, sound, frame, rel = read_item(it)
            except MediaError as e:
                skipped.append({"item_id": it.item_id, "path": e.path, "reason": e.reason, "detail": e.detail})
                continue
            kept.append(b0 + j)
            vids.append(shaped)
            wheres.append(where)
            sounds.append(sound)
            frames.append(frame)
            slots_at.append(rel)
        bar.update(len(chunk))
        if not vids:
            continue
        video = video_transform(torch.stack(vids).to(device))
        placement = map_placement(model, video.shape[-2:])
        wav_at = [i for i, (kind, _) in enumerate(sounds) if kind == "wav"]
        if len(wav_at) == len(sounds):
            hm = compute_heatmaps(model, video, audio_transform(torch.stack([w for _, w in sounds]).to(device)))
        else:  # some items bring their audio embedding
            emb = torch.stack([x.to(device) if kind == "emb" else torch.zeros(model_dim(), device=device)
                               for kind, x in sounds])
            if wav_at:
                emb[wav_at] = model.embed_audio(audio_transform(torch.stack([sounds[i][1] for i in wav_at]).to(device)))
            hm = compute_heatmaps(model, video, audio_emb=emb)
        t_slots = hm.low_res.shape[1]
        for m, rel in zip(hm.low_res.cpu(), slots_at):
            maps.append(m.mean(0) if temporal == "mean" else m[min(max(int(math.floor(rel * t_slots)), 0), t_slots - 1)])
    bar.close()
    if skipped:
        log.warning("skipped %d of %d items (media errors): %s", len(skipped), len(items),
                    ", ".join(f"{s['item_id']} ({s['reason']})" for s in skipped[:5]))
    if not maps:
        first = f"; first: {skipped[0]['path']} ({skipped[0]['reason']})" if skipped else ""
        raise NothingReadable(f"no item could be read ({len(skipped)} media errors{first})")
    return InferredMaps(torch.stack(maps), frames, kept, skipped, placement, torch.stack(wheres))


# ---------------------------------------------------------------- scoring


METHODS = ("model", "centre_prior", "whole_image", "oracle_box")


def oracle_box_maps(gt_maps: np.ndarray) -> np.ndarray:
    """The best any heatmap can do under the top-fraction rule: ``-distance`` to the GT
    (0 on it), so the kept pixels are the GT first, then a band around it. Its cIoU is the
    protocol's ceiling (``area / (fraction * N)`` for boxes smaller than the kept share), which
    tells whether cIoU@0.5 can be reached at all on a set with small objects. Clips without a
    source get a map below every distance, so its confidences also give the open-set ceiling."""
    from scipy.ndimage import distance_transform_edt

    out = np.empty(gt_maps.shape, np.float32)
    floor = -2.0 * float(sum(gt_maps.shape[-2:]))  # below any distance: clips without a source rank last
    for i, g in enumerate(gt_maps):
        out[i] = -distance_transform_edt(g <= 0) if (g > 0).any() else floor
    return out


@dataclass
class EvaluationResult:
    """Per-sample rows and per-method summaries (``LocalizationSummary.as_dict``)."""

    rows: list[dict]
    summaries: dict[str, dict]
    settings: dict
    frames: list[np.ndarray] | None = None
    display_maps: torch.Tensor | None = None  # [N, h, w] raw, for pictures
    items: list[LocalizationItem] | None = None
    placement: dict = field(default_factory=dict)  # ``map_placement`` of display_maps
    spatial: torch.Tensor | None = None  # [N, 12] spatial placements of display_maps (None: stretched)

    def write(self, out_dir: str | os.PathLike, grid_size: int = 8) -> dict[str, Path]:
        """results.json, per_sample.csv and (with frames) grid_best.png / grid_worst.png."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "results.json", "csv": out / "per_sample.csv"}
        paths["json"].write_text(json.dumps({"settings": self.settings, "summaries": self.summaries, "samples": self.rows}, indent=1, default=_jsonable))
        with open(paths["csv"], "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.rows[0]))
            w.writeheader()
            w.writerows(self.rows)
        if self.frames is not None and self.display_maps is not None:
            paths.update(self.write_grids(out, grid_size))
        return paths

    def write_grids(self, out: Path, k: int = 8) -> dict[str, Path]:
        from avssl.localization.overlay import save_grid

        pos = [i for i, r in enumerate(self.rows) if r["has_source"]]
        if not pos:
            return {}
        order = sorted(pos, key=lambda i: self.rows[i]["ciou"])
        written = {}
        for name, sel in (("grid_worst", order[:k]), ("grid_best", order[::-1][:k])):
            frames = [self.frames[i] for i in sel]
            maps, boxes = [], []
            for i, f in zip(sel, frames):
                h, w = f.shape[:2]
                where = None if self.spatial is None else self.spatial[i]
                maps.append(metrics.minmax_normalize(
                    upsample_maps(self.display_maps[i], (h, w), **self.placement, placement=where).numpy()))
                boxes.append([[b[0] * w, b[1] * h, b[2] * w, b[3] * h] for b in self.items[i].boxes])
            titles = [f"{self.rows[i]['item_id'][:22]}\ncIoU {self.rows[i]['ciou']:.2f}" for i in sel]
            written[name] = save_grid(out / f"{name}.png", frames, maps, titles=titles, boxes=boxes, ncols=4)
        return written


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def score(
    items: Sequence[LocalizationItem],
    maps: torch.Tensor,
    *,
    eval_size: int = 224,
    fraction: float = 0.5,
    ciou_threshold: float = 0.5,
    confidence: str = "top_quarter_mean",
    variant: str = "voc",
    baselines: bool = True,
    input_size: tuple[int, int] | None = None,
    cell_offset: float = 0.0,
    spatial: torch.Tensor | None = None,
) -> EvaluationResult:
    """Score raw heatmaps ``maps`` ``[N, h, w]`` (one per item) against the items' boxes.

    ``input_size`` / ``cell_offset``: where the map cells sit in the model input (from
    ``InferredMaps``; see ``upsample_maps``); without them the maps are resized plainly.
    ``spatial`` ``[N, 12]``: where each model input came from in its frame (``InferredMaps.spatial``);
    the maps are put back on the whole frame, at ``eval_size`` x ``eval_size`` like the GT.
    Without it the model input is taken to be the whole frame, stretched."""
    if len(items) != len(maps):
        raise ValueError(f"{len(items)} items but {len(maps)} heatmaps")
    n = len(items)
    gts = np.stack([gt_map(it.boxes, it.style, eval_size) for it in items])
    pos = np.array([it.has_source for it in items])
    if spatial is not None and len(spatial) != n:
        raise ValueError(f"{n} heatmaps but {len(spatial)} spatial placements")
    model_maps = upsample_maps(maps.float(), eval_size, input_size=input_size, cell_offset=cell_offset,
                               placement=spatial).numpy()
    candidates = {"model": model_maps}
    if baselines:
        candidates["centre_prior"] = centre_prior_maps(n, eval_size).numpy()
        candidates["whole_image"] = whole_image_maps(n, eval_size).numpy()
        candidates["oracle_box"] = oracle_box_maps(gts)
    twin_idx = [i for i, it in enumerate(items) if it.has_source and it.twin_boxes]
    if twin_idx:  # same-class twins: the sounding object's box against its silent twin's
        sound_masks = gts[twin_idx]
        twin_masks = np.stack([gt_map(items[i].twin_boxes, "vggss", eval_size) for i in twin_idx])
    cious, confs, summaries, prefs = {}, {}, {}, {}
    for name, m in candidates.items():
        c = metrics.heatmap_ciou(m, gts, fraction)
        c[~pos] = np.nan
        conf = metrics.confidence_scores(m, confidence)
        cious[name], confs[name] = c, conf
        summaries[name] = metrics.summarize(c, conf, pos, ciou_threshold, variant).as_dict()
        if twin_idx:
            pref = np.full(n, np.nan)
            pref[twin_idx] = metrics.region_preference(m[twin_idx], sound_masks, twin_masks)
            prefs[name] = pref
            ok = ~np.isnan(pref)
            summaries[name]["twin_preference"] = float(pref[ok].mean()) if ok.any() else None
            summaries[name]["twin_items"] = int(ok.sum())
    rows = []
    for i, it in enumerate(items):
        row = {"item_id": it.item_id, "label": it.label, "has_source": bool(it.has_source), "time": it.time,
               "audio_from": it.audio_path or ""}
        for name in candidates:
            key = "" if name == "model" else f"_{name}"
            row[f"ciou{key}"] = None if np.isnan(cious[name][i]) else float(cious[name][i])
            row[f"confidence{key}"] = float(confs[name][i])
            if prefs:
                row[f"twin_preference{key}"] = None if np.isnan(prefs[name][i]) else float(prefs[name][i])
        rows.append(row)
    settings = {"eval_size": eval_size, "fraction": fraction, "ciou_threshold": ciou_threshold,
                "confidence": confidence, "ap_variant": variant, "num_items": n, "num_negatives": int((~pos).sum())}
    placement = {} if input_size is None else {"input_size": tuple(input_size), "cell_offset": cell_offset}
    if placement:
        settings.update(input_size=list(input_size), cell_offset=cell_offset)
    return EvaluationResult(rows, summaries, settings, display_maps=maps, items=list(items), placement=placement,
                            spatial=spatial)


def evaluate(
    model: DenseAVModel,
    items: Sequence[LocalizationItem],
    clip_spec,
    video_transform,
    audio_transform,
    *,
    batch_size: int = 16,
    device="cpu",
    backend: str | None = None,
    progress: bool = True,
    temporal: str = "slot",
    spatial=None,
    **score_kwargs,
) -> EvaluationResult:
    """``infer_heatmaps`` then ``score``; the result keeps the frames for the grids."""
    inferred = infer_heatmaps(model, items, clip_spec, video_transform, audio_transform,
                              batch_size=batch_size, device=device, backend=backend, progress=progress,
                              temporal=temporal, spatial=spatial)
    res = score([items[i] for i in inferred.kept], inferred.maps,
                **{**inferred.placement, "spatial": inferred.spatial, **score_kwargs})
    res.frames = inferred.frames
    res.settings["skipped"] = inferred.skipped
    res.settings["temporal"] = temporal
    return res


def summary_table(results: dict[str, EvaluationResult] | EvaluationResult) -> str:
    """Markdown table of every method's summary (for benchmarks / reports)."""
    if isinstance(results, EvaluationResult):
        results = {"": results}
    lines = ["| run | method | cIoU@0.5 | AUC | mean cIoU | AP | max-F1 | twin pref. (n) | N (neg) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run, res in results.items():
        for method, s in res.summaries.items():
            f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            twin = f"{f(s.get('twin_preference'))} ({s.get('twin_items', 0)})"
            lines.append(f"| {run} | {method} | {f(s['ciou_at'])} | {f(s['auc'])} | {f(s['mean_ciou'])} | "
                         f"{f(s['ap'])} | {f(s['max_f1'])} | {twin} | {s['num_samples']} ({s['num_negatives']}) |")
    return "\n".join(lines)


__all__ = [
    "AnnotatedItems", "EvaluationResult", "InferredMaps", "LocalizationItem", "METHODS", "NothingReadable", "clip_start_for", "evaluate",
    "find_annotation_media",
    "infer_heatmaps", "items_from_world", "load_items", "score", "summary_table",
]
