"""Ranking the whole catalogue for a user: the data, the tasks, the scores and the blend.

The catalogue is every item of the training set, in ascending item id (position = row of every
(·, I) array). Histories are each user's ratings in time order (the training set's order).

* :class:`RankingData` cuts a prepared training set into what the ranking code needs: item and
  user codes for :class:`~metarec.learning.ranker.Ranker`, histories, and the implicit matrix of
  the meta-training users (existing items only: new items and held-out users never reach it).
* :meth:`RankingData.tasks` cuts evaluation tasks: the first K ratings (time or random order)
  are the support, the later ratings of 4 or 5 are the relevant items.
* The scores of a ranker (:func:`ranker_scores`) or an EASE fold-in (:func:`ease_scores`), their
  masking, per-user standardisation and NDCG@20; the served ranker blends the meta-learned
  ranker with the rating-weighted EASE fold-in (:func:`blend`; the weight and EASE's λ are
  chosen on validation users in :mod:`metarec.training.ranking_choice`).

The rankers are trained in :mod:`metarec.training.ranker_training`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from metarec.learning.item_models import EASE, implicit_weights
from metarec.learning.ranker import Ranker, RankerConfig, adapted_scores
from metarec.learning.ranking_metrics import per_user_metrics
from metarec.training.encoding import DENSE, EncodedField, FeatureEncoder

ORDERS = ("time", "random")
KS = (5, 10, 20)
LIKED = 4.0


def cell_name(order: str, k: int) -> str:
    """``"random@10"``: the key of one (order, support size) cell of the ranking table."""
    return f"{order}@{k}"


@dataclass(frozen=True)
class Cells:
    """Which (order, K) cells to evaluate."""

    orders: tuple[str, ...] = ORDERS
    ks: tuple[int, ...] = KS

    def __iter__(self):  # type: ignore[no-untyped-def]
        # K = 0 (a new user with no ratings yet) has no order: one cell, in the first order.
        return (
            (order, k) for order in self.orders for k in self.ks if k > 0 or order == self.orders[0]
        )

    @classmethod
    def parse(cls, names: Sequence[str] | None) -> Cells:
        """From cell names like ``random@10`` (None: every cell)."""
        if not names:
            return cls()
        orders = tuple(dict.fromkeys(n.split("@")[0] for n in names))
        ks = tuple(sorted({int(n.split("@")[1]) for n in names}))
        return cls(orders=orders, ks=ks)


def _ranker_fields(encoder: FeatureEncoder, side: str) -> list[EncodedField]:
    """A side's fields in ranker row order: categorical, bags, dense (no ``user_id``)."""
    fields = [
        *encoder.select(side=side, kinds=("categorical",)),
        *encoder.select(side=side, kinds=("bag",)),
        *encoder.select(side=side, kinds=DENSE),
    ]
    return [f for f in fields if f.name != "user_id"]


def ranker_columns(encoder: FeatureEncoder) -> tuple[list[int], list[int]]:
    """Columns of an encoded row that feed the ranker: (user row, item row).

    Each row is its side's categorical codes, then its bags' codes, then its dense columns.
    The user id never feeds the ranker (a new user has none).
    """
    users = encoder.columns(_ranker_fields(encoder, "user"))
    items = encoder.columns(_ranker_fields(encoder, "item"))
    return users, items


def ranker_item_codes(encoder: FeatureEncoder, codes: np.ndarray) -> np.ndarray:
    """Item rows for the ranker (N, item row width) from encoded rows (N, W)."""
    _, items = ranker_columns(encoder)
    return np.ascontiguousarray(codes[:, items])


def ranker_user_codes(encoder: FeatureEncoder, codes: np.ndarray) -> np.ndarray:
    """User rows for the ranker (N, user row width) from encoded rows (N, W)."""
    users, _ = ranker_columns(encoder)
    return np.ascontiguousarray(codes[:, users])


def ranker_config_for(encoder: FeatureEncoder, *, dim: int, inner_lr_init: float) -> RankerConfig:
    """The :class:`RankerConfig` matching an encoder's fields."""
    user, item = _ranker_fields(encoder, "user"), _ranker_fields(encoder, "item")
    return RankerConfig(
        user_field_sizes=tuple(f.size for f in user if f.kind == "categorical"),
        item_field_sizes=tuple(f.size for f in item if f.kind == "categorical"),
        item_bags=tuple((f.size, f.width) for f in item if f.kind == "bag"),
        user_bags=tuple((f.size, f.width) for f in user if f.kind == "bag"),
        item_dense_width=sum(f.width for f in item if f.kind in DENSE),
        user_dense_width=sum(f.width for f in user if f.kind in DENSE),
        dim=dim,
        inner_lr_init=inner_lr_init,
    )


@dataclass(frozen=True)
class History:
    """One user's ratings in time order: catalogue positions and ratings."""

    items: np.ndarray  # (n,) int64
    ratings: np.ndarray  # (n,) float32


