"""Every shipped config composes with Hydra and builds what it describes (no data needed).

The configs are discovered by listing configs/: each top-level YAML must be the config of a command
(avssl/cli/*.py `@hydra.main(config_name=...)`), and each folder is a config group that some command selects
through its defaults list (`data`, `optim`, `trainer`, `experiment` in pretrain.yaml, `finetune`,
`demo`, `model` in extract.yaml), or one of the folders this file names below with its reader
(world presets read as files) or as dead (read by nothing; marked xfail, strict, with the reason, so
the refactor that wires or removes it must also update this file). A new YAML in a known group is
picked up and checked automatically; a new group fails `test_every_config_folder_has_a_reader` until
it is classified.

Each composed config is then resolved (no dangling interpolation) and built cheaply: clip spec,
batch transforms on a fake clip of the spec's size, the model (its projection dimension must equal
loss.dim; dense maps when the localization term is on), the criterion on a small bank (one forward),
the optimizer; fine-tuning presets build their classifier; demo presets compose every tool config
they point to, with the overrides they pass. How a test fails: a typo'd key or group option
(ConfigCompositionException), an interpolation to nothing (InterpolationResolutionError), a model
whose head does not match loss.dim, a preset naming an unknown world / encoder / format, etc.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path

import pytest
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# Groups no primary config selects: how they are read (a reason, checked below) or why they are dead.
READ_AS_FILES = {"data/world": "world presets: avssl-make-data / avssl-make-real-world --preset <yaml> "
                               "(mirrors of avssl.synth presets; tests/test_synth.py checks they agree)",
                 "hydra/help": "each command's --help text, selected by its primary config (`override hydra/help: "
                               "<command>`); tests/test_packaging.py runs every command's --help"}
# (configs/loss/ was one: removed; a method and its loss are chosen by `method=` and the `loss:` keys.)
DEAD_GROUPS: dict[str, str] = {}
# Single dead options inside a live group.
DEAD_OPTIONS = {"data/prepare.yaml": "configs/data/prepare.yaml sits in the `data` group but holds the training "
                                     "cache's transcode settings (avssl.data.prepare.CacheSpec): avssl-prepare "
                                     "takes argparse flags with their own defaults and reads nothing from it, and "
                                     "`data=prepare` gives pretraining a data block with no clip spec"}


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".yaml")


def primary_configs() -> list[str]:
    return [p.stem for p in _yaml_files(CONFIGS)]


def tool_config_names() -> dict[str, str]:
    """config_name -> the command module (avssl/cli/*.py) that reads it via @hydra.main."""
    out = {}
    for tool in sorted((ROOT / "avssl" / "cli").glob("*.py")):
        for name in re.findall(r"config_name=\"(\w+)\"", tool.read_text()):
            out[name] = tool.name
    return out


def group_readers() -> dict[str, str]:
    """group -> the primary config whose defaults list selects it."""
    out = {}
    for name in primary_configs():
        for entry in OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml")).get("defaults", []):
            if isinstance(entry, dict):
                for group in entry:
                    group = group.removeprefix("override ").lstrip("/")
                    if not group.startswith("hydra/"):  # Hydra's own groups (help texts): READ_AS_FILES
                        out[group] = name
    return out


def config_groups() -> list[str]:
    return sorted(str(p.parent.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml") if p.parent != CONFIGS)


def _compose(config: str, overrides=()) -> dict:
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose(config, overrides=list(overrides))
    assert not OmegaConf.missing_keys(cfg), f"{config} {overrides}: missing values {OmegaConf.missing_keys(cfg)}"
    return OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


# ------------------------------------------------------------------------------------ discovery
def test_every_primary_config_is_read_by_a_command():
    tools = tool_config_names()
    unread = [name for name in primary_configs() if name not in tools]
    assert not unread, f"{', '.join(f'configs/{u}.yaml' for u in unread)}: no avssl/cli/*.py composes it (@hydra.main)"
    assert set(primary_configs()) >= {"pretrain", "finetune", "extract", "localize", "demo"}


def test_every_config_folder_has_a_reader():
    readers = group_readers()
    classified = set(readers) | set(READ_AS_FILES) | set(DEAD_GROUPS)
    unknown = [g for g in set(config_groups()) if g not in classified]
    folders = ", ".join(f"configs/{g}/" for g in sorted(unknown))
    assert not unknown, (f"{folders}: no command selects this group; name its reader in READ_AS_FILES or mark it "
                         f"in DEAD_GROUPS of {Path(__file__).name}")
    # the classification is current: nothing listed here is stale
    assert set(READ_AS_FILES) | set(DEAD_GROUPS) <= set(config_groups())
    assert not (set(READ_AS_FILES) | set(DEAD_GROUPS)) & set(readers)


def _options() -> list:
    readers = group_readers()
    params = []
    for group in sorted(set(config_groups())):
        if group not in readers:
            continue
        for path in _yaml_files(CONFIGS / group):
            rel = f"{group}/{path.name}"
            marks = [pytest.mark.xfail(strict=True, reason=DEAD_OPTIONS[rel])] if rel in DEAD_OPTIONS else []
            params.append(pytest.param(readers[group], group, path.stem, marks=marks, id=f"{group}={path.stem}"))
    return params


# ------------------------------------------------------------------------------------ builders
def _clip_spec(spec: dict):
    from avssl.io import ClipSpec

    spec = dict(spec)
    if isinstance(spec.get("frame_size"), list):
        spec["frame_size"] = tuple(spec["frame_size"])
    return ClipSpec(**spec)


def _fake_clip(spec, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 video [B, T, H, W, 3] at the spec's decoded size and a waveform [B, C, S] of its audio window."""
    fs = spec.frame_size if spec.frame_size is not None else 64
    h, w = (fs, fs * 4 // 3) if isinstance(fs, int) else fs
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (batch, spec.num_frames, h, w, 3), dtype=torch.uint8, generator=g)
    audio = torch.rand(batch, spec.audio_channels, round(spec.audio_duration * spec.audio_rate), generator=g) * 2 - 1
    return video, audio


def _through_policy(video: torch.Tensor, video_tf) -> torch.Tensor:
    """Each fake clip through the per-item spatial policy its batch transform expects (what the datasets do)."""
    from avssl.data.spatial import input_policy_of

    policy = input_policy_of(video_tf)
    rng = np.random.default_rng(0)
    return torch.stack([policy.apply(clip, rng)[0] for clip in video])


def _small(video: torch.Tensor) -> torch.Tensor:
    """Large crops shrunk to 32 px for the forward pass (the encoders pool adaptively; a full-size
    R(2+1)D-18 forward costs seconds and is covered by tests/test_models.py)."""
    if video.shape[-1] <= 64:
        return video
    return torch.nn.functional.interpolate(video, size=(video.shape[2], 32, 32), mode="trilinear")


@functools.lru_cache(maxsize=None)
def _model(model_json: str):
    from avssl.models import build_av_model

    torch.manual_seed(0)
    return build_av_model(**json.loads(model_json)).eval()


def _known_world(preset: str) -> None:
    from avssl.synth.presets import get_preset

    assert get_preset(preset).name == preset


def check_pretrain(cfg: dict) -> None:
    from avssl.data.index import MISSING_AUDIO_POLICIES
    from avssl.engine.pretrain import build_batch_transforms, build_optimizer
    from avssl.methods import ModelOutputs, available_methods, build_method

    data, loss = cfg["data"], cfg["loss"]
    assert cfg["method"] in available_methods()
    if cfg["method"] == "cma":
        assert cfg["cma"]["init_from"], "a CMA preset names the AVID run it starts from"
    assert data["source"] in ("embedded", "files")
    if data["source"] == "embedded":
        _known_world(data["world_preset"])
    else:
        assert data["train_source"], "an indexed-files preset names its training list"
    assert data["missing_audio"] in MISSING_AUDIO_POLICIES and data["batch_size"] >= 1
    spec = _clip_spec(data["spec"])
    for train in (True, False):
        tf = build_batch_transforms(cfg, train=train)
        video, audio = _fake_clip(spec)
        video, audio = tf(_through_policy(video, tf.video_tf), audio)
        crop = cfg["transforms"]["video"]["crop_size"]
        assert video.shape == (2, 3, spec.num_frames, crop, crop) and video.dtype == torch.float32
        assert audio.ndim == 4 and audio.shape[:2] == (2, 1) and torch.isfinite(audio).all()
    model = _model(json.dumps(cfg["model"], sort_keys=True))
    with torch.no_grad():
        v, a, dense = model(_small(video), audio, dense=True)
    assert v.shape == a.shape == (2, loss["dim"]), "the model's projection must output loss.dim"
    assert dense.shape[1] == loss["dim"]
    method = build_method(cfg, num_items=300, fingerprint="fp")
    method.on_epoch_start(0, device=torch.device("cpu"), logger=logging.getLogger("test"))  # e.g. CMA's sets
    value, stats = method.loss(ModelOutputs(v, a, dense if method.needs_dense else None), torch.tensor([0, 1]))
    assert torch.isfinite(value) and "loss/total" in stats
    assert method.needs_dense == (loss.get("localization_weight", 0) > 0)
    for term in method.terms:
        assert torch.isfinite(stats[f"loss/{term.name}"])
    build_optimizer(cfg, model.parameters(), method.parameters())
    assert all(m <= cfg["trainer"]["epochs"] for m in cfg["optim"].get("milestones", []))
    assert cfg["trainer"]["device"] in ("auto", "cpu", "cuda")
    assert cfg["trainer"]["amp"] in (False, "off", "bf16", "fp16")
    assert cfg["eval"]["batch_size"] >= 1


def check_finetune(cfg: dict) -> None:
    from avssl.downstream.finetune import VideoClassifier, load_pretrained_video_encoder, resolve_folds
    from avssl.transforms.video import VideoAugment

    d = cfg["dataset"]
    assert d["format"] in ("ucf101", "hmdb51", "kinetics")
    assert d["root"] or d["embedded"], "a fine-tuning preset names its dataset root or the embedded world"
    if d["embedded"]:
        _known_world(d["embedded"]["preset"])
    assert resolve_folds(cfg["folds"], d["format"])
    spec = _clip_spec(d["spec"])
    video, _ = _fake_clip(spec)
    for train in (True, False):
        out = VideoAugment(**cfg["transforms"]["video"], train=train)(video)  # batch geometry (direct callers)
        crop = cfg["transforms"]["video"]["crop_size"]
        assert out.shape == (2, 3, spec.num_frames, crop, crop)
    torch.manual_seed(0)
    encoder = load_pretrained_video_encoder({"kind": "scratch"}, cfg["model"])
    clf = VideoClassifier(encoder, num_classes=5, dropout=cfg["model"]["dropout"]).eval()
    with torch.no_grad():
        assert clf(_small(out)).shape == (2, 5)
    o = cfg["optim"]
    assert 0 <= o["warmup_epochs"] < o["epochs"] and all(m <= o["epochs"] for m in o["milestones"])


def check_model_block(model_cfg) -> None:
    from avssl.embed.api import build_model

    torch.manual_seed(0)
    model = build_model(model_cfg).eval()
    with torch.no_grad():
        v, a = model(torch.randn(2, 3, 8, 32, 32), torch.randn(2, 1, 257, 200))
    assert v.shape == a.shape and v.shape[0] == 2 and torch.isfinite(v).all() and torch.isfinite(a).all()


def check_extract(cfg: dict) -> None:
    if cfg.get("model") is not None:
        check_model_block(cfg["model"])
    assert set(cfg["modalities"]) <= {"video", "audio"} and cfg["clips_per_video"] >= 1
    _known_world(cfg["world"]["preset"])


def check_localize(cfg: dict) -> None:
    check_model_block(cfg["model"])
    assert 0 < cfg["eval"]["fraction"] <= 1 and cfg["annotation_format"] in ("world", "vggss", "flickr")


def check_demo(cfg: dict) -> None:
    """Every tool config a demo preset points to composes with the overrides it passes, and builds."""
    _known_world(cfg["world"]["preset"])
    check("pretrain", _compose("pretrain", [f"experiment={cfg['avid']['experiment']}", *cfg["avid"]["overrides"]]))
    if cfg["cma"].get("enabled", True):
        check("pretrain", _compose("pretrain", [f"experiment={cfg['cma']['experiment']}", "method=cma",
                                                "cma.init_from=runs/avid", *cfg["cma"]["overrides"]]))
    check("finetune", _compose("finetune", [f"finetune={cfg['finetune']['preset']}", *cfg["finetune"]["overrides"]]))
    check("localize", _compose("localize", cfg["localize"]["overrides"]))
    check("extract", _compose("extract", ["model=tiny", *cfg["extract"]["overrides"]]))


def check_score_heatmaps(cfg: dict) -> None:
    """Every protocol the preset names is a registered evaluator preset."""
    from avssl.localization.protocols import get_protocol

    names = cfg["protocol"] if isinstance(cfg["protocol"], list) else [cfg["protocol"]]
    for name in names:
        get_protocol(name) if name != "free" else None
    assert cfg["format"] in ("auto", "vggss", "flickr") and 0 < cfg["kept_share"] <= 1


CHECKS = {"pretrain": check_pretrain, "finetune": check_finetune, "extract": check_extract,
          "localize": check_localize, "demo": check_demo, "score_heatmaps": check_score_heatmaps}
# Inputs a command refuses to run without (``???`` in its YAML): given here as a user would.
REQUIRED_INPUTS = {"score_heatmaps": ["maps_dir=maps", "annotations=vggss.json"]}
_passed: set[str] = set()


def check(config: str, cfg: dict) -> None:
    """CHECKS[config](cfg), once per distinct composed config in this process (the demo presets and the
    primary configs repeat some group options exactly)."""
    key = json.dumps([config, cfg], sort_keys=True, default=str)
    if key not in _passed:
        CHECKS[config](cfg)
        _passed.add(key)


# ------------------------------------------------------------------------------------ the tests
@pytest.mark.parametrize("config", primary_configs())
def test_primary_config_composes_and_builds(config):
    assert config in CHECKS, f"configs/{config}.yaml: add a check for it to CHECKS"
    check(config, _compose(config, REQUIRED_INPUTS.get(config, [])))


@pytest.mark.parametrize("config,group,option", _options())
def test_group_option_composes_and_builds(config, group, option):
    check(config, _compose(config, [f"{group}={option}"]))


@pytest.mark.parametrize("path", sorted((CONFIGS / "data" / "world").glob("*.yaml")), ids=lambda p: p.stem)
def test_world_preset_file_loads(path):
    """configs/data/world/*.yaml are read as files by the world generators' --preset."""
    from avssl.synth.presets import get_preset
    from avssl.synth.real_world import get_real_preset

    preset = (get_real_preset if path.stem.startswith("real_") else get_preset)(str(path))
    assert preset.name == path.stem and preset.num_clips >= 1


# ---- the loss block reaches the method (it was once silently dropped)
def test_joint_weights_reach_the_criterion():
    from avssl.methods import build_method

    cfg = _compose("pretrain", ["loss.variant=joint", "loss.joint_weights=[0.8,0.2]"])
    assert build_method(cfg, num_items=2000, fingerprint="fp").criterion.weights == {"cross": 0.8, "self": 0.2}
    default = build_method(_compose("pretrain", ["loss.variant=joint"]), num_items=2000, fingerprint="fp")
    assert default.criterion.weights == {"cross": 0.5, "self": 0.5}  # pretrain.yaml: the paper's 1:1
