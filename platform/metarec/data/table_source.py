"""The ``table`` source: a team's interactions and attribute tables, read via their schema YAML."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec

from metarec.data.schema import Dataset
from metarec.data.table_normalise import RawTables, normalise_tables
from metarec.data.table_read import read_table_file
from metarec.data.table_schema import TableSchema, load_table_schema, resolve_location
from metarec.digests import sha256_bytes

TABLE_SOURCE = "table"


def _locations(schema: TableSchema, *, base: Path) -> dict[str, str]:
    """Table name → resolved location of every table the schema declares."""
    declared = {"interactions": schema.interactions, "users": schema.users, "items": schema.items}
    return {
        name: resolve_location(spec.path, base=base)
        for name, spec in declared.items()
        if spec is not None
    }


def schema_metadata(schema: TableSchema) -> dict[str, str]:
    """What a snapshot's manifest records of the declared schema (names and types)."""
    return {
        "table_schema": schema.model_dump_json(),
        "label_kind": schema.interactions.label.kind,
        "declared_features": json.dumps(schema.declared_features(), sort_keys=True),
    }


def read_table_source(schema_path: Path) -> Dataset:
    """Read, validate and normalise the tables a schema YAML declares.

    Args:
        schema_path: The schema YAML file (table paths are relative to its folder).

    Returns:
        The dataset (source ``table``); its metadata records the declared schema.

    Raises:
        DataFormatError: The schema or a table is malformed (one line: file, column, fix).
        DataSourceNotFoundError: A declared table does not exist.
    """
    schema = load_table_schema(schema_path)
    locations = _locations(schema, base=Path(schema_path).parent)
    frames = {
        name: read_table_file(location, text_columns=schema.text_columns(name))
        for name, location in locations.items()
    }
    raw = RawTables(
        interactions=frames["interactions"],
        users=frames.get("users"),
        items=frames.get("items"),
        labels=locations,
    )
    users, items, interactions = normalise_tables(raw, schema)
    return Dataset(
        users=users,
        items=items,
        interactions=interactions,
        source=TABLE_SOURCE,
        metadata=schema_metadata(schema),
    )


def table_input_identity(schema_path: Path) -> str:
    """A checksum of the schema file and every table it declares (local or fsspec URI)."""
    schema_path = Path(schema_path)
    schema = load_table_schema(schema_path)
    parts = [schema_path.read_bytes()]
    for name, location in sorted(_locations(schema, base=schema_path.parent).items()):
        with fsspec.open(location, "rb") as handle:
            parts.append(name.encode() + b"\0" + sha256_bytes(handle.read()).encode())
    return "sha256:" + sha256_bytes(b"\n".join(parts))
