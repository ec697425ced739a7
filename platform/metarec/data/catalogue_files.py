"""Write a generated catalogue as a team's files: three tables, ``schema.yaml`` and the truth.

The folder then holds ``interactions``, ``users`` and ``items`` (CSV or parquet), the
``schema.yaml`` that ingests them (``metarec data ingest --source table --schema …``), and
``truth.parquet`` (segment per user, cluster per item, preferred clusters per segment), which the
schema does not declare: it is for benchmarks that check a model recovers the planted structure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
import yaml

from metarec.data.catalogue import (
    POSITIVE_EVENTS,
    Catalogue,
    CatalogueSpec,
    generate_catalogue,
)

SCHEMA_FILE = "schema.yaml"
TRUTH_FILE = "truth.parquet"
FileFormat = Literal["csv", "parquet"]


def write_catalogue(
    folder: Path, *, spec: CatalogueSpec | None = None, file_format: FileFormat = "csv"
) -> Path:
    """Generate a catalogue and write it into ``folder`` as a team's tables.

    Args:
        folder: Where to write (created if missing; files of the same names are replaced).
        spec: Sizes, structure strengths and seed (default: :class:`CatalogueSpec`'s).
        file_format: ``csv`` (vectors as quoted ``0.1,0.2,…`` text) or ``parquet`` (list columns).

    Returns:
        The path of the written ``schema.yaml``.
    """
    spec = spec or CatalogueSpec()
    catalogue = generate_catalogue(spec)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in _tables(catalogue, file_format=file_format).items():
        path = folder / f"{name}.{file_format}"
        if file_format == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
    catalogue.truth.to_parquet(folder / TRUTH_FILE, index=False)
    schema = folder / SCHEMA_FILE
    schema.write_text(
        _schema_header(spec) + yaml.safe_dump(catalogue_schema(spec, file_format), sort_keys=False)
    )
    return schema


def read_truth(folder: Path) -> pd.DataFrame:
    """The truth written next to a catalogue (``entity``, ``id``, ``segment``, ``cluster``)."""
    return pd.read_parquet(Path(folder) / TRUTH_FILE)


def _tables(catalogue: Catalogue, *, file_format: FileFormat) -> dict[str, pd.DataFrame]:
    items = catalogue.items
    if file_format == "csv":
        vectors = items["text_embedding"].map(lambda v: ",".join(f"{x:.4f}" for x in v))
        items = items.assign(text_embedding=vectors)
    else:
        items = items.assign(text_embedding=items["text_embedding"].map(list))
    return {"interactions": catalogue.interactions, "users": catalogue.users, "items": items}


def _schema_header(spec: CatalogueSpec) -> str:
    return (
        "# A generated catalogue (metarec data generate), not MovieLens: users in hidden\n"
        f"# segments, items in hidden clusters (seed {spec.seed}; truth in {TRUTH_FILE}).\n"
        f"# Ingest: metarec data ingest --source table --schema {SCHEMA_FILE}\n"
    )


def catalogue_schema(spec: CatalogueSpec, file_format: FileFormat) -> dict[str, object]:
    """The schema YAML (as a mapping) that declares a generated catalogue's tables."""
    if spec.label == "rating":
        label: dict[str, object] = {"kind": "rating", "column": "rating", "scale": [1, 5]}
    else:
        label = {
            "kind": "event",
            "type_column": "event",
            "weight_column": "weight",
            "positive": list(POSITIVE_EVENTS),
        }
    return {
        "interactions": {
            "path": f"interactions.{file_format}",
            "user_id": "customer_id",
            "item_id": "sku",
            "timestamp": "event_time",
            "label": label,
        },
        "users": {
            "path": f"users.{file_format}",
            "key": "customer_id",
            "features": {"country": {"type": "category"}, "age": {"type": "int"}},
        },
        "items": {
            "path": f"items.{file_format}",
            "key": "sku",
            "features": {
                "category": {"type": "category"},
                "price": {"type": "float"},
                "tags": {"type": "category_list", "separator": "|"},
                "text_embedding": {"type": "vector", "dim": spec.vector_dim},
            },
        },
    }
