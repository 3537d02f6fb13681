"""Typed schemas (dataclasses in Hydra's ConfigStore) of the pretraining config's ``optim``, ``trainer``,
``eval`` and ``loss`` sections, and of the fine-tuning config's ``optim``, ``eval`` and ``trainer``.

The YAML files place them first in their defaults lists (``- /schema/optim/adam@_here_``,
``- /schema/trainer@_here_``, ``- /schema/pretrain@_here_`` in pretrain.yaml, ``- /schema/finetune@_here_`` in
finetune.yaml), so every value merged on top
(the YAML itself, an experiment preset, a command-line override) is checked against them at compose time:
an unknown key fails naming it and its section (``Key 'lrr' not in 'AdamConfig'``), a value of the wrong
type or an unknown choice fails naming the valid ones (``Invalid value 'fp32', expected one of [off,
bf16, fp16]``). Each field is ``MISSING`` here: its one default lives in the YAML, next to its comment,
and the code reads it directly (``cfg["optim"]["lr"]``).

Choices are str enums: OmegaConf gives the member back, which compares equal to its string
(``Amp.off == "off"``); `avssl.utils.runs.plain_config` stores its name.

Not typed (yet): pretraining's ``data``, ``model``, ``transforms``, ``cma``, ``clip`` and top-level keys;
fine-tuning's ``dataset``, ``model``, ``init``, ``transforms`` and top-level keys; every other command's config.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, List, Optional

from omegaconf import MISSING


class ScheduleUnit(str, Enum):
    epoch = "epoch"
    step = "step"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Amp(str, Enum):
    off = "off"
    bf16 = "bf16"
    fp16 = "fp16"


class LossName(str, Enum):
    nce = "nce"
    infonce = "infonce"


class LossVariant(str, Enum):
    cross = "cross"
    self = "self"
    joint = "joint"


@dataclass
class OptimConfig:
    """configs/optim/*.yaml: what both optimisers read (`avssl.engine.pretrain.build_optimizer`)."""
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    milestones: List[int] = MISSING
    gamma: float = MISSING
    schedule_unit: ScheduleUnit = MISSING
    warmup: int = MISSING


@dataclass
class AdamConfig(OptimConfig):
    betas: List[float] = MISSING


@dataclass
class SGDConfig(OptimConfig):
    momentum: float = MISSING
    nesterov: bool = MISSING


@dataclass
class TrainerConfig:
    """configs/trainer/*.yaml."""
    epochs: int = MISSING
    max_steps: Optional[int] = MISSING
    device: Device = MISSING
    amp: Amp = MISSING
    channels_last: bool = MISSING
    checkpoint_every: int = MISSING
    keep_last: int = MISSING
    log_every: int = MISSING
    sync_timing: bool = MISSING
    timing_warmup: int = MISSING
    tensorboard: bool = MISSING
    progress: bool = MISSING


@dataclass
class EvalConfig:
    """pretrain.yaml ``eval``: the held-out evaluation."""
    enabled: bool = MISSING
    batch_size: int = MISSING
    every_epochs: int = MISSING
    at_end: bool = MISSING
    sync_shifts: List[float] = MISSING


@dataclass
class LossConfig:
    """pretrain.yaml ``loss``: the memory-bank / InfoNCE objective and the terms any method adds."""
    dim: int = MISSING
    loss: LossName = MISSING
    variant: LossVariant = MISSING
    joint_weights: List[float] = MISSING
    num_negatives: int = MISSING
    temperature: float = MISSING
    momentum: float = MISSING
    in_batch: bool = MISSING
    localization_weight: float = MISSING
    localization_temperature: Optional[float] = MISSING
    # null or {weight, min_shift, ...}: Any, as omegaconf 2.3 cannot merge a dict onto a typed None; its keys
    # and defaults are checked in one place, avssl.methods.terms.TemporalNegatives.from_config
    temporal_negatives: Any = MISSING


@dataclass
class FinetuneOptimConfig:
    """finetune.yaml ``optim`` (Adam; `avssl.downstream.finetune`)."""
    lr: float = MISSING
    weight_decay: float = MISSING
    epochs: int = MISSING
    warmup_epochs: int = MISSING
    warmup_encoder_eval: Any = MISSING  # auto | true | false
    milestones: List[int] = MISSING
    gamma: float = MISSING
    schedule_unit: ScheduleUnit = MISSING
    warmup_steps: Optional[int] = MISSING


@dataclass
class FinetuneEvalConfig:
    batch_size: int = MISSING


@dataclass
class FinetuneTrainerConfig:
    device: Device = MISSING
    progress: bool = MISSING
    tensorboard: bool = MISSING
    stop_after_epochs: Optional[int] = MISSING


# ConfigStore entries: (group, name) -> node. The YAML files name them in their defaults lists.
SCHEMAS: dict[tuple[str, str], Any] = {
    ("schema/optim", "adam"): AdamConfig,
    ("schema/optim", "sgd"): SGDConfig,
    ("schema", "trainer"): TrainerConfig,
    ("schema", "pretrain"): {"eval": EvalConfig, "loss": LossConfig},
    ("schema", "finetune"): {"optim": FinetuneOptimConfig, "eval": FinetuneEvalConfig, "trainer": FinetuneTrainerConfig},
}


def register_schemas() -> None:
    """Store `SCHEMAS` in Hydra's ConfigStore (idempotent); needed before composing the shipped configs."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for (group, name), node in SCHEMAS.items():
        cs.store(group=group, name=name, node=node)
