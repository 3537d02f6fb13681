"""Audio classification by a linear probe on frozen audio-encoder features (ESC-50 protocol).

Each file gives `clips_per_file` evenly spaced windows of `duration` seconds (resampled to the
encoder's rate, mono, zero-padded when short); their pooled features from `layer` are averaged.
A linear SVM or logistic regression on standardised features is trained on 4 folds and scored on
the fifth, for each of the 5 official folds (mean ± sample std reported).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch import nn
from tqdm import tqdm

from avssl.data.formats import parse_esc50

from .linear_probe import FeatureExtractor

__all__ = ["load_audio_windows", "extract_esc50_features", "cross_validate_folds", "audio_probe"]


def load_audio_windows(path: str | Path, sample_rate: int, duration: float, clips_per_file: int) -> torch.Tensor:
    """``[clips, 1, S]`` float32 windows, S = round(duration * sample_rate), evenly spaced over the file."""
    wave, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
    x = torch.from_numpy(wave.T.copy()).mean(0)
    if rate != sample_rate:
        x = AF.resample(x, rate, sample_rate)
    n = int(round(duration * sample_rate))
    if x.numel() < n:
        x = torch.nn.functional.pad(x, (0, n - x.numel()))
    starts = np.linspace(0, x.numel() - n, clips_per_file).round().astype(int) if clips_per_file > 1 \
        else [(x.numel() - n) // 2]
    return torch.stack([x[s:s + n] for s in starts])[:, None]


@torch.no_grad()
def extract_esc50_features(encoder: nn.Module, root: str | Path, *, sample_rate: int = 24000, duration: float = 2.0,
                           clips_per_file: int = 1, layer: str = "pool", pool: str = "avg",
                           spectrogram: nn.Module | None = None, batch_size: int = 32, device="cpu",
                           progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(features [N, C], targets [N], folds [N], filenames) of every file listed in meta/esc50.csv."""
    from avssl.transforms.audio import LogSpectrogram

    root = Path(root)
    entries = parse_esc50(root)
    spec = (spectrogram or LogSpectrogram("avid", sample_rate=sample_rate)).to(device).eval()
    fx = FeatureExtractor(encoder, layer, pool).to(device)
    was_training = encoder.training
    encoder.eval()
    feats = []
    try:
        for s in tqdm(range(0, len(entries), batch_size), desc="audio features", disable=not progress, leave=False):
            chunk = entries[s:s + batch_size]
            waves = torch.cat([load_audio_windows(root / "audio" / e.filename, sample_rate, duration, clips_per_file)
                               for e in chunk]).to(device)
            f = fx(spec(waves)).float().cpu().view(len(chunk), clips_per_file, -1).mean(1)
            feats.append(f)
    finally:
        encoder.train(was_training)
    return (torch.cat(feats).numpy(), np.array([e.target for e in entries]), np.array([e.fold for e in entries]),
            [e.filename for e in entries])


def _classifier(kind: str, C: float, seed: int):
    if kind == "svm":
        return make_pipeline(StandardScaler(), LinearSVC(C=C, max_iter=10000, random_state=seed))
    if kind == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
    raise ValueError(f"classifier must be 'svm' or 'logreg', got {kind!r}")


def cross_validate_folds(features, targets, folds, classifier: str = "svm", C: float = 1.0, seed: int = 0) -> dict:
    """Leave-one-fold-out accuracy for every fold value present (ESC-50: 1..5)."""
    features, targets, folds = np.asarray(features), np.asarray(targets), np.asarray(folds)
    per_fold = {}
    for k in np.unique(folds):
        test = folds == k
        if test.all():
            raise ValueError("cross-validation needs at least two folds")
        clf = _classifier(classifier, C, seed).fit(features[~test], targets[~test])
        per_fold[int(k)] = float((clf.predict(features[test]) == targets[test]).mean())
    accs = np.array(list(per_fold.values()))
    return {"per_fold": per_fold, "mean": float(accs.mean()),
            "std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0, "num_files": int(len(targets)),
            "classifier": classifier, "C": C}


def audio_probe(encoder: nn.Module, root: str | Path, *, classifier: str = "svm", C: float = 1.0, seed: int = 0,
                **feature_kw) -> dict:
    """Features of an ESC-50-style folder, then 5-fold cross-validated linear accuracy."""
    t0 = time.perf_counter()
    x, y, folds, _ = extract_esc50_features(encoder, root, **feature_kw)
    out = cross_validate_folds(x, y, folds, classifier, C, seed)
    out["feature_dim"] = int(x.shape[1])
    out["seconds"] = time.perf_counter() - t0
    return out
