"""Readers for the official MovieLens-100K and MovieLens-1M layouts (zip archive or folder).

Every format problem is reported as a :class:`~metarec.errors.DataFormatError` naming the file,
the line and the fix; nothing is written while reading.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn

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
# The largest member read (uncompressed): the official files are at most 25 MB (ratings.dat of
# MovieLens-1M); anything far larger is not MovieLens (e.g. a zip bomb) and is refused.
MAX_MEMBER_BYTES = 256 * 1024 * 1024
_READ_BLOCK = 1 << 20
_SEPARATOR_NAMES = {"\t": "tab", "|": "'|'", "::": "'::'", ",": "','", ";": "';'", " ": "space"}
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


class _ArchiveReader:
    """Reads members of a MovieLens archive, given as a zip file or an extracted folder."""

    def __init__(
        self,
        path: Path,
        *,
        required: Sequence[str],
        dataset_name: str,
        max_member_bytes: int = MAX_MEMBER_BYTES,
    ) -> None:
        self.path = path
        self.dataset_name = dataset_name
        self.max_member_bytes = max_member_bytes
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
        """Return a member's text, read in blocks up to ``max_member_bytes``.

        Raises:
            DataFormatError: The member is corrupted, or larger than ``max_member_bytes``
                (declared or as it decompresses: a zip bomb stops at the cap).
        """
        member = self._members[name]
        try:
            if self.path.is_dir():
                with Path(member).open("rb") as handle:
                    raw = self._capped(handle, name, declared=Path(member).stat().st_size)
            else:
                with zipfile.ZipFile(self.path) as archive:
                    declared = archive.getinfo(member).file_size
                    with archive.open(member) as handle:
                        raw = self._capped(handle, name, declared=declared)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise DataFormatError(
                self.label(name),
                problem=f"cannot be read ({exc}); the archive is truncated or corrupted.",
                fix=f"download the {self.dataset_name} archive again.",
            ) from exc
        return raw.decode(encoding)

    def _capped(self, handle: BinaryIO, name: str, *, declared: int) -> bytes:
        """The bytes of ``handle``, refused once they pass ``max_member_bytes``."""
        cap = self.max_member_bytes
        if declared > cap:
            self._refuse_size(name, f"is {declared:,} bytes uncompressed, more than")
        blocks: list[bytes] = []
        size = 0
        while block := handle.read(min(_READ_BLOCK, cap + 1 - size)):
            size += len(block)
            if size > cap:
                self._refuse_size(name, "decompresses to more than")
            blocks.append(block)
        return b"".join(blocks)

    def _refuse_size(self, name: str, found: str) -> NoReturn:
        raise DataFormatError(
            self.label(name),
            problem=f"{found} the {self.max_member_bytes:,}-byte cap on one member; it is "
            f"not an official {self.dataset_name} file (official files are under 30 MB).",
            fix=f"pass the official {self.dataset_name} archive (or its extracted folder).",
        )


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


def _read_table(
    reader: _ArchiveReader, name: str, *, separator: str, columns: tuple[str, ...]
) -> tuple[pd.DataFrame, str]:
    """The string columns of the archive's file ``name``, and the label errors name it by."""
    label = reader.label(name)
    raw = _split_lines(
        reader.read_text(name, encoding="latin-1"),
        label=label,
        separator=separator,
        n_fields=len(columns),
        columns=columns,
    )
    return raw, label


def _read_ratings(reader: _ArchiveReader, name: str, *, separator: str) -> pd.DataFrame:
    """The interactions of a ``user, item, rating, timestamp`` file (both layouts)."""
    columns = ("user_id", "item_id", "rating", "timestamp")
    raw, label = _read_table(reader, name, separator=separator, columns=columns)
    interactions = pd.DataFrame({c: _to_int(raw, c, label=label) for c in raw.columns})
    interactions["event_timestamp"] = pd.to_datetime(interactions["timestamp"], unit="s", utc=True)
    return interactions


def _users(raw: pd.DataFrame, *, label: str, occupations: pd.Series) -> pd.DataFrame:
    """The user profiles of a users file, with its occupations already as names."""
    users = pd.DataFrame(
        {
            "user_id": _to_int(raw, "user_id", label=label),
            "age": _to_int(raw, "age", label=label),
            "gender": raw["gender"].str.strip(),
            "occupation": occupations,
            "zip_prefix": raw["zip_code"].map(zip_prefix),
        }
    )
    users["age_bucket"] = users["age"].map(age_bucket)
    users["valid_from"] = STATIC_PROFILE_TIMESTAMP
    return users


def _items(
    raw: pd.DataFrame, *, label: str, titles: pd.Series, years: pd.Series, genres: pd.Series
) -> pd.DataFrame:
    """The item profiles of an items file (an empty genre list is ``unknown``)."""
    return pd.DataFrame(
        {
            "item_id": _to_int(raw, "item_id", label=label),
            "title": titles,
            "release_year": years,
            "genres": genres.replace("", "unknown"),
            "valid_from": STATIC_PROFILE_TIMESTAMP,
        }
    )


def _ml100k_items(reader: _ArchiveReader) -> pd.DataFrame:
    """``u.item``: genres are 0/1 flag columns, the year comes from the release date."""
    columns = ("item_id", "title", "release_date", "video_release_date", "url", *GENRES)
    raw, label = _read_table(reader, "u.item", separator="|", columns=columns)
    flags = pd.DataFrame({g: _to_int(raw, g, label=label) for g in GENRES})
    genres = flags.apply(lambda row: GENRE_SEPARATOR.join(g for g in GENRES if row[g] == 1), axis=1)
    return _items(
        raw,
        label=label,
        titles=raw["title"].str.strip(),
        years=_year_from_date_or_title(raw["release_date"], raw["title"]),
        genres=genres,
    )


