"""`metarec quickstart --source table --schema …`, twice, on a generated catalogue (not MovieLens).

A small catalogue with 1-5 ratings and integer ids (what the model path supports today), a small
training config and a permissive gate policy keep it short; the rest is what a team runs on its
own tables: schema-checked ingest, real Feast, Great Expectations, training on the inputs the
feature service lists, registry, `bentoml serve` processes, router and traffic.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from metarec.cli.main import run
from metarec.config import load_settings
from metarec.data.catalogue import CatalogueSpec
from metarec.data.catalogue_files import write_catalogue
from metarec.registry import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def home(quickstart_home):
    return quickstart_home


def test_quickstart_on_a_teams_tables_serves_then_canaries_a_new_version(home, tmp_path, capsys):
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

    assert run([*command, "--canary-interval", "5"]) == 0
    second = capsys.readouterr().out
    print(second)
    assert "metarec:v2 promoted to production after a canary over 25 %, 50 %, 100 %" in second
    assert "0 server errors" in second
    with Registry.open(load_settings(home=home)) as registry:
        assert registry.production_version("metarec") == 2


def test_quickstart_on_events_shows_a_real_user_then_stops_at_training_with_one_line(
    home, tmp_path, capsys
):
    # Implicit events and text ids (c001, sku-001): no user 1, and no training until item 4.
    schema = write_catalogue(tmp_path / "shop", spec=CatalogueSpec(n_users=80, n_items=60))
    first_user = min(pd.read_csv(tmp_path / "shop" / "interactions.csv")["customer_id"])

    assert run(["quickstart", "--source", "table", "--schema", str(schema)]) == 1
    captured = capsys.readouterr()
    assert f"Read user {first_user}'s features from the online store" in captured.out
    assert "7/13 Validate the training set" in captured.out
    error = [line for line in captured.err.splitlines() if line.strip()]
    assert len(error) == 1, captured.err
    assert "no rating column" in error[0] and "issue 18 item 4" in error[0]
