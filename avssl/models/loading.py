"""Open a trained model: a checkpoint file, run directory or exported folder (or a model config) ->
the model + the inputs it was trained on.

The one place that reads a pretraining checkpoint into an `AVModel` (weights_only, no code runs) and
returns the clip spec / transforms it was trained with; every app (embeddings, localization,
fine-tuning) opens runs through it. A model read here *carries* those inputs (`preprocessing_of`),
so passing the bare module on to an app cannot silently switch to other clip settings.

Exported folder (`save_pretrained`): ``model.safetensors`` (the state dict; safetensors holds only
tensors, so reading it runs no code) + ``config.yaml`` (``format``, ``model`` config, ``preprocessing``
{spec, transforms}, ``method``, ``source``, ``training`` summary, the whole ``training_config``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from avssl.io.types import ClipSpec

EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "config.yaml"
EXPORT_FORMAT = "avssl-pretrained/1"
PREPROCESSING_ATTR = "avssl_preprocessing"  # the attribute of a loaded nn.Module holding its Preprocessing


@dataclass(frozen=True)
class Preprocessing:
    """The inputs a model was trained on: clip ``spec`` (frames, fps, decode size, audio window)
    and ``transforms`` (the pretraining config's ``transforms`` section: ``{"video": VideoAugment
    kwargs, "audio": LogSpectrogram kwargs}``; None = the defaults)."""

    spec: ClipSpec = field(default_factory=ClipSpec)
    transforms: dict | None = None

    @classmethod
    def from_config(cls, spec=None, transforms=None) -> "Preprocessing":
        """From config data (a spec dict or ClipSpec; a transforms mapping, OmegaConf or plain)."""
        from omegaconf import OmegaConf

        if OmegaConf.is_config(transforms):
            transforms = OmegaConf.to_container(transforms, resolve=True)
        if OmegaConf.is_config(spec):
            spec = OmegaConf.to_container(spec, resolve=True)
        tc = None if transforms is None else {k: dict(v or {}) for k, v in dict(transforms).items()}
        return cls(spec_from(spec) or ClipSpec(), tc)

    def to_config(self) -> dict:
        """Plain data (YAML / JSON): ``{"spec": {...}, "transforms": {...} | None}``."""
        spec = dataclasses.asdict(self.spec)
        if isinstance(spec.get("frame_size"), tuple):
            spec["frame_size"] = list(spec["frame_size"])
        return {"spec": spec, "transforms": self.transforms}

    def eval_transforms(self, device="cpu"):
        """``(video_transform, audio_transform)`` for evaluation (`avssl.transforms.config.default_transforms`)."""
        from avssl.transforms.config import default_transforms

        return default_transforms(self.spec, device, self.transforms)


def attach_preprocessing(module: torch.nn.Module, pre: Preprocessing) -> torch.nn.Module:
    """Record on ``module`` the inputs it was trained on (a plain attribute: not in its state dict)."""
    object.__setattr__(module, PREPROCESSING_ATTR, pre)
    return module


def preprocessing_of(model) -> Preprocessing | None:
    """The `Preprocessing` a model carries (a `LoadedModel`, or a module read by `load_model`), or None."""
    if isinstance(model, LoadedModel):
        return model.preprocessing
    pre = getattr(model, PREPROCESSING_ATTR, None)
    return pre if isinstance(pre, Preprocessing) else None


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


def is_exported(path) -> bool:
    """True when ``path`` is a folder written by `save_pretrained` (``config.yaml`` + ``model.safetensors``)."""
    p = Path(path)
    return p.is_dir() and (p / EXPORT_CONFIG).is_file() and (p / EXPORT_WEIGHTS).is_file()


TRAINING_SUMMARY_KEYS = ("name", "method", "seed")
TRAINING_SUMMARY_SECTIONS = {"data": ("source", "world_preset", "train_source", "clips_per_video", "batch_size"),
                             "optim": ("name", "lr", "weight_decay"), "trainer": ("epochs", "max_steps"),
                             "loss": ("loss", "variant", "dim", "num_negatives", "temperature", "in_batch",
                                      "localization_weight")}


def training_summary(run_cfg: Mapping | None, global_step=None) -> dict:
    """The few settings of a pretraining config a reader of a model wants first (what it was trained
    on, how long, with which objective); keys absent from the config are left out."""
    cfg = dict(run_cfg or {})
    out: dict[str, Any] = {k: cfg[k] for k in TRAINING_SUMMARY_KEYS if cfg.get(k) is not None}
    for section, keys in TRAINING_SUMMARY_SECTIONS.items():
        sec = cfg.get(section) or {}
        picked = {k: sec[k] for k in keys if isinstance(sec, Mapping) and sec.get(k) is not None}
        if picked:
            out[section] = picked
    if global_step is not None:
        out["global_step"] = int(global_step)
    return out


def _refuse_target(model_config, source) -> None:
    from avssl.utils.checkpoint import CheckpointError

    if isinstance(model_config, Mapping) and "_target_" in model_config:
        # a file's config is data: instantiating a class it names would run code from the file
        raise CheckpointError(f"{source}: its stored model config names a _target_ to instantiate "
                              f"({model_config['_target_']!r}); refused. avssl checkpoints never do that")


def _read_exported(folder: Path) -> dict:
    """``{"weights", "model_config", "config", "meta"}`` of a `save_pretrained` folder."""
    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    from avssl.utils.checkpoint import CheckpointError

    try:
        meta = OmegaConf.to_container(OmegaConf.load(folder / EXPORT_CONFIG), resolve=True)
    except Exception as exc:  # a YAML parse error of any kind: one line naming the file
        raise CheckpointError(f"{folder / EXPORT_CONFIG}: not a readable config ({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT or not meta.get("model"):
        raise CheckpointError(f"{folder / EXPORT_CONFIG}: not an avssl export (format {EXPORT_FORMAT!r} with a model "
                              f"section expected)")
    _refuse_target(meta["model"], folder / EXPORT_CONFIG)
    try:
        weights = load_file(str(folder / EXPORT_WEIGHTS), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError on damaged files
        raise CheckpointError(f"{folder / EXPORT_WEIGHTS}: cannot read ({type(exc).__name__}: {exc})") from exc
    return {"weights": weights, "model_config": meta["model"], "config": meta.get("training_config") or {},
            "meta": meta}


def _released_avid(path: Path, state: dict) -> dict:
    """A released AVID / AVID+CMA ``.pth.tar`` (facebookresearch/AVID-CMA; `avssl.models.checkpoint`): no
    config inside, so the architecture and inputs are the paper recipe's, read from the shipped preset
    (``experiment=avid_audioset`` when the file name says AudioSet, else ``avid_kinetics``)."""
    from avssl.models.checkpoint import strip_prefix
    from avssl.utils.configs import compose_config
    from omegaconf import OmegaConf

    preset = "avid_audioset" if "audioset" in path.name.lower() else "avid_kinetics"
    cfg = OmegaConf.to_container(compose_config("pretrain", [f"experiment={preset}"]), resolve=True,
                                 enum_to_str=True)
    crit = state.get("train_criterion") or {}
    method = "cma" if isinstance(crit, Mapping) and "nce_average.positive_set" in crit else "avid"
    meta = {"method": method, "global_step": None, "released": {"file": path.name, "epoch": state.get("epoch"),
                                                                  "preset": preset},
            "preprocessing": {"spec": cfg["data"]["spec"], "transforms": cfg["transforms"]},
            "training": {"name": f"released {method.upper()} ({path.name})", "method": method,
                         "epoch": state.get("epoch"), "recipe": f"configs/experiment/{preset}.yaml"}}
    return {"weights": strip_prefix(state["model"]), "model_config": cfg["model"], "config": {}, "meta": meta}


def _read_checkpoint(checkpoint) -> dict:
    """``{"weights", "model_config", "config", "meta"}`` of a checkpoint file, run directory or export."""
    from avssl.utils.checkpoint import LATEST_POINTER, CheckpointError, CheckpointManager, load_checkpoint

    p = Path(checkpoint)
    if p.name == LATEST_POINTER and p.is_file():  # <run>/checkpoints/latest: the pointer, not a checkpoint
        p = p.parent.parent
    if is_exported(p):
        return _read_exported(p)
    # weights_only reads (no code runs); a run directory gives its newest checkpoint that reads
    state = CheckpointManager(p).load() if p.is_dir() else load_checkpoint(p)
    if not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{checkpoint} has no 'model' state dict: not an avssl pretraining checkpoint "
                              f"(a released AVID .pth.tar loads with avssl.models.load_avid_checkpoint)")
    if not state.get("config") and ("train_criterion" in state or "epoch" in state):
        return _released_avid(p, state)
    run_cfg = state.get("config") or {}
    _refuse_target(run_cfg.get("model"), checkpoint)
    method = state.get("method") or state.get("stage")  # older checkpoints: "stage"
    meta = {"method": method, "global_step": (state.get("progress") or {}).get("global_step"),
            "preprocessing": {"spec": (run_cfg.get("data") or {}).get("spec"), "transforms": run_cfg.get("transforms")}}
    return {"weights": _strip_module_prefix(state["model"]), "model_config": run_cfg.get("model"), "config": run_cfg,
            "meta": meta}


def _load_weights(model: torch.nn.Module, weights: Mapping, source) -> None:
    """``model.load_state_dict(weights)``, strict; a mismatch is one `CheckpointMismatchError` listing it."""
    from avssl.models.checkpoint import CheckpointMismatchError

    own = model.state_dict()
    missing = sorted(k for k in own if k not in weights)
    unexpected = sorted(k for k in weights if k not in own)
    mismatched = [(k, tuple(weights[k].shape), tuple(own[k].shape))
                  for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(str(source), missing, unexpected, mismatched)
    model.load_state_dict(weights)


def open_model(checkpoint=None, model_config=None, *, device="cpu", seed: int = 0) -> tuple[torch.nn.Module, dict, dict]:
    """`load_model` plus the whole pretraining config: ``(model, info, training_config)``."""
    src = _read_checkpoint(checkpoint) if checkpoint is not None else None
    if src is not None and src["model_config"]:
        model_config = src["model_config"]  # the checkpoint's own architecture wins
    if model_config is None:
        from avssl.utils.errors import UserError

        raise UserError("no model: give a checkpoint that stores its model config, or model_config")
    from omegaconf import OmegaConf

    if OmegaConf.is_config(model_config):
        model_config = OmegaConf.to_container(model_config, resolve=True)
    torch.manual_seed(seed)
    model = build_model(model_config)
    meta = (src or {}).get("meta") or {}
    if src is not None:
        _load_weights(model, src["weights"], checkpoint)
    pre_cfg = meta.get("preprocessing") or {}
    method = meta.get("method")
    run_cfg = (src or {}).get("config") or {}
    info = {
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "weights": "checkpoint" if src is not None else "random",
        "seed": None if src is not None else seed,
        "model_config": model_config if isinstance(model_config, str) else dict(model_config),
        "global_step": meta.get("global_step"),
        "method": method,
        "stage": method,  # the same, under its old name
        "spec": pre_cfg.get("spec"),
        "transforms": pre_cfg.get("transforms"),
        "training": meta.get("training") or training_summary(run_cfg, meta.get("global_step")),
    }
    if meta.get("released"):
        info["released"] = meta["released"]
    if src is not None:  # a random init carries nothing: the caller says which inputs it means
        attach_preprocessing(model, Preprocessing.from_config(pre_cfg.get("spec"), pre_cfg.get("transforms")))
    return model.to(device).eval(), info, run_cfg


def load_model(checkpoint=None, model_config=None, *, device="cpu", seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """``(model in eval mode, info)`` from a checkpoint file / run dir / exported folder, or a model config.

    A pretraining checkpoint stores its whole config: its ``model`` section builds the
    architecture (and wins over ``model_config``), its ``model`` state dict fills it, and its
    ``data.spec`` / ``transforms`` are returned in ``info`` -- and attached to the model
    (`preprocessing_of`) -- so embeddings are computed on the inputs the model was trained on.
    With no checkpoint, ``model_config`` is built with random weights drawn after
    ``torch.manual_seed(seed)`` (the 'random' baseline, reproducible).
    ``avssl.load_model`` wraps this in one object (`avssl.pretrained.Pretrained`).
    """
    model, info, _ = open_model(checkpoint, model_config, device=device, seed=seed)
    return model, info


@dataclass
class LoadedModel:
    """A model and what it takes to use it: ``module`` (the `AVModel`, eval mode), ``preprocessing``
    (the inputs it was trained on), ``info`` (`load_model`'s: source, method, step, ``training``
    summary) and ``config`` (the whole pretraining config, or {}). Apps accept it wherever they take
    a model; ``avssl.Pretrained`` adds the embedding / heatmap methods."""

    module: torch.nn.Module
    preprocessing: Preprocessing
    info: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    @classmethod
    def load(cls, source, *, device="cpu"):
        """From a checkpoint file, run directory (its newest checkpoint) or `save_pretrained` folder."""
        module, info, cfg = open_model(source, device=device)
        return cls(module, Preprocessing.from_config(info["spec"], info["transforms"]), info, cfg)

    @property
    def spec(self) -> ClipSpec:
        return self.preprocessing.spec

    @property
    def transforms(self) -> dict | None:
        return self.preprocessing.transforms

    @property
    def device(self) -> torch.device:
        p = next(self.module.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device):
        self.module.to(device)
        return self

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``model.safetensors`` + ``config.yaml`` into ``folder`` (`save_pretrained`)."""
        return save_pretrained(self.module, folder, self.preprocessing, info=self.info, config=self.config)


