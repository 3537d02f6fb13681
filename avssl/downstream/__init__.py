"""Downstream evaluation: action-recognition fine-tuning, frozen-feature probes, audio probe.

    from avssl.downstream import finetune, probe_monitor, audio_probe
"""

from .audio_probe import audio_probe, cross_validate_folds, extract_esc50_features
from .data import (VideoSplit, carve_validation, load_hmdb51_split, load_kinetics_split, load_split,
                   load_vggsound_split,
                   load_ucf101_split, make_dataset, subsample_labels)
from .finetune import (VideoClassifier, finetune, finetune_fold, load_pretrained_av_model,
                       load_pretrained_video_encoder, summarize_folds)
from .knn import knn_accuracy, knn_predict
from .linear_probe import FeatureExtractor, extract_features, linear_probe_accuracy, probe_datasets, probe_monitor
from .video_eval import classification_metrics, evaluate_classifier, predict_clips, save_confusion_png

__all__ = [
    "VideoSplit", "load_split", "load_ucf101_split", "load_hmdb51_split", "load_kinetics_split", "load_vggsound_split", "carve_validation",
    "subsample_labels", "make_dataset", "VideoClassifier", "finetune", "finetune_fold", "load_pretrained_av_model",
    "load_pretrained_video_encoder", "summarize_folds", "knn_predict", "knn_accuracy", "FeatureExtractor",
    "extract_features", "linear_probe_accuracy", "probe_monitor", "probe_datasets", "audio_probe", "cross_validate_folds",
    "extract_esc50_features", "predict_clips", "classification_metrics", "evaluate_classifier", "save_confusion_png",
]
