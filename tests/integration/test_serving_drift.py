"""Live drift monitoring: traffic whose item popularity shifts from the training reference.

A small (untrained) rating version with a ranker is served by the adaptation engine in
process, with the drift reference the service builds from the version's own training set
(found by the card's fingerprint). Requests whose support sets follow the training set's item
popularity keep ``metarec_drift_psi{statistic="item_popularity"}`` under 0.1; a window of
requests about long-tail items only pushes it over 0.25. The series are read from the
Prometheus text exposition of the service's registry, as a scrape of ``/metrics`` sees them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from metarec import metrics_contract as contract
from metarec.config import ServingSettings
from metarec.features.training_set import TrainingSetManifest, manifest_path
from metarec.learning.item_models import EASE
from metarec.learning.model import MeLU
from metarec.learning.ranker import Ranker
from metarec.registry.types import Lineage, Stage, VersionInfo
from metarec.serving.drift_alerts import DriftAlarm
from metarec.serving.drift_reference import load_drift_reference
from metarec.serving.engine import AdaptationEngine
from metarec.serving.features import ItemMatrix
from metarec.serving.loading import load_served_folder
from metarec.serving.schemas import RecommendRequest, SupportRating
from metarec.testing.registry import fixture_card, fixture_metrics, fixture_ranking
from metarec.training.artifact import RankerParts, save_artifact
from metarec.training.encoding import EncodedField, FeatureEncoder
from metarec.training.ranking import ranker_config_for
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

N_ITEMS = 120
WINDOW = 120
SEED = 11  # the card's dataset fingerprint is derived from it


def _encoder() -> FeatureEncoder:
    return FeatureEncoder(
        fields=[
            EncodedField(
                name="gender",
                side="user",
                kind="categorical",
                view="user_profile",
                start=0,
                vocabulary=["F", "M"],
            ),
            EncodedField(
                name="item_id",
                side="item",
                kind="categorical",
                start=1,
                vocabulary=[str(i) for i in range(1, N_ITEMS + 1)],
            ),
        ]
    )


def _popularity() -> np.ndarray:
    """Zipf-like item weights: item 1 the most popular."""
    weights = 1.0 / np.arange(1, N_ITEMS + 1)
    return weights / weights.sum()


def _supports(rng: np.random.Generator, users: int, weights: np.ndarray) -> list[np.ndarray]:
    """Each user's items (10 to 30, without repeats), drawn with ``weights``."""
    return [
        rng.choice(N_ITEMS, size=int(rng.integers(10, 31)), replace=False, p=weights) + 1
        for _ in range(users)
    ]


