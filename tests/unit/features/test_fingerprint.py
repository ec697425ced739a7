import pandas as pd
from metarec.features.fingerprint import dataset_fingerprint


def test_fingerprint_ignores_row_and_column_order_but_not_content():
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    same = frame.iloc[::-1][["b", "a"]]
    assert dataset_fingerprint(frame) == dataset_fingerprint(same)
    changed = frame.assign(a=[1, 2, 4])
    assert dataset_fingerprint(frame) != dataset_fingerprint(changed)
    retyped = frame.assign(a=frame["a"].astype("float64"))
    assert dataset_fingerprint(frame) != dataset_fingerprint(retyped)
    assert dataset_fingerprint(frame.iloc[:0]) != dataset_fingerprint(frame)
