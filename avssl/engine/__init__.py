"""Training engine: the pretraining loop, resumable samplers, batches, schedules, logging (checkpoint I/O:
`avssl.utils.checkpoint`, re-exported here).

    from avssl.engine import train                    # AVID / CMA pretraining from a config
    from avssl.engine import CheckpointManager, ResumableDistributedSampler, EvalShardSampler
"""

from avssl.utils.checkpoint import (
    CheckpointError,
    CheckpointManager,
    FingerprintMismatchError,
    atomic_torch_save,
    load_checkpoint,
)
from avssl.engine.samplers import EvalShardSampler, ResumableDistributedSampler


def train(cfg, **kwargs):
    """`avssl.engine.pretrain.train` (imported on first use: it pulls in data/models/losses)."""
    from avssl.engine.pretrain import train as _train

    return _train(cfg, **kwargs)


__all__ = [
    "train", "CheckpointManager", "CheckpointError", "FingerprintMismatchError", "atomic_torch_save",
    "load_checkpoint", "ResumableDistributedSampler", "EvalShardSampler",
]
