"""A team's declared features in Feast (issue 18, item 2), on a small generated catalogue.

Feast is real (embedded SQLite registry and online store, file offline store): the declared
features become typed views joined to both feature services, are served online, joined to the
training set and covered by the validation gate; a team's own view in `user_features.py`
joins the services it names.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast.types import Array, Float64, Int64, String
from metarec.config import Settings, load_settings
from metarec.data.catalogue import CatalogueSpec
from metarec.data.catalogue_files import write_catalogue
from metarec.data.ingest import DataSource
from metarec.errors import FeatureStoreError, ValidationFailedError
from metarec.features.fingerprint import dataset_fingerprint
from metarec.features.store import (
    apply_features,
    materialize_features,
    online_features,
    open_store,
)
from metarec.features.training_set import build_training_set, load_training_set, manifest_path
from metarec.ops import ingest
from metarec.validation.gate import (
    build_reference_profile,
    raise_for_failure,
    validate_training_set,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC = CatalogueSpec(n_users=40, n_items=30, mean_events_per_user=8.0, vector_dim=6, seed=3)
USER_HOOK = """
from feast import FeatureView, Field, FileSource
from feast.types import Float64

TRAINING_VIEWS = ["item_margin"]
ONLINE_VIEWS = ["item_margin"]


def feature_views(context):
    return [
        FeatureView(
            name="item_margin",
            entities=[context.item],
            schema=[Field(name="{field}", dtype=Float64)],
            source=FileSource(path="{path}", timestamp_field="event_timestamp"),
        )
    ]
"""


def _settings(tmp_path: Path, *, hook: str | None = None) -> Settings:
    repo = tmp_path / "feature_repo"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("__pycache__"))
    if hook is not None:
        (repo / "user_features.py").write_text(hook)
    return load_settings(home=tmp_path / "home", feast={"repo_path": repo})


def _ingest_catalogue(settings: Settings, folder: Path, spec: CatalogueSpec = SPEC) -> None:
    schema = write_catalogue(folder, spec=spec)
    ingest(settings, source=DataSource.TABLE, schema=schema)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home with the generated catalogue ingested, applied, materialised, training set built."""
    tmp = tmp_path_factory.mktemp("declared")
    settings = _settings(tmp)
    _ingest_catalogue(settings, tmp / "shop")
    apply_features(settings, _current(settings))
    materialize_features(settings)
    build_training_set(settings, out=settings.paths.training_sets / "shop.parquet")
    return settings


def _current(settings: Settings):
    from metarec.data.snapshots import SnapshotStore

    return SnapshotStore(settings.paths.snapshots).get()


def _field_types(store, view: str) -> dict[str, object]:
    return {field.name: field.dtype for field in store.get_feature_view(view).features}


def test_apply_registers_the_declared_features_with_their_types(shop):
    store = open_store(shop)
    assert _field_types(store, "user_profile") == {"country": String, "age": Int64}
    assert _field_types(store, "item_profile") == {
        "category": String,
        "price": Float64,
        "tags": String,
        "text_embedding": Array(Float64),
    }
    assert store.get_entity("user").join_key == "user_id"
    training = {p.name for p in store.get_feature_service("meta_training").feature_view_projections}
    online = {
        p.name for p in store.get_feature_service("online_adaptation").feature_view_projections
    }
    assert training == {"interaction_event", "user_profile", "item_profile"}
    assert online == {"user_profile", "item_profile", "user_recent_ratings"}


def test_online_lookup_returns_a_users_country_and_an_items_embedding(shop):
    users = pd.read_parquet(_current(shop).table_path("users"))
    items = pd.read_parquet(_current(shop).table_path("items"))
    user, item = users.iloc[0], items.iloc[0]
    values = online_features(open_store(shop), user_id=user["user_id"], item_id=item["item_id"])
    assert values["country"] == user["country"]
    assert np.allclose(values["text_embedding"], list(item["text_embedding"]))
    assert len(values["text_embedding"]) == SPEC.vector_dim


