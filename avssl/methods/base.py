"""The pretraining-method interface: what the method-agnostic trainer (`avssl.engine.pretrain`)
asks of a method, and the loss terms any method can add.

A method is one module of `avssl.methods` holding one `Method` subclass with a ``name`` (the
config's ``method:`` value; `avssl.methods.registry` discovers it). The trainer's whole contract:

    method = Method.from_config(cfg, num_items, fingerprint)   # objective + its state, from the config
    method.to(device); method.parameters()                       # learnable objective parameters (optimised
                                                                 #   with the model, e.g. a logit scale)
    method.needs_dense                                           # model(video, audio, dense=True)?
    method.start(model, fingerprint=, logger=)                   # a fresh run (not resumed): e.g. CMA loads
                                                                 #   its AVID checkpoint
    method.on_epoch_start(epoch, device=, logger=)               # e.g. CMA recomputes its positive sets
    method.on_step_start(step); method.wants_shifted_audio()     # temporal negatives this step? (the trainer
                                                                 #   then embeds each clip's shifted audio)
    loss, stats = method.loss(ModelOutputs(...), ids, generator) # the step's loss (+ the added terms)
    method.state_dict() / method.load_state_dict(state)          # checkpoint entry "criterion"

Checkpoints name the method under ``"method"`` (older ones under ``"stage"``: `checkpoint_method`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from avssl.utils.errors import UserError

__all__ = ["ModelOutputs", "Term", "Method", "checkpoint_method", "method_options"]


@dataclass
class ModelOutputs:
    """What the model's forward pass hands the method (float32, whatever the autocast dtype).

    video, audio: projected embeddings [B, D] (not normalised); video_dense: unit-norm per-position
    video embeddings [B, D, T, H, W] (``AVModel.forward(..., dense=True)``), only when the method
    ``needs_dense``; audio_shifted: projected embeddings [B, D] of each clip's audio window shifted in
    time (temporal negatives, ``Method.temporal``) and shift [B] its shift in s (0: none fitted)."""

    video: torch.Tensor
    audio: torch.Tensor
    video_dense: torch.Tensor | None = None
    audio_shifted: torch.Tensor | None = None
    shift: torch.Tensor | None = None


class Term(abc.ABC):
    """A loss term added to a method's objective: ``loss += weight * term(outputs, ids)``, logged
    as ``loss/<name>``. Stateless (nothing to checkpoint)."""

    name: ClassVar[str]
    needs_dense: ClassVar[bool] = False
    weight: float

    @abc.abstractmethod
    def __call__(self, out: ModelOutputs, ids: torch.Tensor) -> torch.Tensor:
        """The term's value (a scalar with gradient) for the batch."""


class Method(abc.ABC):
    """A pretraining method: its objective (``criterion``, an ``nn.Module`` holding all of its state:
    memory banks, constants, positive sets, learnable parameters) plus added `Term`s.

    Subclasses set ``name`` and implement `from_config` and `objective`; the hooks default to
    doing nothing."""

    name: ClassVar[str]
    criterion: nn.Module
    terms: list[Term]
    temporal = None  # `avssl.methods.terms.TemporalNegatives` (loss.temporal_negatives) or None
    step: int = 0  # the trainer's global step of the batch being processed (`on_step_start`)

    def __init__(self, criterion: nn.Module, terms: Iterable[Term] = (), temporal=None) -> None:
        self.criterion = criterion
        self.terms = list(terms)
        self.temporal = temporal

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a concrete method: known to the registry once its module is imported
            from avssl.methods.registry import register

            register(cls)

    # ------------------------------------------------------------------ construction
    @classmethod
    @abc.abstractmethod
    def from_config(cls, cfg: Mapping, num_items: int, fingerprint: str | None) -> "Method":
        """The method from the pretraining config (``loss``, its own section ``cfg[name]``, the added
        terms: `avssl.methods.terms.terms_from_config`). ``num_items``: memory-bank slots (largest
        training id + 1); ``fingerprint``: the training index's, stored with any state keyed on ids."""

    # ------------------------------------------------------------------ the trainer's hooks
    @property
    def needs_dense(self) -> bool:
        """Whether the forward pass must also return the dense video map (`ModelOutputs.video_dense`)."""
        return any(t.needs_dense for t in self.terms)

    def to(self, device: torch.device | str) -> "Method":
        self.criterion.to(device)
        return self

    def parameters(self) -> list[nn.Parameter]:
        """The objective's learnable parameters (trained with the model's; empty for most methods)."""
        return [p for p in self.criterion.parameters() if p.requires_grad]

    def start(self, model: nn.Module, *, fingerprint: str | None, logger) -> None:
        """A fresh run begins (not a resumed one); ``model`` is the bare model (no DDP wrapper)."""

    def on_step_start(self, step: int) -> None:
        """The trainer's global step of the batch about to be processed (1 = first; schedules read it)."""
        self.step = int(step)

    def wants_shifted_audio(self) -> bool:
        """Whether this step's loss uses the shifted audio (the trainer then embeds it): temporal
        negatives configured and their weight at this step > 0."""
        return self.temporal is not None and self.temporal.weight_at(self.step) > 0

    def hard_weights(self, out: ModelOutputs) -> torch.Tensor | None:
        """Per-clip weights [B] of the temporal negatives at this step (None: none this step)."""
        return None if self.temporal is None else self.temporal.row_weights(out, self.step)

    def on_epoch_start(self, epoch: int, *, device: torch.device, logger) -> None:
        """Epoch ``epoch`` begins from its first batch (also right after a resume at an epoch boundary).
        Collective under torch.distributed when the method's work is."""

    @abc.abstractmethod
    def objective(self, out: ModelOutputs, ids: torch.Tensor, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
        """The method's own loss for the batch and detached statistics (``loss/*``, ``sim/*_pos``,
        ``sim/*_neg`` cosines). ``ids``: the clips' manifest ids; ``generator``: for random draws."""

    def loss(self, out: ModelOutputs, ids: torch.Tensor, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, Any]]:
        """`objective` plus ``weight x term`` for every added term (each logged as ``loss/<name>``)."""
        loss, stats = self.objective(out, ids, generator)
        for term in self.terms:
            value = term(out, ids)
            stats[f"loss/{term.name}"] = value.detach()
            loss = loss + term.weight * value
        return loss, stats

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's ``criterion`` entry."""
        return self.criterion.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.criterion.load_state_dict(state)


def checkpoint_method(state: Mapping[str, Any]) -> str | None:
    """The method a checkpoint was written by: ``state["method"]``, or ``state["stage"]`` in
    checkpoints written before methods had their own modules (same names: avid, cma)."""
    return state.get("method") or state.get("stage")


def method_options(cfg: Mapping, section: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with the config's ``cfg[section]`` (may be absent); a key the method does
    not know is a user mistake (a misspelling would otherwise be ignored)."""
    given = dict(cfg.get(section) or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise UserError(f"{section}.{unknown[0]}: not an option of this method; {section} takes "
                        f"{', '.join(sorted(defaults))}")
    return {**defaults, **given}
