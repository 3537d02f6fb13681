"""The real commands on user mistakes: exit status 2 and ONE line on stderr,
``<tool>.py: error: ...`` naming the input; ``--debug`` or ``HYDRA_FULL_ERROR=1`` shows the
traceback instead. Localize over a folder skips, counts and lists unreadable files.

The key cases run the tools as subprocesses; the rest run the same scripts in process
(``runpy.run_path(..., run_name="__main__")``: the script's own ``run_main(main)``, with Hydra's
logging left alone) to keep the suite fast. Then the error boundary's classification and
formatting, directly."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avssl.utils.cli import describe, is_user_error, run_main
from avssl.utils.errors import UserError
from test_safe_load import write_malicious

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["clip={num_frames: 4, fps: 8.0, frame_size: null, audio_rate: 24000, audio_channels: 1, audio_duration: 1.0}",
         "transforms={video: {crop_size: 32}, audio: {preset: avid}}", "progress=false", "batch_size=4", "mp4=false",
         "overlays=1"]
HYDRA_TOOLS = {"pretrain", "finetune", "localize", "extract", "demo"}


def run_tool(tool: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command as a user runs it: a fresh process."""
    base = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([sys.executable, str(ROOT / "tools" / f"{tool}.py"), *args], cwd=cwd,
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=300)


def run_script(tool: str, *args: str, tmp_path: Path, capsys, monkeypatch) -> subprocess.CompletedProcess:
    """The same script in this process, as ``__main__`` (its ``run_main(main)`` runs); exit code,
    stdout and stderr as a CompletedProcess."""
    argv = [str(ROOT / "tools" / f"{tool}.py"), *args]
    if tool in HYDRA_TOOLS:  # keep Hydra off this process's logging and out of the source tree
        argv += ["hydra/job_logging=none", "hydra/hydra_logging=none", f"hydra.run.dir={tmp_path / 'hydra'}",
                 "hydra.output_subdir=null"]
    monkeypatch.setattr(sys, "argv", argv)
    capsys.readouterr()
    code = 0
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


def one_error_line(res: subprocess.CompletedProcess, tool: str, *needles: str) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith(f"{tool}.py: error: "), line
    for n in needles:
        assert n in line, (n, line)
    return line


def write_clip(path: Path, n: int = 24, fps: float = 16.0, rate: int = 24000) -> Path:
    from avssl.io.writer import write_av

    rng = np.random.default_rng(0)
    t = np.arange(int(rate * n / fps)) / rate
    write_av(path, rng.integers(0, 255, size=(n, 48, 64, 3), dtype=np.uint8), fps,
             (0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32), rate)
    return path


