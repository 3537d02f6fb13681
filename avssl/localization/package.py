"""Benchmark packages as the public localization test sets ship: one picture and one sound per sample.

Layout (VGG-SS and Flickr-SoundNet test packages of the public evaluators; also what
``avssl.synth.export.export_vggss`` writes from the generated world)::

    <root>/frames/<id>.jpg            the annotated frame (any of .jpg .jpeg .png)
    <root>/audio/<id>.wav             the sample's sound (any audio file PyAV reads)
    <root>/embeddings/<id>.npy        optional, instead of audio: a precomputed audio embedding [D]
    <root>/vggss.json                 VGG-SS boxes  | <root>/Annotations/<id>.xml  Flickr-SoundNet boxes
    <root>/*_test.csv                 optional test list (given explicitly: ``test_list``)
    <root>/*_plus_silent.csv          optional extended-set negatives (``video,audio,non-sounding``)

Each sample becomes a ``LocalizationItem`` with ``media="image"``: the frame is repeated to the
clip length and fed to the video encoder (every temporal slot sees the same picture), at the
benchmark's input size (the public evaluators stretch the frame to 224x224; ``localize.yaml``
``package.input_size`` / ``package.spatial_mode``). The sound is the window of
``spec.audio_duration`` centred on the middle of the file (EZ-VSL / SLAVC cut the centre of the
clip's audio), or the saved embedding (``AVModel.embed_audio``'s space, e.g. ``avssl-extract``).

Coverage: a sample whose frame or sound file is absent is *missing* (counted, listed with the
names tried); a frame or sound that is present but cannot be read is *unreadable* (counted and
listed by the evaluation, never fatal); the rest are scored.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from avssl.io.errors import CorruptMedia, MediaError, MissingFile

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac")


class UnreadableImage(MediaError):
    reason = "unreadable-image"


class BadEmbedding(MediaError):
    reason = "bad-embedding"


# ---------------------------------------------------------------- readers


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The picture as uint8 ``[H, W, 3]`` RGB (Pillow; EXIF orientation applied). Raises
    ``MissingFile`` / ``UnreadableImage`` naming the file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise MissingFile(p, "no such file")
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:  # Pillow's decoders raise all of these
        raise UnreadableImage(p, f"{type(e).__name__}: {e}") from None


def audio_file_duration(path: str | os.PathLike) -> float:
    """Duration (s) of the first audio stream of a sound file (PyAV); ``MediaError`` if unreadable."""
    import av

    p = str(path)
    if not os.path.isfile(p):
        raise MissingFile(p, "no such file")
    try:
        with av.open(p) as c:
            if not c.streams.audio:
                from avssl.io.errors import NoAudioStream

                raise NoAudioStream(p, "no audio stream")
            a = c.streams.audio[0]
            if a.duration is not None and a.time_base is not None:
                return float(a.duration * a.time_base)
            if c.duration is not None:
                return float(c.duration) / 1e6
            n = sum(f.samples for f in c.decode(a))  # no header duration: count the samples
            return n / float(a.codec_context.sample_rate)
    except av.error.FFmpegError as e:
        raise CorruptMedia(p, f"{type(e).__name__}: {e}") from None


def read_sound_window(path: str | os.PathLike, spec, centre: float | None = None, backend: str | None = None
                      ) -> torch.Tensor:
    """``spec.audio_duration`` s of ``path``'s sound centred on ``centre`` s (default: the middle of
    the file) as float32 ``[spec.audio_channels, spec.audio_samples]`` at ``spec.audio_rate``: the
    clip reader's audio path (``read_clip(video=False)``), zeros outside the file."""
    from avssl.io import read_clip

    if centre is None:
        centre = audio_file_duration(path) / 2.0
    return read_clip(path, centre - spec.video_duration / 2.0, spec, backend=backend, video=False).audio


def read_embedding(path: str | os.PathLike, dim: int | None = None) -> torch.Tensor:
    """A saved audio embedding ``[D]`` (``.npy``, leading axes of length 1 dropped; no pickles)."""
    p = Path(path)
    if not p.is_file():
        raise MissingFile(p, "no such file")
    try:
        a = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise BadEmbedding(p, f"unreadable ({e})") from None
    a = np.asarray(a)
    while a.ndim > 1 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
        raise BadEmbedding(p, f"expected a finite vector [D], got {a.dtype} {a.shape}")
    if dim is not None and a.shape[0] != dim:
        raise BadEmbedding(p, f"dimension {a.shape[0]}, the model's audio embedding has {dim}")
    return torch.from_numpy(a.astype(np.float32))


# ---------------------------------------------------------------- layout


def is_package(path: str | os.PathLike) -> bool:
    """A folder holding a ``frames/`` sub-folder (the public test packages' layout)."""
    p = Path(path)
    return p.is_dir() and (p / "frames").is_dir()


