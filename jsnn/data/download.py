"""Download the four MNIST IDX files, verified, for users who have a network.

Each file is streamed to a temporary file in the destination folder, its *uncompressed* content is
checked against the md5 sum, and only then is it renamed into place with ``os.replace``. A failed
download or a checksum mismatch leaves no partial file behind. jsnn never downloads at test time;
the tests serve files from a loopback HTTP server.
"""

from __future__ import annotations

import os
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path

from tqdm.auto import tqdm

from .dataset import DataError
from .mnist import MNIST_MD5, _read_bytes, default_cache_dir, md5_of_content

DEFAULT_BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_CHUNK = 1 << 16


def _verified_gzip_md5(path: Path, url: str) -> str:
    """The md5 of the uncompressed content of a downloaded gzip file."""
    try:
        return md5_of_content(_read_bytes(path))
    except DataError:
        raise DataError(
            f"download of {url} did not give a complete gzip file (truncated, or an error page instead of the "
            "file). Nothing was kept; try again or use another base_url."
        ) from None


def _fetch(url: str, target: Path, expected_md5: str, *, progress: bool, timeout: float) -> None:
    """Stream ``url`` into a temp file beside ``target``, verify it, then rename it to ``target``."""
    # A name of our own (not mkstemp) so that the file gets the usual permissions from the umask.
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex}.part.gz")
    try:
        try:
            with open(tmp, "xb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
        except OSError as err:
            raise DataError(
                f"could not download {url}: {err}. Check the network and base_url, or copy the files by hand "
                f"into {target.parent}."
            ) from err
        digest = _verified_gzip_md5(tmp, url)
        if digest != expected_md5:
            raise DataError(
                f"download of {url} failed its checksum: md5 of the uncompressed content is {digest}, "
                f"expected {expected_md5}. Nothing was written to {target}; try again or use another base_url."
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _already_valid(target: Path, expected_md5: str) -> bool:
    """Whether ``target`` exists and its uncompressed content has the expected md5."""
    if not target.is_file():
        return False
    try:
        return md5_of_content(_read_bytes(target)) == expected_md5
    except DataError:
        return False


def download_mnist(
    dest_dir: str | os.PathLike[str] | None = None,
    *,
    base_url: str = DEFAULT_BASE_URL,
    checksums: Mapping[str, str] = MNIST_MD5,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download the MNIST ``.gz`` files into ``dest_dir``, verifying each before it appears there.

    A file that is already present and verifies is not downloaded again; one that fails is replaced.

    Args:
        dest_dir: Destination folder, created if needed; None means :func:`jsnn.data.mnist.default_cache_dir`,
            where :func:`jsnn.data.load_mnist` finds it without further arguments.
        base_url: URL prefix; file ``NAME`` is fetched from ``base_url + "/" + NAME + ".gz"``.
        checksums: File name (without ``.gz``) to md5 of its uncompressed content; defaults to the
            canonical sums of the four MNIST files.
        progress: Show a tqdm progress bar per file.
        timeout: Socket timeout in seconds.

    Returns:
        The destination folder.

    Raises:
        DataError: The server could not be reached or answered with an error, a file is not a complete
            gzip stream, or its md5 does not match. No partial or unverified file is left behind.

    Example:
        >>> from jsnn.data import download_mnist, load_mnist
        >>> folder = download_mnist()  # doctest: +SKIP
        >>> load_mnist("test", data_dir=folder).x.shape  # doctest: +SKIP
        (10000, 784)
    """
    dest = Path(dest_dir).expanduser() if dest_dir is not None else default_cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    for name, expected_md5 in checksums.items():
        target = dest / f"{name}.gz"
        if not _already_valid(target, expected_md5):
            url = f"{base_url.rstrip('/')}/{name}.gz"
            _fetch(url, target, expected_md5, progress=progress, timeout=timeout)
    return dest
