"""Readers for the official MovieLens-100K and MovieLens-1M layouts (zip archive or folder).

Every format problem is reported as a :class:`~metarec.errors.DataFormatError` naming the file,
the line and the fix; nothing is written while reading.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from metarec.data.schema import (
    GENRE_SEPARATOR,
    GENRES,
    ML1M_OCCUPATIONS,
    STATIC_PROFILE_TIMESTAMP,
    Dataset,
    age_bucket,
    normalise_frames,
    zip_prefix,
)
from metarec.errors import DataFormatError, DataSourceNotFoundError

ML100K_FILES = ("u.data", "u.user", "u.item")
ML1M_FILES = ("ratings.dat", "users.dat", "movies.dat")
_SEPARATOR_NAMES = {"\t": "tab", "|": "'|'", "::": "'::'", ",": "','", ";": "';'", " ": "space"}
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


class _ArchiveReader:
    """Reads members of a MovieLens archive, given as a zip file or an extracted folder."""

    def __init__(self, path: Path, *, required: Sequence[str], dataset_name: str) -> None:
        self.path = path
        self.dataset_name = dataset_name
        if not path.exists():
            raise DataSourceNotFoundError(
                path, fix=f"pass the {dataset_name} zip archive or its extracted folder."
            )
        self._members: dict[str, str] = {}
        if path.is_dir():
            for name in required:
                found = sorted(path.rglob(name))
                if found:
                    self._members[name] = str(found[0])
        else:
            try:
                with zipfile.ZipFile(path) as archive:
                    names = archive.namelist()
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataFormatError(
                    path,
                    problem=f"not a readable zip archive ({exc}); it is truncated or corrupted.",
                    fix=f"download the {dataset_name} archive again, or pass its extracted folder.",
                ) from exc
            for name in required:
                matches = [n for n in names if n == name or n.endswith("/" + name)]
                if matches:
                    self._members[name] = sorted(matches, key=len)[0]
        for name in required:
            if name not in self._members:
                raise DataSourceNotFoundError(
                    f"{path}: {name}",
                    fix=f"use the official {dataset_name} layout, which contains "
                    f"{', '.join(required)}.",
                )

    def label(self, name: str) -> str:
        """Human-readable location of a member, e.g. ``archive.zip:ml-100k/u.data``."""
        member = self._members[name]
        return member if self.path.is_dir() else f"{self.path}:{member}"

    def read_text(self, name: str, *, encoding: str) -> str:
        """Return a member's text; a corrupted member raises :class:`DataFormatError`."""
        member = self._members[name]
        try:
            if self.path.is_dir():
                raw = Path(member).read_bytes()
            else:
                with zipfile.ZipFile(self.path) as archive:
                    raw = archive.read(member)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise DataFormatError(
                self.label(name),
                problem=f"cannot be read ({exc}); the archive is truncated or corrupted.",
                fix=f"download the {self.dataset_name} archive again.",
            ) from exc
        return raw.decode(encoding)


def _split_lines(
    text: str, *, label: str, separator: str, n_fields: int, columns: Sequence[str]
) -> pd.DataFrame:
    """Split ``text`` into string columns, checking every line has ``n_fields`` fields."""
    lines = pd.Series(text.splitlines(), dtype="object")
    lines = lines[lines.str.strip() != ""]
    if lines.empty:
        raise DataFormatError(
            label, problem="the file is empty.", fix="use the official file, which has rows."
        )
    counts = lines.str.count(re.escape(separator)) + 1
    bad = np.flatnonzero(counts.to_numpy() != n_fields)
    if bad.size:
        position = int(bad[0])
        line_number = int(lines.index[position]) + 1
        line = str(lines.iloc[position])
        sep_name = _SEPARATOR_NAMES.get(separator, repr(separator))
        hint = ""
        for candidate, candidate_name in _SEPARATOR_NAMES.items():
            if candidate != separator and line.count(candidate) + 1 == n_fields:
                hint = f" It looks {candidate_name}-separated."
                break
        raise DataFormatError(
            label,
            line=line_number,
            problem=f"expected {n_fields} {sep_name}-separated fields, found "
            f"{int(counts.iloc[position])}.{hint}",
            fix=f"separate the fields with {sep_name}, as in the official layout.",
        )
    frame = lines.str.split(re.escape(separator), regex=True, expand=True)
    frame.columns = list(columns)
    frame.index = lines.index
    return frame


def _to_int(frame: pd.DataFrame, column: str, *, label: str) -> pd.Series:
    """Parse an integer column, naming the first line whose value is not an integer."""
    values = frame[column].str.strip()
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna() | (parsed != np.floor(parsed))
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(
            label,
            line=int(frame.index[position]) + 1,
            problem=f"{column} {values.iloc[position]!r} is not an integer.",
            fix=f"make every {column} a whole number, as in the official files.",
        )
    return parsed.astype("int64")


def _year_from_date_or_title(dates: pd.Series, titles: pd.Series) -> pd.Series:
    """Release year from ``01-Jan-1995``-style dates, falling back to ``Title (1995)``."""
    from_date = pd.to_datetime(dates.str.strip(), format="%d-%b-%Y", errors="coerce").dt.year
    from_title = pd.to_numeric(titles.str.extract(_YEAR_IN_TITLE)[0], errors="coerce")
    return from_date.fillna(from_title).astype("Int64")


