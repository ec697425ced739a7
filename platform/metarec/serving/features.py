"""User and item features from the Feast online store, with the item matrix cached in memory.

Items: every item id of the applied ``item_profile`` source is read from the online store once
and encoded into one int64 matrix (the model's item columns). Users: one online lookup per user,
remembered until the materialisation changes. A change is noticed by :meth:`FeatureCache.refresh`
comparing the feature views' materialisation intervals (and the applied snapshot) in the Feast
registry; the service calls it on a timer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore

from metarec.config import Settings
from metarec.errors import FeatureStoreError
from metarec.features.store import ITEM_VIEWS, USER_VIEWS, applied_snapshot_id, open_store
from metarec.training.encoding import USER_FIELDS, FeatureEncoder

USER_ID_FIELD = "user_id"
ITEM_COLUMNS = ("release_year", "genres")


@dataclass(frozen=True)
class UserFeatures:
    """One user's encoded attribute codes and recent ratings (newest first)."""

    user_id: int
    codes: np.ndarray  # (W,) int64, only the user columns are meaningful
    recent_item_ids: tuple[int, ...]
    recent_ratings: tuple[float, ...]


@dataclass(frozen=True)
class ItemMatrix:
    """Every item's encoded codes (user columns zero) and where each id's row is."""

    item_ids: np.ndarray  # (N,) int64, ascending
    codes: np.ndarray  # (N, W) int64
    index: dict[int, int]
    signature: tuple[Any, ...]


def user_columns(encoder: FeatureEncoder) -> np.ndarray:
    """Columns of an encoded row that come from the user (attributes and user id)."""
    names = (*USER_FIELDS, USER_ID_FIELD)
    return np.array([i for i, n in enumerate(encoder.field_names) if n in names], dtype=np.int64)


def compose_rows(encoder: FeatureEncoder, user: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Rows for (user, item) pairs: item codes with the user's columns filled in.

    Equal to ``encoder.encode`` of the joined feature rows, since every column is encoded on
    its own.

    Args:
        encoder: The model's encoder.
        user: The user's codes (W,).
        items: Item codes (N, W).

    Returns:
        (N, W) int64.
    """
    rows = items.copy()
    cols = user_columns(encoder)
    rows[:, cols] = user[cols]
    return rows


def materialization_signature(store: FeatureStore) -> tuple[Any, ...]:
    """What changes when features are re-applied or re-materialised."""
    views = {v.name: v for v in store.list_feature_views(allow_cache=False)}
    ends = tuple(
        (name, max((end for _, end in views[name].materialization_intervals), default=None))
        for name in (*USER_VIEWS, *ITEM_VIEWS)
        if name in views
    )
    return (applied_snapshot_id(store), ends)


class FeatureCache:
    """Online features for one encoder; thread-safe; refreshed on a materialisation change."""

    def __init__(self, settings: Settings, *, encoder: FeatureEncoder, max_users: int = 50_000):
        """Open the store and load the item matrix.

        Args:
            settings: MetaRec settings (Feast configuration).
            encoder: The served model's encoder.
            max_users: Users remembered (least recently used are forgotten).
        """
        self._store = open_store(settings)
        self._encoder = encoder
        self._max_users = max_users
        self._lock = threading.Lock()
        self._users: OrderedDict[int, UserFeatures | None] = OrderedDict()
        self._user_refs = self._refs(USER_VIEWS)
        self._item_refs = [f"item_profile:{c}" for c in ITEM_COLUMNS]
        self._items = self._load_items()

    def _refs(self, views: tuple[str, ...]) -> list[str]:
        return [
            f"{view.name}:{field.name}"
            for view in self._store.list_feature_views()
            if view.name in views
            for field in view.features
        ]

    @property
    def items(self) -> ItemMatrix:
        """The cached item matrix."""
        return self._items

    @property
    def materialized_at(self) -> str | None:
        """Latest materialisation end of the item view (ISO), when known."""
        for name, end in self._items.signature[1]:
            if name == "item_profile" and end is not None:
                return end.isoformat()
        return None

    def _item_ids(self) -> np.ndarray:
        view = self._store.get_feature_view("item_profile")
        path = view.batch_source.path
        try:
            ids = pd.read_parquet(path, columns=["item_id"])["item_id"]
        except Exception as exc:
            raise FeatureStoreError(
                f"Cannot read the item ids of the applied item_profile source {path} ({exc}).",
                fix="run `metarec features apply` over an existing snapshot.",
            ) from exc
        return np.unique(ids.to_numpy(np.int64))

    def _load_items(self) -> ItemMatrix:
        signature = materialization_signature(self._store)
        ids = self._item_ids()
        frame = self._store.get_online_features(
            features=self._item_refs, entity_rows=[{"item_id": int(i)} for i in ids]
        ).to_df()
        present = frame[list(ITEM_COLUMNS)].notna().any(axis=1).to_numpy()
        frame = frame[present].reset_index(drop=True)
        ids = frame["item_id"].to_numpy(np.int64)
        for name in USER_FIELDS:
            frame[name] = "unknown"
        frame["user_id"] = 0
        codes = self._encoder.encode(frame)
        return ItemMatrix(
            item_ids=ids,
            codes=codes,
            index={int(i): n for n, i in enumerate(ids)},
            signature=signature,
        )

    def refresh(self) -> bool:
        """Reload items and forget users when the materialisation changed; True if it did."""
        signature = materialization_signature(self._store)
        if signature == self._items.signature:
            return False
        items = self._load_items()
        with self._lock:
            self._items = items
            self._users.clear()
        return True

    def cached_user(self, user_id: int) -> tuple[bool, UserFeatures | None]:
        """``(True, features or None)`` when the user was looked up already, else (False, None).

        Never touches the online store, so the event loop may call it directly.
        """
        with self._lock:
            if user_id in self._users:
                self._users.move_to_end(user_id)
                return True, self._users[user_id]
        return False, None

    def user(self, user_id: int) -> UserFeatures | None:
        """The user's features, or None when the online store does not know the user."""
        found, features = self.cached_user(user_id)
        if found:
            return features
        features = self._load_user(user_id)
        with self._lock:
            self._users[user_id] = features
            while len(self._users) > self._max_users:
                self._users.popitem(last=False)
        return features

    def _load_user(self, user_id: int) -> UserFeatures | None:
        row = self._store.get_online_features(
            features=self._user_refs, entity_rows=[{"user_id": user_id}]
        ).to_dict()
        values = {k: v[0] for k, v in row.items() if k != "user_id"}
        if all(v is None for v in values.values()):
            return None
        frame = pd.DataFrame(
            [
                {
                    **{name: values.get(name) for name in USER_FIELDS},
                    "user_id": user_id,
                    "item_id": 0,
                    "release_year": None,
                    "genres": "",
                }
            ]
        )
        codes = self._encoder.encode(frame)[0]
        items = values.get("recent_item_ids") or []
        ratings = values.get("recent_ratings") or []
        return UserFeatures(
            user_id=user_id,
            codes=codes,
            recent_item_ids=tuple(int(i) for i in items),
            recent_ratings=tuple(float(r) for r in ratings),
        )
