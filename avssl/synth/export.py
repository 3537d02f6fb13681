"""Write the generated world in the real benchmarks' formats (parsed by avssl.data.formats).

Videos/audio/frames are hard-linked (copied if linking fails) into each dataset's own
layout, so every export is self-contained at no disk cost.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import numpy as np

from .world import ACTION_HMDB_NAMES, ACTION_UCF_NAMES, NUM_GROUPS, SOURCE_NAMES, ucf_test_groups

ESC10_CLASSES = set(SOURCE_NAMES[:5])


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def export_kinetics(root: Path, rows: list[dict]) -> Path:
    """kinetics/{train,validate}.csv + kinetics/{train,val}/<label>/<id>_000000_<end:06d>.<ext>."""
    out = root / "kinetics"
    for split, csv_name, sub in (("train", "train.csv", "train"), ("test", "validate.csv", "val")):
        out.mkdir(parents=True, exist_ok=True)
        with open(out / csv_name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            for r in rows:
                if r["split"] != split:
                    continue
                end = int(np.ceil(float(r["duration"])))
                w.writerow([r["source_class"], r["clip_id"], 0, end, sub])
                _link(root / r["path"], out / sub / r["source_class"] / f"{r['clip_id']}_{0:06d}_{end:06d}{r['container']}")
    return out


def _ucf_names(rows):
    counter, names = defaultdict(int), {}
    for r in rows:
        cls = ACTION_UCF_NAMES[int(r["action_index"])]
        key = (cls, int(r["group"]))
        counter[key] += 1
        names[r["clip_id"]] = f"{cls}/v_{cls}_g{key[1]:02d}_c{counter[key]:02d}{r['container']}"
    return names


def export_ucf101(root: Path, rows: list[dict]) -> Path:
    """ucf101/ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt + ucf101/UCF-101/<Class>/v_*.<ext>.
    Fold k tests on groups 7(k-1)+1..7k, so a group never straddles train/test."""
    out = root / "ucf101"
    lists = out / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    names = _ucf_names(rows)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(ACTION_UCF_NAMES)))
    for fold in (1, 2, 3):
        tg = ucf_test_groups(fold)
        train = [f"{names[r['clip_id']]} {int(r['action_index']) + 1}\r\n" for r in rows if int(r["group"]) not in tg]
        test = [f"{names[r['clip_id']]}\r\n" for r in rows if int(r["group"]) in tg]
        (lists / f"trainlist0{fold}.txt").write_text("".join(train))
        (lists / f"testlist0{fold}.txt").write_text("".join(test))
    for r in rows:
        _link(root / r["path"], out / "UCF-101" / names[r["clip_id"]])
    return out


def hmdb_tag(group: int, split: int) -> int:
    """HMDB51-style tag: groups 22-25 unused (0); else a third of the groups test (2), rest train (1)."""
    if group > 21:
        return 0
    return 2 if (group + split) % 3 == 0 else 1


def export_hmdb51(root: Path, rows: list[dict]) -> Path:
    """hmdb51/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt + hmdb51/videos/<class>/<id>.<ext>."""
    out = root / "hmdb51"
    sd = out / "testTrainMulti_7030_splits"
    sd.mkdir(parents=True, exist_ok=True)
    for split in (1, 2, 3):
        for a, cls in enumerate(ACTION_HMDB_NAMES):
            lines = [f"{r['clip_id']}{r['container']} {hmdb_tag(int(r['group']), split)} \n"
                     for r in rows if int(r["action_index"]) == a]
            (sd / f"{cls}_test_split{split}.txt").write_text("".join(lines))
    for r in rows:
        _link(root / r["path"], out / "videos" / ACTION_HMDB_NAMES[int(r["action_index"])] / f"{r['clip_id']}{r['container']}")
    return out


def _visible(r: dict) -> bool:
    """The clip's sounding object is in its annotated (middle) frame."""
    return int(r["sounding_object"]) >= 0 and int(r["mid_box_x0"]) >= 0


def _loc_rows(rows):
    return [r for r in rows if r["split"] == "test" and _visible(r)]


