"""Generated audio-visual world: the embedded default data with exact ground truth."""

from .generate import WorldInfo, generate_world, load_world, synthesize_clip
from .presets import PRESETS, WorldPreset, get_preset
from .world import ACTIONS, SOURCE_CLASSES, SOURCE_NAMES

__all__ = ["generate_world", "load_world", "synthesize_clip", "WorldInfo", "WorldPreset", "PRESETS",
           "get_preset", "ACTIONS", "SOURCE_CLASSES", "SOURCE_NAMES"]
