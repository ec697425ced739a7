"""User splits, new-item split and cold-start scenarios (MeLU, KDD 2019), as tasks.

* Users are split, seeded and disjoint, into meta-train / validation / test.
* Items are split by release year: the newest ~20 % (whole years) are "new" and never trained on.
  A training set without ``release_year`` (a team's own tables) splits them by the day of their
  first interaction instead.
* ``new_user``: test users rating existing items. ``new_item``: meta-train users rating new items.
  ``new_user_new_item``: test users rating new items.
* MeLU protocol: a user is evaluated when they have 13–100 ratings in the scenario; the query set
  is 10 random ratings, the support set the first ``k`` of the rest in a fixed random order (or
  all of them). Each user's draw depends only on (seed, user), so any subset of users gives the
  same tasks, and support sets of different sizes are nested.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from metarec.learning.tasks import Task

ALL = "all"


class Scenario(StrEnum):
    """Cold-start scenarios."""

    NEW_USER = "new_user"
    NEW_ITEM = "new_item"
    NEW_USER_NEW_ITEM = "new_user_new_item"


def parse_support_size(value: str | int) -> int | None:
    """``"all"`` → None (all but the query), otherwise a positive int."""
    if str(value).lower() == ALL:
        return None
    size = int(value)
    if size < 1:
        raise ValueError(f"support size must be >= 1 or 'all', got {value!r}")
    return size


class Split(BaseModel):
    """Which users and items play which role (recorded in the model card)."""

    model_config = ConfigDict(frozen=True)

    seed: int
    train_users: list[int]
    val_users: list[int]
    test_users: list[int]
    new_item_cutoff_year: int  # a release year, or a day number (``new_item_by``)
    new_item_by: Literal["release_year", "first_seen_day"] = "release_year"

    def is_new_item(self, df: pd.DataFrame) -> np.ndarray:
        """True for rows of items released (first seen) at or after the cutoff (unknown: no)."""
        basis = item_age_basis(df, by=self.new_item_by)
        return (basis >= self.new_item_cutoff_year).fillna(False).to_numpy(bool)


def new_item_basis(df: pd.DataFrame) -> Literal["release_year", "first_seen_day"]:
    """What new items are told by: the release year when the training set has one."""
    return "release_year" if "release_year" in df.columns else "first_seen_day"


def item_age_basis(df: pd.DataFrame, *, by: str) -> pd.Series:
    """Per row, its item's release year, or the day (since 1970) of the item's first interaction."""
    if by == "release_year":
        return pd.to_numeric(df["release_year"], errors="coerce")
    stamps = pd.to_datetime(df["event_timestamp"], utc=True)
    days = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(days=1)
    return days.groupby(df["item_id"]).transform("min").astype("float64")


def new_item_cutoff(df: pd.DataFrame, *, fraction: float) -> int:
    """The year (or day) from which about ``fraction`` of distinct items are newer or equal."""
    basis = item_age_basis(df, by=new_item_basis(df))
    years = basis.groupby(df["item_id"]).first()
    years = years.dropna().astype(int)
    candidates = sorted(years.unique())
    if not candidates:
        return 10_000
    share = {y: float((years >= y).mean()) for y in candidates}
    return min(candidates, key=lambda y: (abs(share[y] - fraction), -y))


def plan_split(
    df: pd.DataFrame,
    *,
    seed: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    new_item_fraction: float = 0.2,
    n_folds: int | None = None,
    test_fold: int = 0,
) -> Split:
    """Split users (seeded, disjoint) and choose the new-item cutoff year.

    With ``n_folds``, the seeded permutation of users is cut into ``n_folds`` folds, fold
    ``test_fold`` is the test set and the validation users are the first ``val_fraction`` of
    the rest: over the folds every user is a test user exactly once.
    """
    users = np.sort(df["user_id"].unique())
    order = np.random.default_rng([seed, 1]).permutation(users)
    n_val = round(len(users) * val_fraction)
    if n_folds is not None:
        if not 0 <= test_fold < n_folds:
            raise ValueError(f"test_fold must be in 0..{n_folds - 1}, got {test_fold}")
        folds = np.array_split(order, n_folds)
        test = folds[test_fold]
        order = np.concatenate([test, *(f for i, f in enumerate(folds) if i != test_fold)])
        n_test = len(test)
    else:
        n_test = round(len(users) * test_fraction)
    return Split(
        seed=seed,
        test_users=sorted(int(u) for u in order[:n_test]),
        val_users=sorted(int(u) for u in order[n_test : n_test + n_val]),
        train_users=sorted(int(u) for u in order[n_test + n_val :]),
        new_item_cutoff_year=new_item_cutoff(df, fraction=new_item_fraction),
        new_item_by=new_item_basis(df),
    )


@dataclass(frozen=True)
class UserRows:
    """Row indices (into the encoded array) of each user's ratings in one item group."""

    rows: dict[int, np.ndarray]

    @classmethod
    def build(cls, user_ids: np.ndarray, keep: np.ndarray) -> UserRows:
        """Group the indices of rows where ``keep`` is true by user."""
        index = np.flatnonzero(keep)
        users = user_ids[index]
        order = np.argsort(users, kind="stable")
        index, users = index[order], users[order]
        bounds = np.flatnonzero(np.diff(users)) + 1
        return cls(
            {
                int(u[0]): i
                for u, i in zip(np.split(users, bounds), np.split(index, bounds), strict=True)
                if len(u)
            }
        )