@pytest.fixture
def script(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    return lambda tool, *args: run_script(tool, *args, tmp_path=tmp_path, capsys=capsys, monkeypatch=monkeypatch)


# ---------------------------------------------------------------- subprocesses


@pytest.mark.slow
def test_missing_checkpoint_is_one_line_and_debug_shows_the_traceback(tmp_path):
    args = ["input=whatever.mp4", f"checkpoint={tmp_path / 'nope.pt'}", f"out_dir={tmp_path / 'o'}", "progress=false"]
    res = run_tool("localize", *args, cwd=tmp_path)
    one_error_line(res, "localize", "checkpoint not found", str(tmp_path / "nope.pt"))
    res = run_tool("localize", *args, "--debug", cwd=tmp_path)
    assert res.returncode == 1
    assert "Traceback (most recent call last)" in res.stderr and "CheckpointError: checkpoint not found" in res.stderr


@pytest.mark.slow
def test_crafted_checkpoint_refused_by_localize_and_extract(tmp_path):
    marker = tmp_path / "EXECUTED"
    evil = write_malicious(tmp_path / "evil.pth.tar", marker, "legacy")
    clip = write_clip(tmp_path / "clip.mp4")
    runs = {
        "localize": [f"input={clip}", f"checkpoint={evil}", f"out_dir={tmp_path / 'lo'}", "progress=false"],
        "extract": [f"input={tmp_path}", f"checkpoint={evil}", f"out_dir={tmp_path / 'ex'}", "progress=false"],
    }
    for tool, args in runs.items():
        one_error_line(run_tool(tool, *args, cwd=tmp_path), tool, f"refused to load checkpoint {evil}")
    assert not marker.exists()


@pytest.mark.slow
def test_localize_folder_skips_counts_and_lists_bad_files(tmp_path, script):
    vids = tmp_path / "videos"
    vids.mkdir()
    write_clip(vids / "a_good.mp4")
    (vids / "b_garbage.mp4").write_bytes(b"not a video" * 200)
    (vids / "c_empty.mp4").write_bytes(b"")
    out = tmp_path / "out"
    res = run_tool("localize", f"input={vids}", f"out_dir={out}", *SMALL, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "localized 1 of 3 file(s)" in res.stdout and "2 skipped" in res.stdout
    report = json.loads((out / "report.json").read_text())
    assert list(report["files"]) == [str(vids / "a_good.mp4")]
    assert [f["path"] for f in report["failed"]] == [str(vids / "b_garbage.mp4"), str(vids / "c_empty.mp4")]
    assert json.loads((out / "files" / "failed.json").read_text()) == report["failed"]
    assert Path(report["files"][str(vids / "a_good.mp4")]["overlay_0"]).is_file()
    # a single unreadable file is a mistake in the input: one line naming it
    res = script("localize", f"input={vids / 'b_garbage.mp4'}", f"out_dir={out}", *SMALL)
    one_error_line(res, "localize", f"cannot localize {vids / 'b_garbage.mp4'}")


@pytest.mark.slow
def test_misspelled_override_key(tmp_path):
    line = one_error_line(run_tool("pretrain", "trainer.epohcs=3", f"run_dir={tmp_path}", cwd=tmp_path), "pretrain",
                          "trainer.epohcs")
    assert "+trainer.epohcs=3" in line
    assert "did you mean 'trainer.epochs'?" in line and "Keys at 'trainer': " in line  # the valid keys listed
    assert "max_steps" in line.split("Keys at 'trainer': ")[1]


def test_misspelled_section_lists_the_top_level_keys(tmp_path, script):
    line = one_error_line(script("finetune", "optimm.lr=0.1"), "finetune", "optimm.lr")
    assert "did you mean 'optim'?" in line
    keys = line.split("Keys at the top level: ")[1].split(", ")
    assert "optim" in keys and "hydra" not in keys


# ---------------------------------------------------------------- the scripts in process


def test_hydra_full_error_shows_the_traceback(tmp_path, script, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    from avssl.utils.safe_load import CheckpointError

    with pytest.raises(CheckpointError, match="checkpoint not found"):
        script("localize", "input=x.mp4", f"checkpoint={tmp_path / 'nope.pt'}", f"out_dir={tmp_path / 'o'}")


def test_probe_audio_refuses_a_crafted_checkpoint(tmp_path, script):
    marker = tmp_path / "EXECUTED"
    evil = write_malicious(tmp_path / "evil.pth.tar", marker)
    (tmp_path / "esc").mkdir()
    for init in ("avid", "avssl"):
        res = script("probe_audio", "--esc50", str(tmp_path / "esc"), "--init", init, "--checkpoint", str(evil))
        one_error_line(res, "probe_audio", f"refused to load checkpoint {evil}")
    assert not marker.exists()


@pytest.mark.parametrize("case", ["folder_without_checkpoints", "video_as_checkpoint"])
def test_wrong_checkpoint_file(tmp_path, script, case):
    clip = write_clip(tmp_path / "clip.mp4")
    ckpt = tmp_path if case == "folder_without_checkpoints" else clip
    res = script("localize", f"input={clip}", f"checkpoint={ckpt}", f"out_dir={tmp_path / 'o'}", "progress=false")
    one_error_line(res, "localize", str(ckpt), "no checkpoint found" if ckpt == tmp_path else "not a PyTorch checkpoint")


def test_extract_on_an_empty_folder_fails_instead_of_doing_nothing(tmp_path, script):
    empty = tmp_path / "videos"
    empty.mkdir()
    res = script("extract", f"input={empty}", "model=tiny", f"out_dir={tmp_path / 'ex'}", "progress=false")
    one_error_line(res, "extract", f"no usable video in input={empty}")
    one_error_line(script("localize", f"input={empty}", f"out_dir={tmp_path / 'lo'}", "progress=false"), "localize",
                   f"no video files under {empty}")


@pytest.mark.parametrize("case", ["bad_json", "folder_for_json", "wrong_format", "missing"])
def test_annotation_mistakes(tmp_path, script, case):
    ann = {"bad_json": tmp_path / "ann.json", "folder_for_json": tmp_path, "wrong_format": tmp_path / "ann.json",
           "missing": tmp_path / "nope.json"}[case]
    fmt = "world" if case == "wrong_format" else "vggss"
    if case in ("bad_json", "wrong_format"):
        ann.write_text('[{"file": "x", "bbox": [[0.1, 0.1,' if case == "bad_json" else "[]")
    res = script("localize", f"annotations={ann}", f"annotation_format={fmt}", f"media_root={tmp_path}",
                 f"out_dir={tmp_path / 'o'}", "progress=false")
    line = one_error_line(res, "localize", f"annotations={ann}")
    assert {"bad_json": "invalid JSON", "folder_for_json": "is a folder, expected a file",
            "wrong_format": "is not a folder", "missing": "no such file"}[case] in line


def test_unknown_config_option_and_argparse_commands(tmp_path, script):
    one_error_line(script("pretrain", "experiment=nope", f"run_dir={tmp_path}"), "pretrain",
                   "experiment/nope", "Available options", "avid_kinetics")
    one_error_line(script("index", str(tmp_path / "nope")), "index", str(tmp_path / "nope"))
    one_error_line(script("retrieve", "table", str(tmp_path)), "retrieve", str(tmp_path), "meta.json")
    one_error_line(script("make_data", "--preset", "nope", "--out", str(tmp_path / "w")), "make_data", "'nope'")


# ---------------------------------------------------------------- the boundary itself


def test_classification():
    import json as _json

    from avssl.io.errors import CorruptMedia

    assert is_user_error(UserError("x")) and is_user_error(FileNotFoundError(2, "No such file", "/a"))
    assert is_user_error(IsADirectoryError(21, "Is a directory", "/d")) and is_user_error(CorruptMedia("/v.mp4"))
    try:
        _json.loads("{")
    except ValueError as e:
        assert is_user_error(e) and describe(e).startswith("invalid JSON")
    for bug in (KeyError("k"), TypeError("t"), RuntimeError("r"), ValueError("v"), ZeroDivisionError()):
        assert not is_user_error(bug)
    assert describe(IsADirectoryError(21, "Is a directory", "/d")) == "/d: is a folder, expected a file"
    assert describe(UserError("line one\n  detail\nline two")) == "line one. detail. line two"


def _raise(exc):
    def main():
        raise exc
    return main


def test_run_main_exit_codes_and_debug(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as e:
        run_main(_raise(UserError("input=x: nothing there")), argv=["tool.py"])
    assert e.value.code == 2 and capsys.readouterr().err == "tool.py: error: input=x: nothing there\n"
    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_main(_raise(KeyError("bug")), argv=["tool.py"])
    argv = ["tool.py", "--debug", "a=1"]
    with pytest.raises(UserError):  # --debug: the user error's traceback too
        run_main(_raise(UserError("x")), argv=argv)
    assert argv == ["tool.py", "a=1"]  # removed before Hydra / argparse see it
    with pytest.raises(SystemExit) as e:
        run_main(lambda: 3, argv=["tool.py"])
    assert e.value.code == 3
    assert "HYDRA_FULL_ERROR" not in os.environ  # set only for the call
