"""Runs: a checkpoint records the composed config; resume refuses changed training settings (naming each
key, old -> new) unless ``resume=force``; a Hydra ``-m`` sweep gives every job its own run directory.

- pure: `config_changes` / `check_resume_config` / `parse_resume` / `job_dirname`;
- pretraining on the tiny world: a changed lr is refused before any step, a harmless change resumes
  silently, ``resume=force`` continues under the new lr (the schedule restarted on the new rate);
  the stored config reads back with plain ``torch.load(weights_only=True)``;
- fine-tuning: the same refusal and force;
- ``python -m avssl pretrain -m ... optim.lr=1e-3,1e-2``: two jobs, two directories, each with its own lr
  and its own trained weights; a changed lr on one of them is one line on stderr, exit 2.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avssl.utils.checkpoint import CheckpointManager
from avssl.utils.configs import job_dirname
from avssl.utils.runs import (ConfigMismatchError, MISSING, check_resume_config, config_changes, parse_resume,
                              plain_config)

ROOT = Path(__file__).resolve().parents[1]


def compose_plain(config: str, *overrides: str) -> dict:
    from avssl.utils.configs import compose_config

    return plain_config(compose_config(config, list(overrides)))


def pretrain_cfg(run_dir: Path, world: Path, *overrides: str) -> dict:
    return compose_plain("pretrain", "experiment=tiny", f"run_dir={run_dir}", f"data.world_dir={world}",
                         "eval.enabled=false", *overrides)


# ---------------------------------------------------------------------------------------- pure functions


def test_config_changes_lists_training_keys_and_skips_harmless_ones():
    saved = {"optim": {"lr": 1e-3, "milestones": [6, 10]}, "trainer": {"progress": True, "epochs": 2},
             "loss": {"temperature": 0.07}, "eval": {"batch_size": 8}, "old": 1}
    now = {"optim": {"lr": 0.01, "milestones": (6, 10)}, "trainer": {"progress": False, "epochs": 9},
           "loss": {"temperature": 0.07}, "eval": {"batch_size": 2}, "new": None}
    changes = config_changes(saved, now, harmless=("trainer.progress", "trainer.epochs", "eval"))
    assert changes == [("new", MISSING, None), ("old", 1, MISSING), ("optim.lr", 0.001, 0.01)]
    assert config_changes({"a": 1e-3}, {"a": 0.001}) == []  # same number, other spelling
    assert config_changes({"a": True}, {"a": 1}) == [("a", True, 1)]  # a switch is not a count

    with pytest.raises(ConfigMismatchError) as err:
        check_resume_config(saved, now, harmless=("trainer", "eval"), force=False, source="ck.pt")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("ck.pt was trained with other settings (3 changed:")
    for part in ("optim.lr 0.001 -> 0.01", "old 1 -> (absent)", "new (absent) -> null", "resume=force",
                 "run_dir=", "resume=never"):
        assert part in msg, part
    assert check_resume_config(saved, now, harmless=("trainer", "eval"), force=True, source="ck.pt") == changes


def test_parse_resume_and_job_dirname():
    assert parse_resume("auto") == ("auto", None, False)
    assert parse_resume(None) == parse_resume("never") == ("never", None, False)
    assert parse_resume("force") == ("auto", None, True)
    assert parse_resume("runs/a") == ("path", "runs/a", False)
    assert parse_resume("force:runs/a/checkpoints/step_00000002.pt") == ("path", "runs/a/checkpoints/step_00000002.pt",
                                                                          True)
    assert job_dirname("data.world_dir=/w/x,optim.lr=0.01", 3) == "data.world_dir=_w_x,optim.lr=0.01"
    assert job_dirname("", 3) == "job3"
    long = job_dirname("k=" + "v" * 400, 0)
    assert len(long) <= 200 and long != job_dirname("k=" + "v" * 399 + "w", 0)


# ---------------------------------------------------------------------------------------- pretraining


def _train(cfg):
    from avssl.engine.pretrain import train

    return train(cfg)


def test_pretrain_resume_refuses_changed_lr_resumes_harmless_change_and_force_continues(tmp_path, tiny_world):
    run = tmp_path / "run"
    first = _train(pretrain_cfg(run, tiny_world, "trainer.max_steps=2"))
    assert first["global_step"] == 2
    ckpts = CheckpointManager(run)
    newest = ckpts.latest_path()

    # the stored config: plain data, read back by torch itself without running code
    state = torch.load(newest, map_location="cpu", weights_only=True)
    assert state["config"]["optim"]["lr"] == pytest.approx(1e-3)
    assert state["config"]["run_dir"] == str(run) and state["config"]["model"]["video"] == "tiny"

    # a changed learning rate: refused before any step, naming the key with both values
    with pytest.raises(ConfigMismatchError) as err:
        _train(pretrain_cfg(run, tiny_world, "trainer.max_steps=3", "optim.lr=0.01"))
    assert "optim.lr 0.001 -> 0.01" in str(err.value) and "resume=force" in str(err.value)
    assert str(newest) in str(err.value) and "trainer.max_steps" not in str(err.value)
    assert ckpts.latest_path() == newest  # nothing trained

    # only harmless keys changed (where it stops, logging, evaluation, workers): resumed, no warning
    log_before = (run / "train.log").read_text()
    second = _train(pretrain_cfg(run, tiny_world, "trainer.max_steps=3", "trainer.log_every=5",
                                 "eval.batch_size=4", "data.num_workers=0", "trainer.progress=true"))
    assert second["global_step"] == 3 and len(second["loss_history"]) == 1
    log_now = (run / "train.log").read_text()[len(log_before):]
    assert "resumed from" in log_now and "WARNING" not in log_now

    # resume=force: continues (a warning names the change) and trains at the new rate from here on
    third = _train(pretrain_cfg(run, tiny_world, "trainer.max_steps=4", "optim.lr=0.01", "resume=force"))
    assert third["global_step"] == 4 and len(third["loss_history"]) == 1
    log_now = (run / "train.log").read_text()
    assert "resume=force: continuing" in log_now and "optim.lr 0.001 -> 0.01" in log_now
    assert third["lr"] == pytest.approx(0.01)
    stored = torch.load(ckpts.latest_path(), map_location="cpu", weights_only=True)
    assert stored["config"]["optim"]["lr"] == pytest.approx(0.01)
    assert stored["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01)

    # the forced run now records lr 0.01: going back to 0.001 is a change again
    with pytest.raises(ConfigMismatchError, match=r"optim\.lr 0\.01 -> 0\.001"):
        _train(pretrain_cfg(run, tiny_world, "trainer.max_steps=5"))


# ---------------------------------------------------------------------------------------- fine-tuning


def finetune_cfg(run_dir: Path, world: Path, *overrides: str) -> dict:
    return compose_plain("finetune", "finetune=tiny", f"run_dir={run_dir}", f"dataset.embedded.world_dir={world}",
                         "optim.epochs=2", *overrides)


def test_finetune_resume_refuses_a_changed_setting_unless_forced(tmp_path, tiny_world, caplog):
    from avssl.downstream.finetune import finetune

    run = tmp_path / "ft"
    out = finetune(finetune_cfg(run, tiny_world, "trainer.stop_after_epochs=1"))
    assert out["stopped"]["stopped_after_epoch"] == 1
    ckpt = CheckpointManager(run / "fold1").latest_path()
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)["config"]
    assert stored["optim"]["lr"] == pytest.approx(1e-3) and stored["dataset"]["format"] == "ucf101"

    with pytest.raises(ConfigMismatchError) as err:
        finetune(finetune_cfg(run, tiny_world, "optim.lr=0.01", "model.dropout=0.2"))
    assert "model.dropout 0.5 -> 0.2" in str(err.value) and "optim.lr 0.001 -> 0.01" in str(err.value)
    assert CheckpointManager(run / "fold1").latest_path() == ckpt

    with caplog.at_level(logging.WARNING, logger="avssl"):
        done = finetune(finetune_cfg(run, tiny_world, "optim.lr=0.01", "resume=force", "optim.epochs=3"))
    fold = done["per_fold"][0]
    assert [h["epoch"] for h in fold["history"]] == [1, 2, 3]  # epoch 1 from the first run, then 2 and 3
    assert fold["history"][0]["lr"] == pytest.approx(1e-3) and fold["history"][-1]["lr"] == pytest.approx(0.01)
    assert any("resume=force" in r.getMessage() and "optim.lr 0.001 -> 0.01" in r.getMessage()
               for r in caplog.records)


# ---------------------------------------------------------------------------------------- sweeps


def _command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "avssl", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def _summaries(stdout: str) -> list[dict]:
    """The JSON summaries the jobs print, in order (each starts with a line '{' and ends with '}')."""
    out, lines, buf = [], stdout.splitlines(), None
    for line in lines:
        if line == "{":
            buf = [line]
        elif buf is not None:
            buf.append(line)
            if line == "}":
                out.append(json.loads("\n".join(buf)))
                buf = None
    return out


@pytest.mark.slow
def test_a_sweep_gives_each_job_its_own_run(tmp_path, tiny_world):
    sweep = tmp_path / "sweep"
    common = ["experiment=tiny", f"run_dir={sweep}", f"data.world_dir={tiny_world}", "trainer.max_steps=2",
              "eval.enabled=false"]
    done = _command("pretrain", "-m", *common, "optim.lr=1e-3,1e-2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = _summaries(done.stdout)
    assert len(jobs) == 2
    dirs = [Path(j["run_dir"]) for j in jobs]
    assert dirs[0] != dirs[1] and all(d.parent == sweep for d in dirs)
    assert [d.name.split("optim.lr=")[1].split(",")[0] for d in dirs] == ["0.001", "0.01"]
    states = [torch.load(CheckpointManager(d).latest_path(), map_location="cpu", weights_only=True) for d in dirs]
    for job, state, lr in zip(jobs, states, (1e-3, 1e-2)):
        assert job["global_step"] == 2 and state["progress"]["global_step"] == 2  # each trained its own steps
        assert state["config"]["optim"]["lr"] == pytest.approx(lr) and state["config"]["run_dir"] == job["run_dir"]
    for d in dirs:  # each job trained from scratch: none resumed the other's run
        assert "resumed from" not in (d / "train.log").read_text()
    w0, w1 = states[0]["model"], states[1]["model"]
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)  # its own numbers

    # a single run on a job's directory (quoted: it holds = and ,) with another lr: one line naming the key, exit 2
    again = _command("pretrain", *common[:1], f"run_dir='{dirs[0]}'", *common[2:], "optim.lr=0.1", cwd=tmp_path)
    assert again.returncode == 2, again.stderr[-2000:]
    last = again.stderr.strip().splitlines()[-1]  # log lines may come before it; no traceback
    assert "Traceback" not in again.stderr and ": error: " in last
    assert "optim.lr 0.001 -> 0.1" in last and "resume=force" in last


def test_a_checkpoint_from_before_typed_configs_resumes_its_amp_setting():
    """Older checkpoints stored ``trainer.amp: false`` (YAML read ``off`` as a boolean); the typed config
    spells it "off": the same setting, not a change. A real change still counts."""
    from avssl.utils.runs import config_changes

    assert config_changes({"trainer": {"amp": False}}, {"trainer": {"amp": "off"}}) == []
    assert [k for k, _, _ in config_changes({"trainer": {"amp": False}}, {"trainer": {"amp": "bf16"}})] == ["trainer.amp"]
