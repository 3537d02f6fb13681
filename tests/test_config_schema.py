"""The typed pretraining sections (avssl/utils/schema.py: optim, trainer, eval, loss) are checked at compose
time: a preset with a misspelled key, a wrong type or an unknown choice fails naming it; every shipped preset
fills every typed field from the YAML (the one place its default lives); the trainer sees plain strings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from avssl.utils import schema
from avssl.utils.runs import plain_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
TYPED = {"optim": schema.OptimConfig, "trainer": schema.TrainerConfig, "eval": schema.EvalConfig,
         "loss": schema.LossConfig}


def _compose(config_dir: Path, overrides: list[str]):
    with initialize_config_dir(str(config_dir), version_base="1.3"):
        return compose("pretrain", overrides=overrides)


@pytest.fixture
def config_dir(tmp_path):
    """A copy of configs/ where a test writes its own experiment preset."""
    out = tmp_path / "configs"
    shutil.copytree(CONFIGS, out, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return out


def _write_preset(config_dir: Path, body: str) -> None:
    (config_dir / "experiment" / "typo.yaml").write_text("# @package _global_\ndefaults:\n  - tiny\n  - _self_\n" + body)


PRESETS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("overrides", [[f"experiment={p}"] for p in PRESETS] + [["optim=sgd", "trainer=cpu"]],
                         ids=lambda o: ",".join(o))
def test_shipped_configs_fill_every_typed_field(overrides):
    cfg = _compose(CONFIGS, overrides)
    for section, cls in TYPED.items():
        node = cfg[section]
        assert issubclass(OmegaConf.get_type(node), cls), section
        assert OmegaConf.missing_keys(node) == set(), f"{section}: a schema field no YAML sets"
    plain = plain_config(cfg)
    for section, key in [("trainer", "amp"), ("trainer", "device"), ("loss", "loss"), ("loss", "variant"),
                         ("optim", "schedule_unit")]:
        assert type(plain[section][key]) is str, (section, key)  # what checkpoints store and resume compares


@pytest.mark.parametrize("section,typo,cls", [("optim", "lrr", "AdamConfig"), ("trainer", "epohcs", "TrainerConfig"),
                                              ("eval", "every_epoch", "EvalConfig"),
                                              ("loss", "temprature", "LossConfig")])
def test_preset_with_unknown_key_fails_at_compose(config_dir, section, typo, cls):
    _write_preset(config_dir, f"{section}: {{{typo}: 1}}\n")
    with pytest.raises(ConfigCompositionException) as info:
        _compose(config_dir, ["experiment=typo"])
    assert f"Key '{typo}' not in '{cls}'" in str(info.value)
    assert _compose(config_dir, ["experiment=tiny"])[section]  # the copy itself composes


@pytest.mark.parametrize("body,expected", [
    ("trainer: {epochs: ten}\n", "Value 'ten' of type 'str' could not be converted to Integer"),
    ("loss: {loss: infonc}\n", "Invalid value 'infonc', expected one of [nce, infonce]"),
    ("trainer: {amp: fp32}\n", "Invalid value 'fp32', expected one of [off, bf16, fp16]"),
    ("eval: {sync_shifts: 1.0}\n", "sync_shifts"),
])
def test_preset_with_wrong_type_or_choice_fails_at_compose(config_dir, body, expected):
    _write_preset(config_dir, body)
    with pytest.raises(ConfigCompositionException) as info:
        _compose(config_dir, ["experiment=typo"])
    err = info.value
    assert expected in str(err) + str(err.__cause__) + str(err.__context__)


def test_each_optimizer_has_its_own_keys():
    assert _compose(CONFIGS, ["optim=sgd", "optim.momentum=0.5"]).optim.momentum == 0.5
    with pytest.raises(ConfigCompositionException) as info:  # an SGD key under Adam
        _compose(CONFIGS, ["optim=adam", "optim.momentum=0.5"])
    assert "Key 'momentum' not in 'AdamConfig'" in str(info.value.__cause__)


def test_command_reports_a_preset_typo_in_one_line_with_the_valid_keys(config_dir):
    _write_preset(config_dir, "optim: {lrr: 0.1}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    res = subprocess.run([sys.executable, "-m", "avssl.cli.pretrain", "--config-dir", str(config_dir),
                          "experiment=typo"], capture_output=True, text=True, env=env, timeout=300, cwd=config_dir.parent)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Key 'lrr' not in 'AdamConfig'" in lines[0]
    assert "did you mean 'optim.lr'?" in lines[0] and "Keys at 'optim': name, lr," in lines[0]


# ------------------------------------------------------------------------------ fine-tuning (optim, eval, trainer)

FT_TYPED = {"optim": schema.FinetuneOptimConfig, "eval": schema.FinetuneEvalConfig,
            "trainer": schema.FinetuneTrainerConfig}
FT_PRESETS = sorted(p.stem for p in (CONFIGS / "finetune").glob("*.yaml"))


@pytest.mark.parametrize("preset", FT_PRESETS)
def test_finetune_presets_fill_every_typed_field(preset):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("finetune", overrides=[f"finetune={preset}"])
    for section, cls in FT_TYPED.items():
        assert issubclass(OmegaConf.get_type(cfg[section]), cls), section
        assert OmegaConf.missing_keys(cfg[section]) == set(), section
    assert type(plain_config(cfg)["trainer"]["device"]) is str


def test_finetune_preset_with_unknown_key_or_choice_fails_at_compose(config_dir):
    (config_dir / "finetune" / "typo.yaml").write_text("# @package _global_\nname: typo\noptim: {warmup_epoch: 3}\n")
    (config_dir / "finetune" / "badunit.yaml").write_text("# @package _global_\nname: typo\noptim: {schedule_unit: steps}\n")
    with initialize_config_dir(str(config_dir), version_base="1.3"):
        with pytest.raises(ConfigCompositionException) as info:
            compose("finetune", overrides=["finetune=typo"])
        assert "Key 'warmup_epoch' not in 'FinetuneOptimConfig'" in str(info.value)
        with pytest.raises(ConfigCompositionException) as info:
            compose("finetune", overrides=["finetune=badunit"])
        err = info.value
        assert "expected one of [epoch, step]" in str(err) + str(err.__cause__) + str(err.__context__)
