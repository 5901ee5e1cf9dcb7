"""Tests for jsnn.data.mnist (IDX reader, directory resolution, checks) and jsnn.data.download.

Real MNIST is read from ../shared/data/mnist when present; everything else uses small synthetic files
under tmp_path and a loopback HTTP server started here. Nothing touches the network.
"""

import functools
import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from jsnn.data import DataError, download_mnist, find_mnist_dir, load_mnist, read_idx
from jsnn.data.mnist import MNIST_FILES, MNIST_MD5

REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
_TYPE_CODES = {np.dtype("uint8"): 0x08, np.dtype("int16"): 0x0B, np.dtype("float32"): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """Write an IDX file by hand with struct: the oracle for the parser."""
    header = struct.pack(">BBBB", 0, 0, _TYPE_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, *, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data, compresslevel=1)
    path.write_bytes(data)
    return path


def make_mnist_like_dir(folder: Path, names=tuple(MNIST_MD5)) -> Path:
    """A folder with (empty) files of the given MNIST names: enough for directory resolution."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.gz").write_bytes(b"")
    return folder


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No JSNN_DATA and an empty cache root, so only what a test sets up is found."""
    monkeypatch.delenv("JSNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


# ----- IDX parsing on synthetic files ---------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_read_idx_round_trips_hand_written_files(tmp_path, gz, dtype):
    base = np.arange(30).reshape(2, 3, 5) * 7 - 20
    array = (base % 256 if dtype == "uint8" else base).astype(dtype)
    path = write(tmp_path / "a-idx3", idx_bytes(array), gz=gz)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.shape == array.shape
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data_is_reported(tmp_path, gz):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-10]
    path = write(tmp_path / "t-idx3", data, gz=gz)
    with pytest.raises(DataError, match=r"truncated.*\(4, 28, 28\)"):
        read_idx(path)


@pytest.mark.parametrize("cut", [2, 9])
def test_truncated_header_is_reported(tmp_path, cut):
    path = write(tmp_path / "h-idx3", idx_bytes(np.zeros((4, 28, 28), np.uint8))[:cut], gz=False)
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_truncated_gzip_stream_is_reported(tmp_path):
    path = write(tmp_path / "g-idx1", idx_bytes(np.arange(200, dtype=np.uint8)), gz=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="gzip.*truncated"):
        read_idx(path)


@pytest.mark.parametrize("magic", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"<htm"])
def test_bad_magic_is_reported(tmp_path, magic):
    data = magic + idx_bytes(np.arange(3, dtype=np.uint8))[4:]
    path = write(tmp_path / "m-idx1", data, gz=False)
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)


def test_trailing_bytes_are_reported(tmp_path):
    path = write(tmp_path / "x-idx1", idx_bytes(np.arange(3, dtype=np.uint8)) + b"\x00\x01", gz=False)
    with pytest.raises(DataError, match="2 bytes after"):
        read_idx(path)


