"""``metarec features``: register, materialise and read features with Feast."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from metarec.cli.console import console, stage
from metarec.cli.validation import profile, validate

app = typer.Typer(help="Register, materialise and read features (Feast).", no_args_is_help=True)


@app.command()
def apply(ctx: typer.Context) -> None:
    """Register entities, feature views and services over the current snapshot (`feast apply`).

    With feast.offline_root set, the current snapshot is the one published there last.
    """
    from metarec.data.snapshot_remote import remote_snapshots, resolve_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.features.store import apply_features, feature_store_yaml

    settings = ctx.obj
    # On a cluster (feast.offline_root set): the offline root's current snapshot, fetched into
    # this pod's home when it is not there.
    remote = remote_snapshots(settings.feast.offline_root)
    snapshot = resolve_snapshot(SnapshotStore(settings.paths.snapshots), remote)
    with stage(f"Applying feature definitions over snapshot {snapshot.snapshot_id}"):
        names = apply_features(settings, snapshot)
    console.print(f"Registered {len(names)} objects: {', '.join(names)}")
    console.print(f"Feast config: {feature_store_yaml(settings)} ({settings.feast.environment})")


@app.command()
def materialize(ctx: typer.Context) -> None:
    """Load the latest feature values into the online store (`feast materialize`)."""
    from metarec.features.store import materialize_features

    with stage("Materialising features into the online store"):
        end = materialize_features(ctx.obj)
    console.print(f"Online store holds feature values as of {end:%Y-%m-%d %H:%M:%S %Z}.")


@app.command()
def show(
    ctx: typer.Context,
    user: Annotated[
        str | None, typer.Option(help="User id to look up (an integer or a text id).")
    ] = None,
    item: Annotated[
        str | None, typer.Option(help="Item id to look up (an integer or a text id).")
    ] = None,
) -> None:
    """Print a user's and/or an item's features from the online store."""
    from metarec.errors import MetaRecError
    from metarec.features.store import online_features, open_store

    if user is None and item is None:
        raise MetaRecError("Nothing to show.", fix="pass --user ID and/or --item ID.")
    values = online_features(open_store(ctx.obj), user_id=user, item_id=item)
    table = Table("feature", "value", title="Online features")
    for name, value in values.items():
        table.add_row(name, str(value))
    console.print(table)


@app.command("training-set")
def training_set(
    ctx: typer.Context,
    out: Annotated[
        str | None,
        typer.Option(
            help="Parquet file to write, a local path or an fsspec URI such as "
            "s3://bucket/ts.parquet (default: <home>/training_sets/<snapshot>.parquet)."
        ),
    ] = None,
) -> None:
    """Build the training set with Feast's point-in-time correct historical retrieval.

    Every interaction is joined with the user and item features valid at its timestamp; a
    manifest with the content fingerprint is written beside the file.
    """
    from metarec.features.training_set import as_location, build_training_set, manifest_path

    with stage("Retrieving historical features (point-in-time join)"):
        manifest = build_training_set(ctx.obj, out=as_location(out) if out else None)
    path = as_location(manifest.path)
    console.print(f"{manifest.rows:,} rows × {len(manifest.columns)} columns → {path}")
    console.print(f"fingerprint {manifest.fingerprint}  manifest {manifest_path(path)}")


@app.command()
def env(ctx: typer.Context) -> None:
    """Print `export` lines that let the `feast` CLI run in feature_repo/ with these settings."""
    from metarec.features.store import feast_variables

    for name, value in feast_variables(ctx.obj).items():
        typer.echo(f"export {name}={value}")
    typer.echo(f"export METAREC_HOME={ctx.obj.paths.home}")


# The validation gate (metarec.cli.validation): `features profile` and `features validate`.
app.command()(profile)
app.command()(validate)
