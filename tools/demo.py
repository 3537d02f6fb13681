#!/usr/bin/env python
"""The main job (`make demo`): generated world -> AVID -> CMA -> fine-tuning -> localization ->
embeddings + retrieval, ending with a results table (random-init baseline beside each figure)
and the paths of the pictures it wrote.

    python tools/demo.py                              # default preset, outputs/demo/
    python tools/demo.py demo=tiny                    # a minute; outputs/demo_tiny/
    python tools/demo.py stages=[world,avid] force=true

Each stage prints the tools/*.py command that runs it on its own; see configs/demo.yaml.
The work is done by `avssl.pipeline.run_main_job` (also used by the tests and the notebook).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without `pip install -e .`

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from avssl.pipeline import run_main_job  # noqa: E402
from avssl.utils.cli import run_main, user_errors  # noqa: E402


@hydra.main(config_path="../configs", config_name="demo", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    run_main_job(cfg)


if __name__ == "__main__":
    run_main(main)  # a user mistake: one line, exit 2 (--debug: traceback)
