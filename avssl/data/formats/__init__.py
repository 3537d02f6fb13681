"""Parsers of the real benchmark datasets' annotation files (plain dataclasses out)."""

from .audioset import AudioSetSegment, audioset_stems, parse_audioset_csv
from .esc50 import ESC50Entry, parse_esc50
from .extended import ExtendedEntry, negatives, parse_plus_silent
from .flickr import FlickrAnnotation, load_flickr_annotations, parse_flickr_xml
from .hmdb51 import HMDBEntry, load_hmdb51
from .kinetics import KineticsEntry, find_kinetics_video, kinetics_stems, parse_kinetics_csv
from .lists import read_id_list, sample_id
from .ucf101 import SplitEntry, load_ucf101, parse_class_ind, parse_ucf_split
from .vggsound import VGGSoundEntry, parse_vggsound_csv, vggsound_stems
from .vggss import BoxAnnotation, ClassSplit, load_class_split, parse_vggss, vggss_classes

__all__ = ["AudioSetSegment", "audioset_stems", "parse_audioset_csv", "ESC50Entry", "parse_esc50", "ExtendedEntry",
           "negatives", "parse_plus_silent", "FlickrAnnotation", "load_flickr_annotations", "parse_flickr_xml",
           "HMDBEntry", "load_hmdb51", "KineticsEntry", "find_kinetics_video", "kinetics_stems", "parse_kinetics_csv",
           "read_id_list", "sample_id", "SplitEntry", "load_ucf101", "parse_class_ind", "parse_ucf_split",
           "VGGSoundEntry", "parse_vggsound_csv", "vggsound_stems", "BoxAnnotation", "ClassSplit", "load_class_split",
           "parse_vggss", "vggss_classes"]
