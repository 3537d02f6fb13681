"""Atomic training checkpoints: everything needed to continue a killed run exactly.

A checkpoint is one `torch.save` dict written to ``<run_dir>/checkpoints/step_XXXXXXXX.pt``:

    model, optimizer, scheduler, scaler      state_dicts (scaler only with AMP)
    criterion                                memory banks, NCE constant, CMA positive sets
    progress                                 {"epoch", "batches_consumed", "global_step"}
    rng                                      python / numpy / torch (/ cuda) states of THIS rank,
                                             plus every rank's states under "per_rank" when gathered
                                             (tensors, ints and tuples only: see `capture_rng_state`)
    config                                   the resolved run config (plain dict)
    manifest_fingerprint                     `Manifest.fingerprint()` of the index the banks key on

Reading never runs code from the file: `load_checkpoint` goes through
`avssl.utils.safe_load.safe_torch_load` (``weights_only=True``), so a checkpoint must hold only
tensors and plain data -- everything saved here does.

Writing is crash-safe: the bytes go to a temporary file in the same directory, are flushed and
fsync'ed, then `os.replace` moves them over the final name (atomic on POSIX), and the directory is
fsync'ed. A process killed mid-write leaves at most a stray ``*.tmp`` file, never a truncated
checkpoint under a real name, and the ``latest`` pointer only moves after the new file is complete.
Files get the mode a plain ``open()`` would give (0644 under the usual umask 022), so the group
can read a shared run. A file damaged later (disk full, a bad copy) is skipped on resume:
`CheckpointManager.load_latest` falls back to the newest checkpoint that reads, with a warning.
"""

from __future__ import annotations

import logging
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avssl.utils.safe_load import CheckpointError, DamagedCheckpointError, safe_torch_load

log = logging.getLogger(__name__)

CHECKPOINT_DIRNAME = "checkpoints"
LATEST_POINTER = "latest"
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


class FingerprintMismatchError(CheckpointError):
    """The checkpoint was made on a different dataset index: memory slots would not line up."""


# --------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------


def _numpy_state_plain() -> dict[str, Any]:
    """numpy's legacy global generator state as tensors and scalars (no numpy objects, so a
    ``weights_only`` load reads it): ``np.random.get_state()`` = (kind, keys uint32 [624], pos,
    has_gauss, cached_gaussian); the keys go into an int64 tensor (uint32 fits exactly)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state_from(state: Any) -> tuple:
    if isinstance(state, dict):  # `_numpy_state_plain`
        keys = np.asarray(state["keys"].numpy() if isinstance(state["keys"], torch.Tensor) else state["keys"])
        return (state["kind"], keys.astype(np.uint32), state["pos"], state["has_gauss"], state["cached_gaussian"])
    return tuple(state)  # older checkpoints: numpy's own tuple


def capture_rng_state() -> dict[str, Any]:
    """The generator states of this process (python, numpy, torch CPU, and CUDA if present), as
    tuples, ints, floats and tensors only."""
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state_plain(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state` (also reads the numpy tuples of older checkpoints)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(_numpy_state_from(state["numpy"]))
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


def _umask() -> int:
    """The process umask, read without changing it where Linux exposes it (else set-and-restore)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _open_tmp(path: Path) -> tuple[int, str]:
    """A temporary file next to ``path`` with the mode ``open()`` would give a new file
    (0o666 & ~umask: 0644 usually), not mkstemp's private 0600."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:  # filesystems without POSIX modes
        pass
    return fd, tmp_name


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save` that either fully replaces `path` or leaves it untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, "wb", lambda f: torch.save(obj, f))
    return path


def _atomic_write(path: Path, mode: str, write) -> None:
    """``write(file)`` into a temporary sibling, fsync, then replace ``path``: all or nothing."""
    fd, tmp_name = _open_tmp(path)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
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


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, "w", lambda f: f.write(text))


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

    def candidates(self) -> list[Path]:
        """Checkpoints to resume from, best first: the one ``latest`` names, then every
        ``step_*.pt`` newest first."""
        out: list[Path] = []
        pointer = self.dir / LATEST_POINTER
        if pointer.is_file():
            try:
                target = self.dir / pointer.read_text().strip()
            except (OSError, UnicodeDecodeError):
                target = None
            if target is not None and target.is_file():
                out.append(target)
        out += [p for p in reversed(self.list_checkpoints()) if p not in out]
        return out

    def load_latest(
        self,
        *,
        expected_fingerprint: str | None = None,
        map_location: str | torch.device = "cpu",
        logger: logging.Logger | None = None,
    ) -> tuple[Path, dict[str, Any]]:
        """``(path, state)`` of the newest checkpoint that reads.

        A damaged file (truncated, zero bytes, not a torch file: `DamagedCheckpointError`) is
        skipped with a warning naming it, and the next older one is tried. Any other refusal
        (an unsafe file, a fingerprint mismatch) is raised: those are not accidents of storage.
        Raises `CheckpointError` when there is no checkpoint, or when none of them reads.
        """
        found = self.candidates()
        if not found:
            raise CheckpointError(f"no checkpoint found under {self.dir}")
        skipped: list[tuple[str, str]] = []
        for path in found:
            try:
                state = load_checkpoint(path, expected_fingerprint=expected_fingerprint, map_location=map_location)
            except DamagedCheckpointError as exc:
                skipped.append((path.name, str(exc)))
                (logger or log).warning("skipping damaged checkpoint: %s; trying an older one", exc)
                continue
            if skipped:
                (logger or log).warning("resuming from %s: the newer %s could not be read", path.name,
                                        ", ".join(name for name, _ in skipped))
            return path, state
        raise DamagedCheckpointError(
            f"cannot read any of the {len(found)} checkpoint(s) under {self.dir} (newest: {skipped[0][1]}); "
            f"start a fresh run (resume=never) or restore a copy")

    def load(
        self,
        path: str | os.PathLike | None = None,
        *,
        expected_fingerprint: str | None = None,
        map_location: str | torch.device = "cpu",
    ) -> dict[str, Any]:
        """Load `path`, or without it the newest checkpoint that reads (`load_latest`),
        checking the manifest fingerprint when given."""
        if path is None:
            return self.load_latest(expected_fingerprint=expected_fingerprint, map_location=map_location)[1]
        return load_checkpoint(path, expected_fingerprint=expected_fingerprint, map_location=map_location)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    expected_fingerprint: str | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Read a checkpoint written by `CheckpointManager.save` (``weights_only``: runs no code).

    Raises `CheckpointError` naming the file when it is missing, a folder, damaged
    (`DamagedCheckpointError`), refused as unsafe (`UnsafeCheckpointError`) or not a dict, and
    `FingerprintMismatchError` when `expected_fingerprint` is given and differs from the one
    stored (the memory banks / positive sets would address the wrong videos).
    """
    state = safe_torch_load(path, map_location=map_location)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not an avssl checkpoint (a dict)")
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
