"""Sound-source localization metrics: cIoU, success-rate AUC, and the open-set AP / max-F1.

Protocol (the field's, as implemented by the public evaluators of LVS
'Localizing Visual Sounds the Hard Way' (hche11/Localizing-Visual-Sounds-the-Hard-Way,
test.py/utils.py), EZ-VSL (stoneMo/EZ-VSL, test.py/utils.py) and SLAVC
(stoneMo/SLAVC, utils.py ``EvaluatorFull``)); facts checked in those files:

1. Heatmap ``S`` (already upsampled to the image, 224x224 in the papers) is min-max
   normalised per sample to [0, 1]; a constant map is left unchanged.
2. The binary prediction ``P`` keeps the top half of the pixels. EZ-VSL / SLAVC take
   ``thr = sort(S.flat)[int(N * 0.5)]`` and ``P = S >= thr``; LVS takes the same sorted
   element but keeps ``S > thr``. Without ties the two masks differ by exactly one pixel
   (N/2 vs N/2 - 1). With ties at ``thr`` -- whole blocks of a block-upsampled map, or a
   low-precision map -- ``>=`` keeps *every* pixel equal to ``thr`` and ``>`` keeps *none*
   of them, so the masks can differ by a whole block (thousands of pixels at 224x224) and
   the per-sample cIoU by far more than one pixel's worth.
   Here: ``thr = sort(S.flat)[int(N * (1 - fraction))]``, ``P = S >= thr`` (EZ-VSL/SLAVC;
   ``strict=True`` gives ``S > thr``). Ties at the threshold are all kept, so a constant
   map predicts the whole image. ``avssl.localization.protocols`` holds one preset per
   public evaluator that reproduces its arithmetic (interpolation, float32 normalisation,
   ``>`` vs ``>=``, GT rule, AUC grid, open-set counting) exactly.
3. Per-sample ``cIoU = sum(P * G) / (sum(G) + sum(P * (G == 0)))`` where ``G`` is the
   ground-truth map (binary for VGG-SS, {0, 0.5, 1} for Flickr-SoundNet; see ``gt.py``).
4. Reported "cIoU" (EZ-VSL calls it AP50, SLAVC Precision@50) = share of samples with
   ``cIoU >= 0.5``; "AUC" = ``sklearn.metrics.auc`` (trapezoids) of the success-rate curve
   ``r(t) = mean(cIoU >= t)`` at ``t = 0, 0.05, ..., 1`` (21 points, all three repos);
   "mean cIoU" (EZ-VSL ``finalize_cIoU``) = plain mean of the per-sample values.
   The thresholds here are exact decimals; the references' ``0.05 * i`` carries float
   excess (``0.05 * 3 == 0.15000000000000002``), which only matters for a cIoU that lands
   exactly on a grid value (``AUC_THRESHOLDS_REFERENCE`` is that float grid).

Open-set extension (Mo & Morgado, 'A Closer Look at Weakly-Supervised Audio-Visual
Source Localization', NeurIPS 2022, code stoneMo/SLAVC): the test set also holds clips
with no visible sounding source (silent or off-screen audio). Each sample gets a
confidence; in SLAVC it is the mean of the top quarter (``n // 4``) of the heatmap's
scores after a *fixed* affine map of the similarity range to [0, 1] (not the per-sample
min-max, which would erase the absolute level) -- ordering-equivalent to the mean of the
top quarter of the raw similarities, which is what ``confidence_scores`` computes by
default (``mode="max"`` gives the plain maximum). A detection at confidence threshold c
is any sample with confidence >= c; it is a true positive when the clip has a source and
``cIoU >= 0.5``, otherwise a false positive; a source clip below c is a false negative.
cIoU / AUC are computed on the source clips only (SLAVC ``cal_auc`` filters them).

Two AP / F1 variants are offered:
- ``variant="voc"`` (default): detection-style recall ``TP / #source clips`` (a detected
  but mislocalised source clip is a false positive *and* stays missed, as in PASCAL VOC),
  computed with ``sklearn.metrics.precision_recall_curve`` / ``average_precision_score``
  on ``y = source & (cIoU >= 0.5)`` and rescaled by ``#correct / #source``.
- ``variant="slavc"``: SLAVC's own counting, ``recall = TP / (TP + FN)`` with FN only the
  source clips *below* the threshold, precision envelope (running max from the low-recall
  end) and ``AP = sum(p_max[i] * (r[i+1] - r[i]))``. SLAVC subsamples thresholds (at most
  ~200, and drops the largest confidence); here every distinct confidence is a threshold.
  SLAVC reports F1 at the confidence deciles; ``max_f1`` here is the max over all thresholds.
  ``slavc_average_precision`` / ``slavc_f1_at_deciles`` reproduce SLAVC's own threshold
  subsampling and decile F1s exactly (what its ``EvaluatorFull.finalize_stats`` prints).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn import metrics as skm

AUC_THRESHOLDS = np.round(np.arange(21) * 0.05, 10)
# The public evaluators' grid, ``[0.05 * i for i in range(21)]``, float excess included.
AUC_THRESHOLDS_REFERENCE = np.array([0.05 * i for i in range(21)], dtype=np.float64)


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _as_batch(maps: np.ndarray, name: str) -> np.ndarray:
    if maps.ndim == 2:
        return maps[None]
    if maps.ndim != 3:
        raise ValueError(f"{name} must be [H,W] or [N,H,W], got shape {maps.shape}")
    return maps


def minmax_normalize(heatmaps) -> np.ndarray:
    """Min-max normalise each map of ``[..., H, W]`` to [0, 1]; constant maps stay as they are."""
    s = _np(heatmaps)
    lo = s.min(axis=(-2, -1), keepdims=True)
    hi = s.max(axis=(-2, -1), keepdims=True)
    span = hi - lo
    return np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), s)


def binarize_top_fraction(heatmaps, fraction: float = 0.5, strict: bool = False) -> np.ndarray:
    """Boolean ``[..., H, W]``: pixels >= (``strict``: >) the value ranked at ``int(N * (1 - fraction))``.

    With ``fraction=0.5`` this is the median threshold of the protocol (top 50% of pixels).
    The kept share is exact only without ties at the threshold: ``>=`` keeps all tied pixels,
    ``>`` none of them (module docstring, point 2).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    s = _np(heatmaps)
    h, w = s.shape[-2:]
    flat = s.reshape(*s.shape[:-2], h * w)
    k = min(int(h * w * (1.0 - fraction)), h * w - 1)
    thr = np.partition(flat, k, axis=-1)[..., k]  # k-th smallest == sort(flat)[k]
    return s > thr[..., None, None] if strict else s >= thr[..., None, None]


