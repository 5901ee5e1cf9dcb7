"""Tests for jsnn.data.npz (own data files) and jsnn.data.scaling (input scaling fitted on training data)."""

import numpy as np
import pytest

from jsnn.data import DataError, fit_scaling, load_npz, scale_inputs, scaled_width


def write(path, **arrays):
    rng = np.random.default_rng(0)
    base = {"x_train": rng.normal(size=(6, 3)), "y_train": np.array([0, 1, 2, 0, 1, 2]),
            "x_test": rng.normal(size=(4, 3)), "y_test": np.array([2, 1, 0, 1])}
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def test_static_and_time_series_files_load_as_float32_and_int32(tmp_path):
    train, test = load_npz(write(tmp_path / "a.npz"))
    assert train.x.dtype == np.float32 and train.y.dtype == np.int32 and train.num_classes == 3
    assert train.x.shape == (6, 3) and test.y.tolist() == [2, 1, 0, 1]
    seq = np.zeros((6, 5, 2))
    train, _ = load_npz(write(tmp_path / "b.npz", x_train=seq, x_test=seq[:4]))
    assert train.x.shape == (6, 5, 2)


def test_num_classes_is_declared_or_one_plus_the_largest_label(tmp_path):
    train, _ = load_npz(write(tmp_path / "a.npz", y_test=np.array([0, 0, 0, 4])))
    assert train.num_classes == 5
    train, _ = load_npz(write(tmp_path / "b.npz", num_classes=np.array(7)))
    assert train.num_classes == 7


def test_integral_float_labels_are_accepted(tmp_path):
    train, _ = load_npz(write(tmp_path / "a.npz", y_train=np.array([0.0, 1, 2, 0, 1, 2])))
    assert train.y.tolist() == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("arrays, message", [
    ({"y_test": None}, r"lacks the array\(s\) \['y_test'\]"),
    ({"y_train": np.array([0, 1, 2])}, "x_train has 6 samples but y_train has 3"),
    ({"y_train": np.array([0, 1, 2, 0, 1, -1])}, r"labels must lie in 0\.\.2; got range -1\.\.2"),
    ({"y_test": np.array([0, 1, 2, 3]), "num_classes": np.array(3)}, r"labels must lie in 0\.\.2; got range 0\.\.3"),
    ({"y_train": np.array([0, 1, 2, 0, 1, 1.5])}, "integer class labels .* non-integer values"),
    ({"x_train": np.array([[np.nan, 0, 0]] * 6)}, "x_train holds 6 NaN or infinite"),
    ({"x_test": np.array([[np.inf, 0, 0]] * 4)}, "x_test holds 4 NaN or infinite"),
    ({"x_train": np.zeros((6, 2, 2, 2))}, r"\(N, F\) features or \(N, T, F\) time series; got shape \(6, 2, 2, 2\)"),
    ({"x_test": np.zeros((4, 2))}, r"x_train samples have shape \(3,\) but x_test samples \(2,\)"),
    ({"y_train": np.zeros((6, 1), int)}, "must be 1-D"),
    ({"x_train": np.array([["a"] * 3] * 6)}, "real .* array; got dtype <U1"),
])
def test_bad_files_raise_one_line_data_errors(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message) as err:
        load_npz(write(tmp_path / "bad.npz", **arrays))
    assert "\n" not in str(err.value)


def test_pickled_object_arrays_are_not_loaded(tmp_path):
    path = write(tmp_path / "obj.npz", x_train=np.array([np.zeros(3)] * 5 + [np.zeros(2)], dtype=object))
    with pytest.raises(DataError, match="pickled object arrays"):
        load_npz(path)


def test_a_file_that_is_not_an_npz_is_refused(tmp_path):
    (tmp_path / "text.npz").write_text("x_train,y_train\n")
    with pytest.raises(DataError, match="is not an .npz archive"):
        load_npz(tmp_path / "text.npz")
    with pytest.raises(DataError, match="not found"):
        load_npz(tmp_path / "missing.npz")


def test_standardize_and_unit_scalings_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(500, 4, 3)).astype(np.float32)
    s = fit_scaling(x, "auto", preferred="standardize")
    flat = x.reshape(-1, 3).astype(np.float64)
    assert s["input_scaling"] == "standardize"
    np.testing.assert_allclose(s["input_shift"], flat.mean(0), rtol=1e-6)
    np.testing.assert_allclose(s["input_scale"], 1 / flat.std(0), rtol=1e-6)
    z = np.asarray(scale_inputs(s, x)).reshape(-1, 3)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-4)
    u = fit_scaling(x, "unit", preferred="standardize")
    lo, hi = np.quantile(flat, 0.005, axis=0), np.quantile(flat, 0.995, axis=0)
    np.testing.assert_allclose(u["input_shift"], lo, rtol=1e-6)
    v = np.asarray(scale_inputs(u, x)).reshape(-1, 3)
    assert v.min() == 0.0 and v.max() == 1.0
    np.testing.assert_allclose(v, np.clip((flat - lo) / (hi - lo), 0, 1), atol=1e-5)


def test_auto_leaves_unit_range_data_alone_and_constant_features_finite():
    assert fit_scaling(np.array([[0.0, 1.0], [0.25, 0.5]]), "auto", preferred="unit") == {"input_scaling": "none"}
    x = np.array([[2.0, 5.0], [2.0, -5.0]], np.float32)
    for mode in ("standardize", "unit"):
        out = np.asarray(scale_inputs(fit_scaling(x, mode, preferred="unit"), x))
        assert np.all(np.isfinite(out)) and np.all(out[:, 0] == 0.0)
    with pytest.raises(ValueError, match="input_scaling must be one of"):
        fit_scaling(x, "minmax", preferred="unit")


def test_onoff_channels_at_two_levels_match_numpy_and_old_configs_keep_one():
    rng = np.random.default_rng(2)
    x = rng.normal(1.0, 2.0, size=(400, 3)).astype(np.float32)
    s = fit_scaling(x, "onoff", preferred="onoff")
    assert s["input_levels"] == [0.0, 1.0] and scaled_width(s, 3) == 12
    z = (x.astype(np.float64) - x.mean(0)) / x.std(0)
    want = np.concatenate([np.clip(z / 3, 0, 1), np.clip(-z / 3, 0, 1),
                           np.clip((z - 1) / 3, 0, 1), np.clip((-z - 1) / 3, 0, 1)], axis=1)
    np.testing.assert_allclose(np.asarray(scale_inputs(s, x)), want, atol=1e-5)
    # a value more than one std from the mean spikes on both levels' channel; one within it on level 0 only
    far, near = np.abs(z[:, 0]) > 1.01, np.abs(z[:, 0]) < 0.99
    assert np.all(want[far][:, [6, 9]].max(1) > 0) and np.all(want[near][:, [6, 9]] == 0)
    old = {k: v for k, v in s.items() if k != "input_levels"}  # a checkpoint from before the levels
    assert scaled_width(old, 3) == 6
    np.testing.assert_allclose(np.asarray(scale_inputs(old, x)), want[:, :6], atol=1e-5)
