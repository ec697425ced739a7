"""``metarec data``: ingest datasets into versioned snapshots."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from metarec.cli.console import console, download_progress, stage

app = typer.Typer(
    help="Ingest data into versioned snapshots, or generate a catalogue to try it on.",
    no_args_is_help=True,
)


class DataSourceOption(StrEnum):
    """Dataset layouts ``--source`` accepts."""

    ML_100K = "ml-100k"
    ML_1M = "ml-1m"
    SYNTHETIC = "synthetic"
    TABLE = "table"


PATH_HELP = (
    "Zip archive or extracted folder: a local path or an fsspec URI (s3://bucket/ml-100k.zip, "
    "file:///data/ml-100k)."
)
SCHEMA_HELP = (
    "Table source: the schema YAML declaring your tables (a local path or an fsspec URI such "
    "as s3://bucket/schema.yaml; relative table paths are read beside it). Keys: interactions "
    "(path: parquet or CSV, local, relative to the YAML, or an fsspec URI; user_id, item_id, "
    "timestamp: column names; timestamps are unix seconds or ISO-8601; label: kind: rating "
    "with column and scale: [1, 5], or kind: event with optional type_column, weight_column "
    "and positive: the event types that count as positive); optional users and items (path, "
    "key column, optional valid_from column, features: name -> type: category | int | float | "
    "category_list | vector, with optional column, nullable, separator, dim). See "
    "docs/your-data.md."
)


@app.command()
def ingest(
    ctx: typer.Context,
    source: Annotated[
        DataSourceOption,
        typer.Option(
            help="Dataset layout: official MovieLens-100K, MovieLens-1M, synthetic, or table "
            "(your own interactions and attribute tables, declared by --schema)."
        ),
    ],
    path: Annotated[str | None, typer.Option(help=PATH_HELP)] = None,
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
    schema: Annotated[str | None, typer.Option(help=SCHEMA_HELP)] = None,
) -> None:
    """Read a dataset and write it as a new, current snapshot.

    The snapshot (users, items, interactions and the Feast source tables, as parquet) is written
    atomically: if anything fails, the previous snapshot stays current and readable.

    With --source table, your interactions (a rating or an implicit event per row) and optional
    user and item attribute tables are checked against the --schema YAML; a missing or mistyped
    column, a duplicate key, an unparseable timestamp, an id that is neither an integer nor a
    string, or an empty table is refused with one line naming the file, the column and the fix.
    """
    from metarec.data.ingest import DataSource

    data_source = DataSource(source.value)
    result = _ingest_with_progress(
        ctx.obj,
        data_source,
        path=path,
        url=url,
        checksum=checksum,
        synthetic=_synthetic_spec(users=users, items=items, seed=seed),
        schema=schema,
    )
    _print_ingested(ctx.obj, result)


def _print_ingested(settings: Any, result: Any) -> None:
    """One line on the new snapshot, and where it was published on a cluster."""
    counts = result.counts
    noun = "events" if result.label_kind == "event" else "ratings"
    console.print(
        f"Ingested {counts['interactions']:,} {noun} by {counts['users']:,} users on "
        f"{counts['items']:,} items → snapshot [bold]{result.snapshot.snapshot_id}[/bold] "
        f"({result.snapshot.path})"
    )
    if settings.feast.offline_root:
        root = settings.feast.offline_root.rstrip("/")
        console.print(f"Published to {root}/{result.snapshot.snapshot_id} (current there).")


def _ingest_with_progress(settings: Any, data_source: Any, **options: Any) -> Any:
    """Run the ingest use case, showing a download bar or a stage line."""
    from metarec.data.ingest import DataSource
    from metarec.ops.ingestion import ingest

    if data_source is DataSource.TABLE:
        label = f"Reading and checking the tables declared in {options['schema']}"
    elif data_source is not DataSource.SYNTHETIC and options["path"] is None:
        url = options["url"] or data_source.value
        with download_progress(f"Downloading {url}") as on_download:
            return ingest(settings, source=data_source, on_download=on_download, **options)
    else:
        label = f"Reading {data_source.value} from {options['path'] or 'generator'}"
    with stage(f"{label}; deriving feature tables and writing the snapshot"):
        return ingest(settings, source=data_source, **options)


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


class CatalogueFormatOption(StrEnum):
    """File formats ``data generate --format`` writes."""

    CSV = "csv"
    PARQUET = "parquet"


class CataloguePresetOption(StrEnum):
    """Sizes ``data generate --preset`` names."""

    SMALL = "small"
    LARGE = "large"


class CatalogueIdsOption(StrEnum):
    """Id styles ``data generate --ids`` writes."""

    TEXT = "text"
    INT = "int"


class CatalogueLabelOption(StrEnum):
    """Labels ``data generate --label`` writes."""

    EVENT = "event"
    RATING = "rating"


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write the tables, schema.yaml and truth.")],
    preset: Annotated[
        CataloguePresetOption,
        typer.Option(help="Sizes: small (300 users, 200 items) or large (6,000 and 3,000)."),
    ] = CataloguePresetOption.SMALL,
    users: Annotated[
        int | None, typer.Option(help="Number of users (overrides the preset).")
    ] = None,
    items: Annotated[
        int | None, typer.Option(help="Number of items (overrides the preset).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same files.")] = 0,
    file_format: Annotated[
        CatalogueFormatOption, typer.Option("--format", help="Table files: csv or parquet.")
    ] = CatalogueFormatOption.CSV,
    label: Annotated[
        CatalogueLabelOption,
        typer.Option(help="event: view/click/purchase with weights; rating: one 1-5 per pair."),
    ] = CatalogueLabelOption.EVENT,
    ids: Annotated[
        CatalogueIdsOption,
        typer.Option(
            help="text: c0001 / sku-0001; int: 1, 2, … (training and serving read int ids)."
        ),
    ] = CatalogueIdsOption.TEXT,
) -> None:
    """Generate a non-MovieLens catalogue with planted structure, as a team's tables.

    Writes interactions (customer_id, sku, event_time, event, weight), users (customer_id,
    country, age) and items (sku, category, price, tags, a 16-dim text_embedding vector) into
    --out, with the schema.yaml that ingests them and truth.parquet (the hidden segment of each
    user and cluster of each item; not part of the schema). Users in a segment favour its item
    clusters; country tells the segment well, age weakly; category, tags, price and the vector
    tell the cluster. Item popularity is long-tailed and user activity heavy-tailed.
    """
    from metarec.data.catalogue_files import write_catalogue

    spec = _catalogue_spec(
        preset.value, users=users, items=items, seed=seed, label=label.value, ids=ids.value
    )
    with stage(f"Generating {spec.n_users:,} users and {spec.n_items:,} items into {out}"):
        schema = write_catalogue(out, spec=spec, file_format=file_format.value)
    console.print(f"Wrote the tables and [bold]{schema}[/bold]")
    next_step = f"Next: metarec data ingest --source table --schema {schema}"
    console.print(next_step, highlight=False, soft_wrap=True)


def _catalogue_spec(preset: str, *, users: int | None, items: int | None, **options: Any) -> Any:
    """The catalogue spec for ``--preset`` with ``--users``/``--items`` overrides."""
    from pydantic import ValidationError

    from metarec.data.catalogue import PRESETS, CatalogueSpec
    from metarec.errors import MetaRecError

    sizes = dict(PRESETS[preset])
    sizes.update({k: v for k, v in (("n_users", users), ("n_items", items)) if v is not None})
    try:
        return CatalogueSpec(**sizes, **options)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise MetaRecError(
            f"Invalid catalogue size: {first['msg']}.", fix="pass --users >= 2 and --items >= 2."
        ) from exc


@app.command()
def snapshots(ctx: typer.Context) -> None:
    """List the ingested snapshots, oldest first; the current one is marked."""
    from metarec.data.snapshot_remote import remote_snapshots
    from metarec.data.snapshots import SnapshotStore
    from metarec.errors import SnapshotNotFoundError

    store = SnapshotStore(ctx.obj.paths.snapshots)
    remote = remote_snapshots(ctx.obj.feast.offline_root)
    try:  # on a cluster, the offline root's current snapshot (this home may hold older ones)
        current = (remote or store).current_id()
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