def ciou(pred_mask, gt_map, empty_gt: str = "nan") -> np.ndarray:
    """Per-sample consensus IoU ``sum(P*G) / (sum(G) + sum(P*(G==0)))`` over ``[..., H, W]``.

    ``pred_mask`` is a binary map, ``gt_map`` a ground-truth map with values in [0, 1].
    ``empty_gt="nan"``: samples whose ground truth is empty (no source) give NaN, cIoU is
    undefined there. ``empty_gt="reference"``: the public evaluators' plain division, so an
    empty GT (e.g. a VGG-SS box of zero width) scores 0 against any non-empty prediction;
    NaN only where the denominator itself is 0.
    """
    p = _np(pred_mask)
    g = _np(gt_map)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    inter = (p * g).sum(axis=(-2, -1))
    denom = g.sum(axis=(-2, -1)) + (p * (g == 0)).sum(axis=(-2, -1))
    if empty_gt not in ("nan", "reference"):
        raise ValueError(f"empty_gt must be 'nan' or 'reference', got {empty_gt!r}")
    valid = denom > 0 if empty_gt == "reference" else g.sum(axis=(-2, -1)) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(valid, inter / np.where(denom > 0, denom, 1.0), np.nan)
    return out


def heatmap_ciou(heatmaps, gt_maps, fraction: float = 0.5) -> np.ndarray:
    """The whole per-sample protocol: min-max normalise, keep top ``fraction``, cIoU. -> [N]."""
    s = _as_batch(_np(heatmaps), "heatmaps")
    g = _as_batch(_np(gt_maps), "gt_maps")
    if s.shape != g.shape:
        raise ValueError(f"heatmaps {s.shape} and gt_maps {g.shape} differ; build GT at the heatmap size")
    return ciou(binarize_top_fraction(minmax_normalize(s), fraction), g)


