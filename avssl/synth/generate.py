"""Generate the world on disk: encoded clips, ground truth, and the benchmark-format exports.

Layout under `out_dir` (see datasets/README.md):
    world.json                    preset, seed, vocabulary, counts (written last: completion marker)
    gt.csv                        one row per clip
    gt/<clip_id>.json             full per-clip ground truth
    videos/<clip_id>.mp4|.webm    H.264+AAC (or VP9+Opus) clips
    wav/<clip_id>.wav             the clip's audio as 16-bit PCM (source of the audio exports)
    keyframes/<clip_id>.jpg       the middle frame (source of the localization exports)
    kinetics/ ucf101/ hmdb51/ vggss/ flickr/ esc50/   exports (avssl.synth.export)
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .presets import WorldPreset, get_preset
from .render import render_clip
from .sound import synth_audio
from .world import ACTION_HMDB_NAMES, ACTION_UCF_NAMES, ACTIONS, SOURCE_CLASSES, SOURCE_NAMES, make_plan, world_assignments

GENERATOR_VERSION = 3  # 2: larger objects, one distractor at most, pitch set by size; 3: same-class twins, tempo wobble

GT_CSV_COLUMNS = [
    "clip_id", "index", "path", "split", "group", "source_class", "source_index", "action_class",
    "action_index", "offscreen", "silent", "num_objects", "sounding_object", "num_frames", "fps",
    "width", "height", "duration", "audio_rate", "num_samples", "container", "seed", "num_events",
    "mid_frame", "mid_box_x0", "mid_box_y0", "mid_box_x1", "mid_box_y1",
    "twin", "mid_twin_x0", "mid_twin_y0", "mid_twin_x1", "mid_twin_y1",
]


@dataclass
class WorldInfo:
    """What `generate_world` made: where things are and the world's vocabulary."""

    root: Path
    preset: WorldPreset
    seed: int
    num_clips: int
    source_classes: list[str]
    actions: list[str]
    gt_csv: Path
    exports: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0  # generation wall time (0 when reused)
    reused: bool = False

    def rows(self) -> list[dict]:
        """gt.csv as a list of dicts (strings, as in the file)."""
        with open(self.gt_csv, newline="") as f:
            return list(csv.DictReader(f))

    def clip_gt(self, clip_id: str) -> dict:
        return json.loads((self.root / "gt" / f"{clip_id}.json").read_text())

    def video_paths(self, split: str | None = None) -> list[Path]:
        return [self.root / r["path"] for r in self.rows() if split is None or r["split"] == split]


def clip_ground_truth(plan, boxes, notes) -> dict:
    """Per-clip GT dict (the JSON written to gt/<id>.json)."""
    objects = []
    t = np.arange(plan.num_frames) / plan.fps
    for k, (ob, bx) in enumerate(zip(plan.objects, boxes)):
        cls = SOURCE_CLASSES[ob.class_index]
        objects.append({
            "class": cls.name, "class_index": ob.class_index, "action": ACTIONS[ob.motion.action],
            "action_index": ob.motion.action, "sounding": bool(ob.sounding and ob is plan.sound_object),
            "twin": bool(ob.twin),
            "colour": list(cls.colour), "shape": cls.shape, "texture": cls.texture,
            "radius": round(ob.motion.radius, 3), "event_rate": round(ob.motion.rate, 4),
            "visual_events": [round(float(e), 6) for e in ob.motion.events(plan.duration)],
            "boxes": bx.tolist(),
        })
    sounding = next((k for k, o in enumerate(objects) if o["sounding"]), None)
    twin = next((k for k, o in enumerate(objects) if o["twin"]), None)
    sound_ob = plan.sound_object
    return {
        "clip_id": plan.clip_id, "index": plan.index, "seed": plan.seed, "split": plan.split, "group": plan.group,
        "path": f"videos/{plan.clip_id}{plan.container}", "container": plan.container,
        "width": plan.width, "height": plan.height, "fps": plan.fps, "num_frames": plan.num_frames,
        "duration": plan.duration, "audio_rate": plan.audio_rate, "num_samples": plan.num_samples,
        "frame_times": [round(float(x), 6) for x in t],
        "source_class": SOURCE_NAMES[plan.source_class], "source_index": plan.source_class,
        "action_class": ACTIONS[plan.action], "action_index": plan.action,
        "offscreen": plan.offscreen, "silent": plan.silent,
        "sounding_object": sounding,
        "twin_object": twin,  # a silent object of the sounding object's class and size (None: no twin)
        "sound": None if sound_ob is None else {
            "class": SOURCE_NAMES[sound_ob.class_index], "pitch_hz": round(plan.pitch_factor, 3),
            "loudness": round(plan.loudness, 4), "snr_db": round(plan.snr_db, 3),
            "action": ACTIONS[sound_ob.motion.action], "event_rate": round(sound_ob.motion.rate, 4),
        },
        "audio_events": notes,
        "visual_events": [] if sounding is None else objects[sounding]["visual_events"],
        "objects": objects,
        "box_format": "x0,y0,x1,y1 pixels, x1/y1 exclusive, -1 = not in frame",
    }


