"""Decoders kept open between reads, per process (each DataLoader worker has its own).

decord and torchcodec pay on every open: decord's `VideoReader` demuxes the whole file to build its
frame index, torchcodec's "exact" `VideoDecoder` scans every packet; both then answer any frame
request by seeking. Reading several clips of the same file (a video's eval clips, a file sampled again
in the next epoch by the same worker) reuses the open decoder instead of indexing the file again.

`DecoderCache` is a small LRU keyed by (path, file size, mtime, what the decoder was opened for): a
rewritten file is a new key (never a stale index). At most `size` decoders are open; the least recently
used one is closed (its `close()` if it has one, then its last reference dropped) when a new one comes
in, and every decoder of the process is closed at exit (`atexit` in the main process, a
`multiprocessing` finaliser in workers, which leave through `os._exit`). Size: `AVSSL_DECODER_CACHE`
(environment, read when the process first uses the cache; 0 disables) or `set_decoder_cache_size(n)`;
default `DEFAULT_SIZE`. Memory is bounded by `size` open decoders: each holds its demuxer state,
the packet index and one decoder context (a few MB at most; see benchmarks/clip_reading.md).

Hand-written because no library offers an LRU whose entries must be closed on eviction
(`functools.lru_cache` drops entries silently and is not per-key closable).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["DecoderCache", "DEFAULT_SIZE", "decoder_cache", "set_decoder_cache_size", "file_key"]

DEFAULT_SIZE = 4
ENV = "AVSSL_DECODER_CACHE"


def file_key(path: str) -> tuple:
    """(path, size, mtime_ns): a file rewritten in place gets a new key."""
    st = os.stat(path)
    return (path, st.st_size, st.st_mtime_ns)


def _close(obj) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - closing a decoder must never fail a read
            pass


class DecoderCache:
    """LRU of open decoders. `get(key, open_fn)` returns the decoder for `key`, calling `open_fn()` (and
    counting an open) on a miss; `discard(key)` closes one (e.g. after it failed); `clear()` closes all.
    `opens` / `hits` / `evictions` count what happened (tests and benchmarks read them)."""

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = max(0, int(size))
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()
        self.opens = self.hits = self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items

    def get(self, key: Hashable, open_fn: Callable[[], object]):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        obj = open_fn()
        with self._lock:
            self.opens += 1
            if self.size == 0:
                return obj  # caching disabled: the caller's reference is the only one
            old = self._items.pop(key, None)
            if old is not None and old is not obj:
                _close(old)
            self._items[key] = obj
            while len(self._items) > self.size:
                _, victim = self._items.popitem(last=False)
                self.evictions += 1
                _close(victim)
        return obj

    def discard(self, key: Hashable) -> None:
        with self._lock:
            obj = self._items.pop(key, None)
        if obj is not None:
            _close(obj)

    def resize(self, size: int) -> None:
        with self._lock:
            self.size = max(0, int(size))
            while len(self._items) > self.size:
                _, victim = self._items.popitem(last=False)
                self.evictions += 1
                _close(victim)

    def clear(self) -> None:
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        for obj in items:
            _close(obj)


_CACHE: DecoderCache | None = None
_CACHE_PID: int | None = None


def _register_exit(cache: DecoderCache) -> None:
    atexit.register(cache.clear)
    from multiprocessing import util

    # DataLoader / multiprocessing workers leave through os._exit (no atexit); their finalisers run.
    util.Finalize(None, cache.clear, exitpriority=10)


def decoder_cache() -> DecoderCache:
    """This process's cache (a forked worker gets a fresh, empty one: decoders never cross processes)."""
    global _CACHE, _CACHE_PID
    pid = os.getpid()
    if _CACHE is None or _CACHE_PID != pid:
        if _CACHE is not None:  # inherited through fork: drop the parent's entries without closing them
            _CACHE._items.clear()
        env = os.environ.get(ENV, "").strip()
        try:
            size = int(env) if env else DEFAULT_SIZE
        except ValueError:
            raise ValueError(f"{ENV}={env!r}: give the number of decoders kept open per process (0 disables)") from None
        _CACHE, _CACHE_PID = DecoderCache(size), pid
        _register_exit(_CACHE)
    return _CACHE


def set_decoder_cache_size(size: int) -> None:
    """Keep at most `size` decoders open in this process (0: open and drop on every read)."""
    decoder_cache().resize(size)