def success_rates(cious, thresholds=AUC_THRESHOLDS) -> np.ndarray:
    """Share of samples with ``cIoU >= t`` for every ``t`` in ``thresholds``."""
    c = _valid(cious)
    return np.array([(c >= t).mean() for t in np.asarray(thresholds, dtype=np.float64)])


def ciou_auc(cious, thresholds=AUC_THRESHOLDS) -> float:
    """Trapezoidal area (``sklearn.metrics.auc``) under the success-rate curve."""
    t = np.asarray(thresholds, dtype=np.float64)
    return float(skm.auc(t, success_rates(cious, t)))


def ciou_at(cious, threshold: float = 0.5) -> float:
    """The reported "cIoU": share of samples with ``cIoU >= threshold``."""
    return float((_valid(cious) >= threshold).mean())


def _valid(cious) -> np.ndarray:
    c = _np(cious).ravel()
    if c.size == 0:
        raise ValueError("no samples")
    if np.isnan(c).any():
        raise ValueError("cIoU contains NaN (samples without ground truth); pass source clips only")
    return c


def confidence_scores(heatmaps, mode: str = "top_quarter_mean") -> np.ndarray:
    """Per-sample confidence ``[N]`` from *raw* (un-normalised) heatmaps ``[N, H, W]``.

    ``top_quarter_mean``: mean of the largest ``n // 4`` values (SLAVC); ``max``: the peak.
    Must be computed before per-sample normalisation, which maps every map to [0, 1].
    """
    s = _as_batch(_np(heatmaps), "heatmaps")
    flat = s.reshape(s.shape[0], -1)
    if mode == "max":
        return flat.max(axis=1)
    if mode == "top_quarter_mean":
        k = max(flat.shape[1] // 4, 1)
        return np.sort(flat, axis=1)[:, -k:].mean(axis=1)
    raise ValueError(f"unknown confidence mode {mode!r} (top_quarter_mean | max)")


def open_set_pr(cious, confidences, has_source, ciou_threshold: float = 0.5, variant: str = "voc"):
    """Precision/recall over confidence thresholds, -> ``(precision, recall, thresholds)``.

    ``cious`` may hold NaN for clips without a source (it is ignored there). Arrays are
    ordered by increasing recall (decreasing threshold); see the module docstring.
    """
    c, conf, pos = _open_set_inputs(cious, confidences, has_source)
    correct = pos & (np.nan_to_num(c, nan=-1.0) >= ciou_threshold)
    n_pos = int(pos.sum())
    if n_pos == 0:
        raise ValueError("open-set metrics need at least one clip with a source")
    if variant == "voc":
        if correct.sum() == 0:
            return np.array([1.0]), np.array([0.0]), np.array([np.inf])
        p, r, thr = skm.precision_recall_curve(correct.astype(int), conf)
        # sklearn orders by decreasing recall and appends (p=1, r=0) without a threshold.
        p, r = p[::-1], r[::-1] * (correct.sum() / n_pos)
        thr = np.concatenate([[np.inf], thr[::-1]])
        return p, r, thr
    if variant == "slavc":
        # SLAVC's counting (FN = source clips below threshold) has no library equivalent.
        thr = np.unique(conf)[::-1]
        p = np.empty(thr.size)
        r = np.empty(thr.size)
        for i, t in enumerate(thr):
            det = conf >= t
            tp = int((det & correct).sum())
            fp = int((det & ~correct).sum())
            fn = int((~det & pos).sum())
            p[i] = 1.0 if tp + fp == 0 else tp / (tp + fp)
            r[i] = 1.0 if tp + fn == 0 else tp / (tp + fn)
        return p, r, thr
    raise ValueError(f"unknown variant {variant!r} (voc | slavc)")


def open_set_ap(cious, confidences, has_source, ciou_threshold: float = 0.5, variant: str = "voc") -> float:
    """Average precision of 'detect a source and localise it (cIoU >= thr)'.

    ``voc``: ``sklearn.metrics.average_precision_score`` (sum of precision times recall
    steps, no interpolation) on correct detections, times ``#correct / #source``.
    ``slavc``: interpolated-envelope sum over SLAVC's precision/recall points.
    """
    c, conf, pos = _open_set_inputs(cious, confidences, has_source)
    correct = pos & (np.nan_to_num(c, nan=-1.0) >= ciou_threshold)
    if variant == "voc":
        if correct.sum() == 0:
            return 0.0
        return float(skm.average_precision_score(correct.astype(int), conf) * correct.sum() / pos.sum())
    p, r, _ = open_set_pr(c, conf, pos, ciou_threshold, variant)
    p_env = np.maximum.accumulate(p[::-1])[::-1]
    return float(np.sum(p_env[:-1] * np.diff(r)))


def open_set_max_f1(cious, confidences, has_source, ciou_threshold: float = 0.5, variant: str = "voc") -> float:
    """Best F1 = 2PR / (P + R) over all confidence thresholds."""
    p, r, _ = open_set_pr(cious, confidences, has_source, ciou_threshold, variant)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1.0), 0.0)
    return float(f1.max())


