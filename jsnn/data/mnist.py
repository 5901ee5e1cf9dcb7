"""MNIST from the original IDX files, found on disk and checked against the canonical md5 sums.

The four files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``) may be gzip-compressed (``.gz``) or raw. The directory is resolved in this
order: the explicit ``data_dir`` argument (CLI ``--data-dir``); the environment variable ``JSNN_DATA``;
the cache directory ``~/.cache/jsnn/mnist`` (``$XDG_CACHE_HOME/jsnn/mnist`` when that is set), which is
where :func:`jsnn.data.download_mnist` puts the files by default. Each candidate may be the folder that
holds the files or a folder with an ``mnist/`` subfolder that holds them.

IDX layout (big-endian): two zero bytes, a type code (0x08 = uint8), the number of dimensions, one
uint32 per dimension, then the data in C order. Images have magic 0x00000803 (2051), labels 0x00000801
(2049).

Source: Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten digits"; the files
are commonly distributed under CC BY-SA 3.0 and are not shipped with jsnn.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from .dataset import DataError, Dataset

ENV_VAR = "JSNN_DATA"

MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""Images file and labels file (without ``.gz``) of each split."""

MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
"""Canonical md5 of the *uncompressed* content of each file."""

MNIST_SIZES: dict[str, int] = {"train": 60_000, "test": 10_000}

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGES_MAGIC = 0x0803
_LABELS_MAGIC = 0x0801
_SIDE = 28

_HOW_TO_FIX = (
    "Pass the folder with --data-dir (or data_dir=...), set the environment variable JSNN_DATA, "
    "or download the files with jsnn.data.download_mnist() (needs a network)."
)


def default_cache_dir() -> Path:
    """The folder where MNIST is looked for last and downloaded to by default.

    Returns:
        ``$XDG_CACHE_HOME/jsnn/mnist`` when ``XDG_CACHE_HOME`` is set, else ``~/.cache/jsnn/mnist``.

    Example:
        >>> default_cache_dir().name
        'mnist'
    """
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "jsnn" / "mnist"


def _file_in(folder: Path, name: str) -> Path | None:
    """The raw or ``.gz`` copy of ``name`` inside ``folder``, raw first; None when neither exists."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing_in(folder: Path) -> list[str]:
    """Names of the MNIST files that ``folder`` lacks (in raw and ``.gz`` form)."""
    return [name for name in MNIST_MD5 if _file_in(folder, name) is None]


def find_mnist_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the folder that holds the four MNIST IDX files.

    Order: ``data_dir`` when given (then nothing else is tried); otherwise ``$JSNN_DATA`` when set, then
    :func:`default_cache_dir`. Each candidate ``c`` matches when ``c`` or ``c/mnist`` holds all four
    files, raw or ``.gz``.

    Args:
        data_dir: Explicit folder, e.g. from the CLI's ``--data-dir``.

    Returns:
        The folder with the files.

    Raises:
        DataError: When no candidate holds all four files; the message lists every place looked at,
            what was missing there, and how to fix it.

    Example:
        >>> import os, tempfile
        >>> empty = tempfile.mkdtemp()
        >>> try:
        ...     find_mnist_dir(empty)
        ... except DataError as e:
        ...     print("not found")
        not found
    """
    if data_dir is not None:
        candidates = [Path(data_dir).expanduser()]
    else:
        env = os.environ.get(ENV_VAR)
        candidates = ([Path(env).expanduser()] if env else []) + [default_cache_dir()]
    looked = []
    for candidate in candidates:
        for folder in (candidate, candidate / "mnist"):
            if not folder.is_dir():
                looked.append(f"{folder} (no such directory)")
                continue
            missing = _missing_in(folder)
            if not missing:
                return folder
            looked.append(f"{folder} (missing {', '.join(missing)})")
    raise DataError("MNIST IDX files not found. Looked in: " + "; ".join(looked) + ". " + _HOW_TO_FIX)


def _read_bytes(path: Path) -> bytes:
    """The uncompressed content of a raw or gzip file."""
    data = path.read_bytes()
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(
            f"{path} is not a complete gzip file ({err}); it is probably truncated. "
            "Delete it and copy or download it again."
        ) from None


