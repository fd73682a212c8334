"""Training batches pulled by a background thread, a few ahead of the loop.

Why: a Ray Data pipeline takes seconds to deliver its first block, and every epoch is a new execution of the dataset
that pays that start-up again (benchmarks/RESULTS.md, "Data path inside a real training run": step 1 and the first
step of each epoch held 91-100 % of all waiting). Pulling from a thread started before the model is built overlaps
the first start-up with model construction and checkpoint restore, and a queue of ``depth`` micro-batches lets the
next epoch's execution start while the loop still trains on the end of the current one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

_END = object()  # the wrapped iterator is exhausted


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher:
    """Iterates ``batches`` in a daemon thread, keeping up to ``depth`` items ready; errors re-raise in the reader.

    ``close()`` stops the thread at its next item (the wrapped iterator is then abandoned, not drained).
    """

    def __init__(self, batches: Iterator, depth: int, name: str = "train-batches"):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._ready: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._pull, args=(batches,), name=name, daemon=True)
        self._thread.start()

    def _pull(self, batches: Iterator) -> None:
        try:
            for item in batches:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the reader, who raises it
            self._put(_Failure(error))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._ready.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.error
        return item

    def close(self) -> None:
        self._stop.set()
        self._done = True
        self._thread.join(timeout=1.0)  # a thread blocked inside the pipeline is a daemon: left behind

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
