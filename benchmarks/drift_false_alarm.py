"""Drift false alarms on MovieLens-100K: normal new and returning users' traffic vs real shifts.

Builds the drift reference from the first 80 % of users (by a seeded permutation) with the
library's :func:`~metarec.training.drift_profile.build_reference` (support-sized samples of the
users' histories: half their first ``k`` ratings, half their ``k`` most recent, ``k`` in the
training config's support range) and, for comparison, with the two constructions it replaced:
every user's first ``k`` ratings (:func:`first_ratings_reference`) and every user's whole
history (:func:`old_reference`), both kept here only. Then it computes the service's PSIs
(:class:`~metarec.serving.drift.DriftMonitor`, one request per held-out user) for:

* ``new_users``: held-out users' first ``k`` ratings, ``k`` in the support range;
* ``new_users_first_10``: held-out users' first 10 ratings (every request the same size);
* ``returning_users_last_20``: held-out users' 20 most recent ratings (a known user's support
  from the online store);
* ``tail_30pct``: the new users' supports with 30 % of their items replaced by tail items;
* ``tail_only``: supports of the same sizes made of tail items only;
* ``long_supports``: held-out users' first 60 to 100 ratings (beyond the support range).

Tail items: those in the reference's two least popular deciles (the last 20 % of the
interaction mass). Prints one JSON object.

    python benchmarks/drift_false_alarm.py [--data /work/shared/datasets/ml-100k.zip]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from metarec.config import ServingSettings
from metarec.data.movielens import read_ml100k
from metarec.serving.drift import DriftMonitor
from metarec.serving.features import ItemMatrix
from metarec.training.config import TrainingConfig
from metarec.training.drift_profile import (
    DECILES,
    DriftReference,
    build_reference,
    first_ratings,
    popularity_deciles,
)
from prometheus_client import CollectorRegistry

VERSIONS = itertools.count(1)


def old_reference(frame: pd.DataFrame, *, max_support_size: int) -> DriftReference:
    """The construction replaced: whole histories (capped) with decile size bins, item shares
    by the training set's whole interaction mass."""
    sizes = np.minimum(frame.groupby("user_id").size().to_numpy(), max_support_size)
    quantiles = np.quantile(sizes, np.linspace(0.1, 0.9, 9))
    edges = np.unique(np.concatenate([[1.0], [q for q in quantiles if q > 1]]))
    counts = np.bincount(np.searchsorted(edges, sizes, side="right"), minlength=len(edges) + 1)
    popularity = frame["item_id"].value_counts(sort=True)
    deciles = popularity_deciles(popularity.to_numpy())
    mass = np.bincount(deciles, weights=popularity.to_numpy(), minlength=DECILES)
    return DriftReference(
        source="old: whole histories",
        support_size_edges=edges.tolist(),
        support_size_shares=(counts / counts.sum()).tolist(),
        cold_start_share=0.0,
        item_ids=[int(i) for i in popularity.index],
        item_bins=deciles.tolist(),
        item_popularity_shares=[*(mass / mass.sum()).tolist(), 0.0],
    )


def first_ratings_reference(
    frame: pd.DataFrame, *, config: TrainingConfig, seed: int
) -> DriftReference:
    """The construction of the first try: every user's first ``k`` ratings (new users only)."""
    low, high = config.train_support_min, config.train_support_max
    supports = first_ratings(frame, support_min=low, support_max=high, seed=seed)
    return build_reference(
        frame, support_min=low, support_max=high, source="first ratings", supports=supports
    )


def psi_of(reference: DriftReference, items: ItemMatrix, supports: list[list[int]]) -> dict:
    """The monitor's PSI per statistic over one window holding every support set."""
    monitor = DriftMonitor(
        model_version=f"bench:v{next(VERSIONS)}",
        registry=CollectorRegistry(),
        reference=reference,
        window=len(supports),
        min_requests=1,
        refresh_seconds=1e9,
    )
    for support in supports:
        monitor.record(items, np.array([items.index[i] for i in support], dtype=np.int64))
    values = monitor.values()
    return {k: None if v is None else round(v, 4) for k, v in values.items() if v is not None}


def traffic(
    held_out: pd.DataFrame, reference: DriftReference, config: TrainingConfig, seed: int
) -> dict[str, list[list[int]]]:
    """The request sets measured (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    low, high = config.train_support_min, config.train_support_max
    supports = [
        rows["item_id"].tolist()
        for _, rows in first_ratings(
            held_out, support_min=low, support_max=high, seed=seed
        ).groupby("user_id")
    ]
    ordered = held_out.sort_values(["user_id", "event_timestamp"], kind="stable")
    first = ordered.groupby("user_id", sort=True)["item_id"].apply(list)
    bins = dict(zip(reference.item_ids, reference.item_bins, strict=True))
    tail = np.array([i for i, b in bins.items() if b >= DECILES - 2])

    def replaced(support: list[int], share: float) -> list[int]:
        out = list(support)
        for at in rng.choice(len(out), size=round(share * len(out)), replace=False):
            out[at] = int(rng.choice(tail))
        return out

    return {
        "new_users": supports,
        "new_users_first_10": [items[:10] for items in first],
        "returning_users_last_20": [items[-20:] for items in first],
        "tail_30pct": [replaced(s, 0.3) for s in supports],
        "tail_only": [replaced(s, 1.0) for s in supports],
        "long_supports": [items[: int(rng.integers(60, 101))] for items in first],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/datasets/ml-100k.zip"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame = read_ml100k(args.data).interactions
    frame = frame[["user_id", "item_id", "rating", "event_timestamp"]]
    users = np.random.default_rng(args.seed).permutation(np.sort(frame["user_id"].unique()))
    cut = int(0.8 * len(users))
    train = frame[frame["user_id"].isin(users[:cut])]
    held_out = frame[frame["user_id"].isin(users[cut:])]
    config = TrainingConfig()
    new = build_reference(
        train,
        support_min=config.train_support_min,
        support_max=config.train_support_max,
        source="new",
        seed=args.seed,
    )
    old = old_reference(train, max_support_size=ServingSettings().max_support_size)
    first = first_ratings_reference(train, config=config, seed=args.seed)
    ids = np.sort(frame["item_id"].unique())
    items = ItemMatrix(
        ids, np.zeros((len(ids), 1), np.float32), {int(i): n for n, i in enumerate(ids)}, ("b",)
    )
    cases = traffic(held_out, new, config, seed=args.seed + 1)
    result = {
        "dataset": "ml-100k",
        "reference_users": cut,
        "held_out_users": len(users) - cut,
        "support_range": [config.train_support_min, config.train_support_max],
        "psi": {
            name: {
                "reference": psi_of(new, items, s),
                "first_ratings_reference": psi_of(first, items, s),
                "whole_histories_reference": psi_of(old, items, s),
            }
            for name, s in cases.items()
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
