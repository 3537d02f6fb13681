"""The main job (avssl-demo, avssl.pipeline) end to end on the tiny preset: every stage runs on
the real tiny world, writes what it claims, and a second run skips what is done."""

import json
import math
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from avssl.pipeline import STAGES, demo_config, run_main_job

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
pytestmark = [pytest.mark.xdist_group("main_job")]


def test_printed_overrides_compose_back_to_the_same_values(tmp_path):
    """Values the job writes into commands (nested dicts, lists, odd paths) parse back unchanged."""
    from omegaconf import OmegaConf

    from avssl.pipeline import compose, hydra_value, minimal_overrides

    odd = str(tmp_path / "my runs" / "it's=here")
    clip = {"num_frames": 4, "fps": 8.0, "frame_size": [24, 32], "audio_rate": 24000, "audio_channels": 1,
            "audio_duration": 0.5}
    wanted = {"out_dir": odd, "clip": clip, "checkpoint": None, "mp4": False, "eval.fraction": 0.1,
              "annotation_format": "vggss"}
    over = minimal_overrides("localize", [], wanted, always=("checkpoint",))
    assert "checkpoint=null" in over  # named in `always`: shown although it is the default
    cfg = compose("localize", [shlex.split(shlex.quote(o))[0] for o in over])  # through the shell and back
    for key, value in wanted.items():
        got = OmegaConf.select(cfg, key)
        got = OmegaConf.to_container(got, resolve=True) if OmegaConf.is_config(got) else got
        assert got == value, (key, got, value)
    assert hydra_value("null") == "'null'" and hydra_value("a/b.c") == "a/b.c"


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    base = tmp_path_factory.mktemp("main_job")
    cfg = demo_config("tiny", out_dir=base / "out", world_dir=base / "world")
    lines: list[str] = []
    results = run_main_job(cfg, echo=lines.append)
    return cfg, results, lines, base


def _png_ok(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as im:
        im.load()
        assert im.width >= 16 and im.height >= 16
        assert np.asarray(im.convert("L")).std() > 1.0, f"{path} is a flat picture"


@pytest.mark.slow
def test_every_stage_ran_and_recorded_its_command(job):
    cfg, results, lines, base = job
    out = base / "out"
    assert set(results["stages"]) == set(STAGES)
    for name in STAGES:
        rec = json.loads((out / "stages" / f"{name}.json").read_text())
        assert rec["commands"], name
        for c in rec["commands"]:
            assert shlex.split(c)[0] in SCRIPTS, c  # a console command of the package
            assert any(c in line for line in lines), f"{c} was not printed"
        assert all(Path(p).exists() for p in rec["outputs"].values()), name
    assert (out / "results.md").read_text().startswith("Main job, preset `tiny`")
    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(results["rows"]))


@pytest.mark.slow
def test_pretraining_losses_are_finite_and_runs_evaluated(job):
    _, results, _, _ = job
    for stage in ("avid", "cma"):
        s = results["stages"][stage]["summary"]["trained"]
        assert s["losses_finite"] and s["num_losses"] > 0 and math.isfinite(s["loss_last"])
        r = s["retrieval"]
        assert 0.0 <= r["a2v_R@1"] <= r["a2v_R@5"] <= 1.0 and r["num_clips"] > 1
        assert r["chance_R@1"] == pytest.approx(1.0 / r["num_clips"])
    assert results["stages"]["cma"]["summary"]["trained"]["global_step"] > 0
    # the baseline is the same evaluation before any step
    rnd = results["stages"]["avid"]["summary"]["random_init"]
    assert rnd["global_step"] == 0 and rnd["retrieval"]["num_clips"] == results["stages"]["avid"]["summary"][
        "trained"]["retrieval"]["num_clips"]