def _training_set(folder: Path, fingerprint: str) -> None:
    """400 users' interactions following the item popularity, with a manifest."""
    rng = np.random.default_rng(0)
    rows = [
        (user, int(item), float(rng.integers(1, 6)))
        for user, items in enumerate(_supports(rng, 400, _popularity()), start=1)
        for item in items
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    frame["event_timestamp"] = pd.Timestamp("2026-01-01", tz="UTC")
    folder.mkdir(parents=True)
    path = folder / "ts.parquet"
    frame.to_parquet(path, index=False)
    manifest = TrainingSetManifest(
        path=str(path),
        fingerprint=fingerprint,
        rows=len(frame),
        columns=list(frame.columns),
        feature_service="meta_training",
        feature_service_version="1",
        snapshot_id="snap",
        feast_project="metarec",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    manifest_path(path).write_text(manifest.model_dump_json())


def _artifact(folder: Path) -> str:
    """A small untrained rating version with a ranker; returns its dataset fingerprint."""
    torch.manual_seed(0)
    encoder = _encoder()
    config = ranker_config_for(encoder, dim=8, inner_lr_init=0.5)
    interactions = (np.random.default_rng(0).random((40, N_ITEMS)) < 0.2).astype(np.float32)
    ranker = RankerParts(
        model=Ranker(config),
        ease=EASE.fit(interactions, l2=1.0),
        item_ids=np.arange(1, N_ITEMS + 1, dtype=np.int64),
    )
    card = fixture_card(
        seed=SEED,
        algorithm="fomaml",
        metrics=fixture_metrics(algorithm="fomaml", mae=0.8),
        test_users={"new_user": [1]},
        ranking=fixture_ranking(ranker=0.3),
        weights_sha256="0" * 64,
    )
    fields = card.model_dump(exclude={"model", "weights_sha256", "files", "format_version"})
    section = {"config": config.to_dict(), "inner_steps": 1, "blend_weight": 0.4}
    model = MeLU(
        encoder.model_config_for(
            embedding_dim=4, hidden=(8,), output_bias=3.5, meta_sgd=False, inner_lr_init=0.01
        )
    )
    save_artifact(
        folder,
        model=model,
        global_model=None,
        card={**fields, "encoder": encoder.model_dump(), "ranker": section},
        ranker=ranker,
    )
    return card.dataset_fingerprint


class _Store:
    """The feature cache's interface: the catalogue, and no known users."""

    def __init__(self) -> None:
        ids = np.arange(1, N_ITEMS + 1, dtype=np.int64)
        codes = np.zeros((N_ITEMS, 2), dtype=np.float32)
        codes[:, 1] = ids
        index = {int(i): n for n, i in enumerate(ids)}
        self.items = ItemMatrix(item_ids=ids, codes=codes, index=index, signature=("drift",))
        self.materialized_at = None

    def cached_user(self, user_id: Any) -> tuple[bool, None]:
        return True, None

    def user(self, user_id: Any) -> None:
        return None


def _info(folder: Path) -> VersionInfo:
    return VersionInfo(
        model="drifttest",
        version=1,
        tag="drifttest:v1",
        stage=Stage.PRODUCTION,
        artifact_uri=str(folder),
        digest="sha256:" + "0" * 64,
        files={},
        lineage=Lineage(),
        gate_decision=None,
        bento_tag=None,
        created_by="test",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
    )


def scrape(engine: AdaptationEngine) -> dict[tuple[str, str], float]:
    """The engine's monitoring series as a scrape sees them: (name, statistic) → value."""
    text = generate_latest(engine.metrics.registry).decode()
    wanted = {
        contract.DRIFT_PSI,
        contract.COLD_START_SHARE,
        contract.REFERENCE_COLD_START_SHARE,
        contract.DRIFT_WINDOW_REQUESTS,
        contract.OFFLINE_MAE,
        contract.OFFLINE_HIT_RATE,
        contract.ONLINE_MAE,
        contract.ONLINE_HIT_RATE,
    }
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                assert sample.labels[contract.MODEL_VERSION] == engine.served.tag
                found[(sample.name, sample.labels.get(contract.STATISTIC, ""))] = sample.value
    return found


def _traffic(engine: AdaptationEngine, supports: list[np.ndarray]) -> None:
    """One /recommend per support set, 16 at a time (adapted together)."""

    async def main() -> None:
        for start in range(0, len(supports), 16):
            requests = [
                RecommendRequest(
                    support=[SupportRating(item_id=int(i), rating=4.0) for i in items], k=10
                )
                for items in supports[start : start + 16]
            ]
            await asyncio.gather(*(engine.recommend(r) for r in requests))
        await engine.close()

    asyncio.run(main())


def test_a_shift_to_long_tail_items_crosses_the_drift_threshold(tmp_path: Path):
    fingerprint = _artifact(tmp_path / "artifact")
    _training_set(tmp_path / "training_sets", fingerprint)
    served = load_served_folder(tmp_path / "artifact", info=_info(tmp_path / "artifact"))
    settings = ServingSettings(
        drift_window_requests=WINDOW, drift_min_requests=100, drift_refresh_seconds=0
    )
    reference = load_drift_reference(
        tmp_path / "training_sets",
        fingerprint=served.card.dataset_fingerprint,
        max_support_size=settings.max_support_size,
    )
    assert reference is not None
    alerts: list[tuple[str, float, int]] = []
    engine = AdaptationEngine(
        served=served,
        features=_Store(),  # type: ignore[arg-type]
        serving=settings,
        drift_reference=reference,
        drift_alarm=DriftAlarm(threshold=0.25, alert=lambda *alert: alerts.append(alert)),
    )
    engine.warm_up()  # scores the reference's users: the predicted-score bins
    popularity = (contract.DRIFT_PSI, "item_popularity")

    rng = np.random.default_rng(1)
    _traffic(engine, _supports(rng, WINDOW, _popularity()))  # as in training
    stable = scrape(engine)
    assert stable[(contract.DRIFT_WINDOW_REQUESTS, "")] == WINDOW
    assert stable[popularity] < 0.1
    assert stable[(contract.COLD_START_SHARE, "")] == 0.0
    assert stable[(contract.REFERENCE_COLD_START_SHARE, "")] == 0.0
    assert stable[(contract.OFFLINE_MAE, "")] == pytest.approx(0.8)
    assert stable[(contract.OFFLINE_HIT_RATE, "")] == pytest.approx(0.6)
    for statistic in contract.DRIFT_STATISTICS:
        assert (contract.DRIFT_PSI, statistic) in stable
    assert [statistic for statistic, _psi, _n in alerts if statistic == "item_popularity"] == []

    tail = np.zeros(N_ITEMS)
    tail[N_ITEMS // 2 :] = 1.0  # the less popular half of the catalogue only
    _traffic(engine, _supports(rng, WINDOW, tail / tail.sum()))
    shifted = scrape(engine)
    assert shifted[popularity] > 0.25
    # The service's own alarm (drift_alert notifications) fired once for that statistic.
    fired = [(psi, n) for statistic, psi, n in alerts if statistic == "item_popularity"]
    assert len(fired) == 1 and fired[0][0] >= 0.25 and fired[0][1] >= 100
