"""Tiny archives in the official MovieLens layouts, written by the tests (no real data)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n"
U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "2|GoldenEye (1995)|01-Jan-1995||http://x|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n"
    "3|Caf\xe9 (1994)|||http://x|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
)
U_DATA = (
    "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t878542960\n"
    "2\t3\t2\t878542960\n3\t2\t1\t878542961\n3\t1\t4\t878543000\n"
)
ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n"
ML1M_MOVIES = "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Jumanji (1995)::Adventure\n"
ML1M_RATINGS = "1::1::5::978300760\n1::2::3::978302109\n2::1::4::978301968\n"


def write_zip(path: Path, prefix: str, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(f"{prefix}/{name}", text.encode("latin-1"))
    return path


@pytest.fixture
def make_ml100k(tmp_path: Path) -> Callable[..., Path]:
    """Build a tiny ml-100k.zip; keyword arguments replace or (with None) drop files."""

    def build(name: str = "ml-100k.zip", **overrides: str | None) -> Path:
        files = {"u.user": U_USER, "u.item": U_ITEM, "u.data": U_DATA}
        for key, value in overrides.items():
            filename = key.replace("_", ".")
            if value is None:
                files.pop(filename)
            else:
                files[filename] = value
        return write_zip(tmp_path / name, "ml-100k", files)

    return build


@pytest.fixture
def ml1m_zip(tmp_path: Path) -> Path:
    return write_zip(
        tmp_path / "ml-1m.zip",
        "ml-1m",
        {"users.dat": ML1M_USERS, "movies.dat": ML1M_MOVIES, "ratings.dat": ML1M_RATINGS},
    )
