"""Training on implicit events: the ranker alone, on positive interactions, evaluated by ranking.

The training set is a generated catalogue of views, clicks and purchases (clicks and purchases
positive) ingested as a team's tables, built by Feast and validated by Great Expectations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from metarec.config import Settings
from metarec.errors import ArtifactError, ModelInputsError
from metarec.registry.artifacts import inspect_artifact
from metarec.testing.serving import SMALL_CONFIG
from metarec.training.artifact import load_artifact, load_ranker, load_rating_model, read_card
from metarec.training.config import TrainingConfig
from metarec.training.evaluation import evaluate_artifact, evaluate_ranking_artifact
from metarec.training.trainer import train

pytestmark = pytest.mark.integration

CONFIG = {**SMALL_CONFIG, "ranker_max_steps": 200, "ranker_eval_every": 50}


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(event_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    training_set = event_home.paths.training_sets / "events.parquet"
    out = tmp_path_factory.mktemp("event-artifact") / "art"
    train(training_set, config=TrainingConfig.build(CONFIG), out=out)
    return training_set, out


def test_an_event_version_is_the_ranker_alone_with_a_ranking_table(trained):
    _, artifact = trained
    card = read_card(artifact)
    assert card.label == "event" and not card.predicts_ratings
    assert set(card.files) == {
        "ranker.safetensors",
        "item_prior.safetensors",
        "drift_reference.json",
    }
    assert card.metrics == {} and card.model == {}
    assert not (artifact / "model.safetensors").exists()
    assert load_rating_model(artifact, card) is None
    assert load_ranker(artifact, card) is not None
    with pytest.raises(ArtifactError, match="implicit events"):
        load_artifact(artifact)
    # The registry accepts it: its weights file is the ranker's.
    assert inspect_artifact(artifact).card.label == "event"
    table = card.ranking["new_user"]
    methods = set(next(iter(table.values())))
    assert {"ranker", "popularity", "ease"} <= methods
    assert "item_mean" not in methods  # no grades: an item's mean "rating" says nothing
    assert "rating_model" not in methods
    assert card.test_users["new_user"]


def test_the_ranker_finds_the_planted_tastes_better_than_popularity(trained):
    _, artifact = trained
    table = read_card(artifact).ranking["new_user"]
    ranker = np.mean([cell["ranker"]["ndcg@20"] for cell in table.values()])
    popularity = np.mean([cell["popularity"]["ndcg@20"] for cell in table.values()])
    assert ranker > popularity + 0.05, (ranker, popularity)


def test_re_evaluation_reproduces_the_card_and_rating_metrics_are_empty(trained):
    training_set, artifact = trained
    card = read_card(artifact)
    again = evaluate_ranking_artifact(artifact, training_set)
    for cell, methods in card.ranking["new_user"].items():
        assert again["new_user"][cell]["ranker"]["ndcg@20"] == pytest.approx(
            methods["ranker"]["ndcg@20"], abs=1e-9
        )
    assert evaluate_artifact(artifact, training_set) == {}


def test_events_without_the_ranker_are_refused_in_one_line(event_home, tmp_path):
    training_set = event_home.paths.training_sets / "events.parquet"
    config = TrainingConfig.build({**CONFIG, "ranker": False})
    with pytest.raises(ModelInputsError, match="ranker: false"):
        train(training_set, config=config, out=tmp_path / "art")
    assert not (tmp_path / "art").exists()


def test_cli_evaluate_prints_the_ranking_and_says_ratings_are_skipped(
    trained, tmp_path, monkeypatch, capsys
):
    import json

    from metarec.cli.main import run

    training_set, artifact = trained
    monkeypatch.setenv("METAREC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    code = run(
        ["evaluate", str(artifact), "--training-set", str(training_set), "--out", str(tmp_path)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "learnt from implicit events" in printed and "rating metrics skipped" in printed
    assert not (tmp_path / "evaluation.json").exists()
    ranking = json.loads((tmp_path / "ranking.json").read_text())
    assert "ranker" in next(iter(ranking["new_user"].values()))


def test_text_ids_train_and_the_card_names_users_and_items_by_their_ids(event_home, tmp_path):
    """A team's ids (``c001``, ``sku-001``): codes inside, the ids in the card and the ranker."""
    from metarec.testing.serving import mark_validated

    def as_text(frame):
        return frame.assign(
            user_id="c" + frame["user_id"].astype(str).str.zfill(3),
            item_id="sku-" + frame["item_id"].astype(str).str.zfill(3),
        )

    source = event_home.paths.training_sets / "events.parquet"
    training_set = mark_validated(source, tmp_path / "text.parquet", transform=as_text)
    card = train(training_set, config=TrainingConfig.build(CONFIG), out=tmp_path / "art")
    users = card.test_users["new_user"]
    assert users and all(isinstance(u, str) and u.startswith("c") for u in users)
    assert all(isinstance(u, str) for u in card.split["val_users"])
    parts = load_ranker(tmp_path / "art", read_card(tmp_path / "art"))
    assert parts.item_ids[0] == "sku-001" and len(parts.item_ids) == len(set(parts.item_ids))
    # The same users as the integer-id run of the same events (codes keep the order).
    integer = train(source, config=TrainingConfig.build(CONFIG), out=tmp_path / "int")
    assert users == [f"c{u:03d}" for u in integer.test_users["new_user"]]
    again = evaluate_ranking_artifact(tmp_path / "art", training_set)
    for cell, methods in card.ranking["new_user"].items():
        assert again["new_user"][cell]["ranker"]["ndcg@20"] == pytest.approx(
            methods["ranker"]["ndcg@20"], abs=1e-9
        )
    # Codes are not the integer ids (per-user seeded orders differ): not the same numbers, but
    # the same planted tastes found.
    ranker = np.mean([m["ranker"]["ndcg@20"] for m in card.ranking["new_user"].values()])
    popularity = np.mean([m["popularity"]["ndcg@20"] for m in card.ranking["new_user"].values()])
    assert ranker > popularity, (ranker, popularity)
