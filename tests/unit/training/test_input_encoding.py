"""The encoder follows the input fields: categorical, bucket, bag, numeric and vector columns."""

import numpy as np
import pandas as pd
import pytest
import torch
from metarec.errors import ModelInputsError
from metarec.features.model_inputs import Encoding, InputField
from metarec.learning.model import MeLU
from metarec.learning.ranker import Ranker
from metarec.training.encoding import FeatureEncoder, with_overrides
from metarec.training.ranking import ranker_config_for, ranker_item_codes, ranker_user_codes

INPUTS = (
    InputField(name="country", view="user_profile", side="user", encoding=Encoding.CATEGORICAL),
    InputField(name="age", view="user_profile", side="user", encoding=Encoding.NUMERIC),
    InputField(name="tags", view="item_profile", side="item", encoding=Encoding.BAG),
    InputField(name="vec", view="item_profile", side="item", encoding=Encoding.VECTOR),
    InputField(
        name="price", view="item_profile", side="item", encoding=Encoding.BUCKET, bucket_width=10
    ),
)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [1, 1, 2, 3],
            "item_id": [10, 11, 10, 12],
            "rating": [5, 3, 4, 1],
            "country": ["FR", "FR", "DE", None],
            "age": [20.0, 20.0, 40.0, np.nan],
            "tags": ["a|b", ["c"], "", None],  # joined text or a list, as Feast returns them
            "vec": [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0], [1.0, 2.0, 3.0], None],
            "price": [5.0, 15.0, 5.0, 27.0],
        }
    )


def test_each_kind_gets_its_columns_in_layout_order():
    encoder = FeatureEncoder.fit(_frame(), inputs=INPUTS, use_item_id=True)
    layout = [(f.name, f.kind, f.start, f.width) for f in encoder.fields]
    assert layout == [
        ("country", "categorical", 0, 1),
        ("price", "categorical", 1, 1),
        ("item_id", "categorical", 2, 1),
        ("tags", "bag", 3, 2),
        ("age", "numeric", 5, 1),
        ("vec", "vector", 6, 3),
    ]
    x = encoder.encode(_frame())
    assert x.dtype == np.float32 and x.shape == (4, encoder.width)
    country = encoder.fields[0].vocabulary
    assert x[0, 0] == country.index("FR") + 1 and x[2, 0] == country.index("DE") + 1
    assert x[3, 0] == country.index("unknown") + 1  # a missing value is a category of its own
    assert encoder.fields[1].vocabulary == ["0", "10", "20"]  # 10-wide price buckets
    tags = encoder.fields[3].vocabulary
    assert sorted(tags[int(c) - 1] for c in x[0, 3:5] if c) == ["a", "b"]
    assert [tags[int(c) - 1] for c in x[1, 3:5] if c] == ["c"] and not x[2:, 3:5].any()
    age = encoder.fields[4]
    assert age.mean == pytest.approx(80 / 3) and x[3, 5] == 0.0  # missing → the mean → 0
    np.testing.assert_allclose(x[:, 5][:3], (np.array([20, 20, 40]) - age.mean) / age.std)
    np.testing.assert_array_equal(x[0, 6:9], [1.0, 2.0, 3.0])
    assert not x[3, 6:9].any()


def test_the_card_form_round_trips_and_missing_columns_encode_as_missing():
    encoder = FeatureEncoder.fit(_frame(), inputs=INPUTS)
    rebuilt = FeatureEncoder.model_validate_json(encoder.model_dump_json())
    np.testing.assert_array_equal(rebuilt.encode(_frame()), encoder.encode(_frame()))
    items_only = encoder.encode(_frame()[["item_id", "tags", "vec", "price"]])
    for field in encoder.select(side="user"):
        if field.kind == "categorical":
            assert (items_only[:, field.start] == field.vocabulary.index("unknown") + 1).all()
        else:
            assert not items_only[:, field.columns].any()


