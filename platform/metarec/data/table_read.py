"""Read one of a team's tables (parquet or CSV, a local path or an fsspec URI) into a frame."""

from __future__ import annotations

from collections.abc import Collection

import fsspec
import pandas as pd

from metarec.errors import DataFormatError, DataSourceNotFoundError

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")


def table_format(location: str) -> str:
    """``"parquet"`` or ``"csv"``, from the file name.

    Raises:
        DataFormatError: The suffix is neither.
    """
    name = location.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise DataFormatError(
        location,
        problem="unknown table format (expected .parquet, .pq or .csv).",
        fix="save the table as parquet or CSV with one of those suffixes.",
    )


def _exists(location: str) -> bool:
    fs, path = fsspec.core.url_to_fs(location)
    return bool(fs.exists(path))


def read_table_file(location: str, *, text_columns: Collection[str] = ()) -> pd.DataFrame:
    """Read a table; an empty one (no rows) is refused.

    Args:
        location: Local path or fsspec URI of a ``.parquet`` or ``.csv`` file.
        text_columns: CSV columns read as text, not inferred (categories: ``01234`` stays so).

    Returns:
        The table as read (CSV types inferred by pandas; checked later against the schema).

    Raises:
        DataSourceNotFoundError: The file does not exist.
        DataFormatError: It cannot be parsed, or it has no rows.
    """
    kind = table_format(location)
    if not _exists(location):
        raise DataSourceNotFoundError(
            location, fix="check the table's path in the schema YAML (relative to the YAML file)."
        )
    try:
        if kind == "parquet":
            frame = pd.read_parquet(location)
        else:
            dtype = dict.fromkeys(text_columns, "string")
            frame = pd.read_csv(location, skipinitialspace=True, dtype=dtype)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        problem = " ".join(str(exc).split())
        raise DataFormatError(
            location,
            problem=f"cannot be read as {kind} ({problem}).",
            fix=f"write the table as valid {kind} (CSV: comma-separated, with a header row).",
        ) from exc
    if frame.empty:
        raise DataFormatError(
            location, problem="the table has no rows.", fix="export the table with its rows."
        )
    return frame
