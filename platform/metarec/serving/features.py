"""User and item features from the Feast online store, with the item matrix cached in memory.

What is read follows the served model's encoder (its card's input fields): every field of a side
that has a Feast view is read as ``"{view}:{name}"`` (id fields such as ``user_id`` have no view
and are not read). Items: every item id of the item views' batch sources (``item_profile``'s
when the encoder reads no item view) is read from the online store once and encoded into one
float32 matrix (the model's item columns; user columns zero). Users: one online lookup per user
(its fields and, when the store has the view, its recent ratings: the default support set),
remembered until the materialisation changes. A change is noticed by
:meth:`FeatureCache.refresh` comparing the watched views' materialisation intervals (and the
applied snapshot) in the Feast registry; the service calls it on a timer.

Ids are the entity keys' type in Feast: integers (``Int64`` keys), or a team's text ids
(``String`` keys, ``c001``, ``sku-001``): then item ids are ``str`` (the item matrix's
``item_ids`` an object array, sorted), users are looked up by their text id and a user's recent
items are text ids.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore

from metarec.config import Settings
from metarec.errors import FeatureStoreError
from metarec.features.store import EntityId, applied_snapshot_id, open_store
from metarec.training.encoding import EncodedField, FeatureEncoder

# Where item ids come from when the encoder reads no item view (an encoder of ids only).
DEFAULT_ITEM_VIEW = "item_profile"
# The user's recent ratings: the default support set (not a model input).
RECENT_VIEW = "user_recent_ratings"
RECENT_FIELDS = ("recent_item_ids", "recent_ratings")


def native_id(value: Any) -> EntityId:
    """An id as a plain Python value: a numpy integer becomes an int, text stays text."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return str(value)


def id_array(values: Any, *, text: bool) -> np.ndarray:
    """Ids as an array: int64, or (text ids) an object array of ``str``."""
    if text:
        return np.array([str(v) for v in values], dtype=object)
    return np.asarray(values).astype(np.int64)


@dataclass(frozen=True)
class UserFeatures:
    """One user's encoded row and recent ratings (newest first)."""

    user_id: EntityId
    codes: np.ndarray  # (W,) float32, only the user columns are meaningful
    recent_item_ids: tuple[EntityId, ...]
    recent_ratings: tuple[float, ...]


@dataclass(frozen=True)
class ItemMatrix:
    """Every item's encoded row (user columns zero) and where each id's row is."""

    item_ids: np.ndarray  # (N,) int64 (text ids: object array of str), ascending
    codes: np.ndarray  # (N, W) float32
    index: dict[EntityId, int]
    signature: tuple[Any, ...]


def read_fields(encoder: FeatureEncoder, side: str) -> list[EncodedField]:
    """A side's fields that are read from a Feast view (id fields are not), in column order."""
    return [f for f in encoder.select(side=side) if f.view is not None]


def field_refs(fields: Iterable[EncodedField]) -> list[str]:
    """Feast feature references (``"view:name"``) of fields read from a view."""
    return [f"{f.view}:{f.name}" for f in fields]


def item_views(encoder: FeatureEncoder) -> tuple[str, ...]:
    """The views item ids are read from: the item fields' views, else ``item_profile``."""
    views = tuple(dict.fromkeys(str(f.view) for f in read_fields(encoder, "item")))
    return views or (DEFAULT_ITEM_VIEW,)


def user_columns(encoder: FeatureEncoder) -> np.ndarray:
    """Columns of an encoded row that come from the user (every user-side field, the id too)."""
    return np.array(encoder.columns(encoder.select(side="user")), dtype=np.int64)


