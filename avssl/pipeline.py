"""The main job: generated world -> AVID -> CMA -> fine-tuning -> localization -> embeddings.

Each stage is one of the console commands (``avssl-<command>`` with Hydra overrides). The job
composes that command's config (the packaged configs) with exactly the overrides it prints, then
calls the same library function the command calls, so the printed line re-runs the stage alone:

    >>> from avssl.pipeline import run_main_job, demo_config
    >>> results = run_main_job(demo_config("tiny", out_dir="/tmp/demo"))   # or: avssl-demo demo=tiny

A finished stage leaves ``<out_dir>/stages/<stage>.json`` (its command, summary and outputs);
a re-run skips it while that record, its outputs and the records of the stages it depends on are
unchanged. A stage killed half-way resumes inside its own tool (checkpoints, finished shards).
Every measured figure has the random-init figure of the same protocol beside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from avssl.utils.configs import compose_config, hydra_value

log = logging.getLogger("avssl.demo")

STAGES = ("world", "avid", "cma", "finetune", "localize", "extract")
DEPENDS = {"world": (), "avid": ("world",), "cma": ("avid",), "finetune": ("cma",), "localize": ("cma",),
           "extract": ("cma",)}


# ============================================================================================
# Hydra: compose a tool's config from the same overrides the printed command carries
# ============================================================================================


def compose(config_name: str, overrides: list[str]):
    """The `DictConfig` that ``avssl-<config_name> <overrides>`` would see (the packaged configs)."""
    return compose_config(config_name, overrides)


def _plain(x):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(x, resolve=True, enum_to_str=True) if OmegaConf.is_config(x) else x


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b or (isinstance(a, (str, Path)) and isinstance(b, (str, Path)) and str(a) == str(b))


def minimal_overrides(config_name: str, base: list[str], wanted: dict[str, Any], extra: list[str] = (),
                      always: tuple[str, ...] = ()) -> list[str]:
    """``base`` + the overrides that give each ``wanted`` key its value (only where the composed
    value differs, or where the key is named in ``always``: settings that define a run, shown even
    when they equal the default) + ``extra``.

    So the printed command carries only what the job changes (a user's copy stays short). Hydra
    merges a dict override into an existing dict, so dicts are written key by key (``+k.new=v``,
    ``~k.gone``) to end up exactly equal to the wanted value."""
    from omegaconf import OmegaConf

    cfg = compose(config_name, base)
    out = list(base)
    absent = object()
    for key, value in wanted.items():
        now = OmegaConf.select(cfg, key, default=absent)
        if now is absent:  # not in the tool's config: Hydra's append syntax
            out.append(f"+{key}={hydra_value(value)}")
            continue
        diff = _dict_diff(key, _plain(now), value)
        if diff:
            out.extend(diff)
        elif key in always:
            out.append(f"{key}={hydra_value(value)}")
    return out + list(extra)


def _dict_diff(key: str, now: Any, value: Any) -> list[str]:
    """Overrides turning ``now`` into ``value`` at ``key`` (empty when they are equal)."""
    if isinstance(now, dict) and isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += _dict_diff(f"{key}.{k}", now[k], v) if k in now else [f"+{key}.{k}={hydra_value(v)}"]
        return out + [f"~{key}.{k}" for k in now if k not in value]
    return [] if _same(now, value) else [f"{key}={hydra_value(value)}"]


def command_line(command: str, args: list[str]) -> str:
    """The shell line running console command ``avssl-<command>`` with ``args`` (quoted for a POSIX shell)."""
    return " ".join([f"avssl-{command.replace('_', '-')}"] + [shlex.quote(a) for a in args])


# ============================================================================================
# stage bookkeeping
# ============================================================================================


@dataclass
class StageRecord:
    name: str
    commands: list[str]
    summary: dict
    outputs: dict[str, str]  # label -> path (pictures, tables, run dirs)
    seconds: float
    key: str                 # digest of the stage's settings and of the records it depends on
    skipped: bool = False
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "commands": self.commands, "summary": self.summary, "outputs": self.outputs,
                "seconds": self.seconds, "key": self.key}


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default))
    tmp.replace(path)  # atomic: a killed job never leaves a half-written record that looks finished


def _json_default(x):
    import numpy as np

    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# ============================================================================================
# the job
# ============================================================================================


class MainJob:
    """Runs the stages of ``cfg`` (a demo config: configs/demo.yaml + configs/demo/<preset>.yaml)."""

    def __init__(self, cfg, echo: Callable[[str], None] | None = None):
        self.cfg = _plain(cfg)
        self.out = Path(self.cfg["out_dir"])
        self.world_dir = Path(self.cfg["world"]["dir"])
        self.progress = bool(self.cfg.get("progress", True))
        self.echo = echo or (lambda s: print(s, flush=True))
        self.records: dict[str, StageRecord] = {}

    # ---- paths
    @property
    def avid_run(self) -> Path:
        return self.out / "runs" / "avid"

    @property
    def cma_run(self) -> Path:
        return self.out / "runs" / "cma"

    @property
    def final_run(self) -> Path:
        """The checkpoint the downstream stages use (CMA, or AVID when CMA is switched off)."""
        return self.cma_run if self.cfg["cma"].get("enabled", True) else self.avid_run

    # ---- driver
    def run(self, stages: list[str] | None = None) -> dict:
        stages = list(stages or self.cfg.get("stages") or STAGES)
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {list(STAGES)}")
        t0 = time.perf_counter()
        self.echo(f"== avssl main job: preset {self.cfg.get('preset', '?')}, outputs under {self.out}")
        for name in STAGES:
            if name not in stages:
                rec = self._load_record(name)
                if rec is not None:
                    self.records[name] = rec
                continue
            if name == "cma" and not self.cfg["cma"].get("enabled", True):
                continue
            self._run_stage(name)
        results = self.write_results(time.perf_counter() - t0)
        self.echo("\n" + results["markdown"])
        self.echo(f"results: {self.out / 'results.md'} and {self.out / 'results.json'}")
        return results

    def _record_path(self, name: str) -> Path:
        return self.out / "stages" / f"{name}.json"

    def _load_record(self, name: str) -> StageRecord | None:
        p = self._record_path(name)
        if not p.exists():
            return None
        d = json.loads(p.read_text())
        return StageRecord(d["name"], d["commands"], d["summary"], d["outputs"], d["seconds"], d["key"], skipped=True)

    def _stage_key(self, name: str, plan: list[tuple[str, str, list[str]]]) -> str:
        """Digest of what the stage would run: its settings, the commands' fully composed configs (so an
        edited preset such as configs/experiment/avid_embedded_cpu.yaml re-runs the stage) and the
        records of the stages it builds on."""
        upstream = {d: (self.records[d].key if d in self.records else None) for d in DEPENDS[name]}
        if name in ("finetune", "localize", "extract") and "cma" not in self.records:
            upstream["avid"] = self.records["avid"].key if "avid" in self.records else None
        composed = [(label, config, _plain(compose(config, over))) for label, config, over in plan]
        return _digest({"stage": name, "settings": self.cfg.get(name), "world": self.cfg["world"],
                        "out": str(self.out), "upstream": upstream, "configs": composed})

    def _run_stage(self, name: str) -> None:
        plan = getattr(self, f"plan_{name}")()
        key = self._stage_key(name, plan)
        rec = self._load_record(name)
        if (rec is not None and rec.key == key and not self.cfg.get("force", False)
                and all(Path(p).exists() for p in rec.outputs.values())):
            self.records[name] = rec
            self.echo(f"\n== stage {name}: done before ({rec.seconds:.0f}s then), skipped; its commands:")
            for c in rec.commands:
                self.echo(f"   $ {c}")
            return
        self.echo(f"\n== stage {name}")
        t0 = time.perf_counter()
        commands: list[str] = []
        summary, outputs = getattr(self, f"stage_{name}")(commands, plan)
        rec = StageRecord(name, commands, summary, {k: str(v) for k, v in outputs.items()},
                          round(time.perf_counter() - t0, 1), key)
        _write_json(self._record_path(name), rec.to_json())
        self.records[name] = rec
        self.echo(f"== stage {name} finished in {rec.seconds:.0f}s")

    def _announce(self, commands: list[str], command: str, args: list[str], what: str = "") -> str:
        line = command_line(command, args)
        commands.append(line)
        self.echo(f"   {what + ': ' if what else ''}same as\n   $ {line}")
        return line

    # ---- stage: world
    def plan_world(self):
        return []

    def stage_world(self, commands, plan):
        from avssl.synth.generate import generate_world

        w = self.cfg["world"]
        args = ["--preset", str(w["preset"]), "--out", str(self.world_dir), "--seed", str(w.get("seed", 0)),
                "--workers", str(w.get("workers", 2))]
        self._announce(commands, "make-data", args)
        info = generate_world(self.world_dir, preset=w["preset"], seed=int(w.get("seed", 0)),
                              workers=int(w.get("workers", 2)), progress=self.progress)
        meta = json.loads((self.world_dir / "world.json").read_text())
        summary = {"num_clips": info.num_clips, "counts": meta.get("counts", {}), "reused": info.reused,
                   "generation_seconds": meta.get("seconds", info.seconds), "source_classes": info.source_classes,
                   "actions": info.actions}
        self.echo(f"   world {self.world_dir}: {info.num_clips} clips {meta.get('counts', {})}"
                  f"{' (reused)' if info.reused else ''}")
        return summary, {"world": self.world_dir / "world.json"}

    # ---- stages: pretraining
    def _pretrain_overrides(self, stage_cfg: dict, run_dir: Path, wanted_extra: dict) -> list[str]:
        w = self.cfg["world"]
        # one named cache folder under the job's outputs: the CMA stage (and the random-init baseline)
        # reuse the videos the AVID stage decoded (data.decoded_cache=disk)
        wanted = {"run_dir": str(run_dir), "data.world_dir": str(self.world_dir), "data.world_preset": w["preset"],
                  "data.world_seed": int(w.get("seed", 0)), "data.cache_dir": str(self.out / "cache"), **wanted_extra}
        if not self.progress:
            wanted["trainer.progress"] = False
            wanted["data.progress"] = False
        return minimal_overrides("pretrain", [f"experiment={stage_cfg['experiment']}"], wanted,
                                 list(stage_cfg.get("overrides") or []))

    def _train(self, commands, overrides: list[str], what: str) -> dict:
        from avssl.engine.pretrain import train

        self._announce(commands, "pretrain", overrides, what)
        summary = train(compose("pretrain", overrides))
        losses = [float(x) for x in summary.get("loss_history") or []]
        out = {k: summary.get(k) for k in ("run_dir", "global_step", "epoch", "retrieval", "seconds", "dropped_samples",
                                           "stopped_early")}
        out["loss_first"] = float(sum(losses[:5]) / len(losses[:5])) if losses else None
        out["loss_last"] = float(sum(losses[-5:]) / len(losses[-5:])) if losses else None
        out["losses_finite"] = all(math.isfinite(x) for x in losses)
        out["num_losses"] = len(losses)
        r = summary.get("retrieval")
        if r:
            self.echo(f"   held-out retrieval ({r['num_clips']} clips): a2v R@1 {r['a2v_R@1']:.3f} R@5 {r['a2v_R@5']:.3f}"
                      f" | v2a R@1 {r['v2a_R@1']:.3f} | chance R@1 {r['chance_R@1']:.3f}")
            if "a2v_within_R@1" in r:
                self.echo(f"   instance level: a2v class top-1 {r['a2v_class_top1']:.3f} (chance {r['chance_class_top1']:.3f})"
                          f" | within class R@1 {r['a2v_within_R@1']:.3f} (chance {r['within_chance_R@1']:.3f})")
            if "sync@1s_acc" in r:
                self.echo(f"   sync test: own vs 1 s-shifted audio {r['sync@1s_acc']:.3f} (chance 0.5; clips with a visible "
                          f"sounding object {r.get('sync@1s_acc_sounding', float('nan')):.3f})")
        return out

    def plan_avid(self):
        c = self.cfg["avid"]
        plan = [("trained", "pretrain", self._pretrain_overrides(c, self.avid_run, {"method": "avid"}))]
        if c.get("random_baseline", True):
            # the same evaluation on the untrained model: 0 epochs = build, evaluate, stop
            plan.append(("random_init", "pretrain", self._pretrain_overrides(
                c, self.out / "runs" / "random_init", {"method": "avid", "trainer.epochs": 0,
                                                       "trainer.tensorboard": False})))
        return plan

    def stage_avid(self, commands, plan):
        what = {"trained": "AVID pretraining", "random_init": "random-init baseline (held-out retrieval)"}
        summary = {label: self._train(commands, over, what[label]) for label, _, over in plan}
        ckpt = _latest_checkpoint(self.avid_run)
        return summary, {"avid_checkpoint": ckpt, "avid_log": self.avid_run / "train.log"}

    def plan_cma(self):
        over = self._pretrain_overrides(self.cfg["cma"], self.cma_run,
                                        {"method": "cma", "cma.init_from": str(self.avid_run)})
        return [("trained", "pretrain", over)]

    def stage_cma(self, commands, plan):
        summary = {"trained": self._train(commands, plan[0][2], "CMA stage (starts from the AVID run)")}
        return summary, {"cma_checkpoint": _latest_checkpoint(self.cma_run), "cma_log": self.cma_run / "train.log"}

    # ---- stage: fine-tuning
    def plan_finetune(self):
        c = self.cfg["finetune"]
        w = self.cfg["world"]
        inits = {"pretrained": {"init.kind": "avssl", "init.checkpoint": str(self.final_run)}}
        if c.get("random_baseline", True):
            model = self._run_config()["model"]  # the pretrained video encoder's architecture, random weights
            inits["random_init"] = {"init.kind": "scratch", "model.video": model["video"],
                                    "model.video_args": dict(model.get("video_args") or {})}
        plan = []
        for label, init in inits.items():
            wanted = {"run_dir": str(self.out / "finetune" / label), "folds": c.get("folds", 1),
                      "dataset.embedded.world_dir": str(self.world_dir), "dataset.embedded.preset": w["preset"],
                      "dataset.embedded.seed": int(w.get("seed", 0)), **init}
            if not self.progress:
                wanted["trainer.progress"] = False
            plan.append((label, "finetune", minimal_overrides("finetune", [f"finetune={c['preset']}"], wanted,
                                                              list(c.get("overrides") or []), always=("init.kind",))))
        return plan

    def stage_finetune(self, commands, plan):
        from avssl.downstream.finetune import finetune

        summary, outputs = {}, {}
        for label, config, over in plan:
            run_dir = self.out / "finetune" / label
            self._announce(commands, "finetune", over, f"fine-tune ({label.replace('_', ' ')})")
            res = finetune(_plain(compose(config, over)))
            if "stopped" in res:
                raise RuntimeError(f"fine-tuning stopped early: {res['stopped']}")
            s = res["summary"]
            folds = res["per_fold"]
            summary[label] = {
                "video_top1": s["video_top1"]["mean"], "video_top5": s["video_top5"]["mean"],
                "clip_top1": s["clip_top1"]["mean"], "mean_class_accuracy": s["mean_class_accuracy"]["mean"],
                "folds": s["folds"], "num_classes": len(folds[0]["classes"]),
                "num_test_videos": folds[0]["num_test_videos"], "num_train_videos": folds[0]["num_train_videos"],
                "best_epoch": folds[0]["best_epoch"],
                "train_losses": [h["loss"] for h in folds[0]["history"]],
            }
            self.echo(f"   {label}: video top-1 {summary[label]['video_top1']:.3f} "
                      f"(chance {1 / summary[label]['num_classes']:.3f}, {summary[label]['num_test_videos']} test videos)")
            for f in s["folds"]:
                outputs[f"confusion_{label}_fold{f}"] = run_dir / f"fold{f}" / "confusion.png"
            outputs[f"finetune_{label}"] = run_dir / "summary.json"
        return summary, outputs

    # ---- stage: localization
    def _run_config(self) -> dict:
        from avssl.downstream.finetune import load_pretrained_config

        return load_pretrained_config(self.final_run)

    def _overlay_inputs(self, folder: Path, n: int) -> list[Path]:
        """Copies of ``n`` held-out clips with a visible sounding object, one per source class."""
        from avssl.synth.generate import load_world

        folder.mkdir(parents=True, exist_ok=True)
        rows = [r for r in load_world(self.world_dir).rows()
                if r["split"] == "test" and r["offscreen"] in ("0", "False") and r["silent"] in ("0", "False")]
        picked, seen = [], set()
        for r in rows:
            if r["source_class"] not in seen:
                picked.append(r)
                seen.add(r["source_class"])
            if len(picked) == n:
                break
        paths = []
        for r in picked:
            src = self.world_dir / r["path"]
            dst = folder / f"{r['source_class']}_{r['action_class']}_{src.name}"
            if not dst.exists():
                shutil.copyfile(src, dst)
            paths.append(dst)
        return paths

    def plan_localize(self):
        c = self.cfg["localize"]
        fmt = c.get("annotation_format", "vggss")
        ann = {"world": str(self.world_dir), "vggss": str(self.world_dir / "vggss" / "vggss.json"),
               "flickr": str(self.world_dir / "flickr" / "Annotations")}[fmt]
        media_root = None if fmt == "world" else str(self.world_dir / "videos")
        base = {"annotations": ann, "annotation_format": fmt, "media_root": media_root,
                "progress": self.progress, "eval.fraction": float(c.get("fraction", 0.5)),
                "eval.temporal": c.get("temporal", "slot"),
                "eval.also_fractions": [float(f) for f in (c.get("also_fractions") or [])]}
        runs = {"pretrained": {"checkpoint": str(self.final_run), "input": str(self.out / "localize" / "inputs"),
                               "overlays": int(c.get("overlays_per_video", 3)), "mp4": bool(c.get("mp4", True))}}
        if c.get("random_baseline", True):
            run_cfg = self._run_config()
            runs["random_init"] = {"checkpoint": None, "model": run_cfg["model"], "clip": run_cfg["data"]["spec"],
                                   "transforms": run_cfg["transforms"]}
        return [(label, "localize",
                 minimal_overrides("localize", [], {**base, **extra, "out_dir": str(self.out / "localize" / label)},
                                   list(c.get("overrides") or []), always=("checkpoint", "model")))
                for label, extra in runs.items()]

    def stage_localize(self, commands, plan):
        c = self.cfg["localize"]
        from avssl.localization.job import run_localization

        self._overlay_inputs(self.out / "localize" / "inputs", int(c.get("overlay_videos", 3)))
        summary, outputs = {}, {}
        for label, config, over in plan:
            out_dir = self.out / "localize" / label
            self._announce(commands, "localize", over, f"localization ({label.replace('_', ' ')})")
            report = run_localization(compose(config, over))
            sums = report["eval"]["summaries"]
            by = report["eval"].get("by_fraction", {})
            summary[label] = {"model": sums["model"], "settings_fraction": float(c.get("fraction", 0.5)),
                              "by_fraction": {f: {"model": v["model"]} for f, v in by.items()}}
            if label == "pretrained":
                summary["baselines"] = {k: v for k, v in sums.items() if k != "model"}
                summary["baselines_by_fraction"] = {f: {k: x for k, x in v.items() if k != "model"} for f, v in by.items()}
                summary["num_items"] = sums["model"].get("num_samples")
                for k, v in report["eval"]["files"].items():
                    if str(v).endswith(".png"):
                        outputs[f"localize_{k}"] = v
                for i, (video, products) in enumerate(sorted(report.get("files", {}).items())):
                    for k, v in products.items():
                        if str(v).endswith((".png", ".mp4")):
                            outputs[f"localize_file{i}_{k}"] = v
                grid = out_dir / "files" / "grid.png"
                if grid.exists():
                    outputs["localize_files_grid"] = grid
            m = sums["model"]
            self.echo(f"   {label}: AUC {m['auc']:.3f} mean cIoU {m['mean_ciou']:.3f} cIoU@0.5 {m['ciou_at']:.3f}")
        return summary, outputs

    # ---- stage: embeddings + retrieval
    def plan_extract(self):
        c = self.cfg["extract"]
        w = self.cfg["world"]
        base = {"input": "world", "world.dir": str(self.world_dir), "world.preset": w["preset"],
                "world.seed": int(w.get("seed", 0)), "world.split": c.get("split", "test"),
                "clips_per_video": int(c.get("clips_per_video", 4)), "progress": self.progress, "device": "cpu",
                "dtype": "float32"}
        runs = {"pretrained": {"checkpoint": str(self.final_run)}}
        if c.get("random_baseline", True):
            run_cfg = self._run_config()
            runs["random_init"] = {"checkpoint": None, "model": run_cfg["model"], "spec": run_cfg["data"]["spec"],
                                   "transforms": run_cfg["transforms"]}
        return [(label, "extract",
                 minimal_overrides("extract", [], {**base, **extra, "out_dir": str(self.out / "embeddings" / label)},
                                   list(c.get("overrides") or []), always=("checkpoint",)))
                for label, extra in runs.items()]

    def stage_extract(self, commands, plan):
        from avssl.embed.api import collection_retrieval
        from avssl.embed.job import run_extraction

        c = self.cfg["extract"]
        summary, outputs, dirs = {}, {}, {}
        for label, config, over in plan:
            out_dir = self.out / "embeddings" / label
            dirs[label] = out_dir
            self._announce(commands, "extract", over, f"embeddings ({label.replace('_', ' ')})")
            rep = run_extraction(compose(config, over))
            if not rep.get("complete"):
                raise RuntimeError(f"extraction into {out_dir} did not complete: {rep}")
            outputs[f"embeddings_{label}"] = out_dir / "meta.json"
        table_json = self.out / "embeddings" / "retrieval.json"
        args = ["table", *[str(d) for d in dirs.values()], "--names", *dirs.keys(), "--json", str(table_json),
                "--labels", str(self.world_dir), "--sync-shifts", "1"]
        self._announce(commands, "retrieve", args, "retrieval table")
        from avssl.embed.api import load_labels

        labels = load_labels(self.world_dir)  # the world's source classes: the instance-level reading
        results = {label: collection_retrieval(d, level="video", ks=(1, 5, 10), labels=labels, sync_shifts=[1.0])
                   for label, d in dirs.items()}
        _write_json(table_json, results)
        for label, r in results.items():
            summary[label] = {d: {k: r[d][k] for k in ("R@1", "R@5", "R@10", "median_rank")} for d in ("a2v", "v2a")}
            summary[label]["instance"] = r.get("instance")
            summary[label]["sync"] = r.get("sync")
            summary["chance"] = r["chance"]
            summary["num_videos"] = r["num_videos"]
            self.echo(f"   {label}: a2v R@1 {r['a2v']['R@1']:.3f} R@5 {r['a2v']['R@5']:.3f} | v2a R@1 "
                      f"{r['v2a']['R@1']:.3f} | chance R@1 {r['chance']['R@1']:.3f} ({r['num_videos']} videos)")
        if c.get("tsne", True):
            png = self.out / "embeddings" / "tsne_pretrained.png"
            plot_tsne(dirs["pretrained"], self.world_dir, png)
            outputs["tsne"] = png
        outputs["retrieval_table"] = table_json
        return summary, outputs

    # ---- results
    def write_results(self, seconds: float) -> dict:
        rows = results_rows(self.records)
        md = results_markdown(rows, self.records, self.cfg, seconds)
        pictures = sorted({v for r in self.records.values() for v in r.outputs.values()
                           if str(v).endswith((".png", ".mp4"))})
        md += "\n\nPictures written:\n" + "\n".join(f"- {p}" for p in pictures) + "\n"
        data = {"preset": self.cfg.get("preset"), "seconds": seconds, "rows": rows, "pictures": pictures,
                "stages": {k: {**v.to_json(), "skipped": v.skipped} for k, v in self.records.items()}}
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "results.md").write_text(md)
        _write_json(self.out / "results.json", data)
        data["markdown"] = md
        return data


def _latest_checkpoint(run_dir: Path) -> Path:
    from avssl.utils.checkpoint import CheckpointManager

    p = CheckpointManager(run_dir).latest_path()
    if p is None:
        raise FileNotFoundError(f"no checkpoint under {run_dir}")
    return p


def plot_tsne(collection_dir: Path, world_dir: Path, png: Path, perplexity: float = 15.0) -> Path:
    """t-SNE (sklearn) of a collection's pooled video embeddings, coloured by the world's source class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.manifold import TSNE

    from avssl.embed import load_collection
    from avssl.synth.generate import load_world

    emb, table = load_collection(collection_dir, "video", "video")
    world = load_world(world_dir)
    by_path = {str((world_dir / r["path"]).resolve()): r["source_class"] for r in world.rows()}
    labels = [by_path.get(str(Path(p).resolve()), "?") for p in table["path"]]
    xy = TSNE(n_components=2, perplexity=min(perplexity, max(2.0, (len(emb) - 1) / 3)), init="pca",
              random_state=0).fit_transform(np.asarray(emb, dtype=np.float32))
    fig, ax = plt.subplots(figsize=(5, 4.2), dpi=100)
    for cls in sorted(set(labels)):
        m = np.array([lab == cls for lab in labels])
        ax.scatter(xy[m, 0], xy[m, 1], s=12, label=cls)
    ax.set_title("held-out videos (t-SNE of video embeddings)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, markerscale=0.8, loc="best")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return png


# ============================================================================================
# results table
# ============================================================================================


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def results_rows(records: dict[str, StageRecord]) -> list[dict]:
    """One row per figure: task, metric, pretrained value, random-init value, chance / reference."""
    rows = []

    def add(task, metric, ours, random_init, reference=None, note=""):
        if ours is None:
            return
        rows.append({"task": task, "metric": metric, "pretrained": ours, "random_init": random_init,
                     "reference": reference, "note": note})

    if "avid" in records:
        s = records["avid"].summary
        r, r0 = _get(s, "trained", "retrieval"), _get(s, "random_init", "retrieval")
        if r:
            add("held-out retrieval after AVID (1 clip/video)", "audio→video R@1", r["a2v_R@1"], _get(r0, "a2v_R@1"),
                r["chance_R@1"], "chance")
            add("held-out retrieval after AVID (1 clip/video)", "audio→video R@5", r["a2v_R@5"], _get(r0, "a2v_R@5"),
                r["chance_R@5"], "chance")
            _instance_rows(add, "held-out after AVID", r, r0)
        add("AVID pretraining", "training loss, first → last 5 steps of this run",
            f"{_get(s, 'trained', 'loss_first'):.3f} → {_get(s, 'trained', 'loss_last'):.3f}"
            if _finite(_get(s, "trained", "loss_first")) else None, None)
    if "cma" in records:
        s = records["cma"].summary
        r = _get(s, "trained", "retrieval")
        r0 = _get(records.get("avid").summary if "avid" in records else {}, "random_init", "retrieval")
        if r:
            add("held-out retrieval after CMA (1 clip/video)", "audio→video R@1", r["a2v_R@1"], _get(r0, "a2v_R@1"),
                r["chance_R@1"], "chance")
            add("held-out retrieval after CMA (1 clip/video)", "audio→video R@5", r["a2v_R@5"], _get(r0, "a2v_R@5"),
                r["chance_R@5"], "chance")
            _instance_rows(add, "held-out after CMA", r, r0)
    if "finetune" in records:
        s = records["finetune"].summary
        p, z = s.get("pretrained", {}), s.get("random_init", {})
        n = p.get("num_classes")
        add(f"action recognition (UCF-style export, fold {','.join(map(str, p.get('folds', [1])))})", "video top-1",
            p.get("video_top1"), z.get("video_top1"), 1.0 / n if n else None, "chance")
        add("action recognition (UCF-style export)", "clip top-1", p.get("clip_top1"), z.get("clip_top1"),
            1.0 / n if n else None, "chance")
    if "localize" in records:
        s = records["localize"].summary
        m, m0 = _get(s, "pretrained", "model"), _get(s, "random_init", "model")
        cp = _get(s, "baselines", "centre_prior")
        frac = _get(s, "pretrained", "settings_fraction")
        if m:
            task = f"sound localization (VGG-SS-style export, top-{int(round(100 * (frac or 0.5)))}% pixels)"
            add(task, "cIoU AUC", m["auc"], _get(m0, "auc"), _get(cp, "auc"), "centre prior")
            add(task, "mean cIoU", m["mean_ciou"], _get(m0, "mean_ciou"), _get(cp, "mean_ciou"), "centre prior")
            add(task, "cIoU@0.5", m["ciou_at"], _get(m0, "ciou_at"), _get(_get(s, "baselines", "oracle_box"), "ciou_at"),
                "oracle-box ceiling")
            if m.get("twin_preference") is not None:
                add(task, f"map prefers the sounding same-class twin ({m.get('twin_items')} clips)", m["twin_preference"],
                    _get(m0, "twin_preference"), 0.5, "chance")
        for f, v in (_get(s, "pretrained", "by_fraction") or {}).items():  # other kept shares, same maps
            m, m0 = v["model"], _get(s, "random_init", "by_fraction", f, "model")
            base = _get(s, "baselines_by_fraction", f) or {}
            task = f"sound localization (VGG-SS-style export, top-{100 * float(f):g}% pixels)"
            add(task, "cIoU AUC", m["auc"], _get(m0, "auc"), _get(base, "centre_prior", "auc"), "centre prior")
            add(task, "mean cIoU", m["mean_ciou"], _get(m0, "mean_ciou"), _get(base, "centre_prior", "mean_ciou"),
                "centre prior")
            add(task, "cIoU@0.5", m["ciou_at"], _get(m0, "ciou_at"), _get(base, "centre_prior", "ciou_at"), "centre prior")
    if "extract" in records:
        s = records["extract"].summary
        p, z = s.get("pretrained", {}), s.get("random_init", {})
        ch = s.get("chance", {})
        task = f"cross-modal retrieval, held-out videos ({s.get('num_videos')}, pooled clips)"
        for d, name in (("a2v", "audio→video"), ("v2a", "video→audio")):
            for k in ("R@1", "R@5"):
                add(task, f"{name} {k}", _get(p, d, k), _get(z, d, k), ch.get(k), "chance")
        pi, zi = p.get("instance") or {}, z.get("instance") or {}
        if pi:
            add(task, "audio→video within-class R@1 (own video among its class)", pi["a2v_within_R@1"],
                zi.get("a2v_within_R@1"), pi["within_chance_R@1"], "chance")
        ps, zs = (p.get("sync") or {}).get("1s"), (z.get("sync") or {}).get("1s")
        if ps and ps["num_trials"]:
            add(task, "sync: own audio beats a clip ≥1 s away (same video)", ps["acc"], _get(zs, "acc"), 0.5, "chance")
    return rows


def _instance_rows(add, task: str, r: dict, r0: dict | None) -> None:
    """The instance-level reading of held-out retrieval (`avssl.engine.heldout`), each beside its chance."""
    if "a2v_within_R@1" in r:
        add(task, "audio→video top-1 of the right class", r["a2v_class_top1"], _get(r0, "a2v_class_top1"),
            r["chance_class_top1"], "chance")
        add(task, "audio→video within-class R@1 (own video among its class)", r["a2v_within_R@1"],
            _get(r0, "a2v_within_R@1"), r["within_chance_R@1"], "chance")
    if "sync@1s_acc" in r:
        add(task, "sync: own audio beats the 1 s-shifted audio", r["sync@1s_acc"], _get(r0, "sync@1s_acc"), 0.5, "chance")


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    return f"{v:.3f}"


def results_markdown(rows: list[dict], records: dict[str, StageRecord], cfg: dict, seconds: float) -> str:
    lines = [f"Main job, preset `{cfg.get('preset')}` (world `{cfg['world']['preset']}`), {seconds:.0f} s "
             "this run (stages done before are skipped).", "",
             "| task | metric | pretrained (AVID→CMA) | random init | reference |", "|---|---|---|---|---|"]
    for r in rows:
        ref = "–" if r["reference"] is None else f"{_fmt(r['reference'])} ({r['note']})"
        lines.append(f"| {r['task']} | {r['metric']} | {_fmt(r['pretrained'])} | {_fmt(r['random_init'])} | {ref} |")
    lines += ["", "Stage times (s): " + ", ".join(f"{k} {v.seconds:.0f}{' (earlier run)' if v.skipped else ''}"
                                                   for k, v in records.items())]
    return "\n".join(lines)


# ============================================================================================
# entry points
# ============================================================================================


def demo_config(preset: str = "default", *overrides: str, out_dir: str | None = None, world_dir: str | None = None):
    """The demo config of ``preset`` (configs/demo/<preset>.yaml) with Hydra overrides (`avssl-demo`'s)."""
    extra = list(overrides)
    if out_dir is not None:
        extra.append(f"out_dir={hydra_value(str(out_dir))}")
    if world_dir is not None:
        extra.append(f"world.dir={hydra_value(str(world_dir))}")
    return compose("demo", [f"demo={preset}", *extra])


def run_main_job(cfg, stages: list[str] | None = None, echo: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) the main job described by a demo config; returns the results dict
    (``rows``, ``pictures``, ``stages``, ``markdown``) also written to ``<out_dir>/results.{md,json}``."""
    return MainJob(cfg, echo=echo).run(stages)


__all__ = ["MainJob", "StageRecord", "compose", "command_line", "demo_config", "hydra_value", "minimal_overrides",
           "plot_tsne", "results_rows", "run_main_job", "STAGES"]
