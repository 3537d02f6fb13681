"""Audio-visual agreement scores (avssl.embed.agreement): calibration math on hand-made embeddings,
audio levels, flags, the ranking command on a collection extracted from the tiny world with dubbed
and muted variants (avssl.synth.variants), and scores of a collection extracted without levels."""

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avssl.embed import shards as sh

# the package exports the function `agreement`, which hides the module of the same name
ag = importlib.import_module("avssl.embed.agreement")



# ------------------------------------------------------------------ the math


def test_matched_pairs_score_one_and_shuffled_pairs_score_the_tie_share():
    n = 6
    e = np.eye(n, dtype=np.float32)
    r = ag.calibrated_agreement(e, e)
    # own cosine 1, every mismatched pair 0: all of them below
    assert r["similarity"].tolist() == [1.0] * n and r["agreement"].tolist() == [1.0] * n
    perm = np.roll(np.arange(n), 1)  # audio i = basis vector i-1: the own pair is orthogonal
    r = ag.calibrated_agreement(e, e[perm])
    # row i, video side: <e_i, e_perm(j)> over the n-1 other j is 1 once (j = i+1) and 0 n-2 times;
    # own = 0 ties the n-2 zeros: (0 + (n-2)/2) / (n-1). The audio side is the same by symmetry.
    expect = (n - 2) / 2 / (n - 1)
    assert np.allclose(r["pct_video"], expect) and np.allclose(r["pct_audio"], expect)
    assert np.allclose(r["agreement"], expect)


def test_one_direction_each_and_groups_never_calibrate_each_other():
    v = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
    a = np.array([[0.6, 0.8], [1, 0], [0, 1], [1, 0]], np.float32)
    r = ag.calibrated_agreement(v, a)
    # row 0: own 0.6; video side <v0, a_j> j=1..3 = 1, 0, 1 -> one below;
    # audio side <v_j, a0> = 0.6, 0.8, 0.8 -> one tie, none below
    assert r["pct_video"][0] == pytest.approx(1 / 3) and r["pct_audio"][0] == pytest.approx(0.5 / 3)
    assert r["agreement"][0] == pytest.approx((1 / 3 + 0.5 / 3) / 2)
    # rows 0 and 1 one video (clips): row 0 is calibrated on rows 2, 3 only
    g = ag.calibrated_agreement(v, a, groups=np.array([7, 7, 8, 9]))
    assert g["pct_video"][0] == pytest.approx(1 / 2) and g["pct_audio"][0] == pytest.approx(0.0)
    # a row outside the pool (no audio track) is nobody's mismatched partner
    p = ag.calibrated_agreement(v, a, pool=np.array([True, True, True, False]))
    assert p["pct_video"][0] == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="paired"):
        ag.calibrated_agreement(v, a[:3])


def test_sampled_calibration_is_seeded_and_close_to_the_full_one():
    rng = np.random.default_rng(0)
    n, d = 3000, 16
    v = rng.standard_normal((n, d)).astype(np.float32)
    a = (v + 1.5 * rng.standard_normal((n, d))).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    full = ag.calibrated_agreement(v, a, negatives=n)  # every other row
    s1 = ag.calibrated_agreement(v, a, negatives=200, seed=3)
    s2 = ag.calibrated_agreement(v, a, negatives=200, seed=3)
    s3 = ag.calibrated_agreement(v, a, negatives=200, seed=4)
    assert np.array_equal(s1["agreement"], s2["agreement"]) and not np.array_equal(s1["agreement"], s3["agreement"])
    # the sampled percentile is a binomial estimate of the full one: sd <= 0.5 / sqrt(200) per side
    assert np.abs(s1["pct_video"] - full["pct_video"]).mean() < 0.03
    assert np.corrcoef(s1["agreement"], full["agreement"])[0, 1] > 0.95
    # paired rows agree far more than chance; a shuffled pairing is uniform on [0, 1]
    assert full["agreement"].mean() > 0.8
    shuffled = ag.calibrated_agreement(v, a[rng.permutation(n)], negatives=200)
    assert abs(shuffled["agreement"].mean() - 0.5) < 0.03


def test_audio_levels_and_flags():
    t = np.arange(16000) / 16000
    sine = (0.5 * np.sin(2 * np.pi * 440 * t))[None]
    assert ag.rms_db(sine) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=1e-3)
    assert ag.rms_db(np.zeros((1, 100))) == ag.RMS_FLOOR_DB
    assert ag.rms_db(np.stack([sine, 0 * sine])).shape == (2,)
    assert ag.pool_rms_db([-20.0, -20.0]) == pytest.approx(-20)
    assert ag.pool_rms_db([ag.RMS_FLOOR_DB, -20.0]) == pytest.approx(-20 - 10 * np.log10(2), abs=1e-6)
    flags = ag.flag_videos(has_audio=[0, 1, 1, 1, 1, 1], rms=[-150, -60, -20, -20, np.nan, -60],
                           agreement=[0.1, 0.1, 0.2, 0.9, 0.9, np.nan], silence_db=-45, threshold=0.5)
    assert flags.tolist() == ["no-audio", "silent", "unrelated", "ok", "ok", "silent"]


