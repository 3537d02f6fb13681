"""Read a checkpoint without running any code it may carry.

A ``torch.save`` file is a pickle, and a pickle can name any Python callable to call while it is
read (``os.system``, a class's ``__reduce__``). `safe_torch_load` always reads with
``torch.load(weights_only=True)``: only tensors, plain containers (dict, list, tuple, set,
OrderedDict, Counter), numbers, strings, ``torch.device``/dtypes, and the few numpy globals in
`SAFE_GLOBALS` are rebuilt; any other global is refused *before* anything is called, and the
refusal becomes a `CheckpointError` naming the file.

What avssl itself stores fits that: model / optimizer / scheduler / GradScaler state dicts,
criterion buffers, RNG states as tensors and ints, the run config as a plain dict. The released
AVID / AVID+CMA ``.pth.tar`` files (``{"epoch", "model", "optimizer", "train_criterion"}``, all state
dicts) fit it too, in both the zip and the legacy serialization format.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avssl.utils.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, unreadable, refused as unsafe, or does not belong to this run.

    A `UserError` (one line from the commands) and still a RuntimeError for older callers.
    """


class DamagedCheckpointError(CheckpointError):
    """The file is there but its bytes do not read: zero bytes, truncated, not a torch file."""


class UnsafeCheckpointError(CheckpointError):
    """The file asks the unpickler for a global outside the allowlist (code would have run)."""


def _numpy_array_globals() -> list:
    """numpy's array-rebuilding globals. avssl checkpoints written before RNG state was stored as
    tensors hold the numpy generator's key array (uint32); rebuilding an array calls no user
    code (object arrays' items go through the same restricted unpickler)."""
    core = getattr(np, "_core", None) or np.core
    out = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    out += [type(np.dtype(t)) for t in (np.uint32, np.int64, np.int32, np.float64, np.float32, np.bool_)]
    return out


SAFE_GLOBALS: list = _numpy_array_globals()

_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _refusal_reason(message: str) -> str:
    m = re.search(r"WeightsUnpickler error:\s*(.+)", message)
    return m.group(1).strip() if m else "holds objects other than tensors and plain data"


def check_checkpoint_path(path: str | os.PathLike, what: str = "checkpoint") -> Path:
    """``path`` as a Path if it is a non-empty file; otherwise a `CheckpointError` saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} not found: {path} (check the path)")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, expected a {what} file")
    if path.stat().st_size == 0:
        raise DamagedCheckpointError(f"{what} {path} is empty (0 bytes): an interrupted copy or download?")
    return path


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu", *, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with `SAFE_GLOBALS` allowed.

    Raises `CheckpointError` (message names ``path``) when the file is missing, a folder, empty,
    truncated / not a torch file, or when it asks for any other global (e.g. a crafted pickle
    whose loading would run a command: refused, nothing runs).
    """
    path = check_checkpoint_path(path, what)
    try:
        with warnings.catch_warnings():
            # torch warns about unusual pickle protocols of foreign files; the error below says enough
            warnings.simplefilter("ignore", UserWarning)
            with torch.serialization.safe_globals(SAFE_GLOBALS):
                return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        refused = _REFUSED_GLOBAL.search(msg)
        if "Weights only load failed" in msg and refused:
            raise UnsafeCheckpointError(
                f"refused to load {what} {path}: it asks to call {refused.group(1)}, and only tensors and plain "
                f"data are loaded (it is not an avssl or AVID checkpoint, or it was crafted to run code)") from None
        if "Weights only load failed" in msg:  # bytes the restricted unpickler does not accept: nothing ran
            raise DamagedCheckpointError(f"cannot read {what} {path}: not a PyTorch checkpoint "
                                         f"({_refusal_reason(msg)})") from None
        raise DamagedCheckpointError(f"cannot read {what} {path}: {_first_line(exc)} (truncated or not a PyTorch file?)") from exc
    except PermissionError as exc:
        raise CheckpointError(f"cannot read {what} {path}: permission denied") from exc
    except Exception as exc:  # truncated zip, foreign bytes
        raise DamagedCheckpointError(f"cannot read {what} {path}: {type(exc).__name__}: {_first_line(exc)} "
                              f"(truncated or not a PyTorch file?)") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
