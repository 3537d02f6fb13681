"""Score any method's saved heatmaps on the published benchmarks, next to the baselines.

A folder of ``<sample id>.npy`` maps (found recursively; the key is the path relative to the
folder without ``.npy``, or the file's stem) is matched against the annotated test set
(``load_annotations``: VGG-SS JSON, Flickr-SoundNet XML folder, an optional test list and
an optional ``*_plus_silent.csv`` for the extended sets) and scored with
``protocols.score_maps`` under one or more protocols, together with the centre-prior,
whole-image and oracle-box baselines of ``avssl.localization.evaluate`` on the same samples.

Map files: ``[h, w]`` float arrays (leading axes of length 1 are dropped, e.g. the
``[1, 1, h, w]`` of a saved model output), at the method's own resolution or already at
the protocol's 224x224 (SSL-Align, for one, reads precomputed 224x224 ``<name>.npy`` maps).
Loaded with ``allow_pickle=False``. A map with another shape or non-finite values is
reported as bad and not scored. Negatives of an extended set are keyed ``<image>@<audio>``
(``avssl.data.formats.extended``); a map named ``<image>.npy`` is accepted for one when that
image id names no other sample.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avssl.localization.protocols import Annotation, Protocol, ProtocolScores, get_protocol, gt_map_for, score_maps

log = logging.getLogger(__name__)

BASELINES = ("centre_prior", "whole_image", "oracle_box")


# ---------------------------------------------------------------- annotations


def load_annotations(source: str | os.PathLike | Sequence[Annotation], fmt: str = "auto", *,
                     test_list: str | os.PathLike | None = None, extended: str | os.PathLike | None = None
                     ) -> tuple[list[Annotation], dict]:
    """``(annotations, report)`` of a benchmark's test set.

    ``source``: a VGG-SS JSON (``fmt='vggss'``), a Flickr-SoundNet XML folder (``'flickr'``),
    or ``Annotation``s; ``'auto'`` picks by suffix / folder. ``test_list``: keep only these ids
    (EZ-VSL / SLAVC evaluate ``test list ∩ annotated``); listed ids without annotation are
    counted in ``report['unannotated']``. ``extended``: a ``*_plus_silent.csv`` whose
    ``non-sounding`` rows are appended as negatives (``has_source=False``).
    """
    from avssl.data.formats.extended import negatives, parse_plus_silent
    from avssl.data.formats.lists import read_id_list

    report: dict = {}
    if isinstance(source, (str, os.PathLike)):
        src = Path(source)
        if not src.exists():
            raise FileNotFoundError(f"annotations {src} do not exist")
        if fmt == "auto":
            fmt = "vggss" if src.suffix.lower() == ".json" else "flickr" if src.is_dir() else ""
        if fmt == "vggss":
            from avssl.data.formats.vggss import parse_vggss

            anns = [Annotation(e.file, tuple(e.boxes), "vggss", None, True, e.label) for e in parse_vggss(src)]
        elif fmt == "flickr":
            from avssl.data.formats.flickr import load_flickr_annotations

            anns = [Annotation(k, tuple(map(tuple, a.boxes)), "flickr", (a.height, a.width), True)
                    for k, a in load_flickr_annotations(src).items()]
        else:
            raise ValueError(f"annotations {src}: give fmt=vggss (JSON) or fmt=flickr (XML folder)")
    else:
        anns = list(source)
    report["annotation_entries"] = len(anns)
    if test_list is not None:
        ids = read_id_list(test_list)
        by_id = {a.sample_id: a for a in anns}
        report["unannotated"] = [i for i in ids if i not in by_id]
        report["not_in_test_list"] = len(set(by_id) - set(ids))
        anns = [by_id[i] for i in ids if i in by_id]
    if extended is not None:
        neg = negatives(parse_plus_silent(extended))
        anns += [Annotation(e.sample_id, (), anns[0].style if anns else "vggss", None, False, "silent" if e.own_audio
                            else "offscreen", e.audio) for e in neg]
        report["negatives"] = len(neg)
    seen: set[str] = set()
    dup = [a.sample_id for a in anns if a.sample_id in seen or seen.add(a.sample_id)]
    if dup:
        raise ValueError(f"{len(dup)} sample id(s) appear twice in the test set, e.g. {dup[0]!r}")
    if not anns:
        raise ValueError("the test set is empty (check the test list against the annotations)")
    return anns, report


# ---------------------------------------------------------------- map folders


def index_heatmaps(folder: str | os.PathLike) -> dict[str, Path]:
    """``{key: path}`` for every ``*.npy`` under ``folder``: the relative path without suffix
    (``a/b`` for ``a/b.npy``) and, when unique, the bare stem."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"heatmap folder {root} does not exist")
    files = sorted(root.rglob("*.npy"))
    out = {p.relative_to(root).with_suffix("").as_posix(): p for p in files}
    stems: dict[str, list[Path]] = {}
    for p in files:
        stems.setdefault(p.stem, []).append(p)
    for s, ps in stems.items():
        if len(ps) == 1:
            out.setdefault(s, ps[0])
    return out