def test_missing_idx_file_is_reported(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope")


# ----- load_mnist checks on synthetic folders -------------------------------------------------------


def synthetic_test_split(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    images_name, labels_name = MNIST_FILES["test"]
    write(folder / images_name, idx_bytes(images), gz=True)
    write(folder / labels_name, idx_bytes(labels), gz=True)
    for name in MNIST_FILES["train"]:  # present so that the folder is found; never read for "test"
        (folder / f"{name}.gz").write_bytes(b"")
    return folder


def test_wrong_magic_for_the_file_role_is_reported(tmp_path):
    labels = np.zeros(10_000, np.uint8)
    folder = synthetic_test_split(tmp_path / "d", labels, labels)  # a labels file named as images
    with pytest.raises(DataError, match="magic number 0x00000801, expected 0x00000803"):
        load_mnist("test", data_dir=folder)


def test_wrong_dimensions_are_reported(tmp_path):
    folder = synthetic_test_split(tmp_path / "d", np.zeros((10_000, 27, 28), np.uint8), np.zeros(10_000, np.uint8))
    with pytest.raises(DataError, match=r"shape \(10000, 27, 28\), expected \(10000, 28, 28\)"):
        load_mnist("test", data_dir=folder)


def test_checksum_mismatch_is_reported(tmp_path):
    folder = synthetic_test_split(tmp_path / "d", np.zeros((10_000, 28, 28), np.uint8), np.zeros(10_000, np.uint8))
    with pytest.raises(DataError, match=f"checksum.*expected {MNIST_MD5['t10k-images-idx3-ubyte']}"):
        load_mnist("test", data_dir=folder)


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="split"):
        load_mnist("valid", data_dir="unused")


# ----- directory resolution -------------------------------------------------------------------------


def test_explicit_dir_wins_over_env_and_is_not_a_fallback(clean_env, monkeypatch):
    explicit = make_mnist_like_dir(clean_env / "explicit")
    env = make_mnist_like_dir(clean_env / "env")
    monkeypatch.setenv("JSNN_DATA", str(env))
    assert find_mnist_dir(explicit) == explicit
    with pytest.raises(DataError) as info:
        find_mnist_dir(clean_env / "empty")
    assert str(clean_env / "empty") in str(info.value) and str(env) not in str(info.value)


def test_env_var_wins_over_cache_and_accepts_a_parent_with_mnist_subfolder(clean_env, monkeypatch):
    make_mnist_like_dir(clean_env / "cache" / "jsnn" / "mnist")
    env_mnist = make_mnist_like_dir(clean_env / "root" / "mnist")
    monkeypatch.setenv("JSNN_DATA", str(clean_env / "root"))
    assert find_mnist_dir() == env_mnist


def test_cache_is_used_last(clean_env, monkeypatch):
    cache = make_mnist_like_dir(clean_env / "cache" / "jsnn" / "mnist")
    monkeypatch.setenv("JSNN_DATA", str(clean_env / "does-not-exist"))
    assert find_mnist_dir() == cache


def test_not_found_error_lists_places_missing_files_and_fixes(clean_env, monkeypatch):
    partial = make_mnist_like_dir(clean_env / "partial", names=["train-images-idx3-ubyte"])
    monkeypatch.setenv("JSNN_DATA", str(partial))
    with pytest.raises(DataError) as info:
        find_mnist_dir()
    message = str(info.value)
    assert str(partial) in message and "t10k-labels-idx1-ubyte" in message
    assert str(clean_env / "cache" / "jsnn" / "mnist") in message
    assert "--data-dir" in message and "JSNN_DATA" in message and "download_mnist" in message


def test_raw_files_are_found_as_well_as_gz(clean_env):
    folder = clean_env / "raw"
    folder.mkdir()
    for name in MNIST_MD5:
        (folder / name).write_bytes(b"")
    assert find_mnist_dir(folder) == folder


# ----- the real files -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_dir():
    if not all((REAL_MNIST / f"{name}.gz").is_file() for name in MNIST_MD5):
        pytest.skip(f"real MNIST IDX files not found in {REAL_MNIST}")
    return REAL_MNIST


def _pixels_by_hand(path: Path, sample: int, count: int) -> list[int]:
    with gzip.open(path, "rb") as f:
        f.seek(16 + 784 * sample)
        return list(f.read(count))


def test_real_test_split_matches_bytes_read_by_hand(real_dir):
    ds = load_mnist("test", data_dir=real_dir)
    assert ds.x.shape == (10_000, 784) and ds.x.dtype == np.float32 and ds.y.dtype == np.int32
    assert ds.name == "mnist/test" and ds.num_classes == 10
    for sample in (0, 1234, 9999):
        by_hand = _pixels_by_hand(real_dir / "t10k-images-idx3-ubyte.gz", sample, 784)
        np.testing.assert_array_equal(ds.x[sample], np.array(by_hand, np.float32) / np.float32(255))
    with gzip.open(real_dir / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        labels_by_hand = list(f.read())[8:]
    assert ds.y.tolist() == labels_by_hand


def test_real_train_split_shape_range_and_flatten(real_dir):
    ds = load_mnist("train", data_dir=real_dir, flatten=False)
    assert ds.x.shape == (60_000, 28, 28) and len(ds) == 60_000
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.y.tolist()[:10] == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the well-known first labels
    by_hand = _pixels_by_hand(real_dir / "train-images-idx3-ubyte.gz", 59_999, 784)
    np.testing.assert_array_equal(ds.x[59_999].ravel() * np.float32(255), np.array(by_hand, np.float32))


def test_real_files_found_through_env_var_pointing_at_parent(real_dir, monkeypatch):
    monkeypatch.setenv("JSNN_DATA", str(real_dir.parent))
    assert find_mnist_dir() == real_dir


# ----- download against a loopback server -----------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/served on 127.0.0.1 (port chosen by the OS); yields (folder, base_url)."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def serve_fake_mnist(served: Path) -> dict[str, str]:
    """Gzip small fake IDX files into the served folder; return their md5 sums (uncompressed)."""
    checksums = {}
    for i, name in enumerate(MNIST_MD5):
        content = idx_bytes(np.full((3, 2), i, np.uint8))
        (served / f"{name}.gz").write_bytes(gzip.compress(content))
        checksums[name] = hashlib.md5(content).hexdigest()
    return checksums


def test_download_fetches_verifies_and_leaves_only_the_files(server, tmp_path):
    served, url = server
    checksums = serve_fake_mnist(served)
    dest = download_mnist(tmp_path / "dest", base_url=url, checksums=checksums, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in MNIST_MD5)
    for i, name in enumerate(MNIST_MD5):
        np.testing.assert_array_equal(read_idx(dest / f"{name}.gz"), np.full((3, 2), i, np.uint8))


def test_download_skips_valid_files_and_replaces_corrupt_ones(server, tmp_path):
    served, url = server
    checksums = serve_fake_mnist(served)
    dest = download_mnist(tmp_path / "dest", base_url=url, checksums=checksums, progress=False)
    first = next(iter(MNIST_MD5))
    (dest / f"{first}.gz").write_bytes(b"garbage")
    for name in list(MNIST_MD5)[1:]:
        (served / f"{name}.gz").unlink()  # valid local copies must not be fetched again
    download_mnist(dest, base_url=url, checksums=checksums, progress=False)
    assert hashlib.md5(gzip.decompress((dest / f"{first}.gz").read_bytes())).hexdigest() == checksums[first]


@pytest.mark.parametrize(
    ("payload", "message"),
    [(gzip.compress(b"wrong content"), "failed its checksum"), (b"<html>not gzip</html>", "complete gzip")],
    ids=["wrong-md5", "not-gzip"],
)
def test_download_mismatch_raises_and_leaves_no_partial_file(server, tmp_path, payload, message):
    served, url = server
    checksums = serve_fake_mnist(served)
    bad = list(MNIST_MD5)[2]
    (served / f"{bad}.gz").write_bytes(payload)
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=message):
        download_mnist(dest, base_url=url, checksums=checksums, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in list(MNIST_MD5)[:2])


def test_download_http_error_raises_and_leaves_no_partial_file(server, tmp_path):
    _, url = server
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="could not download.*404"):
        download_mnist(dest, base_url=url, progress=False)
    assert list(dest.iterdir()) == []
