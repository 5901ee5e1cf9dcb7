"""Tests for jsnn.data.digits: the embedded 8x8 digits, its checksum and its stratified split."""

import hashlib

import numpy as np
import pytest

from jsnn.data import DataError, load_digits
from jsnn.data import digits as digits_module


@pytest.fixture(scope="module")
def raw():
    with np.load(digits_module.DIGITS_PATH) as f:
        return f["images"], f["target"]


def _sorted_rows(x, y):
    """Rows (features..., label) in float64, sorted lexicographically: a multiset fingerprint."""
    rows = np.concatenate([x.astype(np.float64), y.astype(np.float64)[:, None]], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_embedded_file_matches_sha256_constant():
    digest = hashlib.sha256(digits_module.DIGITS_PATH.read_bytes()).hexdigest()
    assert digest == digits_module.DIGITS_SHA256


def test_split_is_a_partition_of_the_file_scaled_by_16(raw):
    images, target = raw
    train, test = load_digits("train"), load_digits("test")
    assert len(train) + len(test) == target.shape[0]
    got = _sorted_rows(np.concatenate([train.x, test.x]), np.concatenate([train.y, test.y]))
    want = _sorted_rows(images.reshape(-1, 64) / 16.0, target)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.33])
def test_split_is_stratified_with_rounded_class_counts(raw, fraction):
    _, target = raw
    test = load_digits("test", test_fraction=fraction)
    for c in range(10):
        n_c = sum(1 for t in target if t == c)
        expected = int(fraction * n_c + 0.5)  # round half up, by hand
        assert int((test.y == c).sum()) == expected


def test_split_is_deterministic_and_depends_on_seed():
    a, b = load_digits("test", seed=3), load_digits("test", seed=3)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    c = load_digits("test", seed=4)
    assert not np.array_equal(a.x, c.x)


def test_dtypes_shapes_and_range():
    ds = load_digits("train")
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int32
    assert ds.x.shape == (len(ds), 64) and ds.num_classes == 10 and ds.name == "digits/train"
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0


def test_corrupt_embedded_file_raises_clear_error(tmp_path, monkeypatch):
    data = bytearray(digits_module.DIGITS_PATH.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt = tmp_path / "digits.npz"
    corrupt.write_bytes(bytes(data))
    monkeypatch.setattr(digits_module, "DIGITS_PATH", corrupt)
    with pytest.raises(DataError, match="corrupt.*sha256.*[Rr]einstall"):
        load_digits()


def test_missing_embedded_file_raises_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(digits_module, "DIGITS_PATH", tmp_path / "absent.npz")
    with pytest.raises(DataError, match="missing"):
        load_digits()


@pytest.mark.parametrize("kwargs", [{"test_fraction": 0.0}, {"test_fraction": 1.0}, {"test_fraction": 0.001}])
def test_bad_test_fraction_raises(kwargs):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits("train", **kwargs)


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="split"):
        load_digits("validation")
