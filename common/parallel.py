"""One ordered parallel map for every batch job (packing, preparation, the synthetic renderer).

Results come back in input order whatever the number of workers, so outputs are byte-identical with 1 or N
workers. `threads` suits work that releases the GIL (OpenCV codecs); `processes` suits Python-heavy work (rendering,
detection). Thread mode submits bounded windows, so a multi-million item stream never sits in memory at once.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

MODES = ("threads", "processes")


def default_workers(cap: int) -> int:
    """Workers when the caller names none: one per core, at most `cap` (callers choose the cap by the pool they run:
    threads share the caller's memory, forked processes each start as a copy of it)."""
    return max(1, min(int(cap), os.cpu_count() or 1))


class OrderedPool:
    """A reusable pool: `map(fn, items)` yields fn(item) in order; 1 worker runs in the calling thread.

    processes: fork where available (workers inherit the parent's modules), spawn elsewhere; `initializer(*initargs)`
    runs once in each worker process (not in the caller when workers == 1).
    """

    def __init__(self, workers: int, mode: str = "threads", initializer: Callable | None = None, initargs=(),
                 chunksize: int = 16):
        if mode not in MODES:
            raise ValueError(f"parallel mode must be one of {MODES}, got {mode!r}")
        self.workers, self.mode, self.chunksize = max(1, int(workers)), mode, max(1, int(chunksize))
        self._threads = self._processes = None
        if self.workers > 1 and mode == "threads":
            self._threads = ThreadPoolExecutor(self.workers, initializer=initializer, initargs=tuple(initargs))
        elif self.workers > 1:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            self._processes = mp.get_context(method).Pool(self.workers, initializer=initializer,
                                                          initargs=tuple(initargs))

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        if self._processes is not None:
            return self._processes.imap(fn, items, chunksize=self.chunksize)
        if self._threads is not None:
            return self._windowed(fn, items)
        return map(fn, items)

    def _windowed(self, fn: Callable, items: Iterable) -> Iterator:
        window = 64 * self.workers
        iterator = iter(items)
        while chunk := list(itertools.islice(iterator, window)):
            yield from self._threads.map(fn, chunk)

    def close(self) -> None:
        if self._processes is not None:
            self._processes.close()
            self._processes.join()
        if self._threads is not None:
            self._threads.shutdown()

    def __enter__(self) -> OrderedPool:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None and self._processes is not None:
            self._processes.terminate()  # an error (or Ctrl-C) must not wait for the remaining work
        self.close()


def ordered_map(fn: Callable, items: Iterable, workers: int, mode: str = "threads", **pool_options) -> Iterator:
    """fn over items in input order on a pool that lives for this one map."""
    with OrderedPool(workers, mode, **pool_options) as pool:
        yield from pool.map(fn, items)
