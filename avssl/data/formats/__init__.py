"""Parsers of the real benchmark datasets' annotation files (plain dataclasses out)."""

from .audioset import AudioSetSegment, audioset_stems, parse_audioset_csv
from .esc50 import ESC50Entry, parse_esc50
from .flickr import FlickrAnnotation, load_flickr_annotations, parse_flickr_xml
from .hmdb51 import HMDBEntry, load_hmdb51
from .kinetics import KineticsEntry, find_kinetics_video, kinetics_stems, parse_kinetics_csv
from .ucf101 import SplitEntry, load_ucf101, parse_class_ind, parse_ucf_split
from .vggsound import VGGSoundEntry, parse_vggsound_csv, vggsound_stems
from .vggss import BoxAnnotation, parse_vggss

__all__ = ["AudioSetSegment", "audioset_stems", "parse_audioset_csv", "VGGSoundEntry", "parse_vggsound_csv",
           "vggsound_stems", "kinetics_stems", "ESC50Entry", "parse_esc50", "FlickrAnnotation", "load_flickr_annotations", "parse_flickr_xml",
           "HMDBEntry", "load_hmdb51", "KineticsEntry", "find_kinetics_video", "parse_kinetics_csv",
           "SplitEntry", "load_ucf101", "parse_class_ind", "parse_ucf_split", "BoxAnnotation", "parse_vggss"]
