"""The shipped Hydra configs, found through the package, never through the source tree.

The repository's top-level ``configs/`` folder is also the package ``avssl.configs`` (the
``avssl/configs`` link in a checkout, a real folder in an installed wheel), so the commands and
the library compose the same files from any working directory:

    >>> from avssl.utils.configs import compose_config
    >>> cfg = compose_config("pretrain", ["experiment=tiny"])   # what `avssl-pretrain experiment=tiny` sees

Commands declare ``@hydra.main(config_path=CONFIG_PATH, config_name=...)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

CONFIG_MODULE = "avssl.configs"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"  # Hydra's search-path form of the package
VERSION_BASE = "1.3"


def compose_config(config_name: str, overrides: Sequence[str] = ()):
    """The `DictConfig` a command reading ``config_name`` would see with these command-line overrides.

    Inside a running Hydra app on these configs (the main job's ``avssl-demo``) Hydra is reused;
    otherwise it is initialised on the package for this call only (another app's Hydra state, if
    any, is put back afterwards)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    gh = GlobalHydra.instance()
    if gh.is_initialized() and _searches_package(gh):
        return compose(config_name=config_name, overrides=list(overrides))
    backup = get_gh_backup()
    gh.clear()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base=VERSION_BASE):
            return compose(config_name=config_name, overrides=list(overrides))
    finally:
        restore_gh_from_backup(backup)


def _searches_package(gh) -> bool:
    return any(p.path == CONFIG_PATH for p in gh.config_loader().get_search_path().get_path())


def config_names() -> list[str]:
    """The primary configs shipped (``pretrain``, ``finetune``, ...): one per Hydra command."""
    from importlib.resources import files

    return sorted(p.name.removesuffix(".yaml") for p in files(CONFIG_MODULE).iterdir()
                  if p.name.endswith(".yaml"))


_BARE = re.compile(r"^[A-Za-z_/.][\w./:+-]*$")


def hydra_value(v: Any) -> str:
    """A Python value written in Hydra's override grammar (``{a: 1, b: [x, y]}``, ``null``)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(hydra_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {hydra_value(x)}" for k, x in v.items()) + "}"
    s = str(v)
    if _BARE.match(s) and s.lower() not in ("null", "true", "false", "nan", "inf"):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