class TaskSource:
    """Encoded rows plus the grouping needed to cut them into tasks."""

    def __init__(
        self,
        *,
        x: np.ndarray,
        y: np.ndarray,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        new_item: np.ndarray,
    ) -> None:
        """Keep the encoded rows (N, W), ratings, ids and the new-item flag of every row."""
        self.x = x
        self.y = y.astype(np.float32)
        self.user_ids = user_ids.astype(np.int64)
        self.item_ids = item_ids.astype(np.int64)
        self.new_item = new_item
        self.existing = UserRows.build(self.user_ids, ~new_item)
        self.new = UserRows.build(self.user_ids, new_item)

    def task(self, user: int, rows: np.ndarray, *, query: np.ndarray, support: np.ndarray) -> Task:
        """A task from positions ``query``/``support`` within ``rows``."""
        q, s = rows[query], rows[support]
        return Task(
            user_id=user,
            support_x=self.x[s],
            support_y=self.y[s],
            support_items=self.item_ids[s],
            query_x=self.x[q],
            query_y=self.y[q],
            query_items=self.item_ids[q],
        )

    def eligible_users(
        self,
        scenario: Scenario,
        split: Split,
        *,
        min_ratings: int = 13,
        max_ratings: int = 100,
    ) -> list[int]:
        """Users evaluated in ``scenario`` under the MeLU protocol (13–100 ratings there)."""
        pool = split.train_users if scenario is Scenario.NEW_ITEM else split.test_users
        return self.rated_between(
            pool,
            min_ratings=min_ratings,
            max_ratings=max_ratings,
            new_items=scenario is not Scenario.NEW_USER,
        )

    def rated_between(
        self, users: Iterable[int], *, min_ratings: int, max_ratings: int, new_items: bool = False
    ) -> list[int]:
        """Those of ``users`` with ``min_ratings``..``max_ratings`` ratings of existing items.

        With ``new_items``, their ratings of new items are counted instead.
        """
        group = self.new if new_items else self.existing
        return [u for u in users if min_ratings <= len(group.rows.get(u, ())) <= max_ratings]

    def evaluation_tasks(
        self,
        scenario: Scenario,
        users: Iterable[int],
        *,
        support_size: int | None,
        seed: int,
        query_size: int = 10,
    ) -> list[Task]:
        """Fixed tasks of ``users``: 10 random query ratings, support = first k of the rest."""
        group = self.existing if scenario is Scenario.NEW_USER else self.new
        tasks = []
        for user in users:
            rows = group.rows.get(int(user))
            if rows is None or len(rows) <= query_size:
                continue
            perm = np.random.default_rng([seed, 2, int(user)]).permutation(len(rows))
            rest = perm[query_size:]
            support = rest if support_size is None else rest[:support_size]
            tasks.append(self.task(int(user), rows, query=perm[:query_size], support=support))
        return tasks

    def training_tasks(
        self,
        users: Sequence[int],
        *,
        rng: np.random.Generator,
        query_size: int,
        support_min: int,
        support_max: int,
        max_ratings: int,
    ) -> list[Task]:
        """Random meta-training tasks on existing items: random query, random support size."""
        tasks = []
        for user in users:
            rows = self.existing.rows.get(int(user))
            if rows is None or len(rows) < query_size + 1:
                continue
            perm = rng.permutation(len(rows))[:max_ratings]
            available = len(perm) - query_size
            k = int(rng.integers(min(support_min, available), min(support_max, available) + 1))
            tasks.append(
                self.task(
                    int(user),
                    rows,
                    query=perm[:query_size],
                    support=perm[query_size : query_size + k],
                )
            )
        return tasks

    def rows_of(self, users: Iterable[int], *, existing_only: bool = True) -> np.ndarray:
        """All row indices of ``users`` (on existing items by default)."""
        groups = [self.existing] if existing_only else [self.existing, self.new]
        parts = [g.rows[u] for g in groups for u in users if u in g.rows]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
