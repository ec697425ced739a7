"""Zip members are read by streaming, up to a cap (issue 20, item 9: zip bombs).

A member used to be read whole into memory, whatever size it declared or decompressed to.
"""

import struct
import zipfile
from pathlib import Path

import pytest
from metarec.data.movielens import read_ml100k
from metarec.errors import DataFormatError

_CENTRAL = b"PK\x01\x02"
DEFAULT_CAP = 256 * 1024 * 1024  # metarec.data.movielens.MAX_MEMBER_BYTES


def declare_size(archive: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size ``member`` declares in the zip's central directory."""
    data = bytearray(archive.read_bytes())
    at = data.find(_CENTRAL)
    while at != -1:
        (name_length,) = struct.unpack_from("<H", data, at + 28)
        name = bytes(data[at + 46 : at + 46 + name_length]).decode()
        if name.endswith(member):
            struct.pack_into("<I", data, at + 24, size)
        at = data.find(_CENTRAL, at + 1)
    archive.write_bytes(bytes(data))


def test_a_member_that_decompresses_past_the_cap_is_refused(make_ml100k, tmp_path):
    """2 MiB of one line repeated compresses to a few KiB: the read stops at the 1 MiB cap."""
    bomb = make_ml100k(u_data="1\t1\t5\t874965758\n" * 120_000)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DataFormatError, match=r"u\.data.*more than the 1,048,576-byte cap"):
        read_ml100k(bomb, max_member_bytes=1 << 20)


def test_a_member_declaring_more_than_the_default_cap_is_refused_before_reading(make_ml100k):
    archive = make_ml100k()
    declare_size(archive, "u.data", DEFAULT_CAP + 1)
    with zipfile.ZipFile(archive) as opened:
        assert opened.getinfo("ml-100k/u.data").file_size == DEFAULT_CAP + 1
    with pytest.raises(DataFormatError, match="is 268,435,457 bytes uncompressed, more than"):
        read_ml100k(archive)


def test_official_sized_members_still_read(make_ml100k, tmp_path):
    dataset = read_ml100k(make_ml100k(), max_member_bytes=4096)
    assert len(dataset.interactions) == 6
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "u.data").write_text("1\t1\t5\t874965758\n" * 1000)
    (folder / "u.user").write_text("1|24|M|technician|85711\n")
    (folder / "u.item").write_text(
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    )
    with pytest.raises(DataFormatError, match=r"u\.data.*cap on one member"):
        read_ml100k(folder, max_member_bytes=4096)
