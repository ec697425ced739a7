"""The feature ablation benchmark end to end on a tiny catalogue, and support size 0."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from metarec.training.encoding import FeatureEncoder
from metarec.training.ranking import RankingData

REPO = Path(__file__).resolve().parents[3]


def _benchmark():
    path = REPO / "benchmarks" / "features_ablation.py"
    spec = importlib.util.spec_from_file_location("features_ablation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ranking_data() -> RankingData:
    """Two users: user 1 rated items 10, 11, 12 (5, 2, 4), user 2 rated item 10 (3)."""
    data = RankingData.build(
        encoder=FeatureEncoder(fields=[]),
        codes=np.zeros((4, 0), np.float32),
        user_ids=np.array([1, 1, 1, 2]),
        item_ids=np.array([10, 11, 12, 10]),
        ratings=np.array([5.0, 2.0, 4.0, 3.0]),
        new_item_rows=np.array([], dtype=np.int64),
        train_users=[],
    )
    return data


def test_support_size_zero_makes_every_liked_item_relevant():
    data = _ranking_data()
    every = np.ones(data.n_items, bool)
    (task,) = data.tasks([1, 2], k=0, order="time", seed=0, support_from=None, ranked=every)
    assert task.user_id == 1  # user 2 likes nothing: skipped
    assert len(task.support) == 0 and len(task.support_ratings) == 0
    assert sorted(data.item_ids[task.relevant]) == [10, 12]
    (one,) = data.tasks([1], k=1, order="time", seed=0, support_from=None, ranked=every)
    assert sorted(data.item_ids[one.relevant]) == [12]  # only what comes after the support


def test_the_benchmark_prints_one_json_object_of_ndcg_in_unit_range(tmp_path, capsys):
    out = tmp_path / "result.json"
    _benchmark().main(
        ["--preset", "small", "--splits", "1", "--ranker-max-steps", "5",
         "--ranker-eval-every", "5", "--ks", "0", "3", "--out", str(out)]
    )  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == result
    assert result["declared_features"] == [
        "country", "age", "category", "price", "tags", "text_embedding"
    ]  # fmt: skip
    assert result["encoder_fields"]["without"] == ["item_id"]
    assert set(result["cells"]) == {"time@0", "time@3"}
    for cell in result["cells"].values():
        for key in ("ranker_all", "ranker_without", "meta_ranker_all", "popularity"):
            assert 0.0 <= cell[key]["median"] <= 1.0
            assert cell[key]["min"] <= cell[key]["median"] <= cell[key]["max"]
        diff = cell["diff_ranker_all_minus_popularity"]["per_split"][0]
        assert diff == pytest.approx(
            cell["ranker_all"]["per_split"][0] - cell["popularity"]["per_split"][0], abs=2e-5
        )
