from pathlib import Path

import numpy as np
import pandas as pd
from metarec.serving.features import compose_rows, user_columns
from metarec.training.encoding import FeatureEncoder

REPO = Path(__file__).resolve().parents[3]


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [1, 1, 2, 3],
            "item_id": [10, 11, 10, 12],
            "gender": ["M", "M", "F", None],
            "age_bucket": ["18-24", "18-24", "25-34", "25-34"],
            "occupation": ["writer", "writer", "artist", "other"],
            "zip_prefix": ["123", "123", "456", "789"],
            "release_year": [1995, 1987, 1995, None],
            "genres": ["Comedy|Drama", "Action", "Comedy|Drama", ""],
        }
    )


def test_composed_rows_equal_encoding_the_joined_rows():
    df = frame()
    encoder = FeatureEncoder.fit(df, use_user_id=True, use_item_id=True)
    items = df.drop_duplicates("item_id").copy()
    item_only = items.assign(
        user_id=0, gender=None, age_bucket=None, occupation=None, zip_prefix=None
    )
    item_codes = encoder.encode(item_only)
    for user_id in (1, 2, 3):
        user_row = df[df["user_id"] == user_id].iloc[:1]
        user_codes = encoder.encode(user_row)[0]
        joined = items.assign(
            **{
                c: user_row[c].iloc[0]
                for c in ("user_id", "gender", "age_bucket", "occupation", "zip_prefix")
            }
        )
        np.testing.assert_array_equal(
            compose_rows(encoder, user_codes, item_codes), encoder.encode(joined)
        )
    assert set(user_columns(encoder)) == {
        encoder.field_names.index(n)
        for n in ("gender", "age_bucket", "occupation", "zip_prefix", "user_id")
    }


def test_bentofile_is_a_valid_offline_build_definition():
    from bentoml._internal.bento.build_config import BentoBuildConfig

    path = REPO / "platform" / "metarec" / "serving" / "bentofile.yaml"
    with path.open() as handle:
        config = BentoBuildConfig.from_yaml(handle)
    assert config.service == "metarec.serving.service:AdaptationService"
    assert config.python.lock_packages is False
    assert any(p.startswith("torch==2.13.0") for p in config.python.packages)
    # The build context is platform/: the service module is under the included patterns.
    assert (REPO / "platform" / "metarec" / "serving" / "service.py").is_file()
