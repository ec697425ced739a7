import pytest
from metarec.data.download import download, file_checksum
from metarec.errors import ChecksumMismatchError, DownloadError


def test_download_verifies_the_checksum_before_keeping_the_file(tmp_path):
    source = tmp_path / "archive.zip"
    source.write_bytes(b"payload")
    good = file_checksum(source)
    target = tmp_path / "downloads" / "archive.zip"
    assert download(source.as_uri(), target, checksum=good).read_bytes() == b"payload"

    other = tmp_path / "downloads" / "other.zip"
    with pytest.raises(ChecksumMismatchError, match=r"expected md5:0+"):
        download(source.as_uri(), other, checksum="md5:" + "0" * 32)
    assert not other.exists()
    assert sorted(p.name for p in other.parent.iterdir()) == ["archive.zip"]


def test_official_archive_names_are_checked_against_the_published_checksum(tmp_path):
    fake = tmp_path / "ml-100k.zip"
    fake.write_bytes(b"not the real archive")
    with pytest.raises(ChecksumMismatchError, match="0e33842e24a9c977be4e0107933c0723"):
        download(fake.as_uri(), tmp_path / "out" / "ml-100k.zip")


def test_unreachable_url_is_a_download_error(tmp_path):
    with pytest.raises(DownloadError, match="pass --path"):
        download(
            (tmp_path / "missing.zip").as_uri(), tmp_path / "x.zip", checksum="md5:" + "0" * 32
        )


def test_a_non_official_url_without_checksum_is_refused_before_downloading(tmp_path):
    """Issue 20: a download from any other URL used to be kept unchecked."""
    source = tmp_path / "ratings.zip"
    source.write_bytes(b"anything")
    target = tmp_path / "downloads" / "ratings.zip"
    with pytest.raises(DownloadError, match=r"No checksum is known for .*ratings\.zip") as raised:
        download(source.as_uri(), target)
    assert "Fix: pass --checksum sha256:" in str(raised.value)
    assert not target.parent.exists()
    assert download(source.as_uri(), target, checksum=file_checksum(source)).is_file()


@pytest.mark.parametrize("checksum", ["crc32:1234", "sha256:", "0e33842e24a9c977be4e0107933c0723"])
def test_a_malformed_checksum_is_refused_before_downloading(tmp_path, checksum):
    with pytest.raises(DownloadError, match="is not md5:<hex> or sha256:<hex>"):
        download((tmp_path / "missing.zip").as_uri(), tmp_path / "x.zip", checksum=checksum)