@dataclass(frozen=True)
class RankingTask:
    """One user's ranking problem: the support set, the relevant items, the ranked items."""

    user_id: int
    support: np.ndarray  # (K,) catalogue positions
    support_ratings: np.ndarray  # (K,)
    relevant: np.ndarray  # (R,) positions of later items rated ≥ 4 inside the ranked set


@dataclass
class RankingData:
    """Catalogue, codes, histories and the meta-training users' implicit matrix."""

    item_ids: np.ndarray  # (I,) ascending
    item_codes: np.ndarray  # (I, n_item_fields + max_genres)
    new_item: np.ndarray  # (I,) bool
    user_codes: dict[int, np.ndarray]  # user → (n_user_fields,)
    item_rows: np.ndarray  # (I, W) encoded rows of the items, user columns 0 (rating model)
    user_rows: dict[int, np.ndarray]  # user → (W,) encoded row, only user columns non-zero
    histories: dict[int, History]
    train_users: list[int]
    train_ratings: np.ndarray  # (n_train, I) rating, 0 = unrated; existing items only

    @classmethod
    def build(
        cls,
        *,
        encoder: FeatureEncoder,
        codes: np.ndarray,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        ratings: np.ndarray,
        new_item_rows: np.ndarray,
        train_users: Sequence[int],
    ) -> RankingData:
        """Build from encoded training-set rows (N, W) in (user, time) order."""
        catalogue, first, position = np.unique(item_ids, return_index=True, return_inverse=True)
        new_item = np.zeros(len(catalogue), dtype=bool)
        new_item[position[new_item_rows]] = True
        user_order = np.argsort(user_ids, kind="stable")  # keeps time order inside a user
        users_sorted = user_ids[user_order]
        bounds = np.flatnonzero(np.diff(users_sorted)) + 1
        histories: dict[int, History] = {}
        user_codes: dict[int, np.ndarray] = {}
        all_user_codes = ranker_user_codes(encoder, codes)
        user_cols, _ = ranker_columns(encoder)
        user_only = np.zeros_like(codes)
        user_only[:, user_cols] = codes[:, user_cols]
        item_rows = codes[first].copy()
        item_rows[:, user_cols] = 0
        user_rows: dict[int, np.ndarray] = {}
        for rows in np.split(user_order, bounds):
            if not len(rows):
                continue
            user = int(user_ids[rows[0]])
            histories[user] = History(
                position[rows].astype(np.int64), ratings[rows].astype(np.float32)
            )
            user_codes[user] = all_user_codes[rows[0]]
            user_rows[user] = user_only[rows[0]]
        train = [u for u in train_users if u in histories]
        rated = np.zeros((len(train), len(catalogue)), np.float32)
        for n, user in enumerate(train):
            h = histories[user]
            keep = ~new_item[h.items]
            rated[n, h.items[keep]] = h.ratings[keep]
        return cls(
            item_ids=catalogue.astype(np.int64),
            item_codes=ranker_item_codes(encoder, codes[first]),
            new_item=new_item,
            user_codes=user_codes,
            item_rows=item_rows,
            user_rows=user_rows,
            histories=histories,
            train_users=train,
            train_ratings=rated,
        )

    @cached_property
    def train_binary(self) -> np.ndarray:
        """(n_train, I) 1 where a meta-training user rated the (existing) item."""
        return (self.train_ratings > 0).astype(np.float32)

    @cached_property
    def train_matrix(self) -> np.ndarray:
        """(n_train, I) rating weights (4–5 → 1, 1–3 → 0.5) where rated, else 0."""
        rated = self.train_ratings > 0
        weights = np.zeros_like(self.train_ratings)
        weights[rated] = implicit_weights(self.train_ratings[rated], scheme="weighted")
        return weights

    @cached_property
    def graded(self) -> bool:
        """Whether the interactions carry grades (ratings), not only "liked" (implicit events).

        Without grades, an item's mean rating says nothing: the ``item_mean`` baseline is off.
        """
        rated = self.train_ratings[self.train_ratings > 0]
        return bool(len(rated)) and bool((rated != rated[0]).any())

    @property
    def n_items(self) -> int:
        """Catalogue size ``I``."""
        return len(self.item_ids)

    def ordered(self, user: int, order: str, *, seed: int) -> History:
        """The user's history in time order, or in a seeded random order (per user)."""
        h = self.histories[user]
        if order == "time":
            return h
        perm = np.random.default_rng([seed, 5, user]).permutation(len(h.items))
        return History(h.items[perm], h.ratings[perm])

    def tasks(
        self,
        users: Sequence[int],
        *,
        k: int,
        order: str,
        seed: int,
        support_from: np.ndarray | None,
        ranked: np.ndarray,
    ) -> list[RankingTask]:
        """Evaluation tasks: the first ``k`` ratings as support, later liked items as relevant.

        Support = the first ``k`` ratings (of ``support_from`` items); relevant = the later
        ratings ≥ 4 among ``ranked`` items. Users with fewer ratings or nothing relevant left
        are skipped. ``k = 0`` is a new user with no support yet: every liked item is relevant.

        Args:
            users: Users to cut.
            k: Support size.
            order: ``time`` or ``random``.
            seed: Seeds the random order.
            support_from: Items the support is drawn from (I,) bool; None: any.
            ranked: Items that are ranked (I,) bool.
        """
        out = []
        for user in users:
            if user not in self.histories:
                continue
            h = self.ordered(int(user), order, seed=seed)
            pool = np.ones(len(h.items), bool) if support_from is None else support_from[h.items]
            support_pos = np.flatnonzero(pool)[:k]
            if len(support_pos) < k:
                continue
            rest = np.ones(len(h.items), bool)
            if k > 0:
                rest[: support_pos[-1] + 1] = False  # only what comes after the support
            support_items = h.items[support_pos]
            liked = rest & (h.ratings >= LIKED) & ranked[h.items]
            relevant = np.setdiff1d(h.items[liked], support_items)
            if len(relevant) == 0:
                continue
            out.append(RankingTask(int(user), support_items, h.ratings[support_pos], relevant))
        return out