# ------------------------------------------------------------------ a collection of the tiny world


def test_variants_hold_the_donor_sound_and_digital_silence(tiny_variant_collection, tiny_world):
    from avssl.io import read_clip
    from avssl.io.types import ClipSpec

    _, rows = tiny_variant_collection
    kinds = [r["kind"] for r in rows]
    assert kinds.count("dubbed") == 5 and kinds.count("muted") == 2  # 20 % and 10 % of 24
    assert {"normal", "offscreen", "silent"} <= set(kinds)
    spec = ClipSpec(num_frames=4, fps=8.0, frame_size=32, audio_rate=24000, audio_duration=1.0)
    dub = next(r for r in rows if r["kind"] == "dubbed")
    donor = tiny_world / "videos" / f"{dub['audio_from']}.mp4"
    if not donor.exists():
        donor = donor.with_suffix(".webm")
    own = tiny_world / "videos" / Path(dub["path"]).name
    x, y, z = (read_clip(str(p), 0.5, spec).audio[0].numpy() for p in (dub["path"], donor, own))
    assert np.corrcoef(x, y)[0, 1] > 0.9 > np.corrcoef(x, z)[0, 1]  # the donor's track, not its own
    mute = next(r for r in rows if r["kind"] == "muted")
    assert np.abs(read_clip(mute["path"], 0.5, spec).audio.numpy()).max() < 1e-4


def test_extraction_writes_scores_and_the_command_ranks_flagged_first(tiny_variant_collection, tmp_path, capsys):
    src, rows = tiny_variant_collection
    coll = shutil.copytree(src, tmp_path / "emb")
    kind = {r["path"]: r["kind"] for r in rows}
    # written by extraction, for the collection as it is
    videos, info = ag.read_agreement(coll)
    assert info["videos"] == 24 and info["rms"]["stored"] == 48 and info["counts"]["no-audio"] == 0
    assert set(videos["flag"]) <= set(ag.FLAGS) and ((videos["agreement"] >= 0) & (videos["agreement"] <= 1)).all()
    for path, db, flag in zip(videos["path"], videos["rms_db"], videos["flag"]):
        k = kind[path]
        if k == "muted":
            assert db == ag.RMS_FLOOR_DB and flag == "silent"  # digital silence
        elif k == "silent":
            assert -60 < db < ag.SILENCE_DB and flag == "silent"  # the world's noise-only track
        else:
            assert db > ag.SILENCE_DB and flag != "silent"
    clips = ag.CLIP_COLUMNS
    with open(coll / ag.CLIP_FILE) as f:
        assert f.readline().strip().split(",") == list(clips) and sum(1 for _ in f) == 48
    # the command recomputes, prints flagged videos first (silent ones, then unrelated by increasing score)
    from avssl.cli import retrieve as tool

    assert tool.run(["agreement", str(coll), "--top", "0", "--json", "--threshold", "0.6"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert len(ranked) == 24 and sorted(r["path"] for r in ranked) == sorted(kind)
    order = [ag.FLAGS.index(r["flag"]) for r in ranked]
    assert order == sorted(order) and {r["flag"] for r in ranked[:4]} == {"silent"}
    unrelated = [r["agreement"] for r in ranked if r["flag"] == "unrelated"]
    assert unrelated == sorted(unrelated) and all(u < 0.6 for u in unrelated)
    assert all(r["agreement"] >= 0.6 for r in ranked if r["flag"] == "ok")
    assert tool.run(["agreement", str(coll), "--flagged-only", "--top", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "4 silent (< -45.0 dBFS)" in printed[0] and len(printed) == 4
    # scores of another state of the collection are refused
    sh.write_json_atomic(coll / "meta.json", {**sh.read_meta(coll), "note": "re-extracted"})
    with pytest.raises(sh.CollectionError, match="another state"):
        ag.read_agreement(coll)


def test_scores_of_a_collection_extracted_without_levels(tiny_variant_collection, tmp_path):
    src, _ = tiny_variant_collection
    coll = shutil.copytree(src, tmp_path / "emb")
    stored, _, _ = ag.agreement(coll, write=False, progress=False)
    for f in sh.shards_dir(coll).glob("*/*-audio-rms_db.npy"):
        f.unlink()  # as written before levels were stored
    unknown, _, info = ag.agreement(coll, decode_rms=False, write=False, progress=False)
    assert info["rms"]["unknown"] == 48 and np.isnan(unknown["rms_db"]).all()
    assert "silent" not in set(unknown["flag"])  # an unknown level never flags silent
    decoded, _, info = ag.agreement(coll, progress=False)
    assert info["rms"] == {"stored": 0, "decoded": 48, "unreadable": 0, "unknown": 0}
    assert np.allclose(decoded["rms_db"], stored["rms_db"], atol=0.05)  # float16 shards vs decoded again
    assert decoded["flag"].tolist() == stored["flag"].tolist()
    assert np.array_equal(decoded["agreement"], stored["agreement"])  # the model's part does not change
