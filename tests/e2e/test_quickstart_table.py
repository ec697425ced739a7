"""`metarec quickstart --source table --schema …` on a generated catalogue (not MovieLens).

Two catalogues: 1-5 ratings with integer ids, and implicit events with text ids (the generator's
default). A small training config and a permissive gate policy keep them short; the rest is what
a team runs on its own tables: schema-checked ingest, real Feast, Great Expectations, training on
the inputs the feature service lists, registry, `bentoml serve` processes, router and traffic.
"""

from __future__ import annotations

import re

import httpx
import pandas as pd
import pytest
from metarec.cli.main import run
from metarec.config import load_settings
from metarec.data.catalogue import CatalogueSpec
from metarec.data.catalogue_files import write_catalogue
from metarec.registry import Registry
from metarec.serving.process import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def home(quickstart_home):
    return quickstart_home


def test_quickstart_on_a_teams_tables_serves_a_model_of_its_features(home, tmp_path, capsys):
    # One run: the canary of a table version is the events test's second run below (and the
    # rating canary is tests/e2e/test_quickstart.py's), so it is not repeated here.
    spec = CatalogueSpec(n_users=150, n_items=100, label="rating", ids="int", seed=3)
    schema = write_catalogue(tmp_path / "shop", spec=spec)
    command = ["quickstart", "--source", "table", "--schema", str(schema)]

    assert run(command) == 0
    first = capsys.readouterr().out
    print(first)
    assert f"Ingest table from {schema}" in first
    assert re.search(r"Snapshot \S+-table: [\d,]+ ratings, 150 users, 100 items", first)
    assert "metarec:v1 is in production (first version: nothing to canary against)" in first
    # The served model reads the catalogue's own features, as the service's /metadata lists.
    inputs = re.search(r"Model inputs \(GET /metadata\): (.+)", first)[1]
    assert "user: country (categorical), age (numeric)" in inputs
    for field in ("category (categorical)", "tags (bag)", "price (numeric)", "text_embedding"):
        assert field in inputs
    top = first[first.index("Top 5 for user 1") :]
    assert len(re.findall(r"│ \d+\s+│ \w+, [\d.]+, ", top)) == 5  # items named by their features
    with Registry.open(load_settings(home=home)) as registry:
        assert registry.production_version("metarec") == 1


def test_quickstart_on_implicit_events_with_text_ids_serves_then_canaries_on_hit_rate(
    home, tmp_path, capsys
):
    """The generator's default: views, clicks and purchases, ids like ``c001`` and ``sku-001``.

    The ranker alone learns from the positive events; the gate judges its ranking; the canary
    judges the online hit rate (no ratings, so no online MAE); the served endpoint answers as a
    product asks it: a known customer, a new one from a few items, no ``/predict``.
    """
    spec = CatalogueSpec(n_users=200, n_items=120, seed=4)  # events, text ids
    schema = write_catalogue(tmp_path / "shop", spec=spec)
    events = pd.read_csv(tmp_path / "shop" / "interactions.csv")
    first_user = min(events["customer_id"])
    command = ["quickstart", "--source", "table", "--schema", str(schema)]

    assert run(command) == 0
    first = capsys.readouterr().out
    print(first)
    assert f"Read user {first_user}'s features from the online store" in first
    assert "the ranker alone: the training set holds implicit events" in first
    assert "No rating metrics: the model learnt from implicit events" in first
    assert "metarec:v1 is in production (first version: nothing to canary against)" in first
    top = first[first.index(f"Top 5 for user {first_user}") :]
    assert len(re.findall(r"│ sku-\d+\s+│ \w+, [\d.]+, .+│ -?[\d.]+\s+│ –", top)) == 5

    assert run([*command, "--canary-interval", "5"]) == 0
    second = capsys.readouterr().out
    print(second)
    assert "metarec:v2 promoted to production after a canary over 25 %, 50 %, 100 %" in second
    assert "online MAE off" in second
    assert "0 server errors" in second
    settings = load_settings(home=home)
    with Registry.open(settings) as registry:
        assert registry.production_version("metarec") == 2

    liked = events[events["event"].isin(["click", "purchase"])]
    with ServiceProcess(settings, stage="production", log_path=tmp_path / "service.log") as service:
        known = httpx.post(f"{service.url}/recommend", json={"user_id": first_user, "k": 10})
        assert known.status_code == 200, known.text
        listed = [item["item_id"] for item in known.json()["items"]]
        assert len(listed) == 10 and all(i.startswith("sku-") for i in listed)
        assert all(item["predicted_rating"] is None for item in known.json()["items"])
        few = liked["sku"].drop_duplicates().head(3).tolist()
        new = httpx.post(
            f"{service.url}/recommend", json={"support": [{"item_id": i} for i in few], "k": 10}
        )
        assert new.status_code == 200, new.text
        assert not set(few) & {item["item_id"] for item in new.json()["items"]}
        rated = httpx.post(
            f"{service.url}/recommend", json={"support": [{"item_id": few[0], "rating": 5.0}]}
        )
        assert rated.status_code == 400 and "support[0].rating" in rated.text
        predict = httpx.post(
            f"{service.url}/predict", json={"user_id": first_user, "item_ids": [few[0]]}
        )
        assert predict.status_code == 422 and "/recommend" in predict.text
        feedback = httpx.post(
            f"{service.url}/feedback",
            json={"events": [{"user_id": first_user, "item_id": listed[0]}]},
            headers=service.feedback_headers,
        )
        assert feedback.status_code == 200 and feedback.json() == {"accepted": 1}