def save_pretrained(module: torch.nn.Module, folder: str | os.PathLike, preprocessing: Preprocessing, *,
                    info: Mapping | None = None, config: Mapping | None = None) -> Path:
    """Export ``module`` to ``folder``: ``model.safetensors`` (its state dict) and ``config.yaml``
    (``model`` config from ``info["model_config"]``, ``preprocessing``, ``method``, ``source``,
    ``training`` summary, the whole pretraining ``config``). `load_model` / ``avssl.load_model``
    read it back to the same weights and inputs. Files are written 0644 (readable by the group)."""
    from omegaconf import OmegaConf
    from safetensors.torch import save_model

    from avssl.utils.errors import UserError

    info = dict(info or {})
    model_config = info.get("model_config")
    if not model_config:
        raise UserError("save_pretrained: no model config to record (info['model_config']); open the model with "
                        "avssl.load_model / avssl.models.loading.load_model")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_model(module, str(out / EXPORT_WEIGHTS))  # handles shared tensors; only tensors in the file
    meta = {"format": EXPORT_FORMAT, "model": model_config, "preprocessing": preprocessing.to_config(),
            "method": info.get("method"), "global_step": info.get("global_step"),
            "source": info.get("checkpoint"), "training": info.get("training") or training_summary(config),
            "training_config": dict(config or {})}
    (out / EXPORT_CONFIG).write_text(OmegaConf.to_yaml(OmegaConf.create(meta)))
    for f in (EXPORT_WEIGHTS, EXPORT_CONFIG):
        os.chmod(out / f, 0o644)
    return out


def spec_from(spec_config) -> ClipSpec | None:
    """A ClipSpec from its config dict (lists become tuples); None stays None."""
    if spec_config is None or isinstance(spec_config, ClipSpec):
        return spec_config
    d = dict(spec_config)
    if isinstance(d.get("frame_size"), list):
        d["frame_size"] = tuple(d["frame_size"])
    return ClipSpec(**d)
