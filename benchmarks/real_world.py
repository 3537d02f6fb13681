#!/usr/bin/env python
"""Recorded-sound world benchmark: what pretraining buys on real sounds and pictures (held-out instances).

For a random-init model and every given checkpoint, on the real world's TEST split (sounding
sources are recording+picture instances never shown in pretraining):
  * localization cIoU@0.5 / AUC (avssl-localize on the world's GT), with the centre-prior and
    whole-image baselines that the same run scores;
  * audio->video retrieval R@1/5/10 (avssl-extract over test.txt, avssl.embed.collection_retrieval);
  * ESC-50-style 5-fold audio probe on the world's esc50/ export (folds by recording instance).

    python benchmarks/real_world.py --world data/real_world_default \\
        --ckpt real=runs/avid_real_cpu/checkpoints/latest --ckpt procedural=runs/avid_embedded_cpu/checkpoints/latest \\
        --md /tmp/real_world_table.md
Each tool runs as its own process (the same commands a user types); outputs under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESET = ROOT / "configs" / "experiment" / "avid_embedded_cpu.yaml"


def _flow(x) -> str:
    """A Hydra override value (flow style) for a plain dict / list / scalar."""
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in x) + "]"
    if isinstance(x, bool):
        return "true" if x else "false"
    return "null" if x is None else str(x)


def _preset(section: str) -> str:
    """`section` of the CPU pretraining preset as an override value: the random init gets the same
    model and inputs as the pretrained checkpoints (read, not copied, so they cannot drift)."""
    from omegaconf import OmegaConf

    return _flow(OmegaConf.to_container(OmegaConf.select(OmegaConf.load(PRESET), section)))


def run(cmd: list[str], log: Path) -> float:
    """Run a tool, its output to `log`; seconds taken. Raises with the log's tail on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    if rc:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {rc}):\n" + log.read_text()[-3000:])
    return time.perf_counter() - t0


def localization(world: Path, ckpt: str | None, out: Path) -> dict:
    cmd = [sys.executable, "-m", "avssl", "localize", f"annotations={world}", "annotation_format=world", "split=test",
           f"out_dir={out}", "progress=false", "mp4=false"]
    cmd += [f"checkpoint={ckpt}"] if ckpt else [f"++model={_preset('model')}", f"clip={_preset('data.spec')}",
                                                  f"transforms={_preset('transforms')}"]
    run(cmd, out / "log.txt")
    s = json.loads((out / "report.json").read_text())["eval"]["summaries"]
    return {k: {"ciou@0.5": s[k]["ciou_at"], "auc": s[k]["auc"], "mean_ciou": s[k]["mean_ciou"],
                "n": s[k]["num_samples"]} for k in s}


def retrieval(world: Path, ckpt: str | None, out: Path, clips_per_video: int) -> dict:
    from avssl.embed.api import collection_retrieval

    cmd = [sys.executable, "-m", "avssl", "extract", f"input={(world / 'test.txt').resolve()}", f"out_dir={out}",
           "overwrite=true", f"clips_per_video={clips_per_video}", "progress=false", "num_workers=0", "device=cpu"]
    cmd += [f"checkpoint={ckpt}"] if ckpt else [f"+model={_preset('model')}", f"spec={_preset('data.spec')}"]
    run(cmd, out / "log.txt")
    res = collection_retrieval(out, level="video")
    return {"a2v": res["a2v"], "num_videos": res["num_videos"], "chance": res["chance"]}


def audio_probe(world: Path, ckpt: str | None, out: Path) -> dict:
    cmd = [sys.executable, "-m", "avssl", "probe-audio", "--esc50", str(world / "esc50"), "--out", str(out / "probe.json"),
           "--device", "cpu"]
    cmd += ["--init", "avssl", "--checkpoint", ckpt] if ckpt else ["--init", "scratch", "--audio", "tiny"]
    run(cmd, out / "log.txt")
    return json.loads((out / "probe.json").read_text())


def _get(d: dict, *keys, default=float("nan")):
    for k in keys:
        if isinstance(d, dict) and k in d:
            d = d[k]
        else:
            return default
    return d


def table(results: dict) -> str:
    head = ["model", "cIoU@0.5", "AUC", "centre-prior cIoU/AUC", "whole-image cIoU/AUC", "A->V R@1", "A->V R@5",
            "chance R@1", "audio probe acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        loc, ret, pr = r.get("localization", {}), r.get("retrieval", {}), r.get("audio_probe", {})
        acc = _get(pr, "mean")
        lines.append("| " + " | ".join([
            name, f"{_get(loc, 'model', 'ciou@0.5'):.3f}", f"{_get(loc, 'model', 'auc'):.3f}",
            f"{_get(loc, 'centre_prior', 'ciou@0.5'):.3f} / {_get(loc, 'centre_prior', 'auc'):.3f}",
            f"{_get(loc, 'whole_image', 'ciou@0.5'):.3f} / {_get(loc, 'whole_image', 'auc'):.3f}",
            f"{_get(ret, 'a2v', 'R@1'):.3f}", f"{_get(ret, 'a2v', 'R@5'):.3f}", f"{_get(ret, 'chance', 'R@1'):.3f}",
            f"{acc:.3f}" if isinstance(acc, float) else str(acc)]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="data/real_world_default", help="real world root (generated if absent)")
    ap.add_argument("--preset", default="real_default")
    ap.add_argument("--ckpt", action="append", default=[], metavar="NAME=PATH", help="checkpoint to evaluate (repeat)")
    ap.add_argument("--no-random", action="store_true", help="skip the random-init row")
    ap.add_argument("--steps", default="localization,retrieval,audio_probe")
    ap.add_argument("--reuse", action="store_true", help="keep results of steps already in --out/results.json")
    ap.add_argument("--clips-per-video", type=int, default=3)
    ap.add_argument("--out", default="outputs/bench_real_world")
    ap.add_argument("--md", default=None, help="also write the table here")
    args = ap.parse_args(argv)

    from avssl.synth.real_world import generate_real_world

    world = Path(args.world)
    info = generate_real_world(world, args.preset, workers=2)
    models: dict[str, str | None] = {} if args.no_random else {"random-init": None}
    for c in args.ckpt:
        name, _, path = c.partition("=")
        if not path:
            ap.error(f"--ckpt wants NAME=PATH, got {c!r}")
        models[name] = path
    steps = args.steps.split(",")
    saved = Path(args.out) / "results.json"
    results: dict[str, dict] = json.loads(saved.read_text()) if args.reuse and saved.exists() else {}
    for name, ckpt in models.items():
        r: dict = results.get(name, {}) if results.get(name, {}).get("checkpoint") == ckpt else {}
        r["checkpoint"] = ckpt
        out = Path(args.out) / name
        if "localization" in steps and "localization" not in r:
            r["localization"] = localization(world, ckpt, out / "localization")
        if "retrieval" in steps and "retrieval" not in r:
            r["retrieval"] = retrieval(world, ckpt, out / "extract", args.clips_per_video)
        if "audio_probe" in steps and "audio_probe" not in r:
            r["audio_probe"] = audio_probe(world, ckpt, out / "audio_probe")
        results[name] = r
        Path(args.out).mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(results, indent=1, default=str))
        print(name, json.dumps(r)[:400], flush=True)
    md = (f"real world `{world}` ({info.num_clips} clips, test split: held-out instances {', '.join(info.held_out)})\n\n"
          + table(results))
    print(md)
    if args.md:
        Path(args.md).write_text(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
