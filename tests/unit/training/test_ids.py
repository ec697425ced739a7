"""A team's text ids as integer codes inside training, and back to the ids at the edges."""

from __future__ import annotations

import numpy as np
import pandas as pd
from metarec.training.ids import IdCodes


def _frame(users: list, items: list) -> pd.DataFrame:
    return pd.DataFrame({"user_id": users, "item_id": items})


def test_text_ids_get_sorted_codes_and_read_back():
    df = _frame(["c10", "c02", "c10", "c07"], ["sku-b", "sku-a", "sku-c", "sku-a"])
    ids = IdCodes.fit(df)
    assert ids.text
    assert ids.user_codes(df).tolist() == [3, 1, 3, 2]  # c02 < c07 < c10
    assert ids.item_codes(df).tolist() == [2, 1, 3, 1]
    coded = ids.code(df)
    assert coded["user_id"].dtype == np.int64 and coded["item_id"].tolist() == [2, 1, 3, 1]
    assert ids.users_of([3, 1]) == ["c10", "c02"]
    assert ids.items_of(np.array([3])) == ["sku-c"]
    assert ids.codes_of_users(["c07", "nobody", "c10"]) == [2, 3]  # unknown ids left out


def test_the_same_training_set_always_gets_the_same_codes():
    df = _frame(["b", "a", "c"], [3, 1, 2])
    shuffled = df.sample(frac=1.0, random_state=1)
    assert IdCodes.fit(df).user_codes(df).tolist() == [2, 1, 3]
    assert IdCodes.fit(shuffled).codes_of_users(["a", "b", "c"]) == [1, 2, 3]


def test_integer_ids_pass_through_unchanged():
    df = _frame([7, 3, 7], [50, 40, 60])
    ids = IdCodes.fit(df)
    assert not ids.text
    assert ids.code(df) is df
    assert ids.user_codes(df).tolist() == [7, 3, 7]
    assert ids.users_of([7]) == [7] and ids.codes_of_users([3, 7]) == [3, 7]
    mixed = IdCodes.fit(_frame([1, 2], ["x", "y"]))  # integer users, text items
    assert mixed.users is None and mixed.items_of([2]) == ["y"]
