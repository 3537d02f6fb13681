"""Released AVID checkpoint layout: the reference key names/shapes, a round trip, the mismatch error, and
the AVID-CMA file layout (zip and legacy serialization) reading with weights_only=True."""

from __future__ import annotations

import pytest
import torch

from avssl.models import CheckpointMismatchError, build_av_model, load_avid_checkpoint


def _bn(prefix: str, c: int) -> dict:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def reference_avid_shapes() -> dict[str, tuple]:
    """The AV_Wrapper(R2Plus1D depth 18, Conv2D depth 10, proj_dim [512,512,128]) state dict as
    documented from the public AVID-CMA code (models/video.py, audio.py, network_blocks.py,
    av_wrapper.py), written independently of avssl's classes."""
    s: dict[str, tuple] = {"video_model.conv1.0.weight": (64, 3, 3, 7, 7), **_bn("video_model.conv1.1", 64)}
    cin = 64
    for stage, cout in zip(("conv2x", "conv3x", "conv4x", "conv5x"), (64, 128, 256, 512)):
        for blk in (0, 1):
            p = f"video_model.{stage}.{blk}"
            ci = cin if blk == 0 else cout
            s[f"{p}.spt_conv1.weight"] = (cout, ci, 1, 3, 3)
            s[f"{p}.tmp_conv1.weight"] = (cout, cout, 3, 1, 1)
            s[f"{p}.spt_conv2.weight"] = (cout, cout, 1, 3, 3)
            s[f"{p}.tmp_conv2.weight"] = (cout, cout, 3, 1, 1)
            for bn in ("spt_bn1", "tmp_bn1", "spt_bn2", "out_bn"):
                s.update(_bn(f"{p}.{bn}", cout))
            if blk == 0 and stage != "conv2x":
                s[f"{p}.res_conv.weight"] = (cout, ci, 1, 1, 1)
        cin = cout
    s["audio_model.conv1.0.weight"] = (64, 1, 7, 7)
    s.update(_bn("audio_model.conv1.1", 64))
    cin = 64
    for i, cout in enumerate((64, 128, 256, 512), start=1):
        s[f"audio_model.block{i}.conv1.weight"] = (cout, cin, 3, 3)
        s[f"audio_model.block{i}.conv2.weight"] = (cout, cout, 3, 3)
        s.update(_bn(f"audio_model.block{i}.bn1", cout))
        s.update(_bn(f"audio_model.block{i}.bn2", cout))
        cin = cout
    for m in ("video", "audio"):
        for j, (o, i) in zip((0, 2, 4), ((512, 512), (512, 512), (128, 512))):
            s[f"{m}_proj.projection.{j}.weight"] = (o, i)
            s[f"{m}_proj.projection.{j}.bias"] = (o,)
    return s


