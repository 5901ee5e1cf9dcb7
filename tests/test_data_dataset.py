"""Tests for jsnn.data.dataset (the Dataset container) and the jsnn.data package entry points."""

from pathlib import Path

import numpy as np
import pytest

from jsnn.data import DataError, Dataset, dataset_info, load_dataset, load_digits, load_yinyang

REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def test_dataset_accepts_float32_int32_and_has_len():
    ds = Dataset(np.zeros((4, 3), np.float32), np.array([0, 1, 2, 1], np.int32), 3, "toy")
    assert len(ds) == 4


@pytest.mark.parametrize(
    ("x", "y", "error", "match"),
    [
        (np.zeros((2, 3)), np.zeros(2, np.int32), TypeError, "float32"),
        (np.zeros((2, 3), np.float32), np.zeros(2, np.int64), TypeError, "int32"),
        (np.zeros((2, 3), np.float32), np.zeros(3, np.int32), ValueError, "x of shape"),
        (np.zeros((2, 3), np.float32), np.array([0, 3], np.int32), ValueError, "0..2"),
        (np.zeros((2, 3), np.float32), np.array([-1, 0], np.int32), ValueError, "0..2"),
    ],
)
def test_dataset_rejects_bad_arrays_with_clear_errors(x, y, error, match):
    with pytest.raises(error, match=match):
        Dataset(x, y, 3, "bad")


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_load_dataset_dispatches_by_name():
    np.testing.assert_array_equal(load_dataset("digits", "test", seed=2).x, load_digits("test", seed=2).x)
    np.testing.assert_array_equal(load_dataset("yinyang", "train", n=12).x, load_yinyang("train", n=12).x)
    with pytest.raises(ValueError, match="unknown data set 'cifar'.*digits"):
        load_dataset("cifar")


def test_dataset_info_reports_sizes_and_missing_mnist(tmp_path):
    info = dataset_info(data_dir=str(tmp_path))
    assert set(info) == {"digits", "mnist", "yinyang"}
    digits = info["digits"]
    assert digits["status"] == "ok" and digits["train"] + digits["test"] == 1797 and digits["num_classes"] == 10
    assert digits["test"] == len(load_digits("test"))
    assert info["mnist"]["location"] is None and str(tmp_path) in info["mnist"]["status"]
    assert info["yinyang"]["train"] == len(load_yinyang("train"))


def test_dataset_info_locates_real_mnist():
    if not REAL_MNIST.is_dir():
        pytest.skip(f"real MNIST IDX files not found in {REAL_MNIST}")
    info = dataset_info(data_dir=str(REAL_MNIST.parent))
    assert info["mnist"]["status"] == "ok" and info["mnist"]["location"] == str(REAL_MNIST)
