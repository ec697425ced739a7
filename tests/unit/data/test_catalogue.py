"""The generated non-MovieLens catalogue: seeded, ingestible, and with its planted structure."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from metarec.cli.main import run
from metarec.data.catalogue import CatalogueSpec, generate_catalogue
from metarec.data.catalogue_files import read_truth, write_catalogue
from metarec.data.ingest import DataSource, read_source
from metarec.data.table_schema import load_table_schema


@pytest.fixture(scope="module")
def catalogue():
    return generate_catalogue(CatalogueSpec(seed=3))


@pytest.fixture(scope="module")
def truth(catalogue):
    users = catalogue.truth.query("entity == 'user'").set_index("id")["segment"]
    items = catalogue.truth.query("entity == 'item'").set_index("id")["cluster"]
    return users.astype(int), items.astype(int)


def test_the_same_seed_gives_the_same_tables_and_another_seed_does_not(catalogue):
    again = generate_catalogue(CatalogueSpec(seed=3))
    for name in ("interactions", "users", "items", "truth"):
        pd.testing.assert_frame_equal(getattr(catalogue, name), getattr(again, name))
    other = generate_catalogue(CatalogueSpec(seed=4))
    assert not catalogue.interactions.equals(other.interactions)


def test_sizes_follow_the_spec(catalogue):
    assert len(catalogue.users) == 300 and len(catalogue.items) == 200
    assert catalogue.interactions["customer_id"].nunique() == 300
    assert len(catalogue.interactions) > 300 * 15
    big = generate_catalogue(CatalogueSpec(n_users=50, n_items=40, ids="int", label="rating"))
    assert big.users["customer_id"].tolist() == list(range(1, 51))
    ratings = big.interactions
    assert ratings["rating"].between(1, 5).all()
    assert not ratings.duplicated(["customer_id", "sku"]).any()


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_the_written_tables_ingest_cleanly_and_the_truth_is_apart(tmp_path, file_format):
    schema = write_catalogue(tmp_path / "cat", spec=CatalogueSpec(seed=1), file_format=file_format)
    assert schema == tmp_path / "cat" / "schema.yaml"
    declared = load_table_schema(schema).declared_features()
    assert declared == {
        "users.country": "category",
        "users.age": "int",
        "items.category": "category",
        "items.price": "float",
        "items.tags": "category_list",
        "items.text_embedding": "vector",
    }
    assert "truth" not in schema.read_text().split("\n", 3)[-1]  # only named in the comment
    dataset = read_source(DataSource.TABLE, schema=schema, download_dir=tmp_path)
    events = dataset.interactions
    assert set(events["event_type"]) == {"view", "click", "purchase"}
    assert events.loc[events["event_type"] == "view", "label"].eq(0).all()
    assert events.loc[events["event_type"] != "view", "label"].eq(1).all()
    assert events.groupby("event_type")["weight"].first().to_dict() == {
        "click": 2.0,
        "purchase": 5.0,
        "view": 1.0,
    }
    assert len(dataset.users) == 300 and len(dataset.items) == 200
    assert dataset.items["text_embedding"].map(len).eq(16).all()
    span = events["event_timestamp"].max() - events["event_timestamp"].min()
    assert span > pd.Timedelta(days=150)
    truth = read_truth(tmp_path / "cat")
    assert truth["entity"].value_counts().to_dict() == {"user": 300, "item": 200, "preference": 8}


def test_the_rating_variant_ingests_as_ratings(tmp_path):
    spec = CatalogueSpec(n_users=40, n_items=30, label="rating")
    schema = write_catalogue(tmp_path, spec=spec)
    dataset = read_source(DataSource.TABLE, schema=schema, download_dir=tmp_path)
    assert "rating" in dataset.interactions.columns
    assert dataset.interactions["rating"].between(1, 5).all()


def test_segments_interact_with_their_preferred_clusters_far_more_than_chance(catalogue, truth):
    segments, clusters = truth
    events = catalogue.interactions
    preferred = catalogue.truth.query("entity == 'preference'")
    pairs = set(
        zip(preferred["segment"].astype(int), preferred["cluster"].astype(int), strict=True)
    )
    in_taste = [
        (s, c) in pairs
        for s, c in zip(segments[events["customer_id"]], clusters[events["sku"]], strict=True)
    ]
    chance = 2 / 8
    assert np.mean(in_taste) > 0.7 > 2.5 * chance
    positive = events["event"].isin(["click", "purchase"]).to_numpy()
    assert positive[np.asarray(in_taste)].mean() > 2 * positive[~np.asarray(in_taste)].mean()


def test_item_popularity_and_user_activity_are_long_tailed(catalogue):
    counts = catalogue.interactions["sku"].value_counts().to_numpy()
    top = counts[: len(catalogue.items) // 10].sum() / counts.sum()
    assert top > 0.35  # a uniform catalogue would give 0.10
    activity = catalogue.interactions["customer_id"].value_counts()
    assert activity.max() > 4 * activity.median()


def test_country_predicts_the_segment_and_age_only_weakly(catalogue, truth):
    segments, _ = truth
    users = catalogue.users.set_index("customer_id")
    frame = pd.DataFrame({"segment": segments, "country": users["country"], "age": users["age"]})
    majority = frame.groupby("country")["segment"].agg(lambda s: s.value_counts().iloc[0]).sum()
    assert majority / len(frame) > 0.75  # chance (the largest segment) is about 0.25
    age_means = frame.groupby("segment")["age"].mean()
    assert age_means.is_monotonic_increasing
    assert frame["age"].std() > 2 * (age_means.max() - age_means.min()) / 2


def test_item_vectors_and_attributes_reveal_the_cluster(catalogue, truth):
    _, clusters = truth
    items = catalogue.items.set_index("sku")
    vectors = np.stack(items["text_embedding"].to_numpy())
    labels = clusters[items.index].to_numpy()
    centroids = np.stack([vectors[labels == c].mean(axis=0) for c in range(8)])
    nearest = np.argmin(((vectors[:, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)
    assert (nearest == labels).mean() > 0.9
    own_tag = [f"k{c}t" in tags for c, tags in zip(labels, items["tags"], strict=True)]
    assert all(own_tag)
    assert (pd.crosstab(labels, items["category"]).max(axis=1).sum() / len(items)) > 0.6


def _cli(tmp_path: Path, *args: str) -> list[str]:
    (tmp_path / "metarec.yaml").write_text(f"home: {tmp_path / 'home'}\n")
    return ["--config", str(tmp_path / "metarec.yaml"), *args]


def test_the_cli_writes_the_catalogue_and_names_the_next_command(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("METAREC_HOME", raising=False)
    out = tmp_path / "shop"
    argv = ["data", "generate", "--out", str(out), "--users", "40", "--items", "30"]
    assert run(_cli(tmp_path, *argv, "--format", "parquet", "--seed", "7")) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"metarec data ingest --source table --schema {out / 'schema.yaml'}" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "interactions.parquet",
        "items.parquet",
        "schema.yaml",
        "truth.parquet",
        "users.parquet",
    ]
    assert len(pd.read_parquet(out / "users.parquet")) == 40
    assert run(_cli(tmp_path, "data", "generate", "--out", str(out), "--users", "1")) != 0
    assert "--users >= 2" in " ".join(capsys.readouterr().err.split())


def test_the_cli_help_explains_the_catalogue(tmp_path, capsys):
    assert run(_cli(tmp_path, "data", "generate", "--help")) == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("planted structure", "schema.yaml", "truth.parquet", "--format", "--preset"):
        assert phrase in text