def export_vggss(root: Path, rows: list[dict], out: Path | None = None, splits: tuple[str, ...] = ("test",)) -> Path:
    """A VGG-SS test package in the public layout, under ``out`` (default ``root/vggss``):

    - ``frames/<id>.jpg``: the annotated frame (the clip's middle frame, ``keyframes/``) and
      ``audio/<id>.wav``: the clip's sound, for every clip of ``splits``;
    - ``vggss.json``: ``[{"file", "class", "bbox": [[x0, y0, x1, y1]]}]`` for the clips whose sounding
      object is visible in that frame (box as fractions of the frame, 5 decimals; a clip with a silent
      same-class twin also carries ``twin_bbox``, an extra key readers that do not know it ignore);
    - ``vggss_test.csv``: those ids, one per line (the test list);
    - ``vggss_test_plus_silent.csv``: ``video,audio,label`` with one ``<id>,<id>,non-sounding`` row per
      clip without a visible source (silent, off-screen): the extended set's negatives, own sound.
    """
    out = Path(out) if out is not None else root / "vggss"
    items, positives, negatives = [], [], []
    for r in rows:
        if r["split"] not in splits:
            continue
        cid = r["clip_id"]
        if _visible(r):
            w, h = float(r["width"]), float(r["height"])
            box = [int(r[f"mid_box_{k}"]) for k in ("x0", "y0", "x1", "y1")]
            item = {"file": cid, "class": r["source_class"],
                    "bbox": [[round(box[0] / w, 5), round(box[1] / h, 5), round(box[2] / w, 5), round(box[3] / h, 5)]]}
            tbox = [int(r.get(f"mid_twin_{k}", -1)) for k in ("x0", "y0", "x1", "y1")]
            if int(r.get("twin", 0)) and tbox[0] >= 0:  # a silent same-class twin (generator v3): its box too
                item["twin_bbox"] = [[round(tbox[0] / w, 5), round(tbox[1] / h, 5), round(tbox[2] / w, 5),
                                      round(tbox[3] / h, 5)]]
            items.append(item)
            positives.append(cid)
        else:
            negatives.append(cid)
        _link(root / "keyframes" / f"{cid}.jpg", out / "frames" / f"{cid}.jpg")
        _link(root / "wav" / f"{cid}.wav", out / "audio" / f"{cid}.wav")
    out.mkdir(parents=True, exist_ok=True)
    (out / "vggss.json").write_text(json.dumps(items))
    (out / "vggss_test.csv").write_text("".join(f"{c}\n" for c in positives))
    (out / "vggss_test_plus_silent.csv").write_text("video,audio,label\n" + "".join(f"{c},{c},non-sounding\n"
                                                                                    for c in negatives))
    return out


def export_localization_package(world_root: str | os.PathLike, out: str | os.PathLike,
                                splits: tuple[str, ...] = ("test",)) -> Path:
    """Write a generated world's clips of ``splits`` as a VGG-SS-style benchmark package under ``out``
    (``export_vggss``'s layout), from the world's ``gt.csv`` / ``keyframes/`` / ``wav/``."""
    root = Path(world_root)
    with open(root / "gt.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return export_vggss(root, rows, Path(out), tuple(splits))


def export_flickr(root: Path, rows: list[dict], annotators: int = 3) -> Path:
    """flickr/Annotations/<id>.xml (one <object><bbox> per annotator) + frames/ + audio/.
    Annotator 1 is the exact box; the others jitter each side by at most 1 px (deterministic)."""
    out = root / "flickr"
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    for r in _loc_rows(rows):
        w, h = int(r["width"]), int(r["height"])
        box = np.array([int(r[f"mid_box_{k}"]) for k in ("x0", "y0", "x1", "y1")])
        rng = np.random.default_rng([int(r["seed"]), int(r["index"]), 0xF1])
        ann = ET.Element("annotation")
        ET.SubElement(ann, "filename").text = f"{r['clip_id']}.jpg"
        size = ET.SubElement(ann, "size")
        ET.SubElement(size, "width").text = str(w)
        ET.SubElement(size, "height").text = str(h)
        ET.SubElement(size, "depth").text = "3"
        for a in range(annotators):
            b = box if a == 0 else box + rng.integers(-1, 2, size=4)
            b = np.clip(b, 0, [w, h, w, h])
            obj = ET.SubElement(ann, "object")
            bb = ET.SubElement(obj, "bbox")
            ET.SubElement(bb, "annotator").text = str(a + 1)
            for k, v in zip(("xmin", "ymin", "xmax", "ymax"), b):
                ET.SubElement(bb, k).text = str(int(v))
        ET.ElementTree(ann).write(out / "Annotations" / f"{r['clip_id']}.xml")
        _link(root / "keyframes" / f"{r['clip_id']}.jpg", out / "frames" / f"{r['clip_id']}.jpg")
        _link(root / "wav" / f"{r['clip_id']}.wav", out / "audio" / f"{r['clip_id']}.wav")
    return out


def export_esc50(root: Path, rows: list[dict]) -> Path:
    """esc50/audio/{fold}-{index}-A-{target}.wav + esc50/meta/esc50.csv; fold = group mod 5 + 1."""
    out = root / "esc50"
    (out / "meta").mkdir(parents=True, exist_ok=True)
    with open(out / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for r in rows:
            if int(r["silent"]):
                continue
            fold = (int(r["group"]) - 1) % 5 + 1
            name = f"{fold}-{int(r['index'])}-A-{int(r['source_index'])}.wav"
            w.writerow([name, fold, r["source_index"], r["source_class"], r["source_class"] in ESC10_CLASSES, r["index"], "A"])
            _link(root / "wav" / f"{r['clip_id']}.wav", out / "audio" / name)
    return out


def export_all(root: Path, rows: list[dict], preset) -> dict[str, Path]:
    root = Path(root)
    rows = [{k: str(v) for k, v in r.items()} for r in rows]
    return {
        "kinetics": export_kinetics(root, rows), "ucf101": export_ucf101(root, rows),
        "hmdb51": export_hmdb51(root, rows), "vggss": export_vggss(root, rows),
        "flickr": export_flickr(root, rows, preset.flickr_annotators), "esc50": export_esc50(root, rows),
    }
