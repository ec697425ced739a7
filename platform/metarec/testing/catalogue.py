"""A MetaRec home holding a generated catalogue, ready to train on, for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metarec.config import Settings, load_settings


def catalogue_home(root: Path, *, spec: Any, **overrides: Any) -> tuple[Settings, Path]:
    """Generate ``spec``'s catalogue under ``root`` and take it through the platform's path.

    Tables → ingest (table source) → Feast apply → materialise → point-in-time training set →
    reference profile → Great Expectations validation (asserted to pass).

    Args:
        root: Folder for the tables (``root/tables``) and the home (``root/home``).
        spec: A :class:`~metarec.data.catalogue.CatalogueSpec`.
        **overrides: Settings overrides (``registry={"export_bentoml": False}``).

    Returns:
        The home's settings and its validated training set.
    """
    from metarec.data.catalogue_files import write_catalogue
    from metarec.data.ingest import DataSource
    from metarec.features.store import apply_features, materialize_features
    from metarec.features.training_set import build_training_set
    from metarec.ops.ingestion import ingest
    from metarec.validation.gate import build_reference_profile, validate_training_set

    schema = write_catalogue(root / "tables", spec=spec)
    settings = load_settings(home=root / "home", **overrides)
    apply_features(settings, ingest(settings, source=DataSource.TABLE, schema=schema).snapshot)
    materialize_features(settings)
    name = "events" if spec.label == "event" else "ratings"
    training_set = settings.paths.training_sets / f"{name}.parquet"
    build_training_set(settings, out=training_set)
    build_reference_profile(settings, training_set=training_set)
    assert validate_training_set(settings, training_set=training_set).success
    return settings, training_set
