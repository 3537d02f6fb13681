"""One preset per public sound-source-localization evaluator, reproducing its arithmetic.

Published numbers on VGG-SS / Flickr-SoundNet (and their extended, open-set versions) come
from a handful of evaluation scripts that agree on the formula of cIoU but not on the steps
around it. Each ``Protocol`` below is one script's steps, written from the facts of its
public code (read, not copied):

- ``lvs``: hche11/Localizing-Visual-Sounds-the-Hard-Way ``test.py`` / ``utils.py``.
- ``ezvsl``: stoneMo/EZ-VSL ``test.py`` / ``utils.py`` / ``datasets.py``.
- ``fnac``: OpenNLPLab/FNAC_AVL ``test.py`` (``validate``) / ``datasets.py``.
- ``slavc`` / ``slavc_absolute``: stoneMo/SLAVC ``test.py`` / ``utils.py`` (``EvaluatorFull``)
  with and without ``--relative_prediction`` (stoneMo/SLAVC issue #2: the README's numbers
  need the flag; without it the extended-VGG-SS AP is ~40 % lower).
- ``sslalign`` / ``sslalign_adaptive``: kaistmm/SSLalignment ``test.py`` (``validate``) /
  ``utils.py`` (``Evaluator_iiou``), its unified evaluator for the EZ-VSL family.
- ``free``: avssl's own rule with an explicit kept share (``free_protocol``).

Every reference receives float32 model outputs, so maps are cast to float32 before the
upsampling and the normalisation run in float32 like theirs (the order of operations is
kept: ``1 - minmax(-S)`` is not the same float32 number as ``minmax(S)``). The upsampling
is torch's on CPU; the references ran it on CUDA (and LVS through ``cv2.resize``, which
uses the same half-pixel bilinear weights as ``align_corners=False``), so values can
differ in the last float32 bit -- enough to move a pixel across a tie only when two
values are within one ulp. ``docs/localization_protocols.md`` tabulates the differences.

``score_maps(maps, gt, protocol)`` scores raw heatmaps under one preset: per-sample cIoU
plus the summary that preset's script prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from avssl.localization import metrics
from avssl.localization.gt import flickr_gt_map, vggss_gt_map


@dataclass(frozen=True)
class Protocol:
    """The steps of one evaluator, from a raw heatmap ``S`` to the reported numbers.

    ``size``: maps and GT are compared at ``size x size``.
    ``upsample``: ``bilinear`` | ``bicubic`` (``torch.nn.functional.interpolate`` with
    ``align_corners``) | ``none`` (maps must already be ``size x size``); a map already at
    that size is used as is (every mode is the identity there).
    ``normalize``: ``minmax`` (``(S - min) / (max - min)``, a constant map unchanged),
    ``flip_minmax`` (LVS: ``1 - minmax(-S)``, a constant map becomes ``1 + S``),
    ``fixed`` (SLAVC: ``(S - lo) / (hi - lo)`` with ``value_range``), ``fixed_minmax``
    (SLAVC relative prediction: ``minmax`` of the ``fixed`` scores).
    ``threshold``: ``rank`` (``thr = sort(P)[int(N * rank)]``), ``absolute``
    (``thr = absolute``), ``gt_area`` (SSL-Align adaptive:
    ``thr = sort(P)[N - #(G != 0)]``, ``#`` replaced by ``N // 2`` when the GT is empty).
    ``strict``: keep ``P > thr`` (else ``P >= thr``); ``keep_ones``: also keep every
    ``P >= 1`` (LVS sets kept pixels to 1, zeroes values below 1, then keeps ``>= 0.5``).
    ``gt_rule``: ``dataset`` (VGG-SS union, Flickr consensus) | ``consensus`` (Flickr's
    ``min(sum / 2, 1)`` for every set: EZ-VSL builds its GT map without passing the format).
    ``auc_grid``: ``reference`` (``[0.05 * i]``, float excess included) | ``exact``.
    ``open_set``: ``slavc`` (SLAVC's AP / decile F1s) | ``voc`` (``metrics.open_set_*``) | None.
    ``confidence``: ``slavc`` (mean of the top ``ceil(N / 4)`` ``fixed`` scores, float32) |
    ``top_quarter_mean`` / ``max`` (``metrics.confidence_scores`` of the upsampled map) | None.
    """

    name: str
    reference: str
    size: int = 224
    upsample: str = "bilinear"
    align_corners: bool = False
    normalize: str = "minmax"
    value_range: tuple[float, float] | None = None
    threshold: str = "rank"
    rank: float = 0.5
    absolute: float = 0.5
    strict: bool = False
    keep_ones: bool = False
    gt_rule: str = "dataset"
    auc_grid: str = "reference"
    ciou_threshold: float = 0.5
    open_set: str | None = None
    confidence: str | None = None
    float32: bool = True

    def __post_init__(self):
        checks = {"upsample": ("bilinear", "bicubic", "none"),
                  "normalize": ("minmax", "flip_minmax", "fixed", "fixed_minmax"),
                  "threshold": ("rank", "absolute", "gt_area"), "gt_rule": ("dataset", "consensus"),
                  "auc_grid": ("reference", "exact"), "open_set": ("slavc", "voc", None),
                  "confidence": ("slavc", "top_quarter_mean", "max", None)}
        for key, allowed in checks.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"protocol {self.name}: {key}={getattr(self, key)!r} not in {allowed}")
        if self.normalize in ("fixed", "fixed_minmax") and self.value_range is None:
            raise ValueError(f"protocol {self.name}: normalize={self.normalize} needs value_range")
        if not 0.0 <= self.rank < 1.0:
            raise ValueError(f"protocol {self.name}: rank must be in [0, 1), got {self.rank}")

    @property
    def kept_share(self) -> float | None:
        """Nominal share of pixels kept (``1 - rank``, rounded), None for absolute / GT-area rules."""
        return round(1.0 - self.rank, 12) if self.threshold == "rank" else None


_SLAVC_TAU = 0.03  # SLAVC's default --tau: its heatmaps are cosines / tau in [-1/tau, 1/tau]

PRESETS: dict[str, Protocol] = {
    p.name: p
    for p in [
        Protocol(
            "lvs", "hche11/Localizing-Visual-Sounds-the-Hard-Way test.py",
            upsample="bilinear", align_corners=False, normalize="flip_minmax", strict=True, keep_ones=True,
        ),
        Protocol(
            "ezvsl", "stoneMo/EZ-VSL test.py, datasets.py",
            upsample="bilinear", align_corners=True, gt_rule="consensus",
        ),
        Protocol("fnac", "OpenNLPLab/FNAC_AVL test.py (validate), datasets.py", upsample="bilinear", align_corners=True),
        Protocol(
            "slavc", "stoneMo/SLAVC test.py --relative_prediction, utils.py EvaluatorFull",
            upsample="bicubic", align_corners=True, normalize="fixed_minmax",
            value_range=(-1.0 / _SLAVC_TAU, 1.0 / _SLAVC_TAU), open_set="slavc", confidence="slavc",
        ),
        Protocol(
            "slavc_absolute", "stoneMo/SLAVC test.py default flags (no --relative_prediction)",
            upsample="bicubic", align_corners=True, normalize="fixed",
            value_range=(-1.0 / _SLAVC_TAU, 1.0 / _SLAVC_TAU), threshold="absolute", absolute=0.5,
            open_set="slavc", confidence="slavc",
        ),
        Protocol(
            "sslalign", "kaistmm/SSLalignment test.py validate, utils.py Evaluator_iiou",
            upsample="bilinear", align_corners=True, strict=True,
        ),
        Protocol(
            "sslalign_adaptive", "kaistmm/SSLalignment test.py validate (cIoU_adap)",
            upsample="bilinear", align_corners=True, strict=True, threshold="gt_area",
        ),
    ]
}


def free_protocol(kept_share: float = 0.5, *, strict: bool = False, size: int = 224,
                  confidence: str = "top_quarter_mean") -> Protocol:
    """avssl's own rule with an explicit kept share: bilinear (half-pixel) upsampling, float64
    min-max, ``P >= sort(P)[int(N * (1 - kept_share))]`` (``strict``: ``>``), dataset GT rule,
    exact AUC grid, open-set AP / max-F1 by ``metrics.open_set_*`` (``voc``)."""
    if not 0.0 < kept_share <= 1.0:
        raise ValueError(f"kept_share must be in (0, 1], got {kept_share}")
    return Protocol(f"free{kept_share:g}" + ("_strict" if strict else ""), "avssl.localization.metrics",
                    size=size, rank=1.0 - kept_share, strict=strict, auc_grid="exact", open_set="voc",
                    confidence=confidence, float32=False)


def get_protocol(protocol: str | Protocol, **overrides) -> Protocol:
    """A preset by name (``lvs``, ``ezvsl``, ``fnac``, ``slavc``, ``slavc_absolute``, ``sslalign``,
    ``sslalign_adaptive``; ``free`` or ``free:<kept share>``), with field ``overrides``."""
    if isinstance(protocol, Protocol):
        p = protocol
    elif protocol == "free" or str(protocol).startswith("free:"):
        share = overrides.pop("kept_share", None)
        if ":" in protocol:
            share = float(protocol.split(":", 1)[1])
        p = free_protocol(0.5 if share is None else float(share), strict=bool(overrides.pop("strict", False)))
    elif protocol in PRESETS:
        p = PRESETS[protocol]
    else:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PRESETS)}, free, free:<kept share>")
    if "kept_share" in overrides:
        raise ValueError(f"kept_share is for the free protocol; {p.name} keeps what its evaluator keeps")
    if "value_range" in overrides and overrides["value_range"] is not None:
        overrides["value_range"] = tuple(float(v) for v in overrides["value_range"])
    return replace(p, **overrides) if overrides else p


# ---------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class Annotation:
    """One test sample's ground truth. ``boxes``: (xmin, ymin, xmax, ymax), fractions of the
    frame when ``frame`` is None (VGG-SS JSON), else pixels of a ``frame = (H, W)`` image
    (Flickr-SoundNet XML: 256x256). ``style``: 'vggss' (one box set, union) or 'flickr' (one
    box per annotator, consensus). ``has_source=False``: an extended-set negative (silent or
    off-screen sound; no boxes). ``audio_id``: whose sound plays when it is not the clip's own."""

    sample_id: str
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    style: str = "vggss"
    frame: tuple[int, int] | None = None
    has_source: bool = True
    label: str = ""
    audio_id: str | None = None

    def __post_init__(self):
        if self.style not in ("vggss", "flickr"):
            raise ValueError(f"{self.sample_id}: unknown box style {self.style!r} (vggss | flickr)")
        if self.has_source and not self.boxes:
            raise ValueError(f"{self.sample_id}: a sample with a source needs at least one box")


def annotations_from_items(items) -> list[Annotation]:
    """``Annotation``s of ``evaluate.LocalizationItem``-like objects (``item_id``, ``boxes`` as
    fractions of the frame, ``style``, ``has_source``, ``label``), so avssl's own evaluation
    items can be scored under any preset. A Flickr box stored as a fraction of its 256-pixel
    frame gives the same integer pixels as the pixel box (``v / 256 * 224`` is exact)."""
    return [Annotation(str(it.item_id), tuple(tuple(float(v) for v in b) for b in it.boxes), it.style, None,
                       bool(it.has_source), str(getattr(it, "label", ""))) for it in items]


def inverted_boxes(boxes) -> int:
    """How many boxes have ``xmax < xmin`` or ``ymax < ymin`` (the references' slicing paints
    nothing for them; here they are dropped and counted)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return int(((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).sum())


def gt_map_for(ann: Annotation, protocol: Protocol) -> np.ndarray:
    """``[size, size]`` float64 GT map of ``ann`` under ``protocol.gt_rule`` (zeros for a negative).

    Box pixels as ``avssl.localization.gt`` (truncation toward zero, end-exclusive), which
    equals every reference: VGG-SS ``int(224 * clip(v, 0, 1))``, Flickr ``int(224 * v / 256)``.
    """
    s = protocol.size
    if not ann.has_source:
        return np.zeros((s, s))
    b = np.asarray(ann.boxes, dtype=np.float64).reshape(-1, 4)
    b = b[(b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1])]
    if len(b) == 0:
        return np.zeros((s, s))
    kw = {"normalized": ann.frame is None, "source_size": ann.frame}
    consensus = ann.style == "flickr" or protocol.gt_rule == "consensus"
    return (flickr_gt_map(b, s, **kw) if consensus else vggss_gt_map(b, s, **kw)).astype(np.float64)


# ---------------------------------------------------------------- the steps


def _as_list(maps) -> list[np.ndarray]:
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().numpy()
    if isinstance(maps, np.ndarray):
        if maps.ndim == 2:
            maps = maps[None]
        if maps.ndim != 3:
            raise ValueError(f"maps must be [N, h, w] (or a list of [h, w]), got shape {maps.shape}")
        return list(maps)
    out = []
    for i, m in enumerate(maps):
        m = m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
        if m.ndim != 2:
            raise ValueError(f"map {i} must be [h, w], got shape {m.shape}")
        out.append(m)
    return out


def upsample(maps, protocol: Protocol) -> np.ndarray:
    """Every map resampled to ``[size, size]`` as ``protocol`` does, -> ``[N, size, size]``
    (float32 for the reference presets, float64 for ``free``)."""
    s = protocol.size
    items = _as_list(maps)
    out = np.empty((len(items), s, s), np.float32 if protocol.float32 else np.float64)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, m in enumerate(items):
        by_shape.setdefault(tuple(m.shape), []).append(i)
    for shape, idx in by_shape.items():
        stack = np.stack([items[i] for i in idx]).astype(np.float32)
        if shape != (s, s):
            if protocol.upsample == "none":
                raise ValueError(f"protocol {protocol.name} compares maps at {s}x{s}; got maps of shape {shape}")
            kw = {"align_corners": protocol.align_corners}
            stack = F.interpolate(torch.from_numpy(stack)[:, None], size=(s, s), mode=protocol.upsample, **kw)[:, 0].numpy()
        out[idx] = stack
    return out


def _minmax32(v: np.ndarray) -> np.ndarray:
    lo, hi = v.min(), v.max()
    return (v - lo) / (hi - lo) if hi - lo != 0 else v


def normalize(upsampled: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Per-map values the threshold is applied to (float32 where the reference computes in float32)."""
    if not protocol.float32:
        return metrics.minmax_normalize(upsampled)
    out = np.empty_like(upsampled, dtype=np.float32)
    for i, v in enumerate(upsampled.astype(np.float32)):
        if protocol.normalize == "minmax":
            out[i] = _minmax32(v)
        elif protocol.normalize == "flip_minmax":
            out[i] = 1 - _minmax32(-v)
        else:
            lo, hi = protocol.value_range
            scores = (v - lo) / (hi - lo)
            out[i] = scores if protocol.normalize == "fixed" else _minmax32(scores)
    return out


def binarize(values: np.ndarray, protocol: Protocol, gt_maps: np.ndarray | None = None) -> np.ndarray:
    """Boolean prediction masks ``[N, size, size]`` from ``normalize``'s values.

    ``rank``: ``k = int(N * rank)`` (clipped to ``N - 1``), the same integer as
    ``metrics.binarize_top_fraction``'s ``int(H * W * (1 - fraction))`` for ``free``."""
    n = values.shape[-2] * values.shape[-1]
    masks = np.empty(values.shape, bool)
    for i, v in enumerate(values):
        if protocol.threshold == "absolute":
            thr = np.float32(protocol.absolute) if protocol.float32 else protocol.absolute
        else:
            if protocol.threshold == "rank":
                k = int(n * protocol.rank)
            else:
                area = int((gt_maps[i] != 0).sum()) if gt_maps is not None else 0
                k = n - (area if area > 0 else n // 2)
            thr = np.partition(v.ravel(), min(k, n - 1))[min(k, n - 1)]  # == sort(v)[k]
        m = v > thr if protocol.strict else v >= thr
        masks[i] = (m | (v >= 1)) if protocol.keep_ones else m
    return masks


def confidences(upsampled: np.ndarray, protocol: Protocol) -> np.ndarray | None:
    """Per-map confidence for the open-set metrics (None when the protocol defines none).

    ``slavc``: the ``fixed`` scores (float32) sorted, the mean of the top ``ceil(N / 4)``
    (SLAVC slices ``[-N//4:]``, Python's floor of ``-N / 4``), in float32 like its numpy."""
    if protocol.confidence is None:
        return None
    if protocol.confidence != "slavc":
        return metrics.confidence_scores(upsampled, protocol.confidence)
    lo, hi = protocol.value_range
    out = np.empty(len(upsampled))
    for i, v in enumerate(upsampled.astype(np.float32)):
        flat = np.sort(((v - lo) / (hi - lo)).ravel())
        out[i] = float(flat[flat.size - math.ceil(flat.size / 4):].mean())
    return out


# ---------------------------------------------------------------- scoring


@dataclass
class ProtocolScores:
    """Per-sample results of one protocol. ``ciou``: NaN for samples without a source;
    ``kept``: predicted pixels per sample; ``summary``: the figures the reference prints."""

    protocol: Protocol
    ciou: np.ndarray
    has_source: np.ndarray
    kept: np.ndarray
    confidence: np.ndarray | None
    summary: dict
    ids: list[str] | None = None
    extra: dict = field(default_factory=dict)


def _grid(protocol: Protocol) -> np.ndarray:
    return metrics.AUC_THRESHOLDS_REFERENCE if protocol.auc_grid == "reference" else metrics.AUC_THRESHOLDS


def summarize(ciou: np.ndarray, has_source: np.ndarray, conf: np.ndarray | None, protocol: Protocol) -> dict:
    """cIoU@thr, AUC, mean cIoU over source clips with the reference's arithmetic (a NaN cIoU
    fails every ``>=`` and makes the mean NaN, as numpy does there); open-set figures when the
    protocol has them and clips without a source are present (SLAVC's: always)."""
    pos = np.asarray(has_source, bool)
    c = np.asarray(ciou, np.float64)[pos]
    out: dict = {"protocol": protocol.name, "num_samples": int(pos.size), "num_negatives": int((~pos).sum()),
                 "ciou_threshold": protocol.ciou_threshold, "undefined_ciou": int(np.isnan(c).sum())}
    if c.size == 0:
        raise ValueError("no sample with a source: cIoU / AUC need at least one")
    grid = _grid(protocol)
    with np.errstate(invalid="ignore"):
        out["ciou_at"] = float(np.mean(c >= protocol.ciou_threshold))
        out["auc"] = float(skm.auc(grid, [np.sum(c >= t) / c.size for t in grid]))
    out["mean_ciou"] = float(np.mean(c))
    out.update(ap=None, max_f1=None)
    if protocol.open_set == "slavc" and conf is not None:
        full_c = np.asarray(ciou, np.float64)
        f1 = metrics.slavc_f1_at_deciles(full_c, conf, pos, protocol.ciou_threshold)
        out["ap"] = metrics.slavc_average_precision(full_c, conf, pos, protocol.ciou_threshold)
        out["max_f1"] = float(f1.max())
        out["f1_deciles"] = [float(v) for v in f1]
        out["precision_all"] = metrics.slavc_precision_recall(full_c, conf, pos, -np.inf, protocol.ciou_threshold)[0]
        vis_f1 = metrics.slavc_f1_at_deciles(c, conf[pos], np.ones(c.size, bool), protocol.ciou_threshold)
        out["ap_visible"] = metrics.slavc_average_precision(c, conf[pos], np.ones(c.size, bool), protocol.ciou_threshold)
        out["max_f1_visible"] = float(vis_f1.max())
    elif protocol.open_set == "voc" and conf is not None and (~pos).any():
        full_c = np.asarray(ciou, np.float64)
        out["ap"] = metrics.open_set_ap(full_c, conf, pos, protocol.ciou_threshold)
        out["max_f1"] = metrics.open_set_max_f1(full_c, conf, pos, protocol.ciou_threshold)
    return out


def score_maps(maps, gt, protocol: str | Protocol, silent=None, confidence=None, ids: Sequence[str] | None = None,
               *, chunk: int = 64, progress: bool = False, **overrides) -> ProtocolScores:
    """Score raw heatmaps under one protocol.

    ``maps``: ``[N, h, w]`` (array / tensor), a list of ``[h, w]`` maps, or a callable
    ``maps(start, stop)`` returning those of samples ``start:stop`` (loaded lazily), as the
    method outputs them (low resolution or already ``size x size``). ``gt``: ``Annotation``s
    (the GT map is built by the protocol's rule) or GT maps ``[N, size, size]`` used as given.
    ``silent``: bool ``[N]``, True where the clip has no visible source (default: the
    annotations' ``has_source``, or all sources for GT maps). ``confidence``: ``[N]`` overriding
    the protocol's own confidence rule. ``overrides``: ``Protocol`` fields (e.g. ``value_range``).
    Samples are processed ``chunk`` at a time, so memory stays bounded on full test sets.
    """
    from tqdm.auto import tqdm

    protocol = get_protocol(protocol, **overrides)
    s = protocol.size
    if isinstance(gt, (np.ndarray, torch.Tensor)):
        gt_arr = gt.detach().cpu().numpy() if isinstance(gt, torch.Tensor) else np.asarray(gt)
        n = len(gt_arr)
        if gt_arr.shape != (n, s, s):
            raise ValueError(f"GT maps must be [N, {s}, {s}], got {gt_arr.shape}")
        pos = np.ones(n, bool)
        gt_chunk = lambda a, b: gt_arr[a:b].astype(np.float64)  # noqa: E731
        inverted = 0
    else:
        anns = list(gt)
        n = len(anns)
        pos = np.array([a.has_source for a in anns], bool)
        gt_chunk = lambda a, b: np.stack([gt_map_for(x, protocol) for x in anns[a:b]]).reshape(-1, s, s)  # noqa: E731
        inverted = sum(inverted_boxes(x.boxes) for x in anns if x.boxes)
        if ids is None:
            ids = [a.sample_id for a in anns]
    if callable(maps):
        map_chunk = maps
    else:
        items = _as_list(maps)
        if len(items) != n:
            raise ValueError(f"{len(items)} maps but {n} ground truths")
        map_chunk = lambda a, b: items[a:b]  # noqa: E731
    if silent is not None:
        silent = np.asarray(silent, bool).ravel()
        if silent.size != n:
            raise ValueError(f"silent has {silent.size} entries for {n} maps")
        pos = ~silent
    if confidence is not None:
        confidence = np.asarray(confidence, np.float64).ravel()
        if confidence.size != n:
            raise ValueError(f"confidence has {confidence.size} entries for {n} maps")
    c, kept, empty = np.empty(n), np.empty(n, np.int64), np.empty(n, bool)
    conf = confidence if confidence is not None or protocol.confidence is None else np.empty(n)
    for a in tqdm(range(0, n, chunk), desc=f"cIoU ({protocol.name})", unit="chunk", disable=not progress):
        b = min(a + chunk, n)
        m, g = map_chunk(a, b), gt_chunk(a, b)
        if len(m) != b - a:
            raise ValueError(f"the map source returned {len(m)} maps for samples {a}:{b}")
        up = upsample(m, protocol)
        masks = binarize(normalize(up, protocol), protocol, g)
        c[a:b] = metrics.ciou(masks, g, empty_gt="reference")
        kept[a:b] = masks.sum(axis=(1, 2))
        empty[a:b] = g.sum(axis=(1, 2)) == 0
        if confidence is None and protocol.confidence is not None:
            conf[a:b] = confidences(up, protocol)
    c[~pos] = np.nan
    summary = summarize(c, pos, conf, protocol)
    summary["empty_gt"] = int((empty & pos).sum())
    summary["inverted_boxes"] = int(inverted)  # painted as nothing, as the references' slicing does
    return ProtocolScores(protocol, c, pos, kept, conf, summary, list(ids) if ids is not None else None)


__all__ = [
    "Annotation", "PRESETS", "Protocol", "ProtocolScores", "annotations_from_items", "binarize", "confidences", "free_protocol",
    "get_protocol", "gt_map_for", "inverted_boxes", "normalize", "score_maps", "summarize", "upsample",
]
