"""avssl: audio-visual self-supervised learning (AVID, Cross-Modal Agreement) and its downstream tools.

    >>> import avssl
    >>> model = avssl.load_model("runs/cma")     # a run, a checkpoint or an export -> avssl.Pretrained
"""

__version__ = "0.1.0"

_LAZY = {"load_model": "avssl.pretrained", "Pretrained": "avssl.pretrained"}


def __getattr__(name: str):
    # imported on first use: `import avssl` stays light (no torch), and the package root imports nothing
    # from the layers below it (pyproject [tool.importlinter])
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'avssl' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", "load_model", "Pretrained"]
