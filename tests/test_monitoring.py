"""Monitoring: one progress bar over the whole run (its ETA is the run's), TensorBoard for fine-tuning.

- pretraining on the tiny world: every bar line tqdm writes counts against the run's total
  (epochs x steps per epoch, or trainer.max_steps), never against one epoch; a resumed run's bar
  starts at the steps already done;
- fine-tuning: one bar per fold over all its steps; TensorBoard scalars train/loss and train/lr for
  every step, train/val accuracies per epoch and the test figures, equal to what the run returns.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from avssl.utils.configs import compose_config
from avssl.utils.runs import plain_config

BAR = re.compile(r"epoch \d+: *\d+%\|[^|\r\n]*\| *(\d+)/(\d+) \[")  # "epoch 1:  50%|███ | 4/8 [00:01<00:01, ...]"
FOLD_BAR = re.compile(r"fold 1 epoch \d/2[^:\r\n]*: *\d+%\|[^|\r\n]*\| *(\d+)/(\d+) \[")


def _bars(text: str) -> list[tuple[int, int]]:
    return [(int(n), int(total)) for n, total in BAR.findall(text)]


def test_pretraining_draws_one_bar_over_all_epochs(tmp_path, tiny_world, capfd):
    from avssl.engine.pretrain import train

    def cfg(*extra):
        return plain_config(compose_config("pretrain", ["experiment=tiny", f"run_dir={tmp_path / 'run'}",
                                                        f"data.world_dir={tiny_world}", "eval.enabled=false",
                                                        "trainer.progress=true", "trainer.epochs=2", *extra]))

    capfd.readouterr()
    first = train(cfg("trainer.max_steps=3"))
    bars = _bars(capfd.readouterr().err)
    assert first["global_step"] == 3
    assert bars and {t for _, t in bars} == {3} and bars[-1][0] == 3  # the run's total: max_steps

    second = train(cfg())  # resumed: the rest of both epochs
    per_epoch = 17 // 4  # tiny world: 17 training clips, batch 4, last partial batch dropped
    assert second["global_step"] == 2 * per_epoch
    bars = _bars(capfd.readouterr().err)
    assert {t for _, t in bars} == {2 * per_epoch}, bars  # one bar, both epochs: never a per-epoch total
    assert bars[0][0] == 3 and bars[-1][0] == 2 * per_epoch  # starts where the first run stopped


def test_finetuning_writes_tensorboard_and_one_bar_per_fold(tmp_path, tiny_world, capfd):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from avssl.downstream.finetune import finetune

    cfg = plain_config(compose_config("finetune", ["finetune=tiny", f"run_dir={tmp_path / 'ft'}",
                                                   f"dataset.embedded.world_dir={tiny_world}", "optim.epochs=2",
                                                   "trainer.tensorboard=true", "trainer.progress=true"]))
    capfd.readouterr()
    out = finetune(cfg)
    fold = out["per_fold"][0]
    history = fold["history"]
    fold_bars = [(int(n), int(t)) for n, t in FOLD_BAR.findall(capfd.readouterr().err)]

    ev = EventAccumulator(str(tmp_path / "ft" / "fold1" / "tensorboard"))
    ev.Reload()
    tags = set(ev.Tags()["scalars"])
    for tag in ("train/loss", "train/lr", "train/epoch_loss", "train/clip_accuracy", "val/video_accuracy",
                "val/clip_accuracy", "test/video_top1", "test/clip_top1"):
        assert tag in tags, (tag, sorted(tags))
    losses = ev.Scalars("train/loss")
    per_epoch = len(losses) // 2
    assert len(losses) == 2 * per_epoch > 0 and len(ev.Scalars("train/lr")) == len(losses)
    assert [e.step for e in losses] == list(range(1, len(losses) + 1))
    # the per-step losses average to each epoch's recorded loss; the epoch scalars are the records
    for k, record in enumerate(history):
        chunk = [e.value for e in losses[k * per_epoch:(k + 1) * per_epoch]]
        assert np.mean(chunk) == pytest.approx(record["loss"], rel=1e-5)
        assert ev.Scalars("train/clip_accuracy")[k].value == pytest.approx(record["train_clip_acc"])
        assert ev.Scalars("val/video_accuracy")[k].value == pytest.approx(record["val_video_top1"])
    assert ev.Scalars("test/video_top1")[0].value == pytest.approx(fold["video_top1"])
    # the warm-up epoch's rate and the next one's as logged (no milestones in the tiny preset: constant)
    assert {round(e.value, 8) for e in ev.Scalars("train/lr")} == {1e-3}
    # one bar over the fold's 2 epochs: its total is both epochs' steps, and it reached it
    assert fold_bars and {t for _, t in fold_bars} == {2 * per_epoch}, fold_bars
    assert fold_bars[-1][0] == 2 * per_epoch