def read_ml100k(path: Path) -> Dataset:
    """Read the official MovieLens-100K layout.

    Args:
        path: ``ml-100k.zip`` or a folder containing ``u.data``, ``u.user`` and ``u.item``.

    Returns:
        The dataset in MetaRec's canonical schema.

    Raises:
        DataSourceNotFoundError: The path or a required file is missing.
        DataFormatError: A file does not have the official format.
    """
    reader = _ArchiveReader(path, required=ML100K_FILES, dataset_name="MovieLens-100K")

    label = reader.label("u.data")
    raw = _split_lines(
        reader.read_text("u.data", encoding="latin-1"),
        label=label,
        separator="\t",
        n_fields=4,
        columns=("user_id", "item_id", "rating", "timestamp"),
    )
    interactions = pd.DataFrame({c: _to_int(raw, c, label=label) for c in raw.columns})
    interactions["event_timestamp"] = pd.to_datetime(interactions["timestamp"], unit="s", utc=True)

    label = reader.label("u.user")
    raw = _split_lines(
        reader.read_text("u.user", encoding="latin-1"),
        label=label,
        separator="|",
        n_fields=5,
        columns=("user_id", "age", "gender", "occupation", "zip_code"),
    )
    users = pd.DataFrame(
        {
            "user_id": _to_int(raw, "user_id", label=label),
            "age": _to_int(raw, "age", label=label),
            "gender": raw["gender"].str.strip(),
            "occupation": raw["occupation"].str.strip(),
            "zip_prefix": raw["zip_code"].map(zip_prefix),
        }
    )
    users["age_bucket"] = users["age"].map(age_bucket)
    users["valid_from"] = STATIC_PROFILE_TIMESTAMP

    label = reader.label("u.item")
    columns = ("item_id", "title", "release_date", "video_release_date", "url", *GENRES)
    raw = _split_lines(
        reader.read_text("u.item", encoding="latin-1"),
        label=label,
        separator="|",
        n_fields=len(columns),
        columns=columns,
    )
    flags = pd.DataFrame({g: _to_int(raw, g, label=label) for g in GENRES})
    genres = flags.apply(lambda row: GENRE_SEPARATOR.join(g for g in GENRES if row[g] == 1), axis=1)
    items = pd.DataFrame(
        {
            "item_id": _to_int(raw, "item_id", label=label),
            "title": raw["title"].str.strip(),
            "release_year": _year_from_date_or_title(raw["release_date"], raw["title"]),
            "genres": genres.replace("", "unknown"),
            "valid_from": STATIC_PROFILE_TIMESTAMP,
        }
    )
    users, items, interactions = normalise_frames(users, items, interactions)
    return Dataset(users=users, items=items, interactions=interactions, source="ml-100k")


def read_ml1m(path: Path) -> Dataset:
    """Read the official MovieLens-1M layout (``::``-separated ``.dat`` files).

    Args:
        path: ``ml-1m.zip`` or a folder containing ``ratings.dat``, ``users.dat``, ``movies.dat``.

    Returns:
        The dataset in MetaRec's canonical schema.

    Raises:
        DataSourceNotFoundError: The path or a required file is missing.
        DataFormatError: A file does not have the official format.
    """
    reader = _ArchiveReader(path, required=ML1M_FILES, dataset_name="MovieLens-1M")

    label = reader.label("ratings.dat")
    raw = _split_lines(
        reader.read_text("ratings.dat", encoding="latin-1"),
        label=label,
        separator="::",
        n_fields=4,
        columns=("user_id", "item_id", "rating", "timestamp"),
    )
    interactions = pd.DataFrame({c: _to_int(raw, c, label=label) for c in raw.columns})
    interactions["event_timestamp"] = pd.to_datetime(interactions["timestamp"], unit="s", utc=True)

    label = reader.label("users.dat")
    raw = _split_lines(
        reader.read_text("users.dat", encoding="latin-1"),
        label=label,
        separator="::",
        n_fields=5,
        columns=("user_id", "gender", "age", "occupation", "zip_code"),
    )
    occupation_codes = _to_int(raw, "occupation", label=label)
    unknown = ~occupation_codes.between(0, len(ML1M_OCCUPATIONS) - 1)
    if unknown.any():
        position = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataFormatError(
            label,
            line=int(raw.index[position]) + 1,
            problem=f"occupation code {occupation_codes.iloc[position]} is not one of 0-20.",
            fix="use the MovieLens-1M occupation codes listed in its README.",
        )
    users = pd.DataFrame(
        {
            "user_id": _to_int(raw, "user_id", label=label),
            "age": _to_int(raw, "age", label=label),
            "gender": raw["gender"].str.strip(),
            "occupation": occupation_codes.map(lambda code: ML1M_OCCUPATIONS[code]),
            "zip_prefix": raw["zip_code"].map(zip_prefix),
        }
    )
    users["age_bucket"] = users["age"].map(age_bucket)
    users["valid_from"] = STATIC_PROFILE_TIMESTAMP

    label = reader.label("movies.dat")
    raw = _split_lines(
        reader.read_text("movies.dat", encoding="latin-1"),
        label=label,
        separator="::",
        n_fields=3,
        columns=("item_id", "title", "genres"),
    )
    titles = raw["title"].str.strip()
    items = pd.DataFrame(
        {
            "item_id": _to_int(raw, "item_id", label=label),
            "title": titles,
            "release_year": _year_from_date_or_title(pd.Series("", index=raw.index), titles),
            "genres": raw["genres"].str.strip().replace("", "unknown"),
            "valid_from": STATIC_PROFILE_TIMESTAMP,
        }
    )
    users, items, interactions = normalise_frames(users, items, interactions)
    return Dataset(users=users, items=items, interactions=interactions, source="ml-1m")