def test_features_show_looks_up_a_text_id_from_the_command_line(
    shop, tmp_path, capsys, monkeypatch
):
    from metarec.cli.main import run

    monkeypatch.delenv("METAREC_HOME", raising=False)
    config = tmp_path / "metarec.yaml"
    config.write_text(f"home: {shop.paths.home}\nfeast: {{repo_path: {shop.feast.repo_path}}}\n")
    user = pd.read_parquet(_current(shop).table_path("users")).iloc[0]
    argv = ["--config", str(config), "features", "show", "--user", str(user["user_id"])]
    capsys.readouterr()
    assert run(argv) == 0
    assert str(user["country"]) in capsys.readouterr().out


def test_training_set_joins_the_declared_features_to_every_interaction(shop):
    frame, manifest = load_training_set(shop.paths.training_sets / "shop.parquet")
    interactions = pd.read_parquet(_current(shop).table_path("interactions"))
    assert len(frame) == len(interactions) == manifest.rows
    assert frame["interaction_id"].is_unique
    for column in ("label", "weight", "country", "age", "category", "price", "tags"):
        assert frame[column].notna().all(), column
    assert frame["text_embedding"].map(len).eq(SPEC.vector_dim).all()
    assert manifest.fingerprint == dataset_fingerprint(frame)
    declared = {feature.name: feature for feature in manifest.declared_features}
    assert declared["country"].type == "category"
    assert declared["text_embedding"].dim == SPEC.vector_dim


def _corrupt_copy(settings: Settings, tmp_path: Path, name: str, change) -> Path:
    """A copy of the shop training set with ``change`` applied and a manifest that matches it."""
    source = settings.paths.training_sets / "shop.parquet"
    frame, manifest = load_training_set(source)
    frame = change(frame.copy())
    out = tmp_path / f"{name}.parquet"
    frame.to_parquet(out, index=False)
    updated = manifest.model_copy(
        update={"path": str(out), "fingerprint": dataset_fingerprint(frame)}
    )
    manifest_path(out).write_text(updated.model_dump_json())
    return out


@pytest.fixture(scope="module")
def profiled(shop):
    """The shop home with its training set accepted as the reference profile."""
    build_reference_profile(shop, training_set=shop.paths.training_sets / "shop.parquet")
    return shop


def test_validation_passes_and_covers_every_declared_feature(profiled):
    result = validate_training_set(
        profiled, training_set=profiled.paths.training_sets / "shop.parquet"
    )
    names = {item.name for item in result.expectations}
    assert result.success, result.failed_expectations
    assert result.suite_name == "table_meta_training"
    for expected in (
        "country_not_null",
        "country_in_reference_categories",
        "age_in_reference_range",
        "price_in_reference_range",
        "tags_not_null",
        "text_embedding_dimension",
    ):
        assert expected in names


@pytest.mark.parametrize(
    ("name", "change", "failing"),
    [
        (
            "null_country",
            lambda f: f.assign(country=f["country"].mask(f.index % 3 == 0)),
            "country_not_null",
        ),
        ("new_country", lambda f: f.assign(country="atlantis"), "country_in_reference_categories"),
        (
            "price_out_of_range",
            lambda f: f.assign(price=f["price"] * 100),
            "price_in_reference_range",
        ),
        (
            "short_vectors",
            lambda f: f.assign(text_embedding=f["text_embedding"].map(lambda v: list(v)[:2])),
            "text_embedding_dimension",
        ),
    ],
)
def test_a_corrupted_feature_fails_naming_it(profiled, tmp_path, name, change, failing):
    path = _corrupt_copy(profiled, tmp_path, name, change)
    result = validate_training_set(profiled, training_set=path)
    assert not result.success
    assert failing in result.failed_expectations
    with pytest.raises(ValidationFailedError, match=failing):
        raise_for_failure(result)


def _margins(tmp_path: Path, field: str) -> str:
    """A team's own item table (``margin`` per item) and the hook that registers it."""
    items = write_catalogue(tmp_path / "shop", spec=SPEC).parent / "items.csv"
    ids = pd.read_csv(items)["sku"]
    table = pd.DataFrame(
        {
            "item_id": ids.astype("string"),
            field: np.linspace(0.1, 0.5, len(ids)),
            "event_timestamp": pd.Timestamp("1970-01-01", tz="UTC"),
        }
    )
    path = tmp_path / "margins.parquet"
    table.to_parquet(path, index=False)
    return USER_HOOK.replace("{field}", field).replace("{path}", str(path))


