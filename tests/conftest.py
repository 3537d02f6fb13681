import os

# Two xdist workers share two cores: keep each single-threaded.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from avssl.utils.schema import register_schemas  # noqa: E402

# the shipped YAML names the typed schemas (Hydra's ConfigStore): tests composing configs/ with
# initialize_config_dir need them stored, as the commands and compose_config do
register_schemas()

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
def tiny_variant_collection(tiny_world, tmp_path_factory):
    """The tiny world with dubbed and muted variants (avssl.synth.variants), extracted with a seeded
    random tiny model (2 clips per video, float16 shards of 8 videos): ``(collection_dir, variant rows)``.
    Tests must not write into it (copy it first)."""
    from avssl.embed import extract
    from avssl.embed.api import load_model
    from avssl.io.types import ClipSpec
    from avssl.synth.variants import read_variants, write_av_variants

    base = tmp_path_factory.mktemp("tiny_variants")
    write_av_variants(tiny_world, base / "media", dubbed_share=0.2, muted_share=0.1, seed=0, progress=False)
    rows = read_variants(base / "media")
    model, info = load_model(model_config={"video": "tiny", "audio": "tiny", "proj_dim": [32, 32, 16]}, seed=0)
    spec = ClipSpec(num_frames=4, fps=8.0, frame_size=32, audio_rate=16000, audio_duration=1.0)
    rep = extract([r["path"] for r in rows], model, base / "emb", clips_per_video=2, spec=spec, num_workers=0,
                  device="cpu", shard_size=8, transforms_config={"video": {"crop_size": 32}}, model_info=info,
                  progress=False)
    assert rep.complete
    return base / "emb", rows


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


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """Hydra's job logging (an in-process ``main()``) hangs handlers on the root logger bound to the
    test's captured stderr; once that capture is closed, a later test's log records would print
    'Logging error' tracebacks into its stderr. Put the root logger back as it was after each test."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
