"""A content fingerprint of a table: the same rows and columns give the same hash."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def dataset_fingerprint(frame: pd.DataFrame) -> str:
    """Return ``"sha256:<hex>"`` of a table's content, independent of row and column order.

    Each row is hashed (columns in name order); the sorted row hashes, the column names and the
    dtypes make the fingerprint. Changing any value, dtype or column changes it.

    Args:
        frame: The table.

    Returns:
        The fingerprint.
    """
    columns = sorted(frame.columns)
    canonical = frame[columns]
    for column in columns:
        if canonical[column].dtype == object:
            canonical = canonical.assign(**{column: canonical[column].map(repr)})
    digest = hashlib.sha256()
    digest.update(repr([(c, str(frame[c].dtype)) for c in columns]).encode())
    row_hashes = pd.util.hash_pandas_object(canonical, index=False).to_numpy()
    digest.update(np.sort(row_hashes).tobytes())
    return f"sha256:{digest.hexdigest()}"