def _ml100k_occupations(raw: pd.DataFrame, *, label: str) -> pd.Series:
    """``u.user`` names its occupations already."""
    return raw["occupation"].str.strip()


@dataclass(frozen=True)
class _Layout:
    """Where one MovieLens release keeps its ratings, users and items, and how to read them."""

    name: str  # as errors name the dataset
    source: str  # Dataset.source
    required: tuple[str, ...]
    ratings: str
    ratings_separator: str
    users: str
    users_separator: str
    user_columns: tuple[str, ...]
    occupations: Callable[..., pd.Series]  # (raw users, *, label) -> occupation names
    items: Callable[[_ArchiveReader], pd.DataFrame]


def _read(path: Path, layout: _Layout, *, max_member_bytes: int) -> Dataset:
    """Read the release ``layout`` describes from ``path`` (an archive or a folder)."""
    reader = _ArchiveReader(
        path,
        required=layout.required,
        dataset_name=layout.name,
        max_member_bytes=max_member_bytes,
    )
    interactions = _read_ratings(reader, layout.ratings, separator=layout.ratings_separator)
    raw, label = _read_table(
        reader, layout.users, separator=layout.users_separator, columns=layout.user_columns
    )
    users = _users(raw, label=label, occupations=layout.occupations(raw, label=label))
    items = layout.items(reader)
    # ``required`` lists the ratings, users and items files, in that order.
    files = zip(("interactions", "users", "items"), layout.required, strict=True)
    labels = {table: reader.label(name) for table, name in files}
    # The generic table path: MovieLens is an instance of it, with its built-in schema.
    users, items, interactions = normalise_frames(users, items, interactions, labels=labels)
    return Dataset(users=users, items=items, interactions=interactions, source=layout.source)


def _ml1m_occupations(raw: pd.DataFrame, *, label: str) -> pd.Series:
    """``users.dat`` occupation codes (0-20) as the names its README lists."""
    codes = _to_int(raw, "occupation", label=label)
    unknown = ~codes.between(0, len(ML1M_OCCUPATIONS) - 1)
    if unknown.any():
        position = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataFormatError(
            label,
            line=int(raw.index[position]) + 1,
            problem=f"occupation code {codes.iloc[position]} is not one of 0-20.",
            fix="use the MovieLens-1M occupation codes listed in its README.",
        )
    return codes.map(lambda code: ML1M_OCCUPATIONS[code])


def _ml1m_items(reader: _ArchiveReader) -> pd.DataFrame:
    """``movies.dat``: genres are already ``|``-joined, the year is in the title."""
    columns = ("item_id", "title", "genres")
    raw, label = _read_table(reader, "movies.dat", separator="::", columns=columns)
    titles = raw["title"].str.strip()
    return _items(
        raw,
        label=label,
        titles=titles,
        years=_year_from_date_or_title(pd.Series("", index=raw.index), titles),
        genres=raw["genres"].str.strip(),
    )


_ML100K = _Layout(
    name="MovieLens-100K",
    source="ml-100k",
    required=ML100K_FILES,
    ratings="u.data",
    ratings_separator="\t",
    users="u.user",
    users_separator="|",
    user_columns=("user_id", "age", "gender", "occupation", "zip_code"),
    occupations=_ml100k_occupations,
    items=_ml100k_items,
)
_ML1M = _Layout(
    name="MovieLens-1M",
    source="ml-1m",
    required=ML1M_FILES,
    ratings="ratings.dat",
    ratings_separator="::",
    users="users.dat",
    users_separator="::",
    user_columns=("user_id", "gender", "age", "occupation", "zip_code"),
    occupations=_ml1m_occupations,
    items=_ml1m_items,
)


def read_ml100k(path: Path, *, max_member_bytes: int = MAX_MEMBER_BYTES) -> Dataset:
    """Read the official MovieLens-100K layout.

    Args:
        path: ``ml-100k.zip`` or a folder containing ``u.data``, ``u.user`` and ``u.item``.
        max_member_bytes: The largest file read (uncompressed); a larger one is refused.

    Returns:
        The dataset in MetaRec's canonical schema.

    Raises:
        DataSourceNotFoundError: The path or a required file is missing.
        DataFormatError: A file does not have the official format, or is larger than
            ``max_member_bytes``.
    """
    return _read(path, _ML100K, max_member_bytes=max_member_bytes)


def read_ml1m(path: Path, *, max_member_bytes: int = MAX_MEMBER_BYTES) -> Dataset:
    """Read the official MovieLens-1M layout (``::``-separated ``.dat`` files).

    Args:
        path: ``ml-1m.zip`` or a folder containing ``ratings.dat``, ``users.dat``, ``movies.dat``.
        max_member_bytes: The largest file read (uncompressed); a larger one is refused.

    Returns:
        The dataset in MetaRec's canonical schema.

    Raises:
        DataSourceNotFoundError: The path or a required file is missing.
        DataFormatError: A file does not have the official format, or is larger than
            ``max_member_bytes``.
    """
    return _read(path, _ML1M, max_member_bytes=max_member_bytes)