def load_heatmap(path: Path) -> np.ndarray:
    """One map as a 2-D float32 array; raises ValueError with the reason otherwise."""
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"unreadable ({e})") from None
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"dtype {a.dtype} is not real numbers")
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"shape {a.shape} is not [h, w]")
    if not np.isfinite(a).all():
        raise ValueError("non-finite values")
    return a.astype(np.float32)


def match_heatmaps(index: dict[str, Path], anns: Sequence[Annotation]) -> tuple[dict[str, Path], list[str]]:
    """``({sample id: path}, missing ids)``. A negative ``image@audio`` may use ``image.npy``
    when no other sample's id starts with that image id."""
    images: dict[str, int] = {}
    for a in anns:
        images[a.sample_id.split("@", 1)[0]] = images.get(a.sample_id.split("@", 1)[0], 0) + 1
    found, missing = {}, []
    for a in anns:
        image = a.sample_id.split("@", 1)[0]
        if a.sample_id in index:
            found[a.sample_id] = index[a.sample_id]
        elif not a.has_source and images[image] == 1 and image in index:
            found[a.sample_id] = index[image]
        else:
            missing.append(a.sample_id)
    return found, missing


# ---------------------------------------------------------------- scoring


@dataclass
class ExternalResult:
    """Per-sample rows, ``summaries[protocol][method]`` and the coverage of the folder."""

    rows: list[dict]
    summaries: dict[str, dict[str, dict]]
    coverage: dict
    settings: dict = field(default_factory=dict)
    scores: dict[str, dict[str, ProtocolScores]] = field(default_factory=dict)

    def coverage_line(self) -> str:
        c = self.coverage
        return (f"annotated {c['annotated']} / scored {c['scored']} / missing {c['missing']} "
                f"(bad maps {c['bad']}, maps without annotation {c['unannotated_maps']})")

    def table(self) -> str:
        """Markdown: one row per protocol x method."""
        return protocol_table(self.summaries)

    def write(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """per_sample.csv, results.json and summary.md under ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"csv": out / "per_sample.csv", "json": out / "results.json", "md": out / "summary.md"}
        with open(paths["csv"], "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(self.rows[0]))
            w.writeheader()
            w.writerows(self.rows)
        paths["json"].write_text(json.dumps({"settings": self.settings, "coverage": self.coverage,
                                             "summaries": self.summaries}, indent=1, default=_jsonable))
        paths["md"].write_text(f"{self.coverage_line()}\n\n{self.table()}\n")
        return paths


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def baseline_sources(anns: Sequence[Annotation], protocol: Protocol) -> dict:
    """The evaluate.py baselines at the protocol's size, as ``score_maps`` map sources
    ``(start, stop) -> maps``: centre prior, whole image, oracle box (on the protocol's own GT)."""
    from avssl.localization.evaluate import oracle_box_maps
    from avssl.localization.heatmap import centre_prior_maps, whole_image_maps

    s = protocol.size
    centre, whole = centre_prior_maps(1, s)[0].numpy(), whole_image_maps(1, s)[0].numpy()
    return {"centre_prior": lambda a, b: [centre] * (b - a), "whole_image": lambda a, b: [whole] * (b - a),
            "oracle_box": lambda a, b: list(oracle_box_maps(np.stack([gt_map_for(x, protocol) for x in anns[a:b]])))}


def score_protocols(maps, anns: Sequence[Annotation], protocol: str | Protocol | Sequence[str | Protocol] = "lvs", *,
                    method: str = "external", baselines: bool = True, progress: bool = False, **overrides
                    ) -> tuple[list[Protocol], dict[str, dict[str, ProtocolScores]]]:
    """``(protocols, scores[protocol name][method])``: ``maps`` (anything ``score_maps`` takes: an
    array / tensor ``[N, h, w]``, a list, or a loader ``(start, stop) -> maps``) scored against
    ``anns`` under each protocol, with the baselines (``baseline_sources``) on the same samples.
    The one scoring path of saved maps (``score_external``) and of a checkpoint's maps
    (``avssl.localization.job``), so both give the same per-sample numbers for the same maps."""
    protos = [get_protocol(p, **overrides) for p in ([protocol] if isinstance(protocol, (str, Protocol)) else protocol)]
    scores: dict[str, dict[str, ProtocolScores]] = {}
    for p in protos:
        candidates = {method: maps, **(baseline_sources(anns, p) if baselines else {})}
        scores[p.name] = {m: score_maps(x, anns, p, progress=progress) for m, x in candidates.items()}
    return protos, scores


def protocol_columns(rows: list[dict], scores: dict[str, dict[str, ProtocolScores]], method: str) -> dict:
    """Add ``ciou[<protocol>]`` (``method``), ``ciou[<protocol>]:<baseline>`` and
    ``confidence[<protocol>]`` to each per-sample row (same order as the scored samples; None where
    cIoU is undefined: no source); returns ``summaries[protocol][method]``."""
    summaries: dict[str, dict[str, dict]] = {}
    for pname, by in scores.items():
        summaries[pname] = {m: s.summary for m, s in by.items()}
        for m, s in by.items():
            col = f"ciou[{pname}]" + ("" if m == method else f":{m}")
            for r, v in zip(rows, s.ciou):
                r[col] = None if np.isnan(v) else float(v)
            if m == method and s.confidence is not None:
                for r, v in zip(rows, s.confidence):
                    r[f"confidence[{pname}]"] = float(v)
    return summaries


def protocol_table(summaries: dict[str, dict[str, dict]]) -> str:
    """Markdown: one row per protocol x method."""
    f = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    lines = ["| protocol | method | cIoU@0.5 | AUC | mean cIoU | AP | max-F1 | N (neg) |",
             "|---|---|---|---|---|---|---|---|"]
    for p, by in summaries.items():
        for m, s in by.items():
            lines.append(f"| {p} | {m} | {f(s['ciou_at'])} | {f(s['auc'])} | {f(s['mean_ciou'])} | {f(s['ap'])} | "
                         f"{f(s['max_f1'])} | {s['num_samples']} ({s['num_negatives']}) |")
    return "\n".join(lines)


def score_external(folder: str | os.PathLike, annotations, protocol: str | Protocol | Sequence[str | Protocol] = "lvs",
                   *, fmt: str = "auto", test_list=None, extended=None, baselines: bool = True,
                   method: str = "external", progress: bool = True, **overrides) -> ExternalResult:
    """Score the ``.npy`` maps in ``folder`` against ``annotations`` under each ``protocol``.

    Samples without a readable map are counted (``coverage``) and left out of every figure,
    baselines included, so each row of the table is over the same samples. ``overrides``:
    ``Protocol`` fields applied to every protocol (e.g. ``value_range=(-1, 1)`` for cosine
    maps under ``slavc``; the SLAVC presets assume its ``cos / 0.03`` logits)."""
    from tqdm.auto import tqdm

    anns, report = load_annotations(annotations, fmt, test_list=test_list, extended=extended)
    index = index_heatmaps(folder)
    found, missing = match_heatmaps(index, anns)
    shapes, bad = {}, {}  # validate every map once; they are loaded again chunk by chunk when scored
    for sid, path in tqdm(found.items(), desc="checking maps", unit="map", disable=not progress):
        try:
            shapes[sid] = load_heatmap(path).shape
        except ValueError as e:
            bad[sid] = f"{path.name}: {e}"
    kept = [a for a in anns if a.sample_id in shapes]
    used = set(found.values())
    root = Path(folder)
    unannotated = sorted({p.relative_to(root).with_suffix("").as_posix() for p in index.values() if p not in used})
    coverage = {"annotated": len(anns), "scored": len(kept), "missing": len(missing) + len(bad), "bad": len(bad),
                "unannotated_maps": len(unannotated), "missing_ids": missing[:50], "bad_maps": dict(list(bad.items())[:50]),
                "unannotated_map_ids": unannotated[:50], **{k: v for k, v in report.items() if k != "unannotated"},
                "test_list_unannotated": len(report.get("unannotated", []))}
    if missing or bad:
        log.warning("%d of %d annotated samples have no usable map (missing %d, bad %d)", len(missing) + len(bad),
                    len(anns), len(missing), len(bad))
    if not kept:
        raise ValueError(f"no map in {folder} matches an annotated sample ({len(anns)} annotated, {len(index)} maps)")
    ids = [a.sample_id for a in kept]
    rows = [{"sample_id": a.sample_id, "silent": not a.has_source, "label": a.label, "audio_id": a.audio_id or "",
             "map_shape": "x".join(map(str, shapes[a.sample_id]))} for a in kept]
    external = lambda a, b: [load_heatmap(found[i]) for i in ids[a:b]]  # noqa: E731
    protos, scores = score_protocols(external, kept, protocol, method=method, baselines=baselines, progress=progress,
                                     **overrides)
    summaries = protocol_columns(rows, scores, method)
    settings = {"folder": str(folder), "annotations": str(annotations) if isinstance(annotations, (str, os.PathLike))
                else "<annotations>", "test_list": None if test_list is None else str(test_list),
                "extended": None if extended is None else str(extended), "method": method,
                "protocols": {p.name: p.__dict__ for p in protos}}
    return ExternalResult(rows, summaries, coverage, settings, scores)


__all__ = ["BASELINES", "ExternalResult", "baseline_sources", "index_heatmaps", "load_annotations", "load_heatmap",
           "match_heatmaps", "protocol_columns", "protocol_table", "score_external", "score_protocols"]