def _csv_row(gt: dict) -> dict:
    mid = gt["num_frames"] // 2
    box = [-1, -1, -1, -1]
    if gt["sounding_object"] is not None:
        box = gt["objects"][gt["sounding_object"]]["boxes"][mid]
    twin = gt.get("twin_object")
    tbox = gt["objects"][twin]["boxes"][mid] if twin is not None else [-1, -1, -1, -1]
    return {
        "clip_id": gt["clip_id"], "index": gt["index"], "path": gt["path"], "split": gt["split"],
        "group": gt["group"], "source_class": gt["source_class"], "source_index": gt["source_index"],
        "action_class": gt["action_class"], "action_index": gt["action_index"],
        "offscreen": int(gt["offscreen"]), "silent": int(gt["silent"]), "num_objects": len(gt["objects"]),
        "sounding_object": -1 if gt["sounding_object"] is None else gt["sounding_object"],
        "num_frames": gt["num_frames"], "fps": gt["fps"], "width": gt["width"], "height": gt["height"],
        "duration": gt["duration"], "audio_rate": gt["audio_rate"], "num_samples": gt["num_samples"],
        "container": gt["container"], "seed": gt["seed"], "num_events": len(gt["audio_events"]),
        "mid_frame": mid, "mid_box_x0": box[0], "mid_box_y0": box[1], "mid_box_x1": box[2], "mid_box_y1": box[3],
        "twin": int(twin is not None), "mid_twin_x0": tbox[0], "mid_twin_y0": tbox[1], "mid_twin_x1": tbox[2],
        "mid_twin_y1": tbox[3],
    }


def synthesize_clip(index: int, seed: int, preset: WorldPreset, labels=None):
    """Raw (unencoded) clip: frames uint8 [T,H,W,3], audio float32 [1,S], GT dict. Deterministic."""
    preset = get_preset(preset)
    labels = world_assignments(preset.num_clips, seed, preset) if labels is None else labels
    plan = make_plan(index, seed, preset, labels)
    frames, boxes = render_clip(plan)
    audio, notes = synth_audio(plan)
    return frames, audio, clip_ground_truth(plan, boxes, notes)


def _worker_init():
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # torch is optional for the generator
        pass


