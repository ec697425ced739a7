import asyncio
import threading

import pytest
from metarec.serving.batching import MicroBatcher


@pytest.mark.parametrize("n", [0])
def test_nothing_runs_without_submissions(n):
    batcher = MicroBatcher(lambda xs: xs, max_batch_size=2, max_latency_ms=1)
    asyncio.run(batcher.close())
    assert n == 0


def test_an_inline_batcher_runs_batches_on_the_event_loop_thread():
    threads: list[int] = []
    sizes: list[int] = []

    def record(items):
        threads.append(threading.get_ident())
        return [i + 1 for i in items]

    async def main():
        batcher = MicroBatcher(
            record, max_batch_size=8, max_latency_ms=20, on_batch=sizes.append, inline=True
        )
        results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        await batcher.close()
        return results

    assert asyncio.run(main()) == [1, 2, 3, 4, 5]
    assert threads == [threading.get_ident()]
    assert sizes == [5]


def test_an_inline_batcher_delivers_errors_and_survives():
    calls = {"n": 0}

    def flaky(items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return items

    async def main():
        batcher = MicroBatcher(flaky, max_batch_size=8, max_latency_ms=5, inline=True)
        first = await asyncio.gather(batcher.submit(1), return_exceptions=True)
        second = await batcher.submit(2)
        await batcher.close()
        return first, second

    (error,), value = asyncio.run(main())
    assert isinstance(error, RuntimeError)
    assert value == 2
