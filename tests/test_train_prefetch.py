"""The background batch puller: order, look-ahead bound, errors and shut-down (pipelines/train/prefetch.py)."""

import threading
import time

import pytest

from pipelines.train.prefetch import Prefetcher


def _counting(n, pulled):
    for i in range(n):
        pulled.append(i)
        yield i


def _wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_yields_every_item_in_order_then_stops():
    with Prefetcher(iter(range(100)), depth=3) as batches:
        assert list(batches) == list(range(100))
        with pytest.raises(StopIteration):
            next(batches)


def test_pulls_ahead_before_being_asked_but_no_further_than_its_depth():
    pulled = []
    with Prefetcher(_counting(50, pulled), depth=4) as batches:
        # depth items queued plus the one the thread holds while waiting for room
        assert _wait_until(lambda: len(pulled) == 5)
        time.sleep(0.3)
        assert len(pulled) == 5
        assert next(batches) == 0
        assert _wait_until(lambda: len(pulled) == 6)


def test_an_error_in_the_source_is_raised_in_the_reader_after_the_good_items():
    def failing():
        yield 1
        yield 2
        raise ValueError("shard too small")

    batches = Prefetcher(failing(), depth=8)
    assert next(batches) == 1 and next(batches) == 2
    with pytest.raises(ValueError, match="shard too small"):
        next(batches)
    with pytest.raises(StopIteration):
        next(batches)


def test_close_stops_the_thread_of_an_endless_source():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    batches = Prefetcher(endless(), depth=2)
    assert next(batches) == 0
    batches.close()
    assert _wait_until(lambda: threading.active_count() == before)
    with pytest.raises(StopIteration):
        next(batches)


def test_refuses_a_depth_below_one():
    with pytest.raises(ValueError, match="depth"):
        Prefetcher(iter([]), depth=0)
