"""Process pools that never inherit a decoder: workers start from a fork server, not from the caller.

A worker forked from a process that has opened media can inherit an FFmpeg codec context whose
threads do not exist in the child; freeing it there (garbage collection of an object left in a
traceback, say) joins those threads forever. Seen twice in this project's test suite as a probe
worker hung in ``avcodec_free_context``. The fork server is started once per interpreter from a
clean process that imports only ``preload`` modules, so every worker is born without decoders and
the start-up cost (importing the worker's module) is paid once, not per pool.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def clean_process_pool(workers: int, preload: tuple[str, ...] = ()) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``workers`` processes forked from a clean fork server that has
    imported ``preload`` (the module holding the worker function, so each worker starts warm)."""
    ctx = multiprocessing.get_context("forkserver")
    if preload:
        ctx.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx)
