"""A team's text ids (``c001``, ``sku-001``) as integer codes inside training.

The training code groups, splits and indexes users and items by integer id. A training set with
text ids is read through :class:`IdCodes`: each distinct id gets the code of its position in
sorted order (1..N), computed from the training set alone, so every step that reads the same
training set (the split, the task source, the ranking data, a later re-evaluation) gets the same
codes. Only the edges see codes: the encoder reads the original ids (its vocabularies are the
ids as text), and the model card records users and the ranker's catalogue by their original
ids. Integer ids pass through unchanged (no codes, no cost).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

ID_COLUMNS = ("user_id", "item_id")


def _text_values(column: pd.Series) -> np.ndarray | None:
    """The sorted distinct ids of a text id column (None: integer ids)."""
    if pd.api.types.is_integer_dtype(column):
        return None
    return np.sort(column.astype(str).unique())


@dataclass(frozen=True)
class IdCodes:
    """Integer codes of a training set's text user and item ids (None: integer ids)."""

    users: np.ndarray | None = None  # sorted distinct user ids; code = position + 1
    items: np.ndarray | None = None

    @classmethod
    def fit(cls, df: pd.DataFrame) -> IdCodes:
        """The codes of ``df``'s ids (integer id columns stay as they are)."""
        return cls(users=_text_values(df["user_id"]), items=_text_values(df["item_id"]))

    @property
    def text(self) -> bool:
        """Whether any id column is text."""
        return self.users is not None or self.items is not None

    def code(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with its text id columns replaced by their codes (int64)."""
        if not self.text:
            return df
        out = df.copy()
        for column, values in (("user_id", self.users), ("item_id", self.items)):
            if values is not None:
                out[column] = self._codes(values, out[column])
        return out

    def user_codes(self, df: pd.DataFrame) -> np.ndarray:
        """The code of each row's user (int64)."""
        return self._column_codes(df, "user_id", self.users)

    def item_codes(self, df: pd.DataFrame) -> np.ndarray:
        """The code of each row's item (int64)."""
        return self._column_codes(df, "item_id", self.items)

    def users_of(self, codes: Iterable[int]) -> list[Any]:
        """Original user ids of codes (integers: the codes themselves)."""
        return self._originals(self.users, codes)

    def items_of(self, codes: Iterable[int]) -> list[Any]:
        """Original item ids of codes (integers: the codes themselves)."""
        return self._originals(self.items, codes)

    def codes_of_users(self, ids: Sequence[Any]) -> list[int]:
        """Codes of original user ids; ids this training set does not have are left out."""
        if self.users is None:
            return [int(u) for u in ids]
        positions = np.searchsorted(self.users, np.asarray([str(u) for u in ids], dtype=object))
        return [
            int(p) + 1
            for p, u in zip(positions, ids, strict=True)
            if p < len(self.users) and self.users[p] == str(u)
        ]

    def _column_codes(self, df: pd.DataFrame, column: str, values: np.ndarray | None) -> np.ndarray:
        if values is None:
            return df[column].to_numpy(np.int64)
        return self._codes(values, df[column]).to_numpy(np.int64)

    @staticmethod
    def _codes(values: np.ndarray, column: pd.Series) -> pd.Series:
        text = column.astype(str).to_numpy(dtype=object)
        positions = np.searchsorted(values, text)
        return pd.Series(positions.astype(np.int64) + 1, index=column.index)

    @staticmethod
    def _originals(values: np.ndarray | None, codes: Iterable[int]) -> list[Any]:
        if values is None:
            return [int(c) for c in codes]
        return [str(values[int(c) - 1]) for c in codes]
