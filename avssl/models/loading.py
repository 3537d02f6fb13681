"""Open a trained model: a checkpoint file or run directory (or a model config) -> the model + its settings.

The one place that reads a pretraining checkpoint into an `AVModel` (weights_only, no code runs) and
returns the clip spec / transforms it was trained with; every app (embeddings, localization,
fine-tuning) opens runs through it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from avssl.io.types import ClipSpec


def _strip_module_prefix(state: dict) -> dict:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def build_model(model_config) -> torch.nn.Module:
    """An AVModel from a config: ``{"_target_": ...}`` (Hydra), the pretraining config's
    ``model`` section (``{video, audio, proj_dim}`` -> `avssl.models.build_av_model`) or a
    preset name (``"tiny"``, ``"avid"``, ...)."""
    from omegaconf import OmegaConf

    if isinstance(model_config, str):  # a preset name ("tiny", "avid", ...)
        from avssl.models import build_av_model

        return build_av_model(model_config)
    if OmegaConf.is_config(model_config):
        model_config = OmegaConf.to_container(model_config, resolve=True)
    cfg = dict(model_config)
    if "_target_" in cfg:
        from hydra.utils import instantiate

        return instantiate(cfg)
    from avssl.models import build_av_model

    return build_av_model(**cfg)


def load_model(checkpoint=None, model_config=None, *, device="cpu", seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """``(model in eval mode, info)`` from a checkpoint file / run dir, or a model config.

    A pretraining checkpoint stores its whole config: its ``model`` section builds the
    architecture (and wins over ``model_config``), its ``model`` state dict fills it, and its
    ``data.spec`` / ``transforms`` are returned in ``info`` so embeddings are computed on the
    inputs the model was trained on. With no checkpoint, ``model_config`` is built with random
    weights drawn after ``torch.manual_seed(seed)`` (the 'random' baseline, reproducible).
    """
    state, run_cfg = None, {}
    if checkpoint is not None:
        from avssl.utils.checkpoint import LATEST_POINTER, CheckpointError, CheckpointManager, load_checkpoint

        p = Path(checkpoint)
        if p.name == LATEST_POINTER and p.is_file():  # <run>/checkpoints/latest: the pointer, not a checkpoint
            p = p.parent.parent
        # weights_only reads (no code runs); a run directory gives its newest checkpoint that reads
        state = CheckpointManager(p).load() if p.is_dir() else load_checkpoint(p)
        if not isinstance(state.get("model"), dict):
            raise CheckpointError(f"{checkpoint} has no 'model' state dict: not an avssl pretraining checkpoint "
                                  f"(a released AVID .pth.tar loads with avssl.models.load_avid_checkpoint)")
        run_cfg = state.get("config") or {}
        if run_cfg.get("model"):
            model_config = run_cfg["model"]
            if isinstance(model_config, dict) and "_target_" in model_config:
                # a file's config is data: instantiating a class it names would run code from the file
                raise CheckpointError(f"{checkpoint}: its stored model config names a _target_ to instantiate "
                                      f"({model_config['_target_']!r}); refused. avssl checkpoints never do that")
    if model_config is None:
        from avssl.utils.errors import UserError

        raise UserError("no model: give a checkpoint that stores its model config, or model_config")
    from omegaconf import OmegaConf

    if OmegaConf.is_config(model_config):
        model_config = OmegaConf.to_container(model_config, resolve=True)
    torch.manual_seed(seed)
    model = build_model(model_config)
    if state is not None:
        model.load_state_dict(_strip_module_prefix(state["model"]))
    info = {
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "weights": "checkpoint" if state is not None else "random",
        "seed": None if state is not None else seed,
        "model_config": model_config if isinstance(model_config, str) else dict(model_config),
        "global_step": (state or {}).get("progress", {}).get("global_step"),
        "method": (state or {}).get("method") or (state or {}).get("stage"),  # older checkpoints: "stage"
        "stage": (state or {}).get("method") or (state or {}).get("stage"),  # the same, under its old name
        "spec": (run_cfg.get("data") or {}).get("spec"),
        "transforms": run_cfg.get("transforms"),
    }
    return model.to(device).eval(), info



def spec_from(spec_config) -> ClipSpec | None:
    """A ClipSpec from its config dict (lists become tuples); None stays None."""
    if spec_config is None or isinstance(spec_config, ClipSpec):
        return spec_config
    d = dict(spec_config)
    if isinstance(d.get("frame_size"), list):
        d["frame_size"] = tuple(d["frame_size"])
    return ClipSpec(**d)
