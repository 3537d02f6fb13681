"""Loading released AVID / AVID+CMA ``.pth.tar`` checkpoints into `AVModel`.

File layout (facebookresearch/AVID-CMA, ``utils/main_utils.CheckpointManager.save``, called by
``main-avid.py`` as ``save(epoch, model=, optimizer=, train_criterion=)``): a dict with ``epoch``
(int) and the ``state_dict()`` of each keyword -- ``model`` (the DataParallel/DDP-wrapped
``AV_Wrapper``, every key prefixed ``module.``), ``optimizer`` (SGD / Adam) and ``train_criterion``.
Only tensors, numbers and plain containers: it reads with ``weights_only=True`` (zip or legacy format).

Key mapping (after stripping ``module.``) -- identical to this package's `AVModel` names:

===============================================  ==========================================
released key                                      shape / meaning
===============================================  ==========================================
video_model.conv1.0.weight                        [64, 3, 3, 7, 7]   3D stem conv
video_model.conv1.1.{weight,bias,running_*}       [64]               stem BN
video_model.conv{2..5}x.{0,1}.spt_conv{1,2}.weight [Co, Ci, 1, 3, 3]  (2+1)D spatial convs
video_model.conv{2..5}x.{0,1}.tmp_conv{1,2}.weight [Co, Co, 3, 1, 1]  (2+1)D temporal convs
video_model.conv{2..5}x.{0,1}.{spt_bn1,tmp_bn1,spt_bn2,out_bn}.*  [Co]
video_model.conv{3,4,5}x.0.res_conv.weight        [Co, Ci, 1, 1, 1]  strided shortcut
audio_model.conv1.0.weight                        [64, 1, 7, 7]      2D stem conv
audio_model.conv1.1.*                             [64]               stem BN
audio_model.block{1..4}.conv{1,2}.weight          [Co, Ci|Co, 3, 3]  (64,64,128,256,512 chans)
audio_model.block{1..4}.bn{1,2}.*                 [Co]
{video,audio}_proj.projection.{0,2,4}.weight      [512,512],[512,512],[128,512]
{video,audio}_proj.projection.{0,2,4}.bias        [512],[512],[128]
===============================================  ==========================================

``train_criterion`` (AVID): ``nce_average.view1_mem`` [N, 128] (video memory bank),
``nce_average.view2_mem`` [N, 128] (audio memory bank), ``criterion.avg_exp_score`` (the
frozen NCE partition constant Z); AVID+CMA adds ``nce_average.positive_set`` [N, K] int.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from avssl.utils.safe_load import CheckpointError, safe_torch_load


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's state dict does not fit the model; lists what differs.

    The first line of the message is a summary (what the commands print); the next lines list
    every missing / unexpected key and shape mismatch.
    """

    def __init__(self, path: str, missing: list[str], unexpected: list[str], mismatched: list[tuple[str, tuple, tuple]]):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        counts = [f"{len(x)} {name}" for x, name in ((missing, "missing keys"), (unexpected, "unexpected keys"),
                                                      (mismatched, "shape mismatches")) if x]
        lines = [f"checkpoint {path} does not match the model ({', '.join(counts) or 'no matching key'}): "
                 f"is it for another architecture or model preset?"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            lines.append(f"  shape mismatches ({len(mismatched)}): " + ", ".join(
                f"{k} (file {list(f)} vs model {list(m)})" for k, f, m in mismatched))
        super().__init__("\n".join(lines))


@dataclass
class AVIDCheckpointExtras:
    """What a released checkpoint holds besides the weights (None where absent)."""

    video_memory: torch.Tensor | None = None  # [N, D] ``nce_average.view1_mem``
    audio_memory: torch.Tensor | None = None  # [N, D] ``nce_average.view2_mem``
    nce_partition: float | None = None        # ``criterion.avg_exp_score`` (negative: never set)
    positive_set: torch.Tensor | None = None  # [N, K] CMA positives, int64
    epoch: int | None = None
    train_criterion: dict | None = None       # the raw criterion state dict


def strip_prefix(state: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """Drop a DataParallel/DDP ``prefix`` from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def load_avid_checkpoint(path: str | os.PathLike, model: nn.Module, strict: bool = True,
                         map_location: str | torch.device = "cpu") -> AVIDCheckpointExtras:
    """Load the weights of an AVID / AVID+CMA ``.pth.tar`` into ``model`` (an `AVModel`).

    Accepts the released layout (``{"model": {"module.<key>": ...}, "train_criterion": ...}``),
    a bare state dict, or one without the ``module.`` prefix. With ``strict`` any missing or
    unexpected key, or any shape mismatch, raises `CheckpointMismatchError` listing them all
    (nothing is loaded then); without it, matching keys are loaded and the rest is reported
    in the error only if *no* key matched. The file is read with ``weights_only=True``
    (`avssl.utils.safe_load`): a missing, damaged or unsafe file raises `CheckpointError`. Returns the memory banks and the NCE constant
    (`AVIDCheckpointExtras`) for the trainer's ``MemoryBank`` / criterion.
    """
    path = os.fspath(path)
    ckpt = safe_torch_load(path, map_location=map_location)  # weights_only: a crafted file runs nothing
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict")
    state = ckpt.get("model", ckpt)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path}: 'model' is not a state dict of tensors")
    state = strip_prefix(state)

    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = [(k, tuple(state[k].shape), tuple(own[k].shape))
                  for k in own if k in state and state[k].shape != own[k].shape]
    if strict and (missing or unexpected or mismatched):
        raise CheckpointMismatchError(path, missing, unexpected, mismatched)
    loadable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    if not loadable:
        raise CheckpointMismatchError(path, missing, unexpected, mismatched)
    model.load_state_dict(loadable, strict=False)

    extras = AVIDCheckpointExtras(epoch=ckpt.get("epoch") if "model" in ckpt else None)
    crit = ckpt.get("train_criterion") if "model" in ckpt else None
    if isinstance(crit, Mapping):
        crit = strip_prefix(crit)
        extras.train_criterion = dict(crit)
        extras.video_memory = crit.get("nce_average.view1_mem")
        extras.audio_memory = crit.get("nce_average.view2_mem")
        zs = [v for k, v in crit.items() if k.endswith("avg_exp_score")]
        if zs:
            extras.nce_partition = float(torch.stack([torch.as_tensor(z).float() for z in zs]).mean())
        pos = crit.get("nce_average.positive_set")
        extras.positive_set = pos.long() if pos is not None else None
    return extras