def support_matrix(tasks: Sequence[RankingTask], n_items: int, *, scheme: str) -> np.ndarray:
    """Fold-in rows (T, I): each task's support items with implicit weights."""
    out = np.zeros((len(tasks), n_items), np.float32)
    for t, task in enumerate(tasks):
        out[t, task.support] = implicit_weights(task.support_ratings, scheme=scheme)  # type: ignore[arg-type]
    return out


def padded_support(tasks: Sequence[RankingTask]) -> tuple[torch.Tensor, torch.Tensor]:
    """Support indices (T, S) and rating weights (T, S), padded with weight 0."""
    s_len = max(1, max(len(t.support) for t in tasks))
    idx = np.zeros((len(tasks), s_len), np.int64)
    w = np.zeros((len(tasks), s_len), np.float32)
    for n, task in enumerate(tasks):
        idx[n, : len(task.support)] = task.support
        w[n, : len(task.support)] = implicit_weights(task.support_ratings, scheme="weighted")
    return torch.from_numpy(idx), torch.from_numpy(w)


def mask_scores(scores: np.ndarray, tasks: Sequence[RankingTask], ranked: np.ndarray) -> np.ndarray:
    """Scores with the support items and the items outside ``ranked`` at -inf (a copy)."""
    out = np.where(ranked[None, :], scores, -np.inf).astype(np.float64)
    for t, task in enumerate(tasks):
        out[t, task.support] = -np.inf
    return out


def relevance(tasks: Sequence[RankingTask], n_items: int) -> np.ndarray:
    """(T, I) bool: the relevant items of each task."""
    out = np.zeros((len(tasks), n_items), bool)
    for t, task in enumerate(tasks):
        out[t, task.relevant] = True
    return out


def ndcg20(scores: np.ndarray, tasks: Sequence[RankingTask], ranked: np.ndarray) -> float:
    """Mean NDCG@20 of raw scores (support and unranked items removed)."""
    masked = mask_scores(scores, tasks, ranked)
    return float(per_user_metrics(masked, relevance(tasks, scores.shape[1]))["ndcg@20"].mean())


def standardise(scores: np.ndarray, tasks: Sequence[RankingTask], ranked: np.ndarray) -> np.ndarray:
    """Per-user z-scores over the ranked items minus the support (others: 0)."""
    masked = mask_scores(scores, tasks, ranked)
    finite = np.isfinite(masked)
    count = finite.sum(1, keepdims=True).clip(min=1)
    values = np.where(finite, masked, 0.0)
    mean = values.sum(1, keepdims=True) / count
    var = (np.where(finite, masked - mean, 0.0) ** 2).sum(1, keepdims=True) / count
    return np.where(finite, (values - mean) / np.sqrt(var + 1e-12), 0.0)


def blend(meta: np.ndarray, prior: np.ndarray, *, weight: float) -> np.ndarray:
    """The served ranker's scores: ``(1 − w)·meta + w·prior`` of per-user z-scores."""
    return (1.0 - weight) * meta + weight * prior


@torch.no_grad()
def ranker_scores(
    model: Ranker,
    data: RankingData,
    tasks: Sequence[RankingTask],
    *,
    steps: int,
    lr: float | None = None,
    batch_size: int = 512,
) -> np.ndarray:
    """Raw scores (T, I) of the catalogue for each task after adaptation (no masking)."""
    item_codes = torch.from_numpy(data.item_codes)
    tower = model.items(item_codes)
    out = []
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start : start + batch_size]
        idx, w = padded_support(chunk)
        codes = torch.from_numpy(np.stack([data.user_codes[t.user_id] for t in chunk]))
        s = adapted_scores(model, item_codes, codes, idx, w, steps=steps, lr=lr, tower=tower)
        out.append(s.numpy())
    return np.concatenate(out) if out else np.zeros((0, data.n_items), np.float32)


def ease_scores(
    ease: EASE, tasks: Sequence[RankingTask], n_items: int, *, scheme: str
) -> np.ndarray:
    """EASE fold-in scores (T, I) from each task's support set."""
    return ease.score(support_matrix(tasks, n_items, scheme=scheme))