def released_checkpoint(shapes: dict, num_items: int = 10, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    model = {}
    for k, shp in shapes.items():
        if k.endswith("num_batches_tracked"):
            model["module." + k] = torch.randint(0, 100, shp, generator=g)
        elif k.endswith("running_var"):  # variances are positive
            model["module." + k] = torch.rand(shp, generator=g) + 0.5
        else:
            model["module." + k] = torch.randn(shp, generator=g) * 0.1
    mem = lambda: torch.nn.functional.normalize(torch.randn(num_items, 128, generator=g), dim=1)
    crit = {"nce_average.view1_mem": mem(), "nce_average.view2_mem": mem(),
            "criterion.avg_exp_score": torch.tensor(0.0123)}
    return {"epoch": 30, "model": model, "optimizer": {}, "train_criterion": crit}


def test_avid_model_has_the_reference_keys_and_shapes():
    ours = {k: tuple(v.shape) for k, v in build_av_model("avid").state_dict().items()}
    ref = reference_avid_shapes()
    assert sorted(set(ref) - set(ours)) == [] and sorted(set(ours) - set(ref)) == []
    assert {k: v for k, v in ours.items() if ref[k] != v} == {}


def test_released_layout_round_trip(tmp_path):
    ckpt = released_checkpoint(reference_avid_shapes())
    path = tmp_path / "checkpoint.pth.tar"
    torch.save(ckpt, path)
    model = build_av_model("avid")
    extras = load_avid_checkpoint(path, model)
    state = model.state_dict()
    for k, v in ckpt["model"].items():
        assert torch.equal(state[k[len("module."):]], v), k
    assert torch.equal(extras.video_memory, ckpt["train_criterion"]["nce_average.view1_mem"])
    assert torch.equal(extras.audio_memory, ckpt["train_criterion"]["nce_average.view2_mem"])
    assert extras.nce_partition == pytest.approx(0.0123)
    assert extras.epoch == 30 and extras.positive_set is None
    # the loaded model runs and its embeddings are unit vectors
    model.eval()
    with torch.no_grad():
        v, a = model(torch.randn(1, 3, 8, 32, 32), torch.randn(1, 1, 257, 200))
    assert v.shape == a.shape == (1, 128)
    assert torch.allclose(v.norm(dim=1), torch.ones(1), atol=1e-5)


def test_bare_state_dict_without_prefix_and_cma_positive_set(tmp_path):
    model = build_av_model("tiny")
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    other = build_av_model("tiny")
    load_avid_checkpoint(tmp_path / "bare.pt", other)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    pos = torch.randint(0, 10, (10, 4), dtype=torch.int32)
    torch.save({"model": model.state_dict(), "train_criterion": {
        "nce_average.view1_mem": torch.zeros(10, 32), "nce_average.view2_mem": torch.zeros(10, 32),
        "nce_average.positive_set": pos, "criterion.avg_exp_score": torch.tensor(2.0)}}, tmp_path / "cma.pt")
    extras = load_avid_checkpoint(tmp_path / "cma.pt", other)
    assert torch.equal(extras.positive_set, pos.long()) and extras.nce_partition == 2.0


def test_mismatching_checkpoint_lists_missing_unexpected_and_shapes(tmp_path):
    shapes = reference_avid_shapes()
    shapes.pop("audio_model.block4.conv2.weight")
    shapes["video_model.extra.weight"] = (3,)
    shapes["video_proj.projection.4.weight"] = (64, 512)
    path = tmp_path / "bad.pth.tar"
    torch.save(released_checkpoint(shapes), path)
    model = build_av_model("avid")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_avid_checkpoint(path, model)
    e = err.value
    assert e.missing == ["audio_model.block4.conv2.weight"]
    assert e.unexpected == ["video_model.extra.weight"]
    assert e.mismatched == [("video_proj.projection.4.weight", (64, 512), (128, 512))]
    msg = str(e)
    assert "audio_model.block4.conv2.weight" in msg and "video_model.extra.weight" in msg and "[64, 512]" in msg
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing loaded
    # non-strict: the matching keys load, the rest is left alone
    load_avid_checkpoint(path, model, strict=False)
    assert torch.equal(model.state_dict()["audio_model.block4.conv2.weight"], before["audio_model.block4.conv2.weight"])
    assert not torch.equal(model.state_dict()["video_model.conv1.0.weight"], before["video_model.conv1.0.weight"])


def test_checkpoint_for_another_architecture_is_refused(tmp_path):
    torch.save({"model": build_av_model("tiny").state_dict()}, tmp_path / "tiny.pt")
    with pytest.raises(CheckpointMismatchError):
        load_avid_checkpoint(tmp_path / "tiny.pt", build_av_model("avid"))


def _avid_cma_file(path, model, legacy: bool, optimizer: str = "sgd") -> dict:
    """A file in the layout of facebookresearch/AVID-CMA ``main-avid.py``: its CheckpointManager
    saves ``{'epoch': int, **{k: obj.state_dict()}}`` for model (DataParallel-wrapped: ``module.``
    keys), optimizer (SGD with momentum or Adam over model + criterion parameters, after real
    steps so momentum buffers exist) and train_criterion (memory banks, avg_exp_score; CMA adds the
    positive sets); ``.pth.tar`` written by the torch of its time (legacy format) or a newer one (zip)."""
    wrapped = torch.nn.DataParallel(model)
    crit_state = {"nce_average.view1_mem": torch.randn(10, 16), "nce_average.view2_mem": torch.randn(10, 16),
                  "nce_average.positive_set": torch.randint(0, 10, (10, 4)), "criterion.avg_exp_score": torch.tensor(3.5)}
    params = list(wrapped.parameters())
    opt = (torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-5, nesterov=True) if optimizer == "sgd"
           else torch.optim.Adam(params, lr=1e-4, weight_decay=1e-5, betas=[0.9, 0.999]))
    for _ in range(2):
        opt.zero_grad()
        sum((p ** 2).sum() for p in params).backward()
        opt.step()
    from collections import OrderedDict

    state = {"epoch": 12, "model": wrapped.state_dict(), "optimizer": opt.state_dict(),
             "train_criterion": OrderedDict(crit_state)}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return state


@pytest.mark.parametrize("legacy,optimizer", [(True, "sgd"), (False, "adam")])
def test_released_avid_cma_layout_reads_with_weights_only(tmp_path, legacy, optimizer):
    torch.manual_seed(0)
    src = build_av_model("tiny")
    path = tmp_path / "AVID-CMA_Audioset_InstX-N1024-PosW-N64-Top32_checkpoint.pth.tar"
    saved = _avid_cma_file(path, src, legacy, optimizer)
    assert all(k.startswith("module.") for k in saved["model"])
    if not legacy:  # (the helper reads zip files only; the legacy file's weights_only load below is the proof)
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    dst = build_av_model("tiny")
    extras = load_avid_checkpoint(path, dst)  # reads with weights_only=True
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    assert extras.epoch == 12 and extras.nce_partition == 3.5
    assert torch.equal(extras.positive_set, saved["train_criterion"]["nce_average.positive_set"])