def test_a_teams_own_view_joins_the_services_it_names(tmp_path):
    settings = _settings(tmp_path, hook=_margins(tmp_path, "margin"))
    _ingest_catalogue(settings, tmp_path / "shop")
    names = apply_features(settings, _current(settings))
    assert "item_margin" in names
    store = open_store(settings)
    for service in ("meta_training", "online_adaptation"):
        views = {p.name for p in store.get_feature_service(service).feature_view_projections}
        assert "item_margin" in views
    manifest = build_training_set(settings)
    assert "margin" in manifest.columns
    assert any(f.name == "margin" and f.owner == "extra" for f in manifest.declared_features)
    materialize_features(settings)
    item = pd.read_parquet(_current(settings).table_path("items"))["item_id"].iloc[0]
    assert online_features(store, item_id=item)["margin"] == pytest.approx(0.1)


def test_a_teams_view_reusing_a_declared_name_is_refused(tmp_path):
    settings = _settings(tmp_path, hook=_margins(tmp_path, "price"))
    _ingest_catalogue(settings, tmp_path / "shop")
    with pytest.raises(
        FeatureStoreError, match="feature 'price' from item_profile and item_margin"
    ):
        apply_features(settings, _current(settings))


def test_a_broken_hook_is_one_clear_error(tmp_path):
    settings = _settings(
        tmp_path, hook="TRAINING_VIEWS = ['nope']\n\ndef feature_views(c):\n    return []\n"
    )
    _ingest_catalogue(settings, tmp_path / "shop")
    with pytest.raises(FeatureStoreError, match="TRAINING_VIEWS names \\['nope'\\]"):
        apply_features(settings, _current(settings))


def test_a_known_users_recent_items_online_are_their_liked_events(shop):
    from metarec.data.tables import LIKED_RATING

    snapshot = _current(shop)
    events = pd.read_parquet(snapshot.table_path("interactions"))
    liked = events[events["label"] == 1].sort_values("event_timestamp", kind="stable")
    user = liked["user_id"].value_counts().index[0]
    mine = liked[liked["user_id"] == user].drop_duplicates("item_id")
    values = online_features(open_store(shop), user_id=user)
    assert (
        values["recent_item_ids"]
        == mine["item_id"].tolist()[::-1][: len(values["recent_item_ids"])]
    )
    assert set(values["recent_ratings"]) == {LIKED_RATING}
    not_liked = set(events.loc[events["label"] == 0, "item_id"]) - set(liked["item_id"])
    assert not not_liked & set(values["recent_item_ids"])


def test_ratings_with_text_ids_materialise_their_recent_items_as_text(tmp_path):
    settings = _settings(tmp_path)
    _ingest_catalogue(
        settings, tmp_path / "shop", CatalogueSpec(**{**SPEC.model_dump(), "label": "rating"})
    )
    apply_features(settings, _current(settings))
    materialize_features(settings)
    store = open_store(settings)
    assert _field_types(store, "user_recent_ratings")["recent_item_ids"] == Array(String)
    user = pd.read_parquet(_current(settings).table_path("users"))["user_id"].iloc[0]
    recent = online_features(store, user_id=user)["recent_item_ids"]
    assert recent and all(isinstance(item, str) for item in recent)


def test_switching_from_movielens_to_a_table_snapshot_and_back(tmp_path):
    from metarec.data.synthetic import SyntheticSpec

    settings = _settings(tmp_path)
    small = SyntheticSpec(n_users=20, n_items=15, min_ratings_per_user=3, max_ratings_per_user=6)
    ingest(settings, source=DataSource.SYNTHETIC, synthetic=small)
    apply_features(settings, _current(settings))
    _ingest_catalogue(settings, tmp_path / "shop")
    apply_features(settings, _current(settings))
    store = open_store(settings)
    views = {view.name for view in store.list_feature_views()}
    assert "user_history" not in views and "interaction_label" not in views  # the event snapshot's
    assert "country" in build_training_set(settings).columns
    ingest(settings, source=DataSource.SYNTHETIC, synthetic=small)
    apply_features(settings, _current(settings))
    columns = build_training_set(settings).columns
    assert "gender" in columns and "country" not in columns and "rating_count" in columns