def find_annotations(root: str | os.PathLike) -> tuple[Path, str]:
    """``(annotation path, format)`` of a package: its one top-level ``*.json`` (VGG-SS) or its
    ``Annotations/`` folder (Flickr-SoundNet)."""
    root = Path(root)
    jsons = sorted(root.glob("*.json"))
    if (root / "Annotations").is_dir():
        return root / "Annotations", "flickr"
    if len(jsons) == 1:
        return jsons[0], "vggss"
    if not jsons:
        raise ValueError(f"package {root}: no annotations (a VGG-SS *.json or a Flickr Annotations/ folder); "
                         f"give annotations= explicitly")
    raise ValueError(f"package {root}: several *.json ({', '.join(p.name for p in jsons)}); give annotations= explicitly")


def find_extended(root: str | os.PathLike) -> Path | None:
    """The package's ``*_plus_silent.csv`` (extended-set negatives), if there is exactly one."""
    hits = sorted(Path(root).glob("*_plus_silent.csv"))
    if len(hits) > 1:
        raise ValueError(f"package {root}: several *_plus_silent.csv ({', '.join(p.name for p in hits)}); "
                         f"give extended= explicitly")
    return hits[0] if hits else None


def _by_stem(folder: Path, suffixes) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in suffixes:
            out.setdefault(p.stem, p)
    return out


def _fractions(ann) -> list[list[float]]:
    """An ``Annotation``'s boxes as fractions of its frame (pixel boxes divided by (W, H))."""
    if ann.frame is None:
        return [list(map(float, b)) for b in ann.boxes]
    h, w = ann.frame
    return [[b[0] / w, b[1] / h, b[2] / w, b[3] / h] for b in ann.boxes]


def load_package(root: str | os.PathLike, annotations: str | os.PathLike | None = None, fmt: str = "auto", *,
                 extended: str | os.PathLike | None | bool = None, test_list: str | os.PathLike | None = None,
                 frames: str = "frames", audio: str = "audio", embeddings: str | None = "embeddings"):
    """The package's samples as ``evaluate.AnnotatedItems`` of image items.

    ``annotations`` / ``fmt``: default ``find_annotations(root)``. ``extended``: a
    ``*_plus_silent.csv`` (default: the package's own, if any; False: none) whose negatives
    ``<image>@<audio>`` show ``frames/<image>`` with ``audio/<audio>``. ``test_list``: keep these ids.
    A sample's sound is ``audio/<id>.*``, else ``embeddings/<id>.npy``. Samples without a frame or a
    sound are counted in ``coverage()['missing']`` with the names tried. The items carry the
    ``Annotation`` they came from (``AnnotatedItems.annotations``), so any protocol scores the exact
    published boxes."""
    from avssl.localization.evaluate import AnnotatedItems, LocalizationItem
    from avssl.localization.external import load_annotations

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"package {root} is not a folder")
    if annotations is None:
        annotations, found_fmt = find_annotations(root)
        fmt = found_fmt if fmt == "auto" else fmt
    if extended is None:
        extended = find_extended(root)
    elif extended is False:
        extended = None
    anns, report = load_annotations(annotations, fmt, test_list=test_list, extended=extended)
    images = _by_stem(root / frames, IMAGE_SUFFIXES)
    sounds = _by_stem(root / audio, AUDIO_SUFFIXES)
    embs = _by_stem(root / embeddings, (".npy",)) if embeddings else {}
    if not images:
        raise ValueError(f"package {root}: no pictures ({', '.join(IMAGE_SUFFIXES)}) in {root / frames}")
    items, missing, kept_anns = [], [], {}
    for a in anns:
        image_id, _, audio_id = a.sample_id.partition("@")
        audio_id = a.audio_id or audio_id or image_id
        img, snd, emb = images.get(image_id), sounds.get(audio_id), embs.get(audio_id)
        if img is None or (snd is None and emb is None):
            tried = ([] if img is not None else [f"{frames}/{image_id}{{{','.join(IMAGE_SUFFIXES)}}}"]) + \
                ([] if snd is not None or emb is not None else
                 [f"{audio}/{audio_id}{{{','.join(AUDIO_SUFFIXES)}}}"] + ([f"{embeddings}/{audio_id}.npy"] if embeddings else []))
            missing.append({"name": a.sample_id, "tried": tried, "reason": "no frame" if img is None else "no sound"})
            continue
        items.append(LocalizationItem(a.sample_id, str(img), 0.0, _fractions(a), a.style, a.has_source, a.label,
                                      audio_path=None if snd is None else str(snd), media="image",
                                      audio_embedding=None if snd is not None else str(emb)))
        kept_anns[a.sample_id] = a
    out = AnnotatedItems(items, len(anns), missing, str(root))
    out.media = "a frame and a sound"
    out.annotations = kept_anns
    out.report = report
    if not items:
        raise ValueError(f"package {root}: no sample has both a frame and a sound ({out.coverage_line()})")
    if missing:
        log.warning("%s", out.coverage_line())
    return out


__all__ = ["AUDIO_SUFFIXES", "BadEmbedding", "IMAGE_SUFFIXES", "UnreadableImage", "audio_file_duration",
           "find_annotations", "find_extended", "is_package", "load_package", "read_embedding", "read_image",
           "read_sound_window"]