def _parse_idx(buf: bytes, source: str) -> np.ndarray:
    """Parse IDX bytes into an array with the stored dtype (converted to native byte order)."""
    if len(buf) < 4:
        raise DataError(f"{source} is truncated: {len(buf)} bytes, shorter than the 4-byte IDX magic number.")
    if buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_DTYPES:
        raise DataError(
            f"{source} is not an IDX file: magic number 0x{buf[:4].hex()} (expected 0x0000TTNN with type "
            "code TT in 08,09,0b,0c,0d,0e). Check that the file is an MNIST IDX file, not HTML or another format."
        )
    ndim = buf[3]
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{source} is truncated inside its header ({len(buf)} of {header} bytes).")
    shape = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[buf[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(buf) - header
    if actual < expected:
        raise DataError(
            f"{source} is truncated: the header promises shape {shape} ({expected} bytes of data) but only "
            f"{actual} bytes follow. Delete it and copy or download it again."
        )
    if actual > expected:
        raise DataError(f"{source} has {actual - expected} bytes after the data its header {shape} describes.")
    return np.frombuffer(buf, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read any IDX file (raw or ``.gz``) into a numpy array, with no checksum check.

    Args:
        path: The file.

    Returns:
        The array with the shape and element type of its header, in native byte order.

    Raises:
        DataError: Missing file, truncated file or gzip stream, bad magic number, trailing bytes.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
        >>> _ = p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9]))
        >>> read_idx(p).tolist()
        [7, 0, 9]
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file {path} does not exist.")
    return _parse_idx(_read_bytes(path), str(path))


def md5_of_content(buf: bytes) -> str:
    """The md5 hex digest of ``buf`` (used for the uncompressed content of the MNIST files).

    Args:
        buf: The bytes.

    Returns:
        32 lowercase hex digits.

    Example:
        >>> md5_of_content(b"")
        'd41d8cd98f00b204e9800998ecf8427e'
    """
    return hashlib.md5(buf, usedforsecurity=False).hexdigest()


def _load_checked(folder: Path, name: str, magic: int, shape_tail: tuple[int, ...], n: int) -> np.ndarray:
    """Read one MNIST file, check magic, shape and md5, and return its uint8 array."""
    path = _file_in(folder, name)
    if path is None:
        raise DataError(f"MNIST file {name}(.gz) is missing from {folder}. " + _HOW_TO_FIX)
    buf = _read_bytes(path)
    if len(buf) >= 4 and int.from_bytes(buf[:4], "big") != magic:
        raise DataError(
            f"{path} has magic number 0x{buf[:4].hex()}, expected 0x{magic:08x} for {name}. "
            "The file is misnamed or not MNIST; copy or download it again."
        )
    array = _parse_idx(buf, str(path))
    if array.shape != (n, *shape_tail):
        raise DataError(
            f"{path} has shape {array.shape}, expected {(n, *shape_tail)} for {name}. "
            "The file is not the canonical MNIST file; copy or download it again."
        )
    digest = md5_of_content(buf)
    if digest != MNIST_MD5[name]:
        raise DataError(
            f"{path} failed its checksum: md5 of the uncompressed content is {digest}, expected "
            f"{MNIST_MD5[name]}. The file is corrupt; delete it and copy or download it again."
        )
    return array


def load_mnist(
    split: Literal["train", "test"] = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    flatten: bool = True,
) -> Dataset:
    """Load an MNIST split from IDX files, checking every file against its canonical md5.

    Pixels are scaled as x = pixel / 255.

    Args:
        split: ``"train"`` (60,000 samples) or ``"test"`` (10,000 samples, the t10k files).
        data_dir: Folder with the files; when None it is resolved by :func:`find_mnist_dir`.
        flatten: Return ``x`` as (N, 784) when True, else as (N, 28, 28).

    Returns:
        A :class:`Dataset` with ``x`` float32 in [0, 1], ``y`` int32 (N,), 10 classes.

    Raises:
        ValueError: For an unknown split.
        DataError: Missing folder or file, truncated file, wrong magic number, wrong dimensions,
            checksum mismatch; each message names the file and says how to fix it.

    References:
        LeCun, Bottou, Bengio and Haffner, Gradient-based learning applied to document recognition,
        Proc. IEEE 86(11), 1998 (no arXiv id).

    Example:
        >>> from jsnn.data import load_mnist
        >>> test = load_mnist("test", data_dir="../shared/data/mnist")  # doctest: +SKIP
        >>> test.x.shape  # doctest: +SKIP
        (10000, 784)
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    folder = find_mnist_dir(data_dir)
    images_name, labels_name = MNIST_FILES[split]
    n = MNIST_SIZES[split]
    images = _load_checked(folder, images_name, _IMAGES_MAGIC, (_SIDE, _SIDE), n)
    labels = _load_checked(folder, labels_name, _LABELS_MAGIC, (), n)
    x = images.astype(np.float32)
    x /= np.float32(255)
    if flatten:
        x = x.reshape(n, _SIDE * _SIDE)
    return Dataset(x=x, y=labels.astype(np.int32), num_classes=10, name=f"mnist/{split}")
