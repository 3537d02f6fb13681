"""Atomic training checkpoints: everything needed to continue a killed run exactly.

A checkpoint is one `torch.save` dict written to ``<run_dir>/checkpoints/step_XXXXXXXX.pt``:

    model, optimizer, scheduler, scaler      state_dicts (scaler only with AMP)
    criterion                                memory banks, NCE constant, CMA positive sets
    progress                                 {"epoch", "batches_consumed", "global_step"}
    rng                                      python / numpy / torch (/ cuda) states of THIS rank,
                                             plus every rank's states under "per_rank" when gathered
    config                                   the resolved run config (plain dict)
    manifest_fingerprint                     `Manifest.fingerprint()` of the index the banks key on

Writing is crash-safe: the bytes go to a temporary file in the same directory, are flushed and
fsync'ed, then `os.replace` moves them over the final name (atomic on POSIX), and the directory is
fsync'ed. A process killed mid-write leaves at most a stray ``*.tmp`` file, never a truncated
checkpoint under a real name, and the ``latest`` pointer only moves after the new file is complete.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_DIRNAME = "checkpoints"
LATEST_POINTER = "latest"
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not belong to this run."""


class FingerprintMismatchError(CheckpointError):
    """The checkpoint was made on a different dataset index: memory slots would not line up."""


# --------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """The generator states of this process (python, numpy, torch CPU, and CUDA if present)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu() if isinstance(state["torch"], torch.Tensor) else state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------
# atomic file writing
# --------------------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save` that either fully replaces `path` or leaves it untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # Covers exceptions and KeyboardInterrupt; a SIGKILL leaves only the .tmp file behind.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


# --------------------------------------------------------------------------------------------
# manager
# --------------------------------------------------------------------------------------------


class CheckpointManager:
    """Saves ``step_*.pt`` files under ``<run_dir>/checkpoints``, keeps the last `keep_last`, and a
    ``latest`` pointer (a one-line text file naming the newest complete checkpoint).

    Only rank 0 should call `save` (all ranks hold identical model/bank state under DDP); every
    rank may call `load`.
    """

    def __init__(self, run_dir: str | os.PathLike, keep_last: int = 2):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.dir = Path(run_dir) / CHECKPOINT_DIRNAME
        self.keep_last = keep_last

    # ---- paths
    def path_for_step(self, global_step: int) -> Path:
        return self.dir / f"step_{global_step:08d}.pt"

    def list_checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _STEP_RE.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest_path(self) -> Path | None:
        """The checkpoint named by ``latest``; falls back to the newest ``step_*.pt``."""
        pointer = self.dir / LATEST_POINTER
        if pointer.is_file():
            target = self.dir / pointer.read_text().strip()
            if target.is_file():
                return target
        ckpts = self.list_checkpoints()
        return ckpts[-1] if ckpts else None

    # ---- save / load
    def save(self, state: dict[str, Any], global_step: int) -> Path:
        path = atomic_torch_save(state, self.path_for_step(global_step))
        _atomic_write_text(self.dir / LATEST_POINTER, path.name + "\n")
        for old in self.list_checkpoints()[: -self.keep_last]:
            if old != path:
                old.unlink(missing_ok=True)
        return path

    def load(
        self,
        path: str | os.PathLike | None = None,
        *,
        expected_fingerprint: str | None = None,
        map_location: str | torch.device = "cpu",
    ) -> dict[str, Any]:
        """Load `path` (default: ``latest``), checking the manifest fingerprint when given."""
        if path is None:
            path = self.latest_path()
            if path is None:
                raise CheckpointError(f"no checkpoint found under {self.dir}")
        return load_checkpoint(path, expected_fingerprint=expected_fingerprint, map_location=map_location)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    expected_fingerprint: str | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Read a checkpoint written by `CheckpointManager.save`.

    Raises `FingerprintMismatchError` when `expected_fingerprint` is given and differs from the
    one stored (the memory banks / positive sets would address the wrong videos).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        # Our checkpoints hold numpy RNG state and plain config dicts, not only tensors.
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated / foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    check_fingerprint(state, expected_fingerprint, source=str(path))
    return state


def check_fingerprint(state: dict[str, Any], expected: str | None, *, source: str = "checkpoint") -> None:
    if expected is None:
        return
    stored = state.get("manifest_fingerprint")
    if stored is None:
        raise FingerprintMismatchError(
            f"{source} stores no manifest fingerprint; cannot verify that its memory banks match "
            f"the current index (fingerprint {expected})"
        )
    if stored != expected:
        raise FingerprintMismatchError(
            f"{source} was made on a different dataset index: checkpoint fingerprint {stored} != "
            f"current index fingerprint {expected}. Its memory-bank slots would not line up with "
            f"the current videos; re-index the same data or start a fresh run."
        )
