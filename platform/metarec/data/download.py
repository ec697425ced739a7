"""Download an archive by URL into a local file, verifying its checksum."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from metarec.errors import ChecksumMismatchError, DownloadError

# Checksums GroupLens publishes beside the official archives (``<name>.zip.md5``).
OFFICIAL_CHECKSUMS: dict[str, str] = {
    "ml-100k.zip": "md5:0e33842e24a9c977be4e0107933c0723",
    "ml-1m.zip": "md5:c4d9eecfca2ab87c1945afe126590906",
}
CHECKSUM_ALGORITHMS = ("md5", "sha256")


def file_checksum(path: Path, *, algorithm: str = "sha256") -> str:
    """Return ``"<algorithm>:<hex digest>"`` of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{algorithm}:{digest.hexdigest()}"


def verify_checksum(path: Path, expected: str, *, what: str) -> None:
    """Check ``path`` against ``expected`` (``"md5:…"`` or ``"sha256:…"``).

    Raises:
        ChecksumMismatchError: The file's checksum differs.
    """
    algorithm, _, _ = expected.partition(":")
    actual = file_checksum(path, algorithm=algorithm)
    if actual.lower() != expected.lower():
        raise ChecksumMismatchError(
            what,
            expected=expected,
            actual=actual,
            fix="download it again; if the source changed on purpose, pass --checksum "
            "with the new value.",
        )


def expected_checksum(url: str, *, checksum: str | None) -> str:
    """The checksum a download of ``url`` must match: ``checksum``, else the official one.

    Raises:
        DownloadError: ``checksum`` is not ``md5:…``/``sha256:…``, or none was given for a URL
            that is not an official archive.
    """
    if checksum:
        algorithm, _, digest = checksum.partition(":")
        if algorithm.lower() not in CHECKSUM_ALGORITHMS or not digest:
            raise DownloadError(
                f"--checksum {checksum!r} is not md5:<hex> or sha256:<hex>.",
                fix="pass the archive's checksum as sha256:<64 hex digits> (or md5:<32>).",
            )
        return checksum
    official = OFFICIAL_CHECKSUMS.get(url.rstrip("/").rsplit("/", 1)[-1])
    if official is None:
        raise DownloadError(
            f"No checksum is known for {url}: only the official MovieLens archives "
            f"({', '.join(sorted(OFFICIAL_CHECKSUMS))}) are verified without one, and an "
            "unverified download is never ingested.",
            fix="pass --checksum sha256:<hex> (the checksum its publisher gives), or download "
            "it yourself, check it, and pass --path.",
        )
    return official


def download(
    url: str,
    destination: Path,
    *,
    checksum: str | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download ``url`` to ``destination`` atomically and verify its checksum.

    The checksum is ``checksum`` when given, else the official one for a known archive name
    (``ml-100k.zip``, ``ml-1m.zip``). Any other URL without ``checksum`` is refused before
    anything is downloaded: MetaRec never ingests an archive it could not verify.

    Args:
        url: http(s) or file URL.
        destination: Final file path; written only after the checksum matched.
        checksum: ``"md5:…"`` or ``"sha256:…"``.
        on_progress: Called with (bytes so far, total bytes or None).

    Returns:
        ``destination``.

    Raises:
        DownloadError: No checksum is known for the URL, or the URL could not be read.
        ChecksumMismatchError: The file does not match the expected checksum.
    """
    expected = expected_checksum(url, checksum=checksum)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=destination.parent, delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                total = response.headers.get("Content-Length")
                total_bytes = int(total) if total else None
                done = 0
                while block := response.read(1 << 16):
                    tmp.write(block)
                    done += len(block)
                    if on_progress:
                        on_progress(done, total_bytes)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            tmp_path.unlink(missing_ok=True)
            raise DownloadError(
                f"Cannot download {url} ({exc}).",
                fix="check the URL and the network, or download it yourself and pass --path.",
            ) from exc
    try:
        verify_checksum(tmp_path, expected, what=url)
        shutil.move(tmp_path, destination)
    finally:
        tmp_path.unlink(missing_ok=True)
    return destination
