"""Bottom-layer utilities: they import nothing from the rest of avssl.

- `UserError` (errors.py): a mistake in what the user gave (a path, a config value); commands
  print it as one line.
- `safe_torch_load`, `CheckpointError` (safe_load.py): read a checkpoint without running any code
  it may carry (``weights_only=True``).
- `atomic_torch_save`, `load_checkpoint`, `CheckpointManager`, RNG capture/restore (checkpoint.py):
  checkpoint I/O (crash-safe writes, fingerprint checks, newest-that-reads).
- torch.distributed helpers (distributed.py): rank/world size, gathers (with gradient or of
  varying sizes), reductions, `run_distributed` (spawned gloo processes for tests/benchmarks).
- `run_main` (cli.py): the console commands' error boundary (one line for user mistakes,
  tracebacks for bugs, ``--debug`` for both).
"""

from avssl.utils.errors import UserError

_LAZY = {
    "CheckpointError": "avssl.utils.safe_load",
    "DamagedCheckpointError": "avssl.utils.safe_load",
    "UnsafeCheckpointError": "avssl.utils.safe_load",
    "safe_torch_load": "avssl.utils.safe_load",
    "run_main": "avssl.utils.cli",
}


def __getattr__(name: str):  # torch is imported only by what needs it
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avssl.utils' has no attribute {name!r}")


__all__ = ["UserError", *_LAZY]