def compose_rows(encoder: FeatureEncoder, user: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Rows for (user, item) pairs: item rows with the user's columns filled in.

    Equal to ``encoder.encode`` of the joined feature rows, since every field is encoded on
    its own.

    Args:
        encoder: The model's encoder.
        user: The user's encoded row (W,).
        items: Item rows (N, W).

    Returns:
        (N, W), the dtype of ``items`` (float32 for encoded rows).
    """
    rows = items.copy()
    cols = user_columns(encoder)
    rows[:, cols] = user[cols]
    return rows


def materialization_signature(store: FeatureStore, views: Iterable[str]) -> tuple[Any, ...]:
    """What changes when ``views`` are re-materialised or the features re-applied.

    Args:
        store: The feature store.
        views: The views whose materialisation is watched (absent ones are left out).

    Returns:
        ``(applied snapshot id, ((view, latest materialisation end), ...))``.
    """
    by_name = {v.name: v for v in store.list_feature_views(allow_cache=False)}
    ends = tuple(
        (name, max((end for _, end in by_name[name].materialization_intervals), default=None))
        for name in dict.fromkeys(views)
        if name in by_name
    )
    return (applied_snapshot_id(store), ends)


class FeatureCache:
    """Online features for one encoder; thread-safe; refreshed on a materialisation change."""

    def __init__(self, settings: Settings, *, encoder: FeatureEncoder, max_users: int = 50_000):
        """Open the store and load the item matrix.

        Args:
            settings: MetaRec settings (Feast configuration).
            encoder: The served model's encoder (which fields are read, and how encoded).
            max_users: Users remembered (least recently used are forgotten).
        """
        self._store = open_store(settings)
        self._encoder = encoder
        self._max_users = max_users
        self._lock = threading.Lock()
        self._users: OrderedDict[EntityId, UserFeatures | None] = OrderedDict()
        self._text_users = _text_key(self._store, "user")
        self._text_items = _text_key(self._store, "item")
        self._user_fields = read_fields(encoder, "user")
        self._item_fields = read_fields(encoder, "item")
        self._user_cols = user_columns(encoder)
        self._item_views = item_views(encoder)
        self._recent_refs = self._recent_refs_in_store()
        self._user_refs = field_refs(self._user_fields) + self._recent_refs
        self._item_refs = field_refs(self._item_fields)
        recent = (RECENT_VIEW,) if self._recent_refs else ()
        views = [str(f.view) for f in encoder.fields if f.view is not None]
        self._views = tuple(dict.fromkeys([*views, *self._item_views, *recent]))
        self._items = self._load_items()

    def _recent_refs_in_store(self) -> list[str]:
        """The recent-ratings refs, when the store has the view (else no default support)."""
        views = {v.name: v for v in self._store.list_feature_views()}
        if RECENT_VIEW not in views:
            return []
        names = {f.name for f in views[RECENT_VIEW].features}
        return [f"{RECENT_VIEW}:{n}" for n in RECENT_FIELDS if n in names]

    @property
    def text_users(self) -> bool:
        """Whether the store's user ids are text (``String`` keys) rather than integers."""
        return self._text_users

    @property
    def text_items(self) -> bool:
        """Whether the store's item ids are text (``String`` keys) rather than integers."""
        return self._text_items

    @property
    def user_refs(self) -> list[str]:
        """Feature references read for a user (its fields, then its recent ratings)."""
        return list(self._user_refs)

    @property
    def item_refs(self) -> list[str]:
        """Feature references read for the items."""
        return list(self._item_refs)

    @property
    def views(self) -> tuple[str, ...]:
        """The views whose materialisation :meth:`refresh` watches."""
        return self._views

    @property
    def items(self) -> ItemMatrix:
        """The cached item matrix."""
        return self._items

    @property
    def materialized_at(self) -> str | None:
        """Latest materialisation end of the item views (ISO), when known."""
        ends = [end for name, end in self._items.signature[1] if name in self._item_views]
        known = [end for end in ends if end is not None]
        return max(known).isoformat() if known else None

    def _item_ids(self) -> np.ndarray:
        """Every item id of the item views' batch sources, ascending (text ids: ``str``)."""
        parts = []
        for name in self._item_views:
            path = getattr(self._store.get_feature_view(name).batch_source, "path", None)
            try:
                parts.append(pd.read_parquet(path, columns=["item_id"])["item_id"])
            except Exception as exc:
                raise FeatureStoreError(
                    f"Cannot read the item ids of the applied {name} source {path} ({exc}).",
                    fix="run `metarec features apply` over an existing snapshot.",
                ) from exc
        ids = pd.concat(parts).dropna()
        return np.unique(id_array(ids.to_numpy(), text=self._text_items))

    def _load_items(self) -> ItemMatrix:
        signature = materialization_signature(self._store, self._views)
        ids = self._item_ids()
        columns = [f.name for f in self._item_fields]
        if self._item_refs:
            frame = self._store.get_online_features(
                features=self._item_refs, entity_rows=[{"item_id": native_id(i)} for i in ids]
            ).to_df()
            present = frame[columns].notna().any(axis=1).to_numpy()
            frame = frame.loc[present, [*columns, "item_id"]].reset_index(drop=True)
        else:  # an encoder of ids only: every item of the source
            frame = pd.DataFrame({"item_id": ids})
        ids = id_array(frame["item_id"].to_numpy(), text=self._text_items)
        codes = self._encoder.encode(frame)
        codes[:, self._user_cols] = 0  # user columns empty (a missing value may have a code)
        return ItemMatrix(
            item_ids=ids,
            codes=codes,
            index={native_id(i): n for n, i in enumerate(ids)},
            signature=signature,
        )

    def refresh(self) -> bool:
        """Reload items and forget users when the materialisation changed; True if it did."""
        signature = materialization_signature(self._store, self._views)
        if signature == self._items.signature:
            return False
        items = self._load_items()
        with self._lock:
            self._items = items
            self._users.clear()
        return True

    def cached_user(self, user_id: EntityId) -> tuple[bool, UserFeatures | None]:
        """``(True, features or None)`` when the user was looked up already, else (False, None).

        Never touches the online store, so the event loop may call it directly.
        """
        with self._lock:
            if user_id in self._users:
                self._users.move_to_end(user_id)
                return True, self._users[user_id]
        return False, None

    def user(self, user_id: EntityId) -> UserFeatures | None:
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

    def _load_user(self, user_id: EntityId) -> UserFeatures | None:
        """Read and encode one user; None when none of its read features has a value.

        An encoder that reads no user view from a store without recent ratings reads nothing:
        the user is then known by its id alone.
        """
        values: dict[str, Any] = {}
        if self._user_refs:
            row = self._store.get_online_features(
                features=self._user_refs, entity_rows=[{"user_id": user_id}]
            ).to_dict()
            values = {k: v[0] for k, v in row.items() if k != "user_id"}
            if all(_missing(v) for v in values.values()):
                return None
        fields = {f.name: values.get(f.name) for f in self._user_fields}
        codes = self._encoder.encode(pd.DataFrame([{**fields, "user_id": user_id}]))[0]
        return UserFeatures(
            user_id=user_id,
            codes=codes,
            recent_item_ids=tuple(
                str(i) if self._text_items else int(i)
                for i in _sequence(values.get(RECENT_FIELDS[0]))
            ),
            recent_ratings=tuple(float(r) for r in _sequence(values.get(RECENT_FIELDS[1]))),
        )


def _text_key(store: FeatureStore, entity: str) -> bool:
    """Whether ``entity``'s join key is text (``String``); False when it is not registered."""
    from feast import ValueType

    try:
        return store.get_entity(entity).value_type is ValueType.STRING
    except Exception:  # no such entity: ids are integers, as every snapshot without text ids
        return False


def _missing(value: Any) -> bool:
    """No value: None (Feast's missing online value) or a float NaN."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def _sequence(value: Any) -> Sequence[Any]:
    """A list feature's values (empty when missing)."""
    return [] if value is None else list(value)
