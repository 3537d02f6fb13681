"""Encoders, heads, AVModel: shapes, named feature maps, gradients, dense embeddings, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from avssl.models import (AVModel, ProjectionHead, build_audio_encoder, build_av_model, build_video_encoder)

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_tiny_encoders_shapes_and_feature_names():
    torch.manual_seed(0)
    v = build_video_encoder("tiny")
    feats = v.forward_features(torch.randn(2, 3, 8, 64, 64))
    assert list(feats) == ["conv1", "conv2x", "conv3x", "conv4x", "pool"]
    assert {k: tuple(x.shape) for k, x in feats.items()} == {
        "conv1": (2, 16, 8, 16, 16), "conv2x": (2, 16, 8, 16, 16), "conv3x": (2, 32, 4, 8, 8),
        "conv4x": (2, 64, 2, 4, 4), "pool": (2, 64)}
    # the pooled vector is the max over the last map (reference: AdaptiveMaxPool3d)
    assert torch.equal(feats["pool"], feats["conv4x"].flatten(2).amax(-1))
    assert v.out_dim == 64 and v(torch.randn(3, 3, 8, 64, 64)).shape == (3, 64)

    # last_spatial_stride=1: the last stage keeps conv3x's resolution (finer localization maps)
    fine = build_video_encoder("tiny", last_spatial_stride=1)
    assert fine.forward_features(torch.randn(2, 3, 8, 56, 56))["conv4x"].shape == (2, 64, 2, 7, 7)
    assert n_params(fine) == n_params(v)  # same weights, only the stride differs
    with pytest.raises(ValueError, match="last_spatial_stride"):
        build_video_encoder("tiny", last_spatial_stride=3)
    # temporal_stride=1: every frame reaches the last map (8 slots, not 2), same weights
    slow = build_video_encoder("tiny", temporal_stride=1, last_spatial_stride=1)
    assert slow.forward_features(torch.randn(2, 3, 8, 56, 56))["conv4x"].shape == (2, 64, 8, 7, 7)
    assert n_params(slow) == n_params(v)
    with pytest.raises(ValueError, match="temporal_stride"):
        build_video_encoder("tiny", temporal_stride=4)

    a = build_audio_encoder("tiny")
    feats = a.forward_features(torch.randn(2, 1, 257, 200))
    assert list(feats) == ["conv1", "block1", "block2", "block3", "pool"]
    assert feats["block3"].shape == (2, 64, 17, 13) and feats["pool"].shape == (2, 64)
    assert a.out_dim == 64


def test_avid_encoders_at_reference_input_sizes():
    torch.manual_seed(0)
    v = build_video_encoder("avid_r2plus1d_18").eval()
    with torch.no_grad():
        feats = v.forward_features(torch.randn(1, 3, 8, 112, 112))
    assert {k: tuple(x.shape) for k, x in feats.items()} == {
        "conv1": (1, 64, 8, 28, 28), "conv2x": (1, 64, 8, 28, 28), "conv3x": (1, 128, 4, 14, 14),
        "conv4x": (1, 256, 2, 7, 7), "conv5x": (1, 512, 1, 4, 4), "pool": (1, 512)}
    a = build_audio_encoder("avid_conv2d").eval()
    spec = torch.randn(1, 1, 257, 200)
    with torch.no_grad():
        feats = a.forward_features(spec)
        # the reference net runs on [B,1,T,F]; ours takes [B,1,F,T] and transposes internally
        ref = a.block4(a.block3(a.block2(a.block1(a.conv1(spec.transpose(2, 3))))))
    assert torch.allclose(feats["block4"], ref.transpose(2, 3))
    assert feats["block4"].shape == (1, 512, 17, 13) and feats["pool"].shape == (1, 512)
    # parameter counts (reference shapes: see test_checkpoint_load.reference_avid_shapes)
    assert n_params(v) == 15_379_136 and n_params(a) == 4_725_696


@pytest.mark.parametrize("name,t_out,params", [("r2plus1d_18", 1, 31_300_125), ("r3d_18", 1, 33_166_272),
                                               ("mc3_18", 8, 11_490_240)])
def test_torchvision_encoders(name, t_out, params):
    enc = build_video_encoder(name).eval()
    with torch.no_grad():
        feats = enc.forward_features(torch.randn(1, 3, 8, 32, 32))
    assert list(feats) == ["stem", "layer1", "layer2", "layer3", "layer4", "pool"]
    assert feats["layer4"].shape == (1, 512, t_out, 2, 2) and feats["pool"].shape == (1, 512)
    assert enc.out_dim == 512 and n_params(enc) == params


def test_bad_inputs_and_names_raise():
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        build_video_encoder("tiny")(torch.randn(2, 8, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, 1, F, T\]"):
        build_audio_encoder("tiny")(torch.randn(2, 257, 200))
    with pytest.raises(ValueError, match="unknown video encoder"):
        build_video_encoder("resnet9000")
    with pytest.raises(ValueError, match="head takes"):
        AVModel(build_video_encoder("tiny"), build_audio_encoder("tiny"), ProjectionHead(128, [8]), ProjectionHead(64, [8]))


def test_projection_head_matches_reference_layout():
    h = ProjectionHead(512, [512, 512, 128])
    assert [type(m).__name__ for m in h.projection] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert h.out_dim == 128 and h(torch.randn(4, 512)).shape == (4, 128)
    assert h(torch.randn(2, 3, 5, 512)).shape == (2, 3, 5, 128)  # any leading shape


def test_av_model_embeddings_unit_norm_and_gradients_reach_both_encoders():
    torch.manual_seed(0)
    m = build_av_model(video="tiny", audio="tiny", proj_dim=[32, 32, 16])
    video, spec = torch.randn(4, 3, 8, 32, 32), torch.randn(4, 1, 257, 200)
    v, a = m(video, spec)
    assert v.shape == a.shape == (4, 16)
    assert torch.allclose(v.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(a.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(v, m.embed_video(video), atol=1e-6)  # same batch -> same BN batch statistics
    (v * a).sum().backward()
    for part in (m.video_model, m.audio_model, m.video_proj, m.audio_proj):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert m.video_encoder is m.video_model and m.audio_encoder is m.audio_model


def test_dense_embeddings_are_the_head_at_every_position():
    torch.manual_seed(0)
    m = build_av_model(video="tiny", audio="tiny", proj_dim=[32, 32, 16]).eval()
    video = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        dense = m.video_dense_embeddings(video)
        fmap = m.video_model.forward_features(video)["conv4x"]
        b, c, t, h, w = fmap.shape
        assert dense.shape == (2, 16, t, h, w) == (2, 16, 2, 4, 4)
        assert torch.allclose(dense.norm(dim=1), torch.ones(2, t, h, w), atol=1e-5)
        for (ti, hi, wi) in [(0, 0, 0), (1, 3, 2), (0, 2, 3)]:
            ref = F.normalize(m.video_proj(fmap[:, :, ti, hi, wi]), dim=1)
            assert torch.allclose(dense[:, :, ti, hi, wi], ref, atol=1e-5)
        # an input whose last map is a single position: dense == the pooled embedding
        small = torch.randn(2, 3, 4, 16, 16)
        d1 = m.video_dense_embeddings(small)
        assert d1.shape[2:] == (1, 1, 1)
        assert torch.allclose(d1[:, :, 0, 0, 0], m.embed_video(small), atol=1e-5)
        # and dense positions share the audio embedding space (same dimension, unit norm)
        assert m.embed_audio(torch.randn(2, 1, 257, 200)).shape[1] == dense.shape[1]


@pytest.mark.parametrize("name", ["avid", "r2plus1d_18", "r3d_18", "tiny"])
def test_model_configs_build(name):
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    m = build_av_model(**cfg)
    assert isinstance(m, AVModel) and m.out_dim == cfg["proj_dim"][-1]
    assert m.video_model.out_dim == m.video_proj.in_dim
    assert n_params(build_av_model(name)) == n_params(m)  # preset name == config file


def _receptive_field_offsets(net, size: int) -> list[float]:
    """Measured centre of each interior cell's receptive field (centroid of |d cell / d input|)
    minus ``stride * j``, along both axes, for a random input of ``size`` x ``size`` pixels."""
    x = torch.rand(1, 3, 2, size, size, requires_grad=True)  # 2 frames: the spatial geometry is what is measured
    fmap = net.forward_features(x)[net.last_map]
    cells = fmap.shape[-1]
    stride = size // cells
    pix = torch.arange(size, dtype=torch.float64)
    out = []
    for j in range(max(2, cells // 4), cells - max(2, cells // 4)):  # central cells: fields least cut by the border
        (g,) = torch.autograd.grad(fmap[0, :, :, j, j].abs().sum(), x, retain_graph=True)
        m = g.abs().sum((0, 1, 2)).double()
        out += [float((m.sum(1) * pix).sum() / m.sum()) - stride * j, float((m.sum(0) * pix).sum() / m.sum()) - stride * j]
    return out


@pytest.mark.parametrize("name,kwargs,size", [("tiny", {"last_spatial_stride": 1}, 128), ("tiny", {}, 128),
                                              ("r3d_18", {}, 192)])  # its fields exceed 128 px
def test_video_map_cells_sit_where_the_encoder_says(name, kwargs, size):
    """Localization places cell j of the last map on input pixel stride * j + map_cell_offset
    (avssl.localization.upsample_maps); a plain resize would assume (stride - 1) / 2 more,
    i.e. half a cell to the bottom-right. Measured from the gradients of a random network."""
    torch.manual_seed(0)  # weights and input: the same draw whatever ran before in this worker
    net = build_video_encoder(name, **kwargs).eval()
    offsets = torch.tensor(_receptive_field_offsets(net, size))
    assert len(offsets) >= 4
    assert (offsets - net.map_cell_offset).abs().mean() < 1.0, offsets
