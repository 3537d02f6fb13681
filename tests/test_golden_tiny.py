"""Regression guard: the tiny preset's numbers are unchanged (refactors must not move them).

Recomputes ``tests/golden_tiny.py``'s record -- AVID and CMA per-step losses and held-out
retrieval, every held-out embedding value of the CMA model, a one-epoch fine-tuning loss and
accuracy -- and compares it with ``tests/data/golden_tiny.json`` (CPU, one thread). A change that
is MEANT to move the numbers regenerates the record (see tests/golden_tiny.py) and says so.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import golden_tiny

# CPU, one thread, same library versions: the runs are bit-reproducible; the tolerance only
# absorbs the last float32 bit of a reordered reduction
RTOL, ATOL = 1e-6, 1e-6


@pytest.fixture(scope="module")
def record():
    return json.loads(golden_tiny.RECORD.read_text())


@pytest.fixture(scope="module")
def now(tmp_path_factory):
    return golden_tiny.compute(tmp_path_factory.mktemp("golden"))


def _close(a, b, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} now, {b.shape} recorded"
    bad = ~np.isclose(a, b, rtol=RTOL, atol=ATOL)
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {a.size} values moved (max |diff| "
                           f"{np.abs(a - b).max():.3g}); first now {a[bad][:3]} recorded {b[bad][:3]}")


def test_record_is_complete(record):
    assert record["format"] == golden_tiny.FORMAT
    for stage in ("avid", "cma"):
        assert record[stage]["global_step"] == len(record[stage]["losses"]) > 0
        assert all(math.isfinite(x) for x in record[stage]["losses"])
    e = record["embeddings"]
    assert np.asarray(e["video"]).shape == np.asarray(e["audio"]).shape == (len(e["videos"]), e["clips_per_video"], 16)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["avid", "cma"])
def test_pretraining_losses_unchanged(now, record, stage):
    assert now[stage]["global_step"] == record[stage]["global_step"]
    _close(now[stage]["losses"], record[stage]["losses"], f"{stage} per-step losses")
    for k, v in record[stage]["retrieval"].items():
        _close(now[stage]["retrieval"][k], v, f"{stage} held-out {k}")


@pytest.mark.slow
def test_heldout_embeddings_unchanged(now, record):
    assert now["embeddings"]["videos"] == record["embeddings"]["videos"]
    for modality in ("video", "audio"):
        _close(now["embeddings"][modality], record["embeddings"][modality], f"held-out {modality} embeddings")


@pytest.mark.slow
def test_finetune_unchanged(now, record):
    for k, v in record["finetune"].items():
        _close(now["finetune"][k], v, f"fine-tuning {k}")
