"""One way to use a trained model: ``avssl.load_model(run_or_checkpoint_or_export)`` -> `Pretrained`.

    >>> import avssl
    >>> model = avssl.load_model("runs/cma")                    # a run, a checkpoint file or an export
    >>> v = model.embed_video("clip.mp4")                       # [D], unit norm
    >>> a = model.embed_audio("clip.mp4")                       # (a waveform: embed_audio(wav, rate=...))
    >>> model.similarity(v, a)                                  # cosine; paths work too
    >>> model.heatmap("clip.mp4", t=1.0).save("where.png")      # where the sound comes from, as a picture
    >>> model.save_pretrained("export/")                        # model.safetensors + config.yaml

The object carries its own preprocessing (the clip spec and transforms it was trained with), and
every method calls the same library functions the commands use (`avssl.embed.embed_video` /
`embed_audio`, `avssl.localization.frame_heatmap` with `localization_inputs`), so the object,
``avssl.embed.embed_video(path, model=<run>)``, ``embed_video(path, model=<this object>)`` and the
bare module ``model.module`` (which carries the same settings) give the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from avssl.models.loading import LoadedModel

__all__ = ["Pretrained", "load_model"]


class Pretrained(LoadedModel):
    """A trained audio-visual model with its preprocessing (see the module doc). Attributes:
    ``module`` (`avssl.models.AVModel`, eval mode), ``preprocessing`` / ``spec`` / ``transforms``,
    ``info`` (source, method, global_step, ``training`` summary), ``config`` (the pretraining config)."""

    def __repr__(self) -> str:
        i = self.info
        return (f"Pretrained(method={i.get('method')!r}, step={i.get('global_step')}, "
                f"source={i.get('checkpoint')!r}, spec={self.spec})")

    # ------------------------------------------------------------------ embeddings
    def embed_video(self, video, **kwargs) -> torch.Tensor:
        """`avssl.embed.embed_video` with this model: a file (``[D]`` pooled over ``clips_per_video``
        evenly spaced clips, or ``[N, D]`` with ``pool=False``) or decoded uint8 frames."""
        from avssl.embed.api import embed_video

        return embed_video(video, self, **kwargs)

    def embed_audio(self, audio, rate: int | None = None, **kwargs) -> torch.Tensor:
        """`avssl.embed.embed_audio` with this model: a video / audio file, or a waveform ``[S]`` /
        ``[C, S]`` at ``rate`` Hz."""
        from avssl.embed.api import embed_audio

        return embed_audio(audio, rate, self, **kwargs)

    def similarity(self, video, audio, **kwargs) -> torch.Tensor:
        """Cosine similarity of ``video`` and ``audio``, each a file path, a list of paths, or
        embeddings (``[D]`` / ``[N, D]``). Two single inputs give a 0-d tensor, else ``[Nv, Na]``.
        ``kwargs`` (e.g. ``clips_per_video``) go to the embedding calls."""
        v = self._embeddings(video, self.embed_video, kwargs)
        a = self._embeddings(audio, self.embed_audio, kwargs)
        scalar = v.ndim == 1 and a.ndim == 1
        v = torch.nn.functional.normalize(v.reshape(-1, v.shape[-1]).float(), dim=1)
        a = torch.nn.functional.normalize(a.reshape(-1, a.shape[-1]).float(), dim=1)
        if v.shape[1] != a.shape[1]:
            raise ValueError(f"video embeddings have {v.shape[1]} dims, audio {a.shape[1]}: not from one space")
        sim = v @ a.T
        return sim[0, 0] if scalar else sim

    @staticmethod
    def _embeddings(x, embed, kwargs) -> torch.Tensor:
        if isinstance(x, (str, os.PathLike)):
            return embed(x, **kwargs)
        if isinstance(x, Sequence) and x and all(isinstance(p, (str, os.PathLike)) for p in x):
            return torch.stack([embed(p, **kwargs) for p in x])
        return torch.as_tensor(x).float().cpu()

    # ------------------------------------------------------------------ localization
    def localization_inputs(self, mode: str = "letterbox"):
        """``(spec, video_transform, audio_transform)`` for the localization functions
        (`avssl.localization.infer_heatmaps`, `video_heatmap_track`, `localize_file`): this model's
        clip spec and eval transforms with the whole frame fitted to its input (``mode``:
        letterbox | stretch | resize_crop; `avssl.localization.defaults`)."""
        from avssl.localization.defaults import localization_inputs

        return localization_inputs(self.spec, self.transforms, self.device, mode=mode)

    def heatmap(self, video, t: float | None = None, *, audio=None, norm: str = "minmax", size=None,
                mode: str = "letterbox", backend: str | None = None):
        """Where the sound comes from in the frame of ``video`` (a file) shown at ``t`` seconds
        (default: its middle): an `avssl.localization.FrameHeatmap` (``frame``, ``map`` in [0, 1] and
        raw ``cosine``, both at the frame's own size and aspect ratio; ``.save(png)`` writes the
        overlay picture). ``audio``: another file whose sound to play (default: the video's own).
        ``mode``: how the whole frame is fitted to the model's input (`localization_inputs`)."""
        from avssl.localization.run import frame_heatmap

        spec, video_t, audio_t = self.localization_inputs(mode)
        with torch.no_grad():
            return frame_heatmap(self.module, video, spec, video_t, audio_t, t=t, audio_path=audio, norm=norm,
                                 size=size, device=self.device, backend=backend)


def load_model(source: str | os.PathLike, device: str | torch.device = "cpu") -> Pretrained:
    """The model of a run directory (its newest checkpoint), a checkpoint file, or a folder written
    by `Pretrained.save_pretrained` -- weights, architecture, clip spec and transforms, read without
    running any code from the files (``weights_only`` / safetensors). See `Pretrained`."""
    return Pretrained.load(source, device=device)
