"""Shared console helpers for the CLI: one place for output, stages and progress bars."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

console = Console()
err_console = Console(stderr=True)


@contextmanager
def stage(description: str) -> Iterator[None]:
    """Show a spinner with elapsed time while a step runs, then a ✓ line with its duration."""
    started = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        progress.add_task(description, total=None)
        yield
    console.print(
        f"[green]✓[/green] {description} [dim]({time.perf_counter() - started:.1f}s)[/dim]"
    )


@contextmanager
def download_progress(description: str) -> Iterator[Callable[[int, int | None], None]]:
    """A byte progress bar; yields the ``on_progress(done, total)`` callback to feed it."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@contextmanager
def training_progress(algorithm: str) -> Iterator[Callable[[Any], None]]:
    """Bars for the global model, meta-training (loss, validation MAE) and evaluation.

    Yields the ``on_progress(event)`` callback that :func:`metarec.training.trainer.train`
    takes (a :class:`metarec.training.trainer.ProgressEvent` per step).
    """
    labels = {
        "global": "global model (epochs)",
        "meta": f"meta-training {algorithm}",
        "factor": "factor fold-in (meta-training)",
        "evaluate": "cold-start evaluation",
    }
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bars: dict[str, Any] = {}

        def report(event: Any) -> None:
            if event.phase not in bars:
                label = labels.get(event.phase, event.phase)
                bars[event.phase] = progress.add_task(label, total=event.total, info="")
            info = ""
            if event.meta_loss is not None:
                info = f"loss {event.meta_loss:.4f}"
            if event.val_mae is not None:
                info += f"  val MAE {event.val_mae:.4f}"
            progress.update(bars[event.phase], completed=event.step, info=info)

        yield report
