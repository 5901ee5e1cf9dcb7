"""Tests for jsnn.data.yinyang: the class rule, balance, geometry and determinism of the generator."""

import math

import numpy as np
import pytest

from jsnn.data import load_yinyang, yinyang_class

# Hand-worked with R = 0.5, r = 0.1: left dot at (0.25, 0.5), right dot at (0.75, 0.5).
HAND_PICKED = [
    ((0.25, 0.5), 2),  # centre of the left dot
    ((0.78, 0.46), 2),  # d_R = 0.05 < r: inside the right dot
    ((0.25, 0.65), 0),  # d_L = 0.15, in the yin ring around the left dot
    ((0.25, 0.30), 0),  # d_L = 0.20 <= 0.25, yin ring below the left dot
    ((0.75, 0.65), 1),  # d_R = 0.15 <= 0.25 and d_L > 0.25: yang ring around the right dot
    ((0.75, 0.30), 1),  # d_R = 0.20, below the right dot: yang
    ((0.50, 0.90), 0),  # upper half, far from the right dot: yin
    ((0.50, 0.10), 1),  # lower half, far from both dots: yang
    ((0.05, 0.45), 0),  # d_L = hypot(0.20, 0.05) = 0.206 <= 0.25: still the yin ring, at the left edge
    ((0.20, 0.15), 1),  # d_L = 0.354 > 0.25, lower half: yang
    ((0.80, 0.80), 0),  # d_R = 0.304 > 0.25, upper half: yin
]


def reference_class(x: float, y: float) -> int:
    """The rule of ALGORITHMS §2.8 written as plain Python, one point at a time."""
    big, small = 0.5, 0.1
    d_left = math.sqrt((x - 0.5 * big) ** 2 + (y - big) ** 2)
    d_right = math.sqrt((x - 1.5 * big) ** 2 + (y - big) ** 2)
    if d_left < small or d_right < small:
        return 2
    if d_right <= small or small < d_left <= 0.5 * big or (y > big and d_right > 0.5 * big):
        return 0
    return 1


@pytest.mark.parametrize(("point", "label"), HAND_PICKED)
def test_class_rule_on_hand_picked_points(point, label):
    assert reference_class(*point) == label
    assert yinyang_class(np.array([point[0]]), np.array([point[1]])).tolist() == [label]


def test_vectorised_rule_matches_plain_python_loop():
    pts = np.random.default_rng(0).uniform(0.0, 1.0, size=(2000, 2))
    got = yinyang_class(pts[:, 0], pts[:, 1])
    assert got.dtype == np.int32
    assert got.tolist() == [reference_class(float(a), float(b)) for a, b in pts]


@pytest.mark.parametrize(("split", "n"), [("train", 5000), ("test", 1000)])
def test_default_sizes_balance_and_geometry(split, n):
    ds = load_yinyang(split)
    assert ds.x.shape == (n, 4) and ds.x.dtype == np.float32 and ds.y.dtype == np.int32
    assert ds.num_classes == 3 and ds.name == f"yinyang/{split}"
    for k in range(3):
        assert abs(int((ds.y == k).sum()) - n / 3) <= 1
    x, y = ds.x[:, 0].astype(np.float64), ds.x[:, 1].astype(np.float64)
    assert np.all((x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25 + 1e-6)
    np.testing.assert_allclose(ds.x[:, 2], 1.0 - x, atol=1e-7, rtol=0)
    np.testing.assert_allclose(ds.x[:, 3], 1.0 - y, atol=1e-7, rtol=0)
    assert ds.y.tolist() == [reference_class(float(a), float(b)) for a, b in zip(x, y, strict=True)]


def test_classes_are_interleaved_not_sorted():
    y = load_yinyang("test", n=300).y
    assert len(set(y[:30].tolist())) == 3


def test_small_n_splits_remainder_over_first_classes():
    assert np.bincount(load_yinyang("train", n=7).y, minlength=3).tolist() == [3, 2, 2]
    assert np.bincount(load_yinyang("train", n=1).y, minlength=3).tolist() == [1, 0, 0]


def test_deterministic_with_distinct_splits_and_seeds():
    a, b = load_yinyang("train", n=90, seed=5), load_yinyang("train", n=90, seed=5)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, load_yinyang("test", n=90, seed=5).x)
    assert not np.array_equal(a.x, load_yinyang("train", n=90, seed=6).x)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="split"):
        load_yinyang("val")
    with pytest.raises(ValueError, match="positive"):
        load_yinyang("train", n=0)
