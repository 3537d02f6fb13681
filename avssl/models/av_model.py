"""The audio-visual model: two encoders, two projection heads, one joint embedding space.

Submodule names (``video_model``, ``audio_model``, ``video_proj``, ``audio_proj``) are the
reference's ``AV_Wrapper`` names, so released checkpoints load key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AVModel(nn.Module):
    """``forward(video [B,3,T,H,W], audio_spec [B,1,F,Tf]) -> (v_emb [B,D], a_emb [B,D])``, unit norm."""

    def __init__(self, video_encoder: nn.Module, audio_encoder: nn.Module,
                 video_head: nn.Module, audio_head: nn.Module):
        super().__init__()
        for what, enc, head in (("video", video_encoder, video_head), ("audio", audio_encoder, audio_head)):
            in_dim = getattr(head, "in_dim", None)
            if in_dim is not None and in_dim != enc.out_dim:
                raise ValueError(f"{what} head takes {in_dim}-d input but the encoder gives {enc.out_dim}-d")
        self.video_model = video_encoder
        self.audio_model = audio_encoder
        self.video_proj = video_head
        self.audio_proj = audio_head
        self.out_dim = video_head.out_dim

    # aliases the rest of the library looks for (properties: no duplicate state-dict keys)
    @property
    def video_encoder(self) -> nn.Module:
        return self.video_model

    @property
    def audio_encoder(self) -> nn.Module:
        return self.audio_model

    @property
    def dense_cell_offset(self) -> float | None:
        """Input pixel of dense cell 0's receptive-field centre (cell j: ``stride * j + offset``),
        as the video encoder declares it (``map_cell_offset``); None if it does not."""
        return getattr(self.video_model, "map_cell_offset", None)

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """``[B,3,T,H,W] -> [B,D]`` unit-norm joint-space embedding."""
        return F.normalize(self.video_proj(self.video_model(video)), dim=1)

    def embed_audio(self, audio_spec: torch.Tensor) -> torch.Tensor:
        """``[B,1,F,Tf] -> [B,D]`` unit-norm joint-space embedding."""
        return F.normalize(self.audio_proj(self.audio_model(audio_spec)), dim=1)

    def forward(self, video: torch.Tensor, audio_spec: torch.Tensor, dense: bool = False):
        """``(v_emb, a_emb)``; with ``dense=True`` also ``video_dense_embeddings`` of the same
        encoder pass, ``(v_emb, a_emb, v_dense)`` (a keyword, so DDP-wrapped models take it too)."""
        if not dense:
            return self.embed_video(video), self.embed_audio(audio_spec)
        feats = self.video_model.forward_features(video)
        v = F.normalize(self.video_proj(feats["pool"]), dim=1)
        return v, self.embed_audio(audio_spec), self._dense_from_map(feats[self.video_model.last_map])

    def video_dense_embeddings(self, video: torch.Tensor) -> torch.Tensor:
        """``[B,3,T,H,W] -> [B,D,T',H',W']``: the video head applied at every position of the last
        feature map (its Linear layers act on the channel dim, i.e. as 1x1x1 convs), L2-normalised
        over D, so each position lives in the space of ``embed_audio`` (localization heatmaps).
        The pooled embedding is the head of the max/avg over these positions' features."""
        return self._dense_from_map(self.video_model.forward_features(video)[self.video_model.last_map])

    def _dense_from_map(self, fmap: torch.Tensor) -> torch.Tensor:
        dense = self.video_proj(fmap.movedim(1, -1))  # [B,C,T',H',W'] -> [B,T',H',W',D]
        return F.normalize(dense, dim=-1).movedim(-1, 1)
