"""Shared console helpers for the CLI: one place for output, stages and progress bars."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
