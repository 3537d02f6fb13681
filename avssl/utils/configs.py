"""The shipped Hydra configs, found through the package, never through the source tree.

The repository's top-level ``configs/`` folder is also the package ``avssl.configs`` (the
``avssl/configs`` link in a checkout, a real folder in an installed wheel), so the commands and
the library compose the same files from any working directory:

    >>> from avssl.utils.configs import compose_config
    >>> cfg = compose_config("pretrain", ["experiment=tiny"])   # what `avssl-pretrain experiment=tiny` sees

Commands declare ``@hydra.main(config_path=CONFIG_PATH, config_name=...)``.

Sweeps (``avssl-pretrain -m optim.lr=1e-3,1e-2``): the shipped configs' ``hydra.sweep.subdir`` is
``${avssl_job_dir:...}`` (`job_dirname`, registered by `register_resolvers`), and a command's task
sets ``run_dir = sweep_job_run_dir(run_dir)``, so every job trains in its own directory.
"""

from __future__ import annotations

import os
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

    register_resolvers()  # + the typed schemas the YAML defaults lists name (avssl.utils.schema)
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


# sweeps: one run directory per job

JOB_DIR_RESOLVER = "avssl_job_dir"
_MAX_DIRNAME = 200  # bytes of one path component stay under the usual 255


def job_dirname(override_dirname: Any, num: Any = 0) -> str:
    """One directory name for a sweep job from Hydra's ``hydra.job.override_dirname`` (``a=1,b=x``):
    path separators become ``_`` (a value such as ``data.world_dir=/data/w`` would nest folders), an empty
    one is ``job<num>``, and a name too long for a file system keeps its start plus a digest of the whole."""
    import hashlib

    name = str(override_dirname or "").replace(os.sep, "_").replace("/", "_").strip()
    if not name or name in (".", ".."):
        return f"job{num}"
    if len(name.encode()) > _MAX_DIRNAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        name = name.encode()[: _MAX_DIRNAME - 13].decode(errors="ignore") + "_" + digest
    return name


def register_resolvers() -> None:
    """Make ``${avssl_job_dir:${hydra.job.override_dirname},${hydra.job.num}}`` (`job_dirname`) known to
    OmegaConf; the shipped configs' ``hydra.sweep.subdir`` uses it. Also stores the typed schemas the
    shipped YAML defaults lists name (`avssl.utils.schema.register_schemas`). The commands call this at import."""
    from omegaconf import OmegaConf

    from avssl.utils.schema import register_schemas

    register_schemas()

    if not OmegaConf.has_resolver(JOB_DIR_RESOLVER):
        OmegaConf.register_new_resolver(JOB_DIR_RESOLVER, job_dirname)


def sweep_job_run_dir(run_dir: str) -> str:
    """Inside a Hydra multirun job: ``<run_dir>/<hydra.sweep.subdir>`` (the shipped configs make the subdir
    the job's overrides, `job_dirname`, e.g. ``experiment=tiny,optim.lr=0.01``), so each job of a sweep has
    its own checkpoints; ``job<N>`` if the subdir is empty. Anywhere else (a single run, a call from
    Python): ``run_dir`` unchanged."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:  # pragma: no cover
        return run_dir
    if not HydraConfig.initialized():
        return run_dir
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return run_dir
    sub = job_dirname(hc.sweep.subdir, hc.job.num)
    return os.path.join(str(run_dir), sub)