def _open_set_inputs(cious, confidences, has_source, allow_nan: bool = False):
    c = _np(cious).ravel()
    conf = _np(confidences).ravel()  # float32 -> float64 is exact: comparisons unchanged
    pos = np.asarray(has_source, dtype=bool).ravel()
    if not (c.size == conf.size == pos.size):
        raise ValueError(f"length mismatch: cious {c.size}, confidences {conf.size}, has_source {pos.size}")
    if not allow_nan and np.isnan(c[pos]).any():
        raise ValueError("clips with a source must have a cIoU")
    return c, conf, pos


def slavc_precision_recall(cious, confidences, has_source, confidence_threshold: float,
                           ciou_threshold: float = 0.5) -> tuple[float, float]:
    """SLAVC's counting at one confidence threshold ``c`` (``EvaluatorFull.calc_precision_recall``).

    A clip is *detected* when ``confidence >= c``. Detected: a source clip with
    ``cIoU >= ciou_threshold`` -> TP; a source clip below it, or a clip without a source -> FP.
    Not detected: a source clip -> FN; a clip without a source -> nothing.
    ``P = TP / (TP + FP)`` (1 when nothing is detected), ``R = TP / (TP + FN)`` (1 when 0/0).
    """
    c, conf, pos = _open_set_inputs(cious, confidences, has_source, allow_nan=True)
    det = conf >= confidence_threshold
    hit = pos & (np.nan_to_num(c, nan=-np.inf) >= ciou_threshold)
    tp = int((det & hit).sum())
    fp = int((det & ~hit).sum())
    fn = int((~det & pos).sum())
    return (1.0 if tp + fp == 0 else tp / (tp + fp)), (1.0 if tp + fn == 0 else tp / (tp + fn))


