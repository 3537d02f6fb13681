"""Decoder backends behind `avssl.io.read_clip`. Each module exposes `NAME`, `available()` and
`read(path, times, frame_size, audio_request) -> (frames uint8 [T,H,W,3] | None, audio | None)`."""

from __future__ import annotations

from avssl.io.errors import BackendUnavailable

from . import decord_backend, pyav, torchcodec_backend

_MODULES = {m.NAME: m for m in (pyav, decord_backend, torchcodec_backend)}
# Chosen from benchmarks/clip_reading.md (fastest backend passing the same tests).
DEFAULT_BACKEND = "pyav"
# Names that mean "the default backend" in read_clip(..., backend=...).
DEFAULT_ALIASES = (None, "auto", "default")


def available_backends() -> list[str]:
    """Names of the backends usable on this machine (torchcodec only if it imports)."""
    return [name for name, m in _MODULES.items() if m.available()]


def get_backend(name: str | None):
    """The backend module called `name`; None / "auto" / "default" give DEFAULT_BACKEND."""
    name = DEFAULT_BACKEND if name in DEFAULT_ALIASES else name
    if name not in _MODULES:
        raise BackendUnavailable(f"unknown backend {name!r}; known: {sorted(_MODULES)}")
    mod = _MODULES[name]
    if not mod.available():
        extra = getattr(mod, "unavailable_reason", lambda: None)()
        raise BackendUnavailable(f"backend {name!r} is not usable here" + (f": {extra}" if extra else ""))
    return mod
