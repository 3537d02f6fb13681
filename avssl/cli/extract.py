"""``avssl-extract``: per-clip and per-video embeddings of a collection, into resumable shards
(Hydra: ``key=value``). Load the result with `avssl.embed.load_collection`; search it with
``avssl-retrieve``.

    avssl-extract input=videos/ checkpoint=runs/pretrain out_dir=emb/x
    avssl-extract input=world model=tiny out_dir=emb/random                     # random weights
    torchrun --nproc_per_node=2 --no-python avssl-extract input=videos/ checkpoint=runs/pretrain

Config: configs/extract.yaml; work: `avssl.embed.job.run_extraction`.
"""

import hydra
from omegaconf import DictConfig

from avssl.utils.cli import run_main, user_errors
from avssl.utils.configs import CONFIG_PATH, VERSION_BASE


@hydra.main(config_path=CONFIG_PATH, config_name="extract", version_base=VERSION_BASE)
@user_errors
def app(cfg: DictConfig) -> None:
    import torch.distributed as dist

    from avssl.embed.job import run_extraction

    try:
        run_extraction(cfg)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def main() -> None:
    run_main(app)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
