"""Every import in avssl points down the layers (pyproject.toml [tool.importlinter], checked by
import-linter, which sees lazy imports inside functions too), every package sits in a layer, and the
check bites: a copy of the package with one upward (or sibling) import planted fails it, naming it.

    utils -> metrics -> io -> data | synth -> transforms -> models -> memory | losses | cma -> methods
          -> engine -> downstream | localization | embed -> pipeline -> cli (the commands)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def _lint(package_parent: Path, config: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the avssl found under ``package_parent`` (a subprocess, so that a copy is the
    avssl it analyses), without a cache (nothing written beside the sources)."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--no-cache", "--no-logo", str(config)], cwd=package_parent,
                          env=env, capture_output=True, text=True, timeout=300)


def _layers(optional: bool = True) -> list[str]:
    """The names in the layers contract; ``(name)`` is an optional layer (the console commands' package,
    avssl.cli, before it exists)."""
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c for c in contracts if c["type"] == "layers"]
    names = [name.strip() for layer in layers["layers"] for name in layer.split("|")]
    return [n.strip("()") for n in names if optional or not n.startswith("(")]


def test_every_package_of_avssl_is_in_a_layer():
    """A new package or top-level module cannot dodge the contract: it must be given a layer."""
    here = {p.name for p in (ROOT / "avssl").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    here |= {p.stem for p in (ROOT / "avssl").glob("*.py") if p.stem != "__init__"}
    assert sorted(here - set(_layers())) == [], "add these to [tool.importlinter] layers in pyproject.toml"
    assert sorted(set(_layers(optional=False)) - here) == [], "layers naming nothing"


def test_imports_point_down_the_layers():
    res = _lint(ROOT, PYPROJECT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


PLANTED = [
    # (module edited, the import planted inside a function, what the report must name)
    ("losses/nce.py", "from avssl.engine.pretrain import train", "avssl.losses.nce -> avssl.engine.pretrain"),
    ("utils/errors.py", "import avssl.io.errors", "avssl.utils.errors -> avssl.io.errors"),
    ("embed/api.py", "from avssl.localization import metrics", "avssl.embed.api -> avssl.localization"),
    ("methods/avid.py", "from avssl.engine import train", "avssl.methods.avid -> avssl.engine"),
]


@pytest.mark.parametrize("where,statement,named", PLANTED, ids=[p[0] for p in PLANTED])
def test_a_planted_upward_import_breaks_the_contract(tmp_path, where, statement, named):
    """A lazy import (inside a function, never run) up the layers or across independent siblings."""
    shutil.copytree(ROOT / "avssl", tmp_path / "avssl", ignore=shutil.ignore_patterns("__pycache__", "assets"))
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    target = tmp_path / "avssl" / where
    target.write_text(target.read_text() + f"\n\ndef _planted():\n    {statement}\n")
    res = _lint(tmp_path, tmp_path / "pyproject.toml")
    assert res.returncode != 0, res.stdout
    assert "BROKEN" in res.stdout and named in res.stdout, res.stdout
