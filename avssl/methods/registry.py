"""Which pretraining methods exist: every module of the `avssl.methods` package that defines a
`Method` subclass with a ``name`` registers it (``Method.__init_subclass__``), and the registry
imports every module of the package on first use. Adding a method is adding one module (plus its
config presets): nothing else lists them."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import TYPE_CHECKING

from avssl.utils.errors import UserError

if TYPE_CHECKING:
    from avssl.methods.base import Method

__all__ = ["register", "available_methods", "get_method", "method_name", "build_method"]

_METHODS: dict[str, type] = {}
_INFRASTRUCTURE = {"base", "registry", "terms"}  # modules of the package that define no method
_discovered = False


def register(cls: type) -> type:
    """Record a concrete method class under ``cls.name`` (called by ``Method.__init_subclass__``)."""
    other = _METHODS.get(cls.name)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise ValueError(f"two methods named {cls.name!r}: {other.__module__}.{other.__qualname__} and "
                         f"{cls.__module__}.{cls.__qualname__}")
    _METHODS[cls.name] = cls
    return cls


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    import avssl.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _INFRASTRUCTURE and not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _discovered = True


def available_methods() -> list[str]:
    """Names of every method module in `avssl.methods`, sorted."""
    _discover()
    return sorted(_METHODS)


def get_method(name: str) -> type["Method"]:
    _discover()
    if name not in _METHODS:
        raise UserError(f"method={name!r}: no such pretraining method; methods are {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def method_name(cfg: Mapping) -> str:
    """The config's ``method`` (``stage``, its former name, is still read: old run configs, checkpoints'
    stored configs); both given and different is a user mistake."""
    method, stage = cfg.get("method"), cfg.get("stage")
    if method and stage and method != stage:
        raise UserError(f"method={method!r} and stage={stage!r} disagree: stage is the old name of method; give one")
    name = method or stage
    if not name:
        raise UserError("no pretraining method: set method=<name> (" + ", ".join(available_methods()) + ")")
    return str(name)


def build_method(cfg: Mapping, num_items: int, fingerprint: str | None) -> "Method":
    """The configured method (``cfg["method"]``), built from the config."""
    return get_method(method_name(cfg)).from_config(cfg, num_items, fingerprint)
