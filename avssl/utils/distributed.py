"""Small torch.distributed helpers shared by the memory banks, losses, methods, CMA search and the trainer.

Everything here degrades to the single-process case when torch.distributed is not
initialised, so library code can call these unconditionally.

`run_distributed(fn, world_size, *args)` is a test/benchmark launcher: it spawns
`world_size` real processes (torch.multiprocessing, gloo on CPU), initialises a
process group through a ``file://`` rendezvous in a fresh temporary directory (no
port races between concurrent test runs), calls ``fn(rank, world_size, *args)`` in
each and returns the per-rank return values: tensors, numpy arrays / scalars and plain
Python data (they travel through files read back with ``weights_only=True``).
"""

from __future__ import annotations

import datetime
import os
import tempfile
import traceback
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from avssl.utils.safe_load import SAFE_GLOBALS

__all__ = [
    "all_gather_with_grad",
    "is_dist",
    "rank",
    "world_size",
    "comm_device",
    "all_gather_varlen",
    "all_reduce_mean",
    "all_reduce_grads_mean_",
    "broadcast_",
    "all_reduce_sum_ints",
    "all_gather_objects",
    "run_distributed",
]


def is_dist() -> bool:
    """True when a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def comm_device(like: torch.Tensor | None = None) -> torch.device:
    """Device collectives must run on: CUDA for NCCL, CPU for gloo (or no group)."""
    if is_dist() and dist.get_backend() == "nccl":
        if like is not None and like.is_cuda:
            return like.device
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_varlen(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (any first-dim size, same trailing shape/dtype) from all
    ranks along dim 0, in rank order. Returns the input itself without a process group.

    all_gather needs equal shapes, so each rank pads to the largest first dim and the
    padding is cut away after the gather using the gathered sizes. No gradient flows.
    """
    if not is_dist():
        return tensor
    world = world_size()
    dev = comm_device(tensor)
    local = tensor.detach().to(dev).contiguous()
    size = torch.tensor([local.shape[0]], dtype=torch.long, device=dev)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes_int = [int(s.item()) for s in sizes]
    max_size = max(sizes_int)
    if local.shape[0] < max_size:
        pad = local.new_zeros((max_size - local.shape[0],) + tuple(local.shape[1:]))
        local = torch.cat([local, pad], 0)
    buckets = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(buckets, local)
    out = torch.cat([b[:n] for b, n in zip(buckets, sizes_int)], 0)
    return out.to(tensor.device)


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated along dim 0 (rank order); gradients flow back to each
    rank's own rows (torch.distributed.nn). Single process: ``x`` itself. Equal sizes per rank:
    the trainer's sampler drops the last incomplete batch, and unreadable items are replaced or
    the step is skipped by every rank (`avssl.engine.batches`), never run with a short batch."""
    if not is_dist():
        return x
    if not x.is_floating_point():
        parts = [torch.empty_like(x) for _ in range(world_size())]
        torch.distributed.all_gather(parts, x.contiguous())
        return torch.cat(parts)
    from torch.distributed.nn.functional import all_gather

    return torch.cat([_ContiguousGrad.apply(part) for part in all_gather(x.contiguous())])


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous. torch.distributed.nn's
    all_gather backward reduces the raw gradient buffers: a strided gradient (an einsum over a
    gathered 5-d map hands back a permuted view) came back wrong on gloo, silently (measured:
    tests/test_distributed_objective.py, the localization term)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a new tensor; the input is untouched)."""
    if not is_dist():
        return tensor.clone()
    dev = comm_device(tensor)
    buf = tensor.detach().to(dev).clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return (buf / world_size()).to(tensor.device)


