"""``metarec data``: ingest datasets into versioned snapshots."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from metarec.cli.console import console, download_progress, stage

app = typer.Typer(help="Ingest ratings data into versioned snapshots.", no_args_is_help=True)


class DataSourceOption(StrEnum):
    """Dataset layouts ``--source`` accepts."""

    ML_100K = "ml-100k"
    ML_1M = "ml-1m"
    SYNTHETIC = "synthetic"


@app.command()
def ingest(
    ctx: typer.Context,
    source: Annotated[
        DataSourceOption,
        typer.Option(help="Dataset layout: official MovieLens-100K, MovieLens-1M, or synthetic."),
    ],
    path: Annotated[
        Path | None, typer.Option(help="Local zip archive or extracted folder.")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Archive URL (default for MovieLens: the official GroupLens URL)."),
    ] = None,
    checksum: Annotated[
        str | None,
        typer.Option(
            help="Expected checksum of the download, md5:… or sha256:… "
            "(default: the official one for ml-100k.zip / ml-1m.zip)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Synthetic: random seed.")] = 0,
    users: Annotated[int, typer.Option(help="Synthetic: number of users.")] = 300,
    items: Annotated[int, typer.Option(help="Synthetic: number of items.")] = 400,
) -> None:
    """Read a dataset and write it as a new, current snapshot.

    The snapshot (users, items, interactions and the Feast source tables, as parquet) is written
    atomically: if anything fails, the previous snapshot stays current and readable.
    """
    from metarec.data.ingest import DataSource, write_snapshot
    from metarec.data.snapshots import SnapshotStore

    settings = ctx.obj
    data_source = DataSource(source.value)
    spec = _synthetic_spec(users=users, items=items, seed=seed)
    if data_source is not DataSource.SYNTHETIC and path is None:
        with download_progress(f"Downloading {url or data_source.value}") as on_download:
            dataset = _read(
                settings, data_source, url=url, checksum=checksum, on_download=on_download
            )
    else:
        with stage(f"Reading {data_source.value} from {path or 'generator'}"):
            dataset = _read(settings, data_source, path=path, synthetic=spec)
    with stage("Deriving feature tables and writing the snapshot"):
        info = write_snapshot(dataset, SnapshotStore(settings.paths.snapshots))
    counts = dataset.summary()
    console.print(
        f"Ingested {counts['interactions']:,} ratings by {counts['users']:,} users on "
        f"{counts['items']:,} items → snapshot [bold]{info.snapshot_id}[/bold] ({info.path})"
    )


def _synthetic_spec(*, users: int, items: int, seed: int) -> Any:
    """The synthetic generator's spec for ``--users``/``--items``/``--seed``."""
    from pydantic import ValidationError

    from metarec.data.synthetic import SyntheticSpec
    from metarec.errors import MetaRecError

    per_user_max = min(80, items)
    try:
        return SyntheticSpec(
            n_users=users,
            n_items=items,
            seed=seed,
            max_ratings_per_user=per_user_max,
            min_ratings_per_user=min(20, per_user_max),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise MetaRecError(
            f"Invalid synthetic dataset size: {first['msg']}.",
            fix="pass --users >= 2 and --items >= 2.",
        ) from exc


def _read(settings: Any, data_source: Any, **options: Any) -> Any:
    from metarec.data.ingest import read_source

    return read_source(data_source, download_dir=settings.paths.home / "downloads", **options)


@app.command()
def snapshots(ctx: typer.Context) -> None:
    """List the ingested snapshots, oldest first; the current one is marked."""
    from metarec.data.snapshots import SnapshotStore
    from metarec.errors import SnapshotNotFoundError

    store = SnapshotStore(ctx.obj.paths.snapshots)
    try:
        current = store.current_id()
    except SnapshotNotFoundError:
        current = ""
    table = Table("current", "snapshot", "source", "interactions", "created")
    for info in store.list():
        table.add_row(
            "*" if info.snapshot_id == current else "",
            info.snapshot_id,
            info.source,
            f"{info.row_counts.get('interactions', 0):,}",
            f"{info.created_at:%Y-%m-%d %H:%M:%S}",
        )
    console.print(table)
