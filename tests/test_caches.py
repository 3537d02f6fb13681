"""Caches live under the run or in a folder the user named, never beside the data they came from.

data.decoded_cache=disk writes <run_dir>/cache/decoded (or <data.cache_dir>/decoded, shared by runs);
the CPU preset uses it, and the main job names <out_dir>/cache so its CMA stage reuses the AVID
stage's decoded videos.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avssl.engine.pretrain import decoded_cache_dir

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def _compose(name, overrides):
    with initialize_config_dir(CONFIGS, version_base="1.3"):
        return OmegaConf.to_container(compose(name, overrides=overrides), resolve=True)


def test_decoded_cache_dir_rule():
    assert decoded_cache_dir("memory", "runs/x") is None and decoded_cache_dir(None, "runs/x") is None
    assert decoded_cache_dir("disk", "runs/x") == str(Path("runs/x/cache/decoded"))
    assert decoded_cache_dir("disk", "runs/x", "/scratch/c") == str(Path("/scratch/c/decoded"))
    assert decoded_cache_dir("/mine/dec", "runs/x", "/scratch/c") == "/mine/dec"


def test_cpu_preset_keeps_its_cache_under_the_run_or_a_named_folder():
    cfg = _compose("pretrain", ["experiment=avid_embedded_cpu"])
    assert cfg["data"]["decoded_cache"] == "disk" and cfg["data"]["cache_dir"] is None
    where = decoded_cache_dir(cfg["data"]["decoded_cache"], cfg["run_dir"], cfg["data"]["cache_dir"])
    assert Path(where).is_relative_to(cfg["run_dir"])
    assert not Path(where).is_relative_to(Path(cfg["data"]["world_dir"]).parent)


def test_main_job_shares_one_named_cache_between_its_pretraining_stages(tmp_path):
    from avssl.pipeline import MainJob, compose as job_compose

    job = MainJob(_compose("demo", ["demo=default", f"out_dir={tmp_path / 'demo'}"]), echo=lambda s: None)
    plans = job.plan_avid() + job.plan_cma()
    dirs = set()
    for _, tool, overrides in plans:
        cfg = OmegaConf.to_container(job_compose(tool, overrides), resolve=True)
        dirs.add(decoded_cache_dir(cfg["data"]["decoded_cache"], cfg["run_dir"], cfg["data"]["cache_dir"]))
    assert dirs == {str(tmp_path / "demo" / "cache" / "decoded")}


def test_disk_cache_written_under_the_run_and_reused_from_a_named_folder(tmp_path):
    from avssl.engine.pretrain import train
    from avssl.synth.generate import generate_world

    world = tmp_path / "world" / "tiny"
    generate_world(world, preset="tiny", seed=0, workers=1, progress=False)
    base = ["experiment=tiny", f"data.world_dir={world}", "data.decoded_cache=disk", "eval.enabled=false",
            "trainer.max_steps=1"]
    train(_compose("pretrain", base + [f"run_dir={tmp_path / 'a'}"]))
    assert len(list((tmp_path / "a" / "cache" / "decoded").glob("decoded_*.pt"))) == 1
    assert sorted(p.name for p in (tmp_path / "world").iterdir()) == ["tiny"]  # nothing beside the world

    named = tmp_path / "mycache"
    train(_compose("pretrain", base + [f"run_dir={tmp_path / 'b'}", f"data.cache_dir={named}"]))
    (cached,) = (named / "decoded").glob("decoded_*.pt")
    stamp = cached.stat().st_mtime_ns
    train(_compose("pretrain", base + [f"run_dir={tmp_path / 'c'}", f"data.cache_dir={named}"]))
    assert cached.stat().st_mtime_ns == stamp and not (tmp_path / "c" / "cache").exists()  # reused, not redone
