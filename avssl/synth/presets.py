"""World presets (sizes). Mirrored by configs/data/world/<name>.yaml (a test checks they agree)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from avssl.utils.errors import UserError


@dataclass(frozen=True)
class WorldPreset:
    name: str
    num_clips: int
    width: int
    height: int
    fps: float
    duration: float  # seconds per clip
    audio_rate: int
    webm_share: float = 0.1  # share of clips written as VP9+Opus .webm
    offscreen_share: float = 0.1  # sound, no visible source
    silent_share: float = 0.1  # no source sound (background noise only)
    max_distractors: int = 2
    radius: tuple[float, float] = (0.11, 0.19)  # object radius, fraction of the short side
    event_rate: tuple[float, float] = (0.7, 1.8)  # visual/audio events per second
    snr_db: tuple[float, float] = (12.0, 30.0)
    crf: int = 23
    flickr_annotators: int = 3
    twin_share: float = 0.0  # clips with a silent same-class, same-size twin of the sounding object (v3)
    tempo_wobble: float = 0.0  # event-rate swing (fraction of the mean rate): events not periodic (v3)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "WorldPreset":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown world preset keys: {sorted(unknown)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


PRESETS: dict[str, WorldPreset] = {
    # tests: ~24 clips in a few seconds
    # (generator v3: every built-in preset has same-class twins in a quarter of its clips and tempo
    # wobble 0.5, so that synchronization, not only the class, tells sounds and objects apart)
    "tiny": WorldPreset("tiny", num_clips=24, width=64, height=64, fps=16.0, duration=2.0, audio_rate=24000,
                        twin_share=0.25, tempo_wobble=0.5),
    # the README's main job: < 1 min on 2 cores, small CPU models learn in minutes
    # (objects large enough to tell apart at 64 px and to cover a real share of the frame, at most one
    # silent distractor: benchmarks/pretrain_learning.md measured the smaller, busier v1 world unlearnable
    # in a CPU budget)
    "default": WorldPreset("default", num_clips=480, width=112, height=112, fps=16.0, duration=3.0, audio_rate=24000,
                           max_distractors=1, radius=(0.15, 0.23), twin_share=0.25, tempo_wobble=0.5),
    # GPU machine: 10^5 clips (~3.5 h on 2 cores, minutes on a many-core box)
    "large": WorldPreset("large", num_clips=100_000, width=128, height=128, fps=16.0, duration=4.0, audio_rate=24000,
                         twin_share=0.25, tempo_wobble=0.5),
}


def get_preset(preset: str | dict | WorldPreset | Path) -> WorldPreset:
    """A preset by name, from a dict/yaml file of WorldPreset fields, or as given."""
    if isinstance(preset, WorldPreset):
        return preset
    if isinstance(preset, dict):
        return WorldPreset.from_dict(preset)
    if isinstance(preset, str) and preset in PRESETS:
        return PRESETS[preset]
    p = Path(preset)
    if p.suffix in (".yaml", ".yml") and p.exists():
        from omegaconf import OmegaConf

        return WorldPreset.from_dict(OmegaConf.to_container(OmegaConf.load(p), resolve=True))
    raise UserError(f"unknown world preset {preset!r}; choose one of {sorted(PRESETS)} or a yaml file")