def test_a_vector_of_another_length_is_refused_in_one_line():
    encoder = FeatureEncoder.fit(_frame(), inputs=INPUTS)
    bad = _frame().assign(vec=[[1.0, 2.0]] * 4)
    with pytest.raises(ModelInputsError, match="vec has a value of length 2; the model reads 3"):
        encoder.encode(bad)


def test_overrides_change_or_drop_fields_and_unknown_names_are_refused():
    changed = with_overrides(INPUTS, {"age": "bucket:10", "vec": "skip"})
    assert [f.name for f in changed] == ["country", "age", "tags", "price"]
    assert (changed[1].encoding, changed[1].bucket_width) == (Encoding.BUCKET, 10.0)
    with pytest.raises(ModelInputsError, match="overrides colour"):
        with_overrides(INPUTS, {"colour": "skip"})
    with pytest.raises(ModelInputsError, match=r"inputs\.age is not an encoding"):
        with_overrides(INPUTS, {"age": "embedding"})


def test_models_read_every_kind_and_the_dense_inputs_change_their_output():
    df = _frame()
    encoder = FeatureEncoder.fit(df, inputs=INPUTS, use_item_id=True)
    torch.manual_seed(0)
    config = encoder.model_config_for(
        embedding_dim=4, hidden=(8,), output_bias=3.0, meta_sgd=False, inner_lr_init=0.1
    )
    model = MeLU(config)
    x = torch.from_numpy(encoder.encode(df))
    other = x.clone()
    other[:, encoder.fields[-1].columns] += 1.0  # move the vector
    assert not torch.allclose(model(x), model(other))
    ranker = Ranker(ranker_config_for(encoder, dim=4, inner_lr_init=0.1))
    codes = encoder.encode(df)
    items = torch.from_numpy(ranker_item_codes(encoder, codes))
    users = torch.from_numpy(ranker_user_codes(encoder, codes))
    empty = torch.zeros(len(users), 1, dtype=torch.int64)
    u = ranker.prior(users, ranker.items(items), empty, torch.zeros(len(users), 1))
    older = users.clone()
    older[:, -1] += 2.0  # age is the user row's dense column
    u2 = ranker.prior(older, ranker.items(items), empty, torch.zeros(len(users), 1))
    assert not torch.allclose(u, u2)
    moved = items.clone()
    moved[:, -3:] += 1.0
    assert not torch.allclose(ranker.items(items).v, ranker.items(moved).v)


def test_a_legacy_card_encodes_and_loads_as_before():
    """Cards written before inputs followed the feature service still encode and load."""
    df = pd.DataFrame(
        {
            "user_id": [1, 2],
            "item_id": [5, 6],
            "gender": ["M", "F"],
            "age_bucket": ["25", None],
            "occupation": ["writer", "artist"],
            "zip_prefix": ["123", "456"],
            "release_year": [1994, None],
            "genres": ["Comedy|Drama", "Action"],
        }
    )
    fitted = FeatureEncoder.fit(df, use_item_id=True)
    names = ["gender", "age_bucket", "occupation", "zip_prefix", "release_bucket", "item_id"]
    legacy = {
        "field_names": names,
        "vocabularies": {
            **{f.name: f.vocabulary for f in fitted.fields if f.kind == "categorical"},
            "release_bucket": fitted.fields[4].vocabulary,
        },
        "genres": fitted.select(kinds=("bag",))[0].vocabulary,
        "max_genres": 2,
    }
    np.testing.assert_array_equal(FeatureEncoder(**legacy).encode(df), fitted.encode(df))
    config = fitted.model_config_for(
        embedding_dim=4, hidden=(8,), output_bias=3.0, meta_sgd=False, inner_lr_init=0.1
    )
    model = MeLU(config)
    state = {k.replace("bags.0.", "genres."): v for k, v in model.state_dict().items()}
    old_config = {k: v for k, v in config.to_dict().items() if k not in ("bags", "dense_widths")}
    old_config.update(n_genres=config.bags[0][0], max_genres=config.bags[0][1])
    loaded = MeLU(type(config).from_dict(old_config))
    loaded.load_state_dict(state)
    x = torch.from_numpy(fitted.encode(df))
    torch.testing.assert_close(loaded(x), model(x))
