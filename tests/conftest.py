import os

# Two xdist workers share two cores: keep each single-threaded.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The tiny generated world (24 clips: 17 train / 7 held-out), generated once per test process.
    Tests must not write into it (a training run's decoded cache goes next to it, not inside)."""
    from avssl.synth.generate import generate_world

    root = tmp_path_factory.mktemp("tiny_world") / "world"
    generate_world(root, preset="tiny", seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_world, tmp_path_factory):
    """A tiny AVID run on the tiny world (experiment=tiny, one epoch: 4 steps, about a second), trained
    once per test process. Tests read it (avssl.load_model, checkpoints) and must not write into it."""
    from omegaconf import OmegaConf

    from avssl.engine.pretrain import train
    from avssl.utils.configs import compose_config

    run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    cfg = compose_config("pretrain", ["experiment=tiny", f"run_dir={run_dir}", f"data.world_dir={tiny_world}",
                                      "eval.enabled=false", "trainer.epochs=1"])
    train(OmegaConf.to_container(cfg, resolve=True))
    return run_dir


@pytest.fixture(scope="session")
def wild(tmp_path_factory):
    """The wild collection (tests/wild.py: ~40 real files of every common shape, codec, container,
    timestamp quirk and damage), written once per test process. Tests must not write into it."""
    import wild as W

    if W.FFMPEG is None:
        pytest.skip("the wild collection needs the ffmpeg CLI (it writes the AVIs)")
    return W.wild_collection_cached(tmp_path_factory)
