"""Downstream evaluation on the tiny generated world's exported benchmark layouts (real encoded
clips, real decoding, real split files).

- the split parsers read the UCF101 / HMDB51 / Kinetics exports; folds test the right groups;
- no test video (nor UCF group) reaches training or validation; label fractions are stratified;
- video accuracy averages the softmax over EVERY clip of a video (counts checked);
- a fine-tuning run stopped after one epoch and resumed equals an uninterrupted run; with
  `dataset.index_cache` only the first run probes (one cache file per split);
- evaluation in 2 gloo processes gives the same table and numbers as in one;
- linear / k-NN probes and the 5-fold ESC-50 audio probe run and report sane figures.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from avssl.downstream import (VideoClassifier, audio_probe, carve_validation, classification_metrics,
                              evaluate_classifier, knn_accuracy, load_hmdb51_split, load_kinetics_split,
                              load_pretrained_video_encoder, load_ucf101_split, make_dataset, predict_clips,
                              probe_monitor, subsample_labels)
from avssl.downstream.finetune import finetune, prepare_splits, resolve_folds
from avssl.io.types import ClipSpec

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
SPEC = ClipSpec(num_frames=4, fps=8.0, frame_size=32, audio_rate=24000, audio_channels=1, audio_duration=0.25)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    from avssl.synth.generate import generate_world

    root = tmp_path_factory.mktemp("dsworld") / "tiny"
    generate_world(root, preset="tiny", seed=0, workers=1, progress=False)
    return root


def ft_cfg(run_dir, world_dir, *overrides) -> dict:
    from omegaconf import OmegaConf

    with initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose("finetune", overrides=["finetune=tiny", f"run_dir={run_dir}",
                                              f"dataset.embedded.world_dir={world_dir}", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def _gt_rows(world_dir):
    import csv

    with open(world_dir / "gt.csv", newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------- splits

def test_split_parsers_read_the_exports(world_dir):
    n_clips = len(_gt_rows(world_dir))
    for fold in (1, 2, 3):
        train, test = load_ucf101_split(world_dir / "ucf101", fold)
        assert len(train) + len(test) == n_clips and len(train.classes) == 6
        assert set(test.groups.tolist()) <= set(range(7 * (fold - 1) + 1, 7 * fold + 1))
        assert not set(train.groups.tolist()) & set(test.groups.tolist())
        for s in (train, test):
            assert all((Path(s.root) / p).is_file() for p in s.paths)
            # the label is the class folder of the path
            assert all(p.split("/")[0] == s.classes[y] for p, y in zip(s.paths, s.labels))
        htrain, htest = load_hmdb51_split(world_dir / "hmdb51", fold)
        assert len(htrain) > 0 and len(htest) > 0 and not set(htrain.paths) & set(htest.paths)
        assert all((Path(htrain.root) / p).is_file() for p in htrain.paths + htest.paths)
    ktrain, ktest = load_kinetics_split(world_dir / "kinetics", world_dir / "kinetics/train.csv",
                                        world_dir / "kinetics/validate.csv")
    assert ktrain.notes["missing"] == [] and len(ktrain) + len(ktest) == n_clips
    assert resolve_folds("all", "ucf101") == [1, 2, 3] and resolve_folds(2, "hmdb51") == [2]


def test_no_test_video_leaks_into_train_or_val(world_dir):
    for fold in (1, 2, 3):
        cfg = ft_cfg("/unused", world_dir, "dataset.val_fraction=0.3", "dataset.label_fraction=0.5")
        s = prepare_splits(cfg["dataset"], fold, seed=3)
        train, val, test = (set(s[k].paths) for k in ("train", "val", "test"))
        assert train and val and test
        assert not train & test and not val & test and not train & val
        # validation is carved from the official TRAIN list, whole groups at a time
        official_train, _ = load_ucf101_split(world_dir / "ucf101", fold)
        assert val <= set(official_train.paths)
        assert not set(s["train"].groups.tolist()) & set(s["val"].groups.tolist())
        assert not (set(s["train"].groups.tolist()) | set(s["val"].groups.tolist())) & set(s["test"].groups.tolist())


def test_label_fraction_is_stratified_and_seeded(world_dir):
    train, _ = load_ucf101_split(world_dir / "ucf101", 1)
    big = train.take(np.repeat(np.arange(len(train)), 10))  # 10x copies: fractions become visible per class
    sub = subsample_labels(big, 0.1, seed=0)
    want = np.maximum(1, np.round(0.1 * big.class_counts()))
    assert np.array_equal(sub.class_counts(), np.where(big.class_counts() > 0, want, 0))
    assert sub.paths == subsample_labels(big, 0.1, seed=0).paths
    assert sub.labels.tolist() != subsample_labels(big, 0.1, seed=1).labels.tolist() or \
        sub.paths != subsample_labels(big, 0.1, seed=1).paths or len(sub) == len(big)
    # no groups: stratified per-class validation, a class never loses its last training video
    nogroup = copy.copy(big)
    nogroup.groups = None
    tr, va = carve_validation(nogroup, 0.5, seed=0)
    assert len(tr) + len(va) == len(big) and (tr.class_counts()[big.class_counts() > 0] >= 1).all()


# ---------------------------------------------------------------------------------------- metrics

def test_video_accuracy_averages_softmax_over_every_clip(world_dir):
    _, test = load_ucf101_split(world_dir / "ucf101", 1)
    ds = make_dataset(test, SPEC, "eval", clips_per_video=3)
    starts = np.array([ds.sample_plan(i)[2] for i in range(len(ds))]).reshape(-1, 3)
    durations = ds.manifest.duration
    assert np.allclose(starts[:, 0], 0) and np.allclose(starts[:, 2], durations - SPEC.video_duration)
    torch.manual_seed(0)
    from avssl.models import build_video_encoder
    from avssl.transforms.video import VideoAugment

    model = VideoClassifier(build_video_encoder("tiny", width=8), 6)
    pred = predict_clips(model, ds, VideoAugment(32, train=False, eval_resize_ratio=1.0), batch_size=4)
    _, counts = np.unique(pred["video"], return_counts=True)
    assert len(counts) == len(test) and (counts == 3).all() and len(pred["logits"]) == 3 * len(test)
    m = classification_metrics(pred, 6, clips_per_video=3)
    assert m["num_clips"] == 3 * len(test) and m["incomplete_videos"] == 0
    # video score recomputed by hand: mean softmax over the video's 3 clips
    p = torch.softmax(torch.as_tensor(pred["logits"], dtype=torch.float64), 1).numpy()
    by_video = {v: p[pred["video"] == v].mean(0) for v in np.unique(pred["video"])}
    label = {v: pred["label"][pred["video"] == v][0] for v in by_video}
    assert m["video_top1"] == pytest.approx(np.mean([by_video[v].argmax() == label[v] for v in by_video]))
    assert np.array(m["confusion"]).sum() == len(test)


def test_metrics_softmax_average_differs_from_clip_vote():
    # 3 clips of one video: two mildly favour class 1, one strongly favours class 0 -> the average picks 0
    logits = np.array([[0.0, 0.3], [0.0, 0.3], [6.0, 0.0]])
    pred = {"logits": logits, "label": np.zeros(3, int), "video": np.zeros(3, int)}
    m = classification_metrics(pred, 2, clips_per_video=3)
    assert m["clip_top1"] == pytest.approx(1 / 3) and m["video_top1"] == 1.0
    with pytest.raises(ValueError):  # a duplicated clip would bias the average
        classification_metrics(pred, 2, clips_per_video=2)
    short = classification_metrics({k: v[:2] for k, v in pred.items()}, 2, clips_per_video=3)
    assert short["incomplete_videos"] == 1


def _eval_worker(rank, world, world_dir):
    from avssl.models import build_video_encoder
    from avssl.transforms.video import VideoAugment

    _, test = load_ucf101_split(world_dir / "ucf101", 1)
    ds = make_dataset(test, SPEC, "eval", clips_per_video=3)
    torch.manual_seed(0)
    model = VideoClassifier(build_video_encoder("tiny", width=8), 6)
    pred = predict_clips(model, ds, VideoAugment(32, train=False, eval_resize_ratio=1.0), batch_size=2)
    return pred, classification_metrics(pred, 6, 3)


@pytest.mark.slow  # ~14 s: two spawned processes import torch
def test_two_process_evaluation_equals_one_process(world_dir):
    from avssl.utils.distributed import run_distributed

    one_pred, one = _eval_worker(0, 1, world_dir)
    results = run_distributed(_eval_worker, 2, world_dir)
    for pred, m in results:
        assert np.array_equal(pred["item"], one_pred["item"])  # every item once, none padded
        assert np.array_equal(pred["video"], one_pred["video"]) and np.array_equal(pred["clip"], one_pred["clip"])
        np.testing.assert_allclose(pred["logits"], one_pred["logits"], atol=1e-5)
        for k in ("clip_top1", "clip_top5", "video_top1", "video_top5", "num_clips", "num_videos"):
            assert m[k] == one[k], k
        assert m["confusion"] == one["confusion"]


# ---------------------------------------------------------------------------------------- fine-tuning

def test_finetune_resume_equals_uninterrupted(tmp_path, world_dir):
    cache = f"dataset.index_cache={tmp_path / 'idx' / 'ucf.npz'}"  # shared: only the first run probes
    straight = finetune(ft_cfg(tmp_path / "straight", world_dir, cache))
    killed_cfg = ft_cfg(tmp_path / "killed", world_dir, "trainer.stop_after_epochs=1", cache)
    first = finetune(killed_cfg)
    assert first["stopped"]["stopped_after_epoch"] == 1
    assert not (tmp_path / "killed/fold1/test_metrics.json").exists()
    killed_cfg["trainer"]["stop_after_epochs"] = None
    resumed = finetune(killed_cfg)
    a = torch.load(tmp_path / "straight/fold1/best_model.pt")
    b = torch.load(tmp_path / "killed/fold1/best_model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    s, r = straight["per_fold"][0], resumed["per_fold"][0]
    assert [h["loss"] for h in s["history"]] == [h["loss"] for h in r["history"]]
    assert s["history"][0]["frozen_encoder"] and not s["history"][1]["frozen_encoder"]
    assert s["video_top1"] == r["video_top1"] and s["clip_top1"] == r["clip_top1"]
    # every test clip scored: 3 clips per test video
    assert s["num_clips"] == 3 * s["num_test_videos"] and set(s["clips_per_video_seen"]) == {3}
    assert (tmp_path / "straight/fold1/confusion.png").stat().st_size > 1000
    # dataset.index_cache: one file per split; the later runs took every video from it
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["ucf.test.npz", "ucf.train.npz", "ucf.val.npz"]
    for split, videos in (("train", "num_train_videos"), ("val", "num_val_videos"), ("test", "num_test_videos")):
        first, again = s["index"][split], r["index"][split]
        assert first["probed"] == first["total"] == s[videos] and first["cached"] == 0, split
        assert again["probed"] == 0 and again["cached"] == again["total"] == s[videos], split


def test_warmup_keeps_encoder_weights(tmp_path, world_dir):
    cfg = ft_cfg(tmp_path / "warm", world_dir, "optim.epochs=1", "optim.warmup_epochs=1",
                 "optim.warmup_encoder_eval=true")
    torch.manual_seed(cfg["seed"])
    before = load_pretrained_video_encoder(cfg["init"], cfg["model"]).state_dict()
    finetune(cfg)
    after = torch.load(tmp_path / "warm/fold1/best_model.pt")
    enc = {k[len("encoder."):]: v for k, v in after.items() if k.startswith("encoder.")}
    assert all(torch.equal(before[k], enc[k]) for k in before)  # BN stats too (frozen = eval mode)
    assert not torch.equal(after["classifier.weight"], torch.zeros_like(after["classifier.weight"]))


def test_avssl_checkpoint_init(tmp_path):
    from avssl.utils.checkpoint import CheckpointManager
    from avssl.models import build_av_model

    model_cfg = {"video": "tiny", "audio": "tiny", "proj_dim": [16, 8]}
    torch.manual_seed(5)
    av = build_av_model(**model_cfg)
    CheckpointManager(tmp_path / "pre").save({"model": av.state_dict(), "config": {"model": model_cfg}}, 3)
    enc = load_pretrained_video_encoder({"kind": "avssl", "checkpoint": str(tmp_path / "pre")}, {"video": "tiny"})
    assert all(torch.equal(v, av.video_model.state_dict()[k]) for k, v in enc.state_dict().items())
    with pytest.raises(ValueError):
        load_pretrained_video_encoder({"kind": "imagenet"}, {"video": "tiny"})


# ---------------------------------------------------------------------------------------- probes

def test_probe_monitor_and_knn(world_dir):
    from avssl.models import build_av_model

    from avssl.downstream import probe_datasets

    train, test = load_ucf101_split(world_dir / "ucf101", 1)
    tr, te = probe_datasets("ucf101", world_dir / "ucf101", SPEC)
    torch.manual_seed(0)
    av = build_av_model(video="tiny", audio="tiny", proj_dim=[16, 8], video_args={"width": 8})
    av.train()
    out = probe_monitor(av, tr, te, layer="conv3x", batch_size=8)
    assert 0 <= out["linear_top1"] <= 1 and 0 <= out["knn_top1"] <= 1
    assert out["num_train"] == len(train) and out["num_test"] == len(test) and out["feature_dim"] == 16
    assert av.video_model.training  # mode restored
    # k-NN on separable embeddings is exact
    emb = np.eye(4)[[0, 1, 2, 3, 0, 1]] + 0.01
    assert knn_accuracy(emb[:4], [0, 1, 2, 3], emb[4:], [0, 1], k=1) == 1.0


def test_audio_probe_runs_five_folds(world_dir):
    from avssl.data.formats import parse_esc50
    from avssl.models import build_audio_encoder

    torch.manual_seed(0)
    enc = build_audio_encoder("tiny", width=8)
    out = audio_probe(enc, world_dir / "esc50", duration=1.0, clips_per_file=2, progress=False)
    entries = parse_esc50(world_dir / "esc50")
    assert sorted(out["per_fold"]) == sorted({e.fold for e in entries}) == [1, 2, 3, 4, 5]
    assert out["num_files"] == len(entries) and 0 <= out["mean"] <= 1


def test_probe_audio_tool_writes_json(tmp_path, world_dir):
    import json
    import runpy
    import sys

    argv = sys.argv
    sys.argv = ["probe_audio.py", "--esc50", str(world_dir / "esc50"), "--audio", "tiny", "--duration", "1",
                "--classifier", "logreg", "--out", str(tmp_path / "esc.json")]
    try:
        runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools/probe_audio.py"), run_name="__main__")  # the shim
    finally:
        sys.argv = argv
    out = json.loads((tmp_path / "esc.json").read_text())
    assert len(out["per_fold"]) == 5 and out["classifier"] == "logreg"


def test_released_avid_layout_init(tmp_path):
    """A released-style file ({'model': {'module.<key>': ...}}) loads into the named model preset."""
    from avssl.models import build_av_model

    torch.manual_seed(7)
    av = build_av_model("tiny")
    torch.save({"epoch": 3, "model": {f"module.{k}": v for k, v in av.state_dict().items()}}, tmp_path / "r.pth.tar")
    enc = load_pretrained_video_encoder({"kind": "avid", "checkpoint": str(tmp_path / "r.pth.tar"),
                                         "avid_model": "tiny"}, {"video": "tiny"})
    assert all(torch.equal(v, av.video_model.state_dict()[k]) for k, v in enc.state_dict().items())
