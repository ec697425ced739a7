"""An asyncio micro-batcher: requests that arrive together are adapted together.

While one batch runs, new requests queue; when it ends, up to ``max_batch_size`` queued
requests form the next batch. An idle batcher waits at most ``max_latency_ms`` for company
before it starts. Nothing is ever shed: under overload, requests wait in the queue (the HTTP
timeout bounds them) instead of failing with a 503.

A batch runs in a worker thread, or ``inline`` on the event loop. Inline suits short, CPU-bound
batches in one process: a worker thread adds no parallelism there (the many small torch ops
hold the GIL between kernels), only GIL hand-offs between the thread and the event loop, which
show up as tail latency (see docs/serving.md for the measurements). Requests that arrive during
an inline batch wait in the socket buffers and are read as soon as it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class _Pending(Generic[In, Out]):
    item: In
    future: asyncio.Future[Out]


class MicroBatcher(Generic[In, Out]):
    """Group concurrent :meth:`submit` calls into calls of a batch function."""

    def __init__(
        self,
        fn: Callable[[Sequence[In]], Sequence[Out]],
        *,
        max_batch_size: int,
        max_latency_ms: float,
        on_batch: Callable[[int], None] | None = None,
        inline: bool = False,
    ) -> None:
        """Create a batcher (its worker task starts on the first submit).

        Args:
            fn: Batch function, run in a worker thread; returns one output per input.
            max_batch_size: Most inputs per call.
            max_latency_ms: How long the first input of an idle batcher waits for more.
            on_batch: Called with each batch's size (metrics).
            inline: Run ``fn`` on the event loop instead of a worker thread.
        """
        self._fn = fn
        self._max = max_batch_size
        self._wait = max_latency_ms / 1000.0
        self._on_batch = on_batch
        self._inline = inline
        self._queue: asyncio.Queue[_Pending[In, Out]] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        """Queue ``item`` and return its output (exceptions of ``fn`` are re-raised)."""
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run(self._queue))
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(item, future))
        return await future

    async def close(self) -> None:
        """Stop the worker task."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._worker

    async def _collect(self, queue: asyncio.Queue[_Pending[In, Out]]) -> list[_Pending[In, Out]]:
        loop = asyncio.get_running_loop()
        batch = [await queue.get()]
        deadline = loop.time() + self._wait
        while len(batch) < self._max:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self, queue: asyncio.Queue[_Pending[In, Out]]) -> None:
        while True:
            batch = await self._collect(queue)
            if self._on_batch is not None:
                self._on_batch(len(batch))
            try:
                items = [p.item for p in batch]
                if self._inline:
                    outputs = self._fn(items)
                else:
                    outputs = await asyncio.to_thread(self._fn, items)
            except Exception as exc:  # delivered to every caller of the batch
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            for pending, output in zip(batch, outputs, strict=True):
                if not pending.future.done():
                    pending.future.set_result(output)
