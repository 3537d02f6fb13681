"""The package as users get it: console commands, configs inside the package, optional backends.

- every ``[project.scripts]`` entry is one of avssl.cli's commands, and ``<script> --help`` exits 0
  with that command's own text (what it does, its main options, an example), run exactly as the
  console-script wrapper runs it (``sys.exit(main())`` with ``argv[0]`` the script's name);
- ``avssl <command>`` dispatches, ``avssl --help`` lists every command, an unknown one is one line;
- the configs are the package ``avssl.configs`` (the top-level ``configs/`` folder in a checkout),
  found by Hydra from any working directory;
- decord and torchcodec are optional: with them absent every module imports, pyav is the default
  backend and reads a clip, asking for decord is one clear error.

The built wheel, installed in a fresh environment and run from outside the checkout:
tests/test_wheel.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]


def _python(code: str, *args: str, cwd: Path | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------------- console scripts
def test_console_scripts_are_the_commands():
    import importlib

    from avssl.cli import COMMANDS, command_main, script_name

    assert SCRIPTS.get("avssl") == "avssl.cli:main", "no `avssl` dispatcher"
    assert set(SCRIPTS) == {"avssl"} | {script_name(v) for v in COMMANDS}
    for verb in COMMANDS:
        module, func = SCRIPTS[script_name(verb)].split(":")
        assert getattr(importlib.import_module(module), func) is command_main(verb), verb
    # the list of commands, at least
    assert {"pretrain", "finetune", "localize", "extract", "retrieve", "index", "prepare", "demo"} <= set(COMMANDS)


@pytest.fixture(scope="module")
def helps(tmp_path_factory) -> dict:
    """``<script> --help`` for every console script, each run as its wrapper runs it, in one process
    (Hydra's state is reset between them): {script: {"code", "out", "err"}}."""
    code = """
        import contextlib, importlib, io, json, sys
        from hydra.core.global_hydra import GlobalHydra
        results = {}
        for name, target in json.loads(sys.argv[1]).items():
            module, func = target.split(":")
            main = getattr(importlib.import_module(module), func)
            sys.argv = [name, "--help"]
            out, err = io.StringIO(), io.StringIO()
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    status = main()  # the wrapper: sys.exit(main())
            except SystemExit as e:
                status = e.code
            GlobalHydra.instance().clear()
            results[name] = {"code": 0 if status is None else status, "out": out.getvalue(), "err": err.getvalue()}
        print(json.dumps(results))
    """
    done = _python(code, json.dumps(SCRIPTS), cwd=tmp_path_factory.mktemp("helps"))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_of_every_console_script(helps, script):
    res = helps[script]
    assert res["code"] == 0, res
    assert "Traceback" not in res["err"], res["err"]
    text = res["out"]
    first = text.strip().splitlines()[0]
    if script == "avssl":
        assert first.startswith("usage: avssl <command>")
        return
    # the command's own text, not Hydra's generic one: its name, what it does, an example
    assert script in first, first
    assert "powered by Hydra" not in text and "== Config ==" not in text, text[:400]
    assert text.count(script) >= 2, f"{script} --help shows no example:\n{text}"


def test_hydra_help_names_every_preset_of_its_groups(helps):
    """The help lists each selectable preset (a new experiment / fine-tune / demo preset must be added)."""
    for script, group in (("avssl-pretrain", "experiment"), ("avssl-finetune", "finetune"), ("avssl-demo", "demo"),
                          ("avssl-extract", "model")):
        names = [p.stem for p in (ROOT / "configs" / group).glob("*.yaml")]
        missing = [n for n in names if n not in helps[script]["out"]]
        assert not missing, f"{script} --help does not name {group} presets {missing} (configs/hydra/help/)"


def test_dispatcher_runs_commands_and_refuses_unknown_ones(tmp_path):
    done = _python("import sys; from avssl.cli import main; sys.exit(main())", "index", str(tmp_path / "nothing"),
                   cwd=tmp_path)
    assert done.returncode == 2, done.stderr  # the command ran: its own one-line user error, named after it
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("avssl index: error: ") and "nothing" in line, line
    done = _python("import sys; from avssl.cli import main; sys.exit(main())", "pretrian", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "unknown command 'pretrian'" in done.stderr
    done = subprocess.run([sys.executable, "-m", "avssl", "--version"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    from avssl import __version__

    assert done.returncode == 0 and done.stdout.strip() == f"avssl {__version__}"


# ----------------------------------------------------------------------------------- configs
def test_configs_are_the_package_avssl_configs():
    from importlib.resources import files

    import avssl.configs
    from avssl.utils.configs import config_names

    packaged = files("avssl.configs")
    shipped = sorted(str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*.yaml"))
    assert shipped and all(packaged.joinpath(rel).is_file() for rel in shipped)
    # in a checkout the package IS the top-level folder (one copy of every file)
    assert Path(avssl.configs.__file__).resolve().parent == (ROOT / "configs").resolve()
    assert config_names() == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["avssl.configs"]
    assert "*.yaml" in globs and "**/*.yaml" in globs  # every level travels into the wheel


def test_library_composes_the_configs_from_any_working_directory(tmp_path):
    code = """
        from avssl.pipeline import demo_config
        from avssl.utils.configs import compose_config
        cfg = compose_config("pretrain", ["experiment=tiny"])
        assert cfg.model.video == "tiny" and cfg.trainer.epochs == 2, cfg.model
        assert demo_config("tiny").preset == "tiny"
        print("ok")
    """
    done = _python(code, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_compose_config_inside_another_hydra_app_leaves_it_alone(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from avssl.utils.configs import compose_config

    (tmp_path / "app.yaml").write_text("mine: 1\n")
    with initialize_config_dir(str(tmp_path), version_base="1.3"):
        assert compose_config("localize", ["batch_size=3"]).batch_size == 3
        assert compose("app").mine == 1  # the other app's Hydra is back
    assert not GlobalHydra.instance().is_initialized()


# ----------------------------------------------------------------------------------- optional backends
def test_everything_imports_and_reads_without_decord_and_torchcodec(tmp_path):
    from avssl.io.writer import write_av

    import numpy as np

    rng = np.random.default_rng(0)
    clip = write_av(tmp_path / "c.mp4", rng.integers(0, 255, (16, 32, 48, 3), dtype=np.uint8), 8.0,
                    (0.1 * rng.standard_normal((1, 16000))).astype(np.float32), 8000)
    code = """
        import importlib, pkgutil, sys
        sys.modules["decord"] = None      # as if not installed: `import decord` raises ImportError
        sys.modules["torchcodec"] = None
        import avssl
        names = [m.name for m in pkgutil.walk_packages(avssl.__path__, "avssl.")]
        for name in names:
            importlib.import_module(name)
        from avssl.io import ClipSpec, available_backends, read_clip
        from avssl.io.errors import BackendUnavailable
        assert available_backends() == ["pyav"], available_backends()
        clip = read_clip(sys.argv[1], 0.5, ClipSpec(num_frames=4, fps=8.0, audio_rate=8000, audio_duration=0.5))
        assert tuple(clip.video.shape) == (4, 32, 48, 3) and tuple(clip.audio.shape) == (1, 4000)
        try:
            read_clip(sys.argv[1], 0.0, ClipSpec(num_frames=2), backend="decord")
        except BackendUnavailable as e:
            print("refused:", e)
        print(len(names), "modules")
    """
    done = _python(code, str(clip), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused: backend 'decord' is not usable here" in done.stdout
    assert int(done.stdout.split()[-2]) > 50