def slavc_average_precision(cious, confidences, has_source, ciou_threshold: float = 0.5) -> float:
    """SLAVC's AP (``EvaluatorFull.calc_ap``), exactly.

    Thresholds: the confidences sorted ascending, the largest dropped, then walked from the
    top down in steps of ``max(1, N // 200)``. At each, ``(P, R)`` by
    ``slavc_precision_recall``; ``P_env[i] = max(P[i:])``;
    ``AP = sum_i P_env[i] * (R[i+1] - R[i])`` (the area before the first point is not counted).
    """
    c, conf, pos = _open_set_inputs(cious, confidences, has_source, allow_nan=True)
    step = max(1, conf.size // 200)
    pr = [slavc_precision_recall(c, conf, pos, t, ciou_threshold) for t in np.sort(conf)[:-1][::-step]]
    if len(pr) < 2:
        return 0.0
    p = np.array([x[0] for x in pr])
    r = np.array([x[1] for x in pr])
    p_env = np.maximum.accumulate(p[::-1])[::-1]
    return float(np.sum(p_env[:-1] * np.diff(r)))


def slavc_f1_at_deciles(cious, confidences, has_source, ciou_threshold: float = 0.5) -> np.ndarray:
    """F1 at SLAVC's thresholds ``sorted(confidences)[::max(1, N // 10)]`` (ascending), the
    list its ``finalize_stats`` prints as ``F1-all@50``; ``F1 = 2PR / (P + R)``, 0 if P + R = 0."""
    c, conf, pos = _open_set_inputs(cious, confidences, has_source, allow_nan=True)
    out = []
    for t in np.sort(conf)[:: max(1, conf.size // 10)]:
        p, r = slavc_precision_recall(c, conf, pos, t, ciou_threshold)
        out.append(2 * r * p / (r + p) if r + p > 0 else 0.0)
    return np.array(out)


def region_preference(heatmaps, masks_a, masks_b) -> np.ndarray:
    """Per map: does it prefer region A to region B? ``1.0`` when its mean over A's pixels outside B
    is higher than its mean over B's pixels outside A, ``0.0`` when lower, ``0.5`` on a tie, NaN when
    either exclusive region is empty (B absent, or one box inside the other). Maps and masks ``[N, H, W]``
    (or one ``[H, W]``) on the same grid. Used for same-class twins: A the sounding object, B its silent
    twin; a map that ignores the sound scores 0.5 on average."""
    m, a, b = _as_batch(heatmaps, "heatmaps"), _as_batch(masks_a, "masks_a") > 0, _as_batch(masks_b, "masks_b") > 0
    if not m.shape == a.shape == b.shape:
        raise ValueError(f"maps {m.shape} and masks {a.shape}, {b.shape} differ")
    out = np.full(len(m), np.nan)
    for i in range(len(m)):
        only_a, only_b = a[i] & ~b[i], b[i] & ~a[i]
        if only_a.any() and only_b.any():
            va, vb = float(m[i][only_a].mean()), float(m[i][only_b].mean())
            out[i] = 1.0 if va > vb else 0.0 if va < vb else 0.5
    return out


@dataclass
class LocalizationSummary:
    """Dataset-level figures. ``ciou_at`` is the reported cIoU (share >= ``ciou_threshold``)."""

    num_samples: int
    num_negatives: int
    ciou_threshold: float
    ciou_at: float
    auc: float
    mean_ciou: float
    ap: float | None = None
    max_f1: float | None = None
    twin_preference: float | None = None  # share of same-class-twin items whose map prefers the sounding twin
    twin_items: int = 0  # items with a twin (and both exclusive regions non-empty)

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(
    cious,
    confidences=None,
    has_source=None,
    ciou_threshold: float = 0.5,
    variant: str = "voc",
) -> LocalizationSummary:
    """cIoU@thr, AUC and mean cIoU over source clips; AP / max-F1 when negatives are present."""
    c = _np(cious).ravel()
    pos = np.ones(c.size, bool) if has_source is None else np.asarray(has_source, bool).ravel()
    if pos.size != c.size:
        raise ValueError(f"has_source has {pos.size} entries for {c.size} samples")
    cp = c[pos]
    out = LocalizationSummary(
        num_samples=int(c.size),
        num_negatives=int((~pos).sum()),
        ciou_threshold=float(ciou_threshold),
        ciou_at=ciou_at(cp, ciou_threshold),
        auc=ciou_auc(cp),
        mean_ciou=float(_valid(cp).mean()),
    )
    if (~pos).any():
        if confidences is None:
            raise ValueError("negatives present: confidences are needed for AP / max-F1")
        out.ap = open_set_ap(c, confidences, pos, ciou_threshold, variant)
        out.max_f1 = open_set_max_f1(c, confidences, pos, ciou_threshold, variant)
    return out
