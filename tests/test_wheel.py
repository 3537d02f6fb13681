"""The built wheel is the whole product: installed alone in a fresh environment and run from a
folder outside the checkout, it runs the main job and the commands (configs from the package,
console scripts on PATH, no file of the source tree read).

The fresh virtualenv reuses the torch stack already installed for the tests (a ``.pth`` line
pointing at this interpreter's site-packages: no network), while decord and torchcodec are
made unimportable in it (the base install has neither; pyav is the default backend). The wheel is
built offline from a copy of the files a source distribution holds (pyproject.toml, README.md,
avssl/, configs/), so nothing is written into the checkout.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]
UNINSTALLED = "raise ImportError('not installed in this environment (tests/test_wheel.py: the base install)')\n"


def _run(args, *, cwd: Path, env: dict, timeout: int = 300, shell: bool = False) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, shell=shell)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin dir, env for its commands, a working folder outside the checkout, the wheel)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "configs", src / "configs", ignore=ignore)
    shutil.copytree(ROOT / "avssl", src / "avssl", symlinks=True, ignore=ignore)  # avssl/configs: the link
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(tmp / "dist"), str(src)], cwd=tmp, env=base_env)
    (wheel,) = (tmp / "dist").glob("avssl-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=base_env)
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp,
                     env=base_env).stdout.strip())
    # the already installed dependencies (torch, av, hydra, ...), after the venv's own packages
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_avssl_test_deps.pth").write_text("".join(f"{p}\n" for p in sorted(here)))
    for optional in ("decord", "torchcodec"):  # the base install: neither optional backend
        (site / f"{optional}.py").write_text(UNINSTALLED)
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         cwd=tmp, env=base_env)

    work = tmp / "work"  # outside the checkout: nothing relative to the source tree can be found
    work.mkdir()
    env = {**base_env, "PATH": f"{venv / 'bin'}{os.pathsep}{base_env.get('PATH', '/usr/bin:/bin')}",
           "OMP_NUM_THREADS": "1", "VIRTUAL_ENV": str(venv)}
    return venv / "bin", env, work, wheel


def test_wheel_holds_the_package_and_its_configs_only(installed):
    *_, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml")}
    assert {f"avssl/{n}" for n in shipped} <= set(names)  # every config, under avssl/configs/
    assets = {f"avssl/assets/{p.name}" for p in (ROOT / "avssl" / "assets").glob("*.npz")}
    assert "avssl/cli/pretrain.py" in names and assets and assets <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "tools/", "configs/", "datasets/", "notebooks/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{s} = {t}" in text for s, t in SCRIPTS.items())


def test_installed_package_is_the_wheel_without_decord(installed):
    bin_dir, env, work, _ = installed
    code = ("import avssl, avssl.configs, pathlib; from avssl.io import available_backends; "
            "print(avssl.__file__); print(pathlib.Path(avssl.configs.__file__).parent.is_symlink()); "
            "print(available_backends())")
    out = _run([str(bin_dir / "python"), "-c", code], cwd=work, env=env).stdout.splitlines()
    assert Path(out[0]).is_relative_to(bin_dir.parent), out[0]  # not the checkout's (editable) avssl
    assert out[1] == "False"  # a real folder of configs inside the installed package
    assert out[2] == "['pyav']"
    for script in ("avssl", "avssl-pretrain", "avssl-index"):
        done = _run([str(bin_dir / script), "--help"], cwd=work, env=env)
        assert script.split("-")[-1] in done.stdout.splitlines()[0]


def test_main_job_and_commands_run_from_the_installed_wheel(installed):
    bin_dir, env, work, _ = installed
    out = work / "demo"
    # the main job on the tiny world: world, AVID, localization, embeddings (CMA and fine-tuning off for time)
    done = _run(["avssl-demo", "demo=tiny", f"out_dir={out}", f"world.dir={work / 'world'}", "cma.enabled=false",
                 "stages=[world,avid,localize,extract]", "avid.random_baseline=false", "localize.random_baseline=false",
                 "extract.random_baseline=false", "extract.tsne=false"], cwd=work, env=env, timeout=600)
    assert "results:" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results["stages"]) == {"world", "avid", "localize", "extract"}
    assert results["stages"]["avid"]["summary"]["trained"]["losses_finite"]

    # a line the job printed, run as printed (the installed console command), into another folder
    line = next(c for c in results["stages"]["localize"]["commands"] if c.startswith("avssl-localize "))
    args = shlex.split(line)
    args = [a for a in args if not a.startswith("out_dir=")] + [f"out_dir={work / 'again'}"]
    _run(shlex.join(args), cwd=work, env=env, shell=True)
    assert json.loads((work / "again" / "report.json").read_text())["eval"]["summaries"]["model"]["num_samples"] > 0

    # the commands on a file generated here
    from avssl.io.writer import write_av

    rng = np.random.default_rng(0)
    t = np.arange(24000 * 2) / 24000
    clip = write_av(work / "mine.mp4", rng.integers(0, 255, (32, 48, 64, 3), dtype=np.uint8), 16.0,
                    (0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32), 24000)
    run = out / "runs" / "avid"
    _run(["avssl-localize", f"input={clip}", f"checkpoint={run}", f"out_dir={work / 'loc'}", "overlays=1",
          "progress=false"], cwd=work, env=env)
    assert (work / "loc" / "files" / "mine_heatmap.mp4").stat().st_size > 0
    _run(["avssl-extract", f"input={clip}", f"checkpoint={run}", f"out_dir={work / 'emb'}", "clips_per_video=2",
          "num_workers=0", "device=cpu", "progress=false"], cwd=work, env=env)
    meta = json.loads((work / "emb" / "extract_report.json").read_text())
    assert meta["complete"] and meta["videos"] == 1
