"""Runs: the config a checkpoint records, the check a resume makes against it, one directory per sweep job.

A checkpoint stores the composed, resolved run config as plain data (`plain_config`: dicts, lists,
str, int, float, bool, None), so ``torch.load(path, weights_only=True)["config"]`` reads it.

Resuming compares that config with the new one, key by key (`config_changes`): every leaf whose
dotted key is not covered by the trainer's list of harmless keys (progress, logging, evaluation,
worker counts, device, where the run stops, ...) must be equal. A difference stops the run with one
line naming each key, old -> new (`check_resume_config`, `ConfigMismatchError`), unless the user
asked to continue anyway (``resume=force``). The setting ``resume`` reads (`parse_resume`):

    auto              the newest checkpoint under run_dir, if any, with the settings check
    never             start fresh (checkpoints already in run_dir are overwritten as the new run saves)
    force             as auto, but a settings difference is logged as a warning, not refused
    <file or run dir> that checkpoint, with the check;  force:<file or run dir>: without refusing

Sweeps: under Hydra multirun (``-m optim.lr=1e-3,1e-2``) every job runs in its own directory
``<run_dir>/<the job's overrides>`` (`avssl.utils.configs.sweep_job_run_dir`), so two jobs never
resume each other; a single run keeps ``run_dir`` as given.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any

from avssl.utils.safe_load import CheckpointError

log = logging.getLogger(__name__)

RESUME_MODES = ("auto", "never", "force")
FORCE_PREFIX = "force:"
_ABSENT = object()
_MAX_VALUE_CHARS = 40


class ConfigMismatchError(CheckpointError):
    """The run being resumed was trained with other settings (the message lists them, old -> new)."""


# --------------------------------------------------------------------------------------------
# the stored config
# --------------------------------------------------------------------------------------------


def plain_config(cfg: Any) -> Any:
    """A config (OmegaConf `DictConfig` / `ListConfig`, resolved, or nested dicts / lists) as plain data a
    ``weights_only`` load reads: dict (str keys) / list / str / int / float / bool / None. Tuples become
    lists, enums (the typed choices) their value, paths and numpy scalars their str / Python value; any other object its ``str``."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf comes with hydra, a dependency
        pass
    if isinstance(cfg, Mapping):
        return {str(k): plain_config(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [plain_config(v) for v in cfg]
    if isinstance(cfg, Enum):  # a typed choice (avssl.utils.schema): its str value, never the class
        return plain_config(cfg.value)
    if cfg is None or isinstance(cfg, (bool, int, float, str)):
        return cfg
    if isinstance(cfg, PurePath):
        return str(cfg)
    if hasattr(cfg, "item") and callable(cfg.item):  # numpy / torch scalars
        try:
            return plain_config(cfg.item())
        except (TypeError, ValueError):
            pass
    return str(cfg)


def flatten(cfg: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1e-3}}`` -> ``{"optim.lr": 1e-3}``: dotted key -> leaf (lists are leaves;
    an empty dict is a leaf too, so a section that appears or empties is seen)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# --------------------------------------------------------------------------------------------
# comparing a saved config with the new one
# --------------------------------------------------------------------------------------------


def is_harmless(key: str, harmless: Iterable[str]) -> bool:
    """True when ``key`` is one of ``harmless`` or lies under one of them (``eval`` covers ``eval.batch_size``)."""
    return any(key == h or key.startswith(h + ".") for h in harmless)


def _same(a: Any, b: Any) -> bool:
    """Equal as config values: 1e-3 == 0.001, 1 == 1.0, (1, 2) == [1, 2], NaN == NaN; True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


# values older checkpoints stored for what a typed choice now spells out (YAML read `amp: off` as false)
_LEGACY_SPELLINGS = {("trainer.amp", False): "off"}


def config_changes(saved: Mapping, current: Mapping, harmless: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """``[(dotted key, saved value, current value)]`` for every leaf that differs, sorted by key, leaving out
    the keys `is_harmless` covers. A key only one side has gives the other side `MISSING` (shown "(absent)")."""
    harmless = tuple(harmless)
    a, b = flatten(plain_config(saved)), flatten(plain_config(current))
    out = []
    for key in sorted(set(a) | set(b)):
        if is_harmless(key, harmless):
            continue
        old, new = a.get(key, _ABSENT), b.get(key, _ABSENT)
        old = _LEGACY_SPELLINGS.get((key, old), old) if isinstance(old, bool) else old
        if old is _ABSENT or new is _ABSENT or not _same(old, new):
            out.append((key, MISSING if old is _ABSENT else old, MISSING if new is _ABSENT else new))
    return out


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


MISSING = _Missing()


def _show(v: Any) -> str:
    """A value as the user wrote it (``0.001``, ``avid``, ``[6, 10]``, ``null``), at most 40 characters."""
    if v is MISSING:
        text = "(absent)"
    elif v is None:
        text = "null"
    elif isinstance(v, bool):
        text = "true" if v else "false"
    else:
        text = str(v)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def describe_changes(changes: list[tuple[str, Any, Any]]) -> str:
    """``optim.lr 0.001 -> 0.01, loss.temperature 0.07 -> 0.1``"""
    return ", ".join(f"{k} {_show(old)} -> {_show(new)}" for k, old, new in changes)


def check_resume_config(saved: Mapping | None, current: Mapping, *, harmless: Iterable[str], force: bool,
                        source: str, logger: logging.Logger | None = None) -> list[tuple[str, Any, Any]]:
    """Compare the config a checkpoint stored (``saved``) with the run's (``current``); returns the changes.

    No change: returns ``[]``. Changes and ``force``: one warning line naming them, returned. Changes without
    ``force``: `ConfigMismatchError`, one line naming each key old -> new and how to continue anyway or
    start afresh. A checkpoint that stores no config (written by other code) is resumed with a warning."""
    logger = logger or log
    if not isinstance(saved, Mapping):
        logger.warning("%s stores no run config: its training settings cannot be compared with this run's", source)
        return []
    changes = config_changes(saved, current, harmless)
    if not changes:
        return []
    what = describe_changes(changes)
    if force:
        logger.warning("resume=force: continuing %s under changed training settings: %s", source, what)
        return changes
    raise ConfigMismatchError(
        f"{source} was trained with other settings ({len(changes)} changed: {what}); continue it anyway with "
        f"resume=force, or start a fresh run in another run_dir=... (or resume=never to overwrite this one)")


def parse_resume(value: Any) -> tuple[str, str | None, bool]:
    """The ``resume`` setting -> ``(mode, path, force)``: mode 'auto' | 'never' | 'path';
    ``force`` for ``force`` and ``force:<path>``. None / False mean never; True means auto."""
    if value is None or value is False or value == "never":
        return "never", None, False
    if value is True or value == "auto":
        return "auto", None, False
    if value == "force":
        return "auto", None, True
    text = str(value)
    if text.startswith(FORCE_PREFIX):
        path = text[len(FORCE_PREFIX):]
        if not path:
            raise CheckpointError("resume=force: names no checkpoint; write resume=force (the newest under "
                                  "run_dir) or resume=force:<checkpoint file or run directory>")
        return "path", path, True
    return "path", text, False
