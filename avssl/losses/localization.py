"""A localization-aware cross-modal term: audio against the best-matching video *position*.

The AVID objectives score an audio clip against the video's pooled embedding, so nothing asks an
individual position of the feature map to resemble the sound; heatmaps read off those positions
(``AVModel.video_dense_embeddings``) then follow the pooled statistics, not the source. This term
(the multiple-instance formulation of EZ-VSL, Mo & Morgado ECCV 2022) scores clip pairs by their
best position instead:

    s_ij = mean_t max_{h,w} <v_i(t,h,w), a_j> / T

with ``v_i(t,h,w)`` the unit-norm per-position video embeddings of clip i and ``a_j`` the
unit-norm audio embedding of clip j, and applies in-batch InfoNCE in both directions:

    L = 1/2 [ CE_j(s_i., i) + CE_j(s_.i, i) ]

where the rows j with the same video id as i (several clips of one video, padded samplers) are
masked out of the denominators. "Some position of the true clip matches the sound, no position of
another clip does" pushes the matching position onto the sounding object: the only part of the
picture that predicts the sound.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avssl.utils import distributed as du

__all__ = ["max_position_scores", "max_position_infonce", "global_batch_max_position_infonce"]


def max_position_scores(video_dense: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """``s[i, j] = mean_t max_{h,w} <video_dense[i, :, t, h, w], audio[j]>`` ([B_v, B_a]).

    ``video_dense``: [B_v, D, T, H, W] (or [B_v, D, H, W]); ``audio``: [B_a, D]. Both are expected
    unit-norm along D (cosine scores)."""
    if video_dense.ndim == 4:
        video_dense = video_dense.unsqueeze(2)
    if video_dense.ndim != 5 or audio.ndim != 2 or video_dense.shape[1] != audio.shape[1]:
        raise ValueError(f"expected video_dense [B, D, T, H, W] and audio [B, D] with the same D, got "
                         f"{tuple(video_dense.shape)} and {tuple(audio.shape)}")
    sim = torch.einsum("idthw,jd->ijthw", video_dense, audio)  # [B_v, B_a, T, H, W]
    return sim.flatten(3).amax(3).mean(2)


def max_position_infonce(video_dense: torch.Tensor, audio: torch.Tensor, video_ids: torch.Tensor,
                         temperature: float = 0.1, own: torch.Tensor | None = None,
                         all_video_dense: torch.Tensor | None = None, all_audio: torch.Tensor | None = None,
                         all_ids: torch.Tensor | None = None) -> torch.Tensor:
    """The term above for a batch (this process's rows ``video_dense`` / ``audio`` / ``video_ids``).

    Distributed: pass every rank's rows as ``all_*`` (gathered with gradient) and ``own``, the
    positions of this rank's rows in them; negatives then come from the whole global batch.
    Single process: leave them ``None`` (the batch itself)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    all_video_dense = video_dense if all_video_dense is None else all_video_dense
    all_audio = audio if all_audio is None else all_audio
    all_ids = video_ids if all_ids is None else all_ids
    own = torch.arange(audio.shape[0], device=audio.device) if own is None else own
    same = video_ids[:, None] == all_ids[None, :]
    same[torch.arange(len(own), device=own.device), own] = False  # the positive itself stays
    v2a = max_position_scores(video_dense, all_audio) / temperature  # clip i's video vs every audio
    a2v = max_position_scores(all_video_dense, audio).t() / temperature  # clip i's audio vs every video
    v2a = v2a.masked_fill(same, float("-inf"))
    a2v = a2v.masked_fill(same, float("-inf"))
    return 0.5 * (F.cross_entropy(v2a, own) + F.cross_entropy(a2v, own))


def global_batch_max_position_infonce(video_dense: torch.Tensor, audio: torch.Tensor, video_ids: torch.Tensor,
                                      temperature: float = 0.1) -> torch.Tensor:
    """``max_position_infonce`` with every rank's rows as negatives (gathered with gradient, equal
    batch shares per rank, as the trainer's sampler guarantees); one process: the batch itself."""
    if not du.is_dist():
        return max_position_infonce(video_dense, audio, video_ids, temperature)
    own = torch.arange(audio.shape[0], device=audio.device) + du.rank() * audio.shape[0]
    return max_position_infonce(video_dense, audio, video_ids, temperature, own=own,
                                all_video_dense=du.all_gather_with_grad(video_dense),
                                all_audio=du.all_gather_with_grad(audio),
                                all_ids=du.all_gather_with_grad(video_ids))