def all_reduce_grads_mean_(params) -> None:
    """In place: each parameter's ``.grad`` becomes its mean over ranks (a missing gradient counts as
    zeros, so every rank joins the same single all_reduce). For parameters outside DDP. No-op without
    a process group. Collective."""
    params = list(params)
    if not is_dist() or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    dev = comm_device(grads[0])
    flat = torch.cat([g.detach().reshape(-1).to(dev) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(g).to(g.device, g.dtype).clone()
        offset += n


_control: list = []  # [(default group, its gloo twin)]: the control group of the current process group


def control_group():
    """Group for small host-side messages (flags, counters, records): the default group when it is
    gloo, else a gloo group over the same ranks, created once per process group (collective on
    first use: every rank reaches it at the same call). Host values then never wait on a CUDA stream."""
    if dist.get_backend() == "gloo":
        return None
    world = dist.group.WORLD
    if not _control or _control[0][0] is not world:
        _control[:] = [(world, dist.new_group(backend="gloo"))]
    return _control[0][1]


def all_reduce_sum_ints(values) -> list[int]:
    """Element-wise sum over ranks of a few host integers (one small all_reduce); the values themselves
    without a process group. Collective: every rank calls it with the same number of values."""
    values = [int(v) for v in values]
    if not is_dist():
        return values
    buf = torch.tensor(values, dtype=torch.int64)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=control_group())
    return buf.tolist()


def all_gather_objects(obj) -> list:
    """Every rank's picklable `obj`, in rank order (``[obj]`` without a process group). Collective."""
    if not is_dist():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj, group=control_group())
    return out


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """In-place broadcast from ``src`` (no-op without a process group)."""
    if not is_dist():
        return tensor
    dev = comm_device(tensor)
    buf = tensor.detach().to(dev)
    dist.broadcast(buf, src)
    if buf is not tensor:
        tensor.copy_(buf.to(tensor.device))
    return tensor


def _worker(local_rank: int, world: int, init_file: str, result_dir: str, backend: str,
            fn: Callable[..., Any], args: tuple) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=local_rank,
                            world_size=world)
    try:
        result = fn(local_rank, world, *args)
        torch.save({"ok": True, "result": result}, os.path.join(result_dir, f"rank{local_rank}.pt"))
        # every rank done before any tears the group down: a rank that closes its gloo connections while a
        # peer is still inside a collective aborts that peer ("terminate called without an active exception")
        if backend == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=120))
        else:
            dist.barrier()
    except BaseException:  # the parent re-raises with this traceback
        torch.save({"ok": False, "error": traceback.format_exc()},
                   os.path.join(result_dir, f"rank{local_rank}.pt"))
        raise
    finally:
        dist.destroy_process_group()


def _load_record(path: str) -> dict:
    """A rank's result file, read like any checkpoint (``weights_only``) plus numpy scalars."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    import pickle

    try:
        with torch.serialization.safe_globals([*SAFE_GLOBALS, core.multiarray.scalar]):
            return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise TypeError(f"run_distributed: a rank returned objects other than tensors, numpy arrays and plain "
                        f"data ({str(exc).strip().splitlines()[-3:]})") from exc


def run_distributed(fn: Callable[..., Any], world_size: int, *args: Any,
                    backend: str = "gloo") -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` spawned processes joined in
    one process group; return the list of per-rank results (rank order).

    ``fn`` must be importable (a module-level function) because processes are spawned.
    A failure in any rank raises RuntimeError carrying that rank's traceback.
    """
    with tempfile.TemporaryDirectory(prefix="avssl_dist_") as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        try:
            mp.spawn(_worker, args=(world_size, init_file, tmp, backend, fn, args),
                     nprocs=world_size, join=True)
        except Exception as exc:  # surface the child's own traceback
            msgs = []
            for r in range(world_size):
                path = os.path.join(tmp, f"rank{r}.pt")
                if os.path.exists(path):
                    rec = _load_record(path)
                    if not rec["ok"]:
                        msgs.append(f"rank {r}:\n{rec['error']}")
            raise RuntimeError("distributed run failed\n" + "\n".join(msgs)) from exc
        results = []
        for r in range(world_size):
            rec = _load_record(os.path.join(tmp, f"rank{r}.pt"))
            results.append(rec["result"])
        return results
