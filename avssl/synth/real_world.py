"""A second embedded world built from recorded sounds and real cut-out pictures (Tux Paint stamps).

Each clip: a procedural background (avssl.synth.render.background) with 0..k silent
distractor cut-outs and one *sounding* cut-out, whose own recording is placed at random
times with random gain over background noise. The sounding picture grows and hops with
its sound's loudness envelope (per frame), so audio-visual sync is learnable; distractors
drift and half of them pulse with the envelope of a recording that is *not* playing, so
only listening tells them apart. Off-screen clips play a source that is not drawn; silent
clips hold only noise. Whole instances (recording + picture) are held out: the test split
uses them as sounding sources and the train split never shows or plays them.

Outputs follow the procedural world (avssl.synth.generate): videos/, wav/, keyframes/,
gt/<clip_id>.json (per-frame boxes of every drawn cut-out, taken from the alpha mask that
was blended), gt.csv, train.txt/test.txt video lists, and exports kinetics/, vggss/,
flickr/ (the procedural world's writers) and esc50/ (folds by recording instance).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from avssl.utils.errors import UserError

from .real_catalog import (StampInstance, StampsNotFoundError, build_catalogue, held_out_instances, load_picture,
                           load_recording, stamps_dir)
from .generate import run_clip_jobs
from .render import _mask_boxes, background

log = logging.getLogger(__name__)
REAL_GENERATOR_VERSION = 1

__all__ = ["RealWorldPreset", "REAL_PRESETS", "get_real_preset", "generate_real_world", "synthesize_real_clip",
           "load_real_world", "StampsNotFoundError", "RealWorldInfo"]


@dataclass(frozen=True)
class RealWorldPreset:
    name: str
    num_clips: int
    width: int
    height: int
    fps: float
    duration: float
    audio_rate: int
    test_share: float = 0.2  # clips whose sounding source is a held-out instance
    heldout_share: float = 0.25  # share of each class's instances held out
    offscreen_share: float = 0.1
    silent_share: float = 0.1
    max_distractors: int = 2
    size: tuple[float, float] = (0.32, 0.46)  # cut-out's longest side, fraction of the short side
    pulse: float = 0.35  # sounding cut-out's extra scale at full loudness
    hop: float = 0.15  # its upward hop at full loudness, fraction of its height
    events: tuple[int, int] = (1, 3)  # placements of the recording per clip
    gain: tuple[float, float] = (0.35, 1.0)
    snr_db: tuple[float, float] = (6.0, 24.0)
    crf: int = 23
    flickr_annotators: int = 3

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "RealWorldPreset":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown real-world preset keys: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


REAL_PRESETS: dict[str, RealWorldPreset] = {
    "real_tiny": RealWorldPreset("real_tiny", num_clips=16, width=64, height=64, fps=16.0, duration=2.0, audio_rate=24000),
    "real_default": RealWorldPreset("real_default", num_clips=400, width=112, height=112, fps=16.0, duration=3.0,
                                    audio_rate=24000),
}


def get_real_preset(preset) -> RealWorldPreset:
    """A preset by name, a dict / yaml file of RealWorldPreset fields, or as given."""
    if isinstance(preset, RealWorldPreset):
        return preset
    if isinstance(preset, dict):
        return RealWorldPreset.from_dict(preset)
    if isinstance(preset, str) and preset in REAL_PRESETS:
        return REAL_PRESETS[preset]
    p = Path(str(preset))
    if p.suffix in (".yaml", ".yml") and p.exists():
        from omegaconf import OmegaConf

        return RealWorldPreset.from_dict(OmegaConf.to_container(OmegaConf.load(p), resolve=True))
    raise UserError(f"unknown real-world preset {preset!r}; choose one of {sorted(REAL_PRESETS)} or a yaml file")


# ---------------------------------------------------------------- assets (loaded once per process)

_ASSETS: dict = {}


def _assets(rate: int, max_side: int) -> dict:
    """Catalogue + decoded recordings and pictures, cached (the parent loads them before forking)."""
    key = (str(stamps_dir()), rate, max_side)  # stamps_dir raises StampsNotFoundError when absent
    if key not in _ASSETS:
        cat = build_catalogue()
        insts = [i for v in cat.values() for i in v]
        _ASSETS[key] = {
            "catalogue": cat, "classes": list(cat),
            "sound": {i.name: load_recording(i.sound, rate) for i in insts},
            "picture": {i.name: load_picture(i.picture, max_side) for i in insts},
        }
    return _ASSETS[key]


# ---------------------------------------------------------------- plan


def world_labels(cat: dict[str, list[StampInstance]], preset: RealWorldPreset, seed: int) -> dict:
    """Balanced classes, exact-count test/off-screen/silent flags and the held-out instance set."""
    rng = np.random.default_rng([seed, 0xA55])
    n, classes = preset.num_clips, list(cat)
    label = rng.permutation(np.arange(n) % len(classes))
    test = np.zeros(n, bool)
    test[rng.permutation(n)[: int(round(preset.test_share * n))]] = True
    order = rng.permutation(n)
    n_off, n_sil = int(round(preset.offscreen_share * n)), int(round(preset.silent_share * n))
    off, sil = np.zeros(n, bool), np.zeros(n, bool)
    off[order[:n_off]] = True
    sil[order[n_off:n_off + n_sil]] = True
    return {"label": label, "test": test, "offscreen": off, "silent": sil,
            "held_out": sorted(held_out_instances(cat, seed, preset.heldout_share))}


def _frame_envelope(sig: np.ndarray, rate: int, times: np.ndarray, fps: float) -> np.ndarray:
    """RMS of `sig` in a window of one frame period centred on each frame time."""
    half = int(round(rate / fps / 2))
    out = np.zeros(len(times))
    for k, t in enumerate(times):
        c = int(round(t * rate))
        seg = sig[max(c - half, 0): c + half + 1]
        out[k] = np.sqrt(np.mean(seg**2)) if len(seg) else 0.0
    return out


def _place_recording(rec: np.ndarray, n: int, rate: int, rng: np.random.Generator, preset) -> tuple[np.ndarray, list[dict]]:
    """The recording placed 1..k times at random starts with random gains (may run off either end)."""
    out = np.zeros(n)
    events = []
    for _ in range(int(rng.integers(preset.events[0], preset.events[1] + 1))):
        gain = float(rng.uniform(*preset.gain))
        L = len(rec)
        if L >= n:  # long recording: a random window of it fills the clip
            off = int(rng.integers(0, L - n + 1))
            start, seg = 0, rec[off:off + n]
        else:
            off = 0
            start = int(rng.integers(-L // 3, n - L // 3))
            seg = rec
        a0, a1 = max(start, 0), min(start + len(seg), n)
        if a1 > a0:
            out[a0:a1] += gain * seg[a0 - start:a1 - start]
        events.append({"t": round(start / rate, 6), "gain": round(gain, 4), "offset": round(off / rate, 6)})
        if L >= n:
            break
    return out, events


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS background: brown rumble (high-passed) plus hiss."""
    x = np.cumsum(rng.standard_normal(n)) * 0.02
    x -= np.convolve(x, np.ones(256) / 256, mode="same")
    x += 0.3 * rng.standard_normal(n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def synthesize_real_clip(index: int, seed: int, preset="real_tiny", labels: dict | None = None,
                         skip_objects: tuple[int, ...] = (), alpha_of: int | None = None):
    """Raw clip from (seed, index): frames uint8 [T,H,W,3], audio float32 [1,S], GT dict. Deterministic.

    Checks of the ground truth against the pixels: `skip_objects` leaves those draw-order
    indices out of the picture (everything else identical); `alpha_of=k` returns instead the
    blended opacity (0..255, grey) of object k alone on black, without noise."""
    from PIL import Image

    preset = get_real_preset(preset)
    side = min(preset.width, preset.height)
    A = _assets(preset.audio_rate, max(32, int(side * preset.size[1] * (1 + preset.pulse)) + 2))
    cat, classes = A["catalogue"], A["classes"]
    labels = world_labels(cat, preset, seed) if labels is None else labels
    held = set(labels["held_out"])
    rng = np.random.default_rng([seed, index, 0x5EA1])
    T, n, rate = int(round(preset.duration * preset.fps)), int(round(preset.duration * preset.audio_rate)), preset.audio_rate
    times = np.arange(T) / preset.fps
    label = int(labels["label"][index])
    is_test, off, sil = bool(labels["test"][index]), bool(labels["offscreen"][index]), bool(labels["silent"][index])

    def pick(lbl: int, test: bool) -> StampInstance:
        pool = [i for i in cat[classes[lbl]] if (i.name in held) == test]
        return pool[int(rng.integers(len(pool)))]

    main = pick(label, is_test)
    n_dis = int(rng.integers(0, preset.max_distractors + 1))
    others = [c for c in range(len(classes)) if c != label]
    dis_labels = [int(c) for c in rng.choice(others, size=n_dis, replace=False)] if n_dis else []
    # test clips may show any instance as a distractor; train clips only seen ones
    distractors = [pick(c, False) if not is_test or rng.random() < 0.5 else pick(c, True) for c in dis_labels]

    # ---- audio: the source's own recording over noise
    source, events = (np.zeros(n), [])
    if not sil:
        source, events = _place_recording(A["sound"][main.name], n, rate, rng, preset)
    loud = float(rng.uniform(0.45, 0.85))
    snr = float(rng.uniform(*preset.snr_db))
    peak = np.abs(source).max()
    if peak > 0:
        source *= loud / peak
    noise = _noise(n, rng)
    src_rms = float(np.sqrt(np.mean(source**2)))
    noise_rms = src_rms / 10 ** (snr / 20) if src_rms > 0 else float(rng.uniform(0.005, 0.03))
    audio = source + noise_rms * noise
    audio *= min(1.0, 0.95 / (np.abs(audio).max() + 1e-12))
    env = _frame_envelope(source, rate, times, preset.fps)
    env_n = (env / env.max()) ** 0.7 if env.max() > 0 else env

    # ---- objects: (instance, scale per frame, dy per frame, centre, sounding)
    objs = []
    for inst in distractors + [main]:
        sounding = inst is main and not sil
        if inst is main and off:
            continue
        base = float(rng.uniform(*preset.size)) * side
        if sounding:
            drive = env_n
        elif rng.random() < 0.5:  # pulses with a recording nobody hears
            other = classes[int(rng.integers(len(classes)))]
            decoy = cat[other][int(rng.integers(len(cat[other])))]
            dsig, _ = _place_recording(A["sound"][decoy.name], n, rate, rng, preset)
            de = _frame_envelope(dsig, rate, times, preset.fps)
            drive = (de / de.max()) ** 0.7 if de.max() > 0 else de
        else:
            drive = np.zeros(T)
        scale = 1.0 + preset.pulse * drive
        pic = A["picture"][inst.name]
        aspect = pic.height / pic.width
        w0, h0 = (base, base * aspect) if aspect <= 1 else (base / aspect, base)
        wmax, hmax = w0 * (1 + preset.pulse), h0 * (1 + preset.pulse) * (1 + preset.hop)
        # anchor (bottom-centre) so the largest pose stays inside the frame; slow linear drift
        lo_x, hi_x = wmax / 2 + 1, preset.width - wmax / 2 - 1
        lo_y, hi_y = hmax + 1, preset.height - 1
        p0 = np.array([rng.uniform(lo_x, max(lo_x, hi_x)), rng.uniform(lo_y, max(lo_y, hi_y))])
        p1 = p0 + rng.normal(0, 0.06 * side, size=2)
        p1 = np.clip(p1, [lo_x, lo_y], [max(lo_x, hi_x), max(lo_y, hi_y)])
        frac = times / max(preset.duration, 1e-6)
        cx = p0[0] + (p1[0] - p0[0]) * frac
        by = p0[1] + (p1[1] - p0[1]) * frac - preset.hop * h0 * drive
        objs.append({"inst": inst, "sounding": sounding, "w0": w0, "h0": h0, "scale": scale, "cx": cx, "by": by,
                     "drive": drive})

    # ---- pixels: background, then cut-outs alpha-blended in draw order (sounding one last)
    bg = background(SimpleNamespace(height=preset.height, width=preset.width, group=int(rng.integers(1, 26)),
                                    extra={"bg_seed": int(rng.integers(0, 2**31 - 1))}), seed)
    img = np.broadcast_to(bg, (T, preset.height, preset.width, 3)).copy()
    if alpha_of is not None:
        img[:] = 0.0
    boxes = []
    for k, ob in enumerate(objs):
        pic = A["picture"][ob["inst"].name]
        bx = np.full((T, 4), -1, dtype=np.int64)
        for t in range(T):
            w = max(1, int(round(ob["w0"] * ob["scale"][t])))
            h = max(1, int(round(ob["h0"] * ob["scale"][t])))
            rgba = np.asarray(pic.resize((w, h), Image.BILINEAR).convert("RGBa"), dtype=np.float64)
            x0, y0 = int(round(ob["cx"][t] - w / 2)), int(round(ob["by"][t] - h))
            fx0, fy0 = max(x0, 0), max(y0, 0)
            fx1, fy1 = min(x0 + w, preset.width), min(y0 + h, preset.height)
            if fx1 <= fx0 or fy1 <= fy0:
                continue
            win = rgba[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
            alpha = win[..., 3:] / 255.0
            mask = alpha[..., 0] >= 0.5
            if mask.any():
                bx[t] = _mask_boxes(mask[None])[0] + np.array([fx0, fy0, fx0, fy0])
            if alpha_of is not None:
                if k == alpha_of:
                    img[t, fy0:fy1, fx0:fx1] = 255.0 * alpha
            elif k not in skip_objects:
                region = img[t, fy0:fy1, fx0:fx1]
                region[:] = region * (1.0 - alpha) + win[..., :3]  # RGBa is premultiplied
        boxes.append(bx)
    if alpha_of is None:
        img += np.random.default_rng([seed, index, 7]).normal(0, 2.0, size=img.shape)  # sensor noise
    frames = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    # ---- ground truth (same keys as the procedural world where they apply)
    clip_id = f"clip_{index:06d}"
    objects = [{
        "class": ob["inst"].label, "class_index": classes.index(ob["inst"].label), "instance": ob["inst"].name,
        "held_out": ob["inst"].name in held, "picture": str(ob["inst"].picture), "sounding": ob["sounding"],
        "scale": [round(float(s), 4) for s in ob["scale"]], "drive": [round(float(d), 4) for d in ob["drive"]],
        "boxes": b.tolist(),
    } for ob, b in zip(objs, boxes)]
    sounding = next((k for k, o in enumerate(objects) if o["sounding"]), None)
    gt = {
        "clip_id": clip_id, "index": index, "seed": seed, "split": "test" if is_test else "train", "group": 0,
        "path": f"videos/{clip_id}.mp4", "container": ".mp4", "width": preset.width, "height": preset.height,
        "fps": preset.fps, "num_frames": T, "duration": preset.duration, "audio_rate": rate, "num_samples": n,
        "frame_times": [round(float(x), 6) for x in times],
        "source_class": main.label, "source_index": label, "source_instance": main.name,
        "source_recording": str(main.sound), "offscreen": off, "silent": sil, "sounding_object": sounding,
        "sound": None if sil else {"instance": main.name, "recording": str(main.sound), "loudness": round(loud, 4),
                                   "snr_db": round(snr, 3), "placements": events},
        "audio_events": events if not sil else [],
        "audio_envelope": [round(float(e), 6) for e in env],
        "objects": objects,
        "box_format": "x0,y0,x1,y1 pixels, x1/y1 exclusive, -1 = not in frame; from the blended alpha >= 0.5",
    }
    return frames, audio[None].astype(np.float32), gt


# ---------------------------------------------------------------- writing

GT_COLUMNS = ["clip_id", "index", "path", "split", "source_class", "source_index", "source_instance", "held_out",
              "offscreen", "silent", "num_objects", "sounding_object", "instances", "num_frames", "fps", "width",
              "height", "duration", "audio_rate", "num_samples", "container", "seed", "mid_frame",
              "mid_box_x0", "mid_box_y0", "mid_box_x1", "mid_box_y1"]


def _row(gt: dict, held: set[str]) -> dict:
    mid = gt["num_frames"] // 2
    s = gt["sounding_object"]
    box = gt["objects"][s]["boxes"][mid] if s is not None else [-1] * 4
    return {
        "clip_id": gt["clip_id"], "index": gt["index"], "path": gt["path"], "split": gt["split"],
        "source_class": gt["source_class"], "source_index": gt["source_index"], "source_instance": gt["source_instance"],
        "held_out": int(gt["source_instance"] in held), "offscreen": int(gt["offscreen"]), "silent": int(gt["silent"]),
        "num_objects": len(gt["objects"]), "sounding_object": -1 if s is None else s,
        "instances": ";".join(o["instance"] for o in gt["objects"]), "num_frames": gt["num_frames"], "fps": gt["fps"],
        "width": gt["width"], "height": gt["height"], "duration": gt["duration"], "audio_rate": gt["audio_rate"],
        "num_samples": gt["num_samples"], "container": gt["container"], "seed": gt["seed"], "mid_frame": mid,
        "mid_box_x0": box[0], "mid_box_y0": box[1], "mid_box_x1": box[2], "mid_box_y1": box[3],
    }


def _worker_init():
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # torch is optional for the generator
        pass


def _make_one(args) -> dict:
    from PIL import Image

    from avssl.io.writer import write_av, write_wav

    index, seed, preset, labels, root = args
    frames, audio, gt = synthesize_real_clip(index, seed, preset, labels)
    root = Path(root)
    write_av(root / gt["path"], frames, gt["fps"], audio, gt["audio_rate"], crf=preset.crf)
    write_wav(root / "wav" / f"{gt['clip_id']}.wav", audio, gt["audio_rate"])
    (root / "keyframes").mkdir(exist_ok=True)
    Image.fromarray(frames[gt["num_frames"] // 2]).save(root / "keyframes" / f"{gt['clip_id']}.jpg", quality=95)
    tmp = root / "gt" / f".{gt['clip_id']}.json.tmp"
    tmp.write_text(json.dumps(gt))
    os.replace(tmp, root / "gt" / f"{gt['clip_id']}.json")
    return _row(gt, set(labels["held_out"]))


def export_esc50_by_instance(root: Path, rows: list[dict], classes: list[str]) -> Path:
    """esc50/audio/{fold}-{index}-A-{target}.wav + meta/esc50.csv of every clip with a playing recording.
    fold = 1 + (rank of the recording instance within its class) mod 5: no recording spans two folds,
    so a probe's test fold always holds recordings it never trained on."""
    out = root / "esc50"
    (out / "meta").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    inst_rank: dict[str, int] = {}
    for c in classes:
        names = sorted({r["source_instance"] for r in rows if r["source_class"] == c and not int(r["silent"])})
        inst_rank.update({nm: i for i, nm in enumerate(names)})
    from .export import _link

    with open(out / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for r in rows:
            if int(r["silent"]):
                continue
            fold = inst_rank[r["source_instance"]] % 5 + 1
            name = f"{fold}-{int(r['index'])}-A-{int(r['source_index'])}.wav"
            w.writerow([name, fold, r["source_index"], r["source_class"], False, r["source_instance"], "A"])
            _link(root / "wav" / f"{r['clip_id']}.wav", out / "audio" / name)
    return out


@dataclass
class RealWorldInfo:
    root: Path
    preset: RealWorldPreset
    seed: int
    num_clips: int
    source_classes: list[str]
    held_out: list[str]
    gt_csv: Path
    exports: dict
    seconds: float = 0.0
    reused: bool = False

    def rows(self) -> list[dict]:
        with open(self.gt_csv, newline="") as f:
            return list(csv.DictReader(f))

    def clip_gt(self, clip_id: str) -> dict:
        return json.loads((self.root / "gt" / f"{clip_id}.json").read_text())

    def video_paths(self, split: str | None = None) -> list[Path]:
        return [self.root / r["path"] for r in self.rows() if split is None or r["split"] == split]


def load_real_world(out_dir) -> RealWorldInfo:
    root = Path(out_dir)
    meta = json.loads((root / "world.json").read_text())
    return RealWorldInfo(root, RealWorldPreset.from_dict(meta["preset"]), meta["seed"], meta["num_clips"],
                         meta["source_classes"], meta["held_out"], root / "gt.csv",
                         {k: root / v for k, v in meta["exports"].items()}, meta.get("seconds", 0.0), True)


def generate_real_world(out_dir, preset="real_tiny", seed: int = 0, workers: int | None = None,
                        progress: bool = True) -> RealWorldInfo:
    """Generate (or reuse, when world.json records the same preset/seed/version) the recorded-sound world.

    Raises StampsNotFoundError when the stamps are not installed (callers may fall back to
    `avssl.synth.generate_world`)."""
    from .export import export_flickr, export_kinetics, export_vggss

    preset = get_real_preset(preset)
    root = Path(out_dir)
    sig = {"generator": "real", "generator_version": REAL_GENERATOR_VERSION, "seed": int(seed), "preset": preset.to_dict()}
    marker = root / "world.json"
    if marker.exists():
        try:
            meta = json.loads(marker.read_text())
            if all(meta.get(k) == v for k, v in sig.items()):
                return load_real_world(root)
        except (json.JSONDecodeError, KeyError):
            pass
        marker.unlink()
    t0 = time.perf_counter()
    side = min(preset.width, preset.height)
    A = _assets(preset.audio_rate, max(32, int(side * preset.size[1] * (1 + preset.pulse)) + 2))  # before fork
    labels = world_labels(A["catalogue"], preset, seed)
    (root / "gt").mkdir(parents=True, exist_ok=True)
    jobs = [(i, seed, preset, labels, str(root)) for i in range(preset.num_clips)]
    rows = run_clip_jobs(_make_one, jobs, workers, f"real world[{preset.name}]", progress, _worker_init)
    with open(root / "gt.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=GT_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    for split in ("train", "test"):
        (root / f"{split}.txt").write_text("".join(f"{(root / r['path']).resolve()}\n" for r in rows if r["split"] == split))
    srows = [{k: str(v) for k, v in r.items()} for r in rows]
    exports = {"kinetics": export_kinetics(root, srows), "vggss": export_vggss(root, srows),
               "flickr": export_flickr(root, srows, preset.flickr_annotators),
               "esc50": export_esc50_by_instance(root, srows, A["classes"])}
    seconds = time.perf_counter() - t0
    meta = dict(sig)
    meta.update({
        "num_clips": preset.num_clips, "source_classes": A["classes"], "held_out": labels["held_out"],
        "instances": {c: [i.name for i in v] for c, v in A["catalogue"].items()},
        "exports": {k: str(v.relative_to(root)) for k, v in exports.items()}, "seconds": round(seconds, 2),
        "counts": {"train": sum(r["split"] == "train" for r in rows), "test": sum(r["split"] == "test" for r in rows),
                   "offscreen": sum(r["offscreen"] for r in rows), "silent": sum(r["silent"] for r in rows)},
    })
    tmp = root / ".world.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, marker)
    info = load_real_world(root)
    info.seconds, info.reused = seconds, False
    return info
