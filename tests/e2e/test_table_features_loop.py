"""Issue 18's acceptance on a team's own tables (a generated, non-MovieLens catalogue).

Ingest → declared features (a user ``country``, an item text-embedding vector) → apply →
materialise → training set → validate (Great Expectations) → train → register → serve. Then, as
a product would ask it: ``/metadata`` lists the model's input fields, and ``/recommend`` for two
new customers with no ratings yet, equal but for their country, returns different lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from metarec.config import Settings, load_settings
from metarec.data.catalogue import CatalogueSpec
from metarec.data.catalogue_files import write_catalogue
from metarec.data.ingest import DataSource
from metarec.features.store import apply_features, materialize_features
from metarec.features.training_set import build_training_set, read_manifest
from metarec.ops.ingestion import ingest
from metarec.serving.process import ServiceProcess
from metarec.testing.serving import train_and_register
from metarec.validation.gate import build_reference_profile, validate_training_set

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NEW_CUSTOMERS = {9001: "FR", 9002: "JP"}  # no interactions: cold start from attributes


def _add_new_customers(folder: Path) -> None:
    """Two customers who signed up but bought nothing yet: same age, different countries."""
    users = pd.read_csv(folder / "users.csv")
    age = int(users["age"].median())
    rows = [{"customer_id": i, "country": c, "age": age} for i, c in NEW_CUSTOMERS.items()]
    pd.concat([users, pd.DataFrame(rows)]).to_csv(folder / "users.csv", index=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str, Path]]:
    root = tmp_path_factory.mktemp("table-loop")
    tables = root / "tables"
    spec = CatalogueSpec(n_users=400, n_items=150, label="rating", ids="int", seed=5)
    schema = write_catalogue(tables, spec=spec)
    _add_new_customers(tables)
    settings = load_settings(home=root / "home", registry={"export_bentoml": False})
    ingested = ingest(settings, source=DataSource.TABLE, schema=schema)
    apply_features(settings, ingested.snapshot)
    materialize_features(settings)
    training_set = settings.paths.training_sets / "table.parquet"
    build_training_set(settings, out=training_set)
    build_reference_profile(settings, training_set=training_set)
    assert validate_training_set(settings, training_set=training_set).success
    info = train_and_register(
        settings, training_set, workdir=root / "work", config={"ranker_max_steps": 200}
    )
    with ServiceProcess(settings, version=info.tag, log_path=root / "service.log") as process:
        yield settings, process.url, training_set


def test_the_training_set_records_the_declared_features_as_model_inputs(served):
    _, _, training_set = served
    inputs = {f.name: (f.side, f.encoding.value) for f in read_manifest(training_set).input_fields}
    assert inputs == {
        "country": ("user", "categorical"),
        "age": ("user", "numeric"),
        "category": ("item", "categorical"),
        "price": ("item", "numeric"),
        "tags": ("item", "bag"),
        "text_embedding": ("item", "vector"),
    }


def test_metadata_lists_the_models_input_fields(served):
    _, url, _ = served
    fields = httpx.get(f"{url}/metadata", timeout=30).json()["input_fields"]
    by_name = {f["name"]: f for f in fields}
    assert by_name["country"]["side"] == "user" and by_name["country"]["view"] == "user_profile"
    assert by_name["text_embedding"]["kind"] == "vector"
    assert by_name["text_embedding"]["width"] == 16
    assert {"age", "category", "price", "tags"} <= set(by_name)


def test_a_new_customers_list_changes_with_their_country_alone(served):
    _, url, _ = served
    lists = {}
    for user_id in NEW_CUSTOMERS:
        response = httpx.post(f"{url}/recommend", json={"user_id": user_id, "k": 20}, timeout=30)
        assert response.status_code == 200, response.text
        lists[user_id] = [item["item_id"] for item in response.json()["items"]]
        assert len(lists[user_id]) == 20
    first, second = lists.values()
    assert first != second
