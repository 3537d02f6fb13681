"""avssl: audio-visual self-supervised learning (AVID, Cross-Modal Agreement) and its downstream tools."""

__version__ = "0.1.0"