@pytest.mark.slow
def test_finetune_and_localization_outputs(job):
    _, results, _, _ = job
    ft = results["stages"]["finetune"]["summary"]
    for label in ("pretrained", "random_init"):
        assert ft[label]["num_classes"] == 6 and ft[label]["num_test_videos"] > 0
        assert 0.0 <= ft[label]["video_top1"] <= 1.0
        assert all(math.isfinite(x) for x in ft[label]["train_losses"])
    loc = results["stages"]["localize"]["summary"]
    for label in ("pretrained", "random_init"):
        m = loc[label]["model"]
        assert 0.0 <= m["auc"] <= 1.0 and m["num_samples"] > 0
    # the oracle box is the protocol's ceiling: no heatmap beats it
    assert loc["baselines"]["oracle_box"]["mean_ciou"] >= loc["pretrained"]["model"]["mean_ciou"]
    # the tiny preset also scores a 15 % kept share on the same maps, with its own baselines and table rows
    (f,) = loc["pretrained"]["by_fraction"]
    assert float(f) == 0.15 and set(loc["random_init"]["by_fraction"]) == {f}
    assert loc["baselines_by_fraction"][f]["oracle_box"]["mean_ciou"] >= loc["pretrained"]["by_fraction"][f]["model"]["mean_ciou"]
    assert loc["baselines_by_fraction"][f]["centre_prior"]["mean_ciou"] != loc["baselines"]["centre_prior"]["mean_ciou"]
    tasks = {r["task"] for r in results["rows"]}
    assert any("top-15%" in t for t in tasks) and any("top-50%" in t for t in tasks)


@pytest.mark.slow
def test_pictures_are_real_pngs_and_mp4s_with_sound(job):
    from avssl.io.probe import probe

    _, results, _, _ = job
    pics = [Path(p) for p in results["pictures"]]
    pngs = [p for p in pics if p.suffix == ".png"]
    mp4s = [p for p in pics if p.suffix == ".mp4"]
    kinds = {p.name.split(".")[0] for p in pngs}
    assert {"grid_best", "grid_worst", "grid", "confusion", "tsne_pretrained"} <= kinds
    assert any("_t0" in p.name for p in pngs), "no per-video overlay"
    assert len(mp4s) == 2  # tiny preset: two overlay videos
    for p in pngs:
        _png_ok(p)
    for p in mp4s:
        info = probe(p)
        assert info.num_frames > 0 and info.has_audio, p  # the heatmap video keeps the clip's own sound


@pytest.mark.slow
def test_retrieval_is_computed_and_the_printed_command_reproduces_it(job, tmp_path):
    _, results, _, base = job
    s = results["stages"]["extract"]["summary"]
    n = s["num_videos"]
    assert n > 1 and s["chance"]["R@1"] == pytest.approx(1.0 / n)
    for label in ("pretrained", "random_init"):
        for d in ("a2v", "v2a"):
            r = s[label][d]
            assert 0.0 <= r["R@1"] <= r["R@5"] <= r["R@10"] <= 1.0
            assert r["R@10"] == 1.0 if n <= 10 else True  # every video is within the first N ranks
    # the pretrained and random collections hold different embeddings (weights really loaded)
    from avssl.embed import load_collection

    a, _ = load_collection(base / "out" / "embeddings" / "pretrained", "video", "video")
    b, _ = load_collection(base / "out" / "embeddings" / "random_init", "video", "video")
    assert a.shape == b.shape and not np.allclose(a, b)
    # the retrieval table command printed by the job, run as a user would, gives the same figures
    cmd = [c for c in results["stages"]["extract"]["commands"] if c.startswith("avssl-retrieve ")][0]
    args = shlex.split(cmd)
    args[args.index("--json") + 1] = str(tmp_path / "table.json")
    # `avssl-retrieve ...` is `python -m avssl retrieve ...` (the installed script: tests/test_wheel.py)
    done = subprocess.run([sys.executable, "-m", "avssl", args[0].removeprefix("avssl-"), *args[1:]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    again = json.loads((tmp_path / "table.json").read_text())
    assert again["pretrained"]["a2v"]["R@1"] == pytest.approx(s["pretrained"]["a2v"]["R@1"])
    assert again["random_init"]["v2a"]["R@5"] == pytest.approx(s["random_init"]["v2a"]["R@5"])


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_redoes_changed_ones(job):
    cfg, results, _, base = job
    lines: list[str] = []
    again = run_main_job(cfg, echo=lines.append)
    assert all(again["stages"][k]["skipped"] for k in STAGES)
    assert again["rows"] == results["rows"]
    # a changed localization setting re-runs that stage only
    changed = demo_config("tiny", "localize.overlays_per_video=1", out_dir=base / "out", world_dir=base / "world")
    third = run_main_job(changed, echo=lines.append)
    assert [k for k in STAGES if not third["stages"][k]["skipped"]] == ["localize"]
    files = third["stages"]["localize"]["outputs"]
    assert sum("_overlay_" in k for k in files) == 2  # one overlay for each of the two videos
