"""notebooks/quickstart.ipynb runs top to bottom in a real Jupyter kernel (this venv's Python) on
the tiny preset; any cell error fails the test."""

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("notebook")]


def _venv_kernel(tmp_path: Path, monkeypatch) -> str:
    """A kernelspec that starts ipykernel with *this* interpreter (the stock spec says just
    "python", which could be any Python on PATH)."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "avssl-venv"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "avssl venv", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "avssl-venv"


def _outputs_text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        elif "data" in o and "text/plain" in o["data"]:
            parts.append(o["data"]["text/plain"])
    return "".join(parts)


def test_committed_notebook_is_small_and_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert NOTEBOOK.stat().st_size < 300_000
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_quickstart_notebook_executes_on_the_tiny_preset(tmp_path, monkeypatch):
    kernel = _venv_kernel(tmp_path, monkeypatch)
    monkeypatch.setenv("AVSSL_NOTEBOOK_PRESET", "tiny")
    monkeypatch.setenv("AVSSL_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("AVSSL_NOTEBOOK_WORLD", str(tmp_path / "world"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, kernel_name=kernel, timeout=240, resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    code = [c for c in nb.cells if c.cell_type == "code"]
    text = "\n".join(_outputs_text(c) for c in code)
    assert f"python: {sys.executable}" in text  # the kernel really ran this venv's interpreter
    assert "preset: tiny" in text
    images = sum(1 for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert images >= 4  # similarity matrix, overlay, grid, t-SNE
    assert "| model |" in text and "query: the sound of" in text
    assert (tmp_path / "out" / "runs" / "tiny_avid" / "checkpoints").is_dir()
