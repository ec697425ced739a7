"""The micro-batcher with its batches in a worker thread (moved from tests/unit: threads)."""

import asyncio
import threading

import pytest
from metarec.serving.batching import MicroBatcher

pytestmark = pytest.mark.integration


def test_concurrent_submissions_share_batches_and_keep_order():
    sizes: list[int] = []
    gate = threading.Event()

    def double(items):
        gate.wait(1)  # the first batch holds until more requests have queued
        return [2 * i for i in items]

    async def main():
        batcher = MicroBatcher(double, max_batch_size=4, max_latency_ms=0, on_batch=sizes.append)
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 10)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return results

    assert asyncio.run(main()) == [2 * i for i in range(10)]
    assert sizes[0] == 1
    assert max(sizes) == 4
    assert sum(sizes) == 10


def test_an_idle_batcher_waits_for_company_up_to_its_latency():
    sizes: list[int] = []

    async def main():
        batcher = MicroBatcher(
            lambda xs: xs, max_batch_size=8, max_latency_ms=50, on_batch=sizes.append
        )
        results = await asyncio.gather(*(batcher.submit(i) for i in range(3)))
        await batcher.close()
        return results

    assert asyncio.run(main()) == [0, 1, 2]
    assert sizes == [3]


def test_errors_reach_every_caller_of_the_batch_and_the_batcher_survives():
    calls = {"n": 0}

    def flaky(items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return items

    async def main():
        batcher = MicroBatcher(flaky, max_batch_size=8, max_latency_ms=20)
        outcomes = await asyncio.gather(
            batcher.submit(1), batcher.submit(2), return_exceptions=True
        )
        after = await batcher.submit(3)
        await batcher.close()
        return outcomes, after

    outcomes, after = asyncio.run(main())
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert after == 3


def test_batch_size_one_never_batches():
    sizes: list[int] = []

    async def main():
        batcher = MicroBatcher(
            lambda xs: xs, max_batch_size=1, max_latency_ms=10, on_batch=sizes.append
        )
        await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        await batcher.close()

    asyncio.run(main())
    assert sizes == [1] * 5