def _make_one(args):
    from PIL import Image

    from avssl.io.writer import write_av, write_wav

    index, seed, preset, labels, root = args
    frames, audio, gt = synthesize_clip(index, seed, preset, labels)
    root = Path(root)
    write_av(root / gt["path"], frames, gt["fps"], audio, gt["audio_rate"], crf=preset.crf)
    write_wav(root / "wav" / f"{gt['clip_id']}.wav", audio, gt["audio_rate"])
    (root / "keyframes").mkdir(exist_ok=True)
    Image.fromarray(frames[gt["num_frames"] // 2]).save(root / "keyframes" / f"{gt['clip_id']}.jpg", quality=95)
    (root / "gt").mkdir(exist_ok=True)
    tmp = root / "gt" / f".{gt['clip_id']}.json.tmp"
    tmp.write_text(json.dumps(gt))
    os.replace(tmp, root / "gt" / f"{gt['clip_id']}.json")
    return _csv_row(gt)


def _signature(preset: WorldPreset, seed: int) -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": int(seed), "preset": preset.to_dict()}


def load_world(out_dir: str | os.PathLike) -> WorldInfo:
    """WorldInfo of a completely generated world (raises FileNotFoundError otherwise)."""
    root = Path(out_dir)
    meta = json.loads((root / "world.json").read_text())
    preset = WorldPreset.from_dict(meta["preset"])
    return WorldInfo(
        root=root, preset=preset, seed=meta["seed"], num_clips=meta["num_clips"],
        source_classes=meta["source_classes"], actions=meta["actions"], gt_csv=root / "gt.csv",
        exports={k: root / v for k, v in meta["exports"].items()}, seconds=meta.get("seconds", 0.0), reused=True,
    )



def run_clip_jobs(make_one, jobs: list, workers: int | None, desc: str, progress: bool,
                  worker_init=None) -> list[dict]:
    """Run `make_one(job) -> GT row` over `jobs` (in forked worker processes when workers > 1)
    with a progress bar; rows come back sorted by clip index. Shared by every generated world."""
    workers = workers or os.cpu_count() or 1
    rows: list[dict] = []
    bar = tqdm(total=len(jobs), desc=desc, unit="clip", disable=not progress)
    if workers <= 1:
        for j in jobs:
            rows.append(make_one(j))
            bar.update()
    else:
        with get_context("fork").Pool(workers, initializer=worker_init) as pool:
            for row in pool.imap_unordered(make_one, jobs, chunksize=max(1, len(jobs) // (workers * 8))):
                rows.append(row)
                bar.update()
    bar.close()
    rows.sort(key=lambda r: r["index"])
    return rows

def generate_world(out_dir: str | os.PathLike, preset: str | dict | WorldPreset = "tiny", seed: int = 0,
                   workers: int | None = None, progress: bool = True) -> WorldInfo:
    """Generate (or reuse) the world for (preset, seed) under `out_dir`.

    Idempotent: if `out_dir/world.json` records this exact preset, seed and generator
    version, nothing is regenerated. Otherwise clips are generated in `workers`
    processes (default: all CPUs) and all exports are written.
    """
    from .export import export_all

    preset = get_preset(preset)
    root = Path(out_dir)
    sig = _signature(preset, seed)
    marker = root / "world.json"
    if marker.exists():
        try:
            meta = json.loads(marker.read_text())
            if all(meta.get(k) == v for k, v in sig.items()):
                return load_world(root)
        except (json.JSONDecodeError, KeyError):
            pass
        marker.unlink()  # a different world lives here: regenerate over it
    t0 = time.perf_counter()
    (root / "gt").mkdir(parents=True, exist_ok=True)
    labels = world_assignments(preset.num_clips, seed, preset)
    jobs = [(i, seed, preset, labels, str(root)) for i in range(preset.num_clips)]
    rows = run_clip_jobs(_make_one, jobs, workers, f"world[{preset.name}]", progress, _worker_init)
    gt_csv = root / "gt.csv"
    with open(gt_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=GT_CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    exports = export_all(root, rows, preset)
    seconds = time.perf_counter() - t0
    meta = dict(sig)
    meta.update({
        "num_clips": preset.num_clips, "source_classes": list(SOURCE_NAMES), "actions": list(ACTIONS),
        "actions_ucf": list(ACTION_UCF_NAMES), "actions_hmdb": list(ACTION_HMDB_NAMES),
        "exports": {k: str(v.relative_to(root)) for k, v in exports.items()}, "seconds": round(seconds, 2),
        "counts": {
            "train": sum(r["split"] == "train" for r in rows), "test": sum(r["split"] == "test" for r in rows),
            "offscreen": sum(r["offscreen"] for r in rows), "silent": sum(r["silent"] for r in rows),
            "webm": sum(r["container"] == ".webm" for r in rows), "twin": sum(r["twin"] for r in rows),
        },
    })
    tmp = root / ".world.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, marker)
    info = load_world(root)
    info.seconds, info.reused = seconds, False
    return info
