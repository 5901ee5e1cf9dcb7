"""Own data through every method: ``jsnn train --data FILE.npz``, ``jsnn.fit`` (same code, same result), and the
defaults that adapt to the data (input scaling, calibrated initial weights, refused combinations)."""

import json

import equinox as eqx
import jax
import numpy as np
import pytest

import jsnn
from jsnn.cli import main
from jsnn.exact.method import ExactConfig, calibrated_init, encode_latency, exact_run
from jsnn.exact.net import EventNet
from jsnn.data import DataError, npz_sha256
from jsnn.methods import bptt_run, load_run_data
from jsnn.optim import ADMM_DEFAULTS, StateLayout, admm, admm_run, calibrated_params, init_params

FLAGS = {
    "bptt": ["--epochs", "2", "--hidden", "8", "--batch-size", "16"],
    "admm": ["--iters", "2", "--warmup", "1", "--hidden", "8"],
    "exact": ["--epochs", "1", "--hidden", "4", "--batch-size", "16"],
}


def signed_data(n=80, steps=None, seed=0):
    """Signed features, labels from their signs (3 classes); optionally a (N, T, F) series."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32) * 3 - 1
    y = ((x[:, 0] > -1).astype(np.int64) + (x[:, 1] > -1)).astype(np.int32)
    if steps:
        x = np.repeat(x[:, None, :], steps, axis=1) + rng.normal(size=(n, steps, 5)).astype(np.float32) * 0.1
    return x, y


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    out = {}
    for name, steps in (("static", None), ("series", 4)):
        x, y = signed_data(steps=steps)
        out[name] = folder / f"{name}.npz"
        np.savez(out[name], x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])
    return out


def cli(*args):
    return main(["train", "--no-progress", *args])


@pytest.fixture(scope="module")
def cli_runs(files, tmp_path_factory):
    """One tiny ``jsnn train --data FILE.npz`` per method (ADMM on the time series); ``{method: out folder}``."""
    runs = {}
    for method, flags in FLAGS.items():
        out = tmp_path_factory.mktemp(method)
        data = files["series" if method == "admm" else "static"]
        assert cli("--method", method, "--data", str(data), *flags, "--seed", "3", "--out", str(out)) == 0
        runs[method] = out
    return runs


@pytest.mark.slow  # end-to-end training runs: bench-sized, run with -m slow
@pytest.mark.parametrize("method", ["bptt", "admm", "exact"])
def test_cli_trains_and_evaluates_every_method_on_an_npz_file(method, files, cli_runs, capsys):
    result = json.loads((cli_runs[method] / "result.json").read_text())
    config = result["config"]
    data = files["series" if method == "admm" else "static"]
    assert config["data"] == str(data.resolve()) and config["data_sha256"] == npz_sha256(data)
    assert config["input_scaling"] == ("onoff" if method == "exact" else "standardize")
    assert 0.0 <= result["test_accuracy"] <= 1.0
    capsys.readouterr()
    assert main(["evaluate", str(cli_runs[method] / "checkpoint.eqx")]) == 0
    assert f'"test_accuracy": {result["test_accuracy"]}' in capsys.readouterr().out


def test_a_changed_data_file_is_refused(files, tmp_path):
    data = tmp_path / "copy.npz"
    data.write_bytes(files["static"].read_bytes())
    config = {"data": str(data)}
    load_run_data(config)
    assert config["data_sha256"] == npz_sha256(files["static"])
    x, y = signed_data(seed=3)
    np.savez(data, x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])
    with pytest.raises(DataError, match="has changed since this run was trained"):
        load_run_data(config)


@pytest.mark.parametrize("arrays, message", [
    ({"y_test": None}, "lacks the array"),
    ({"y_train": np.zeros(3, int)}, "x_train has 64 samples but y_train has 3"),
    ({"y_test": np.full(16, -1)}, "labels must lie in"),
    ({"x_train": np.full((64, 5), np.nan)}, "NaN or infinite"),
])
def test_cli_bad_file_is_one_line_and_exit_2(files, tmp_path, capsys, arrays, message):
    with np.load(files["static"]) as f:
        base = {k: f[k] for k in f.files}
    base.update(arrays)
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in base.items() if v is not None})
    assert cli("--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jsnn: error:") and message in err[0]
    assert cli("--data", "mydata.csv", "--out", str(tmp_path / "run")) == 2
    assert "PATH.npz" in capsys.readouterr().err


@pytest.mark.slow  # end-to-end training runs: bench-sized, run with -m slow
def test_python_entry_equals_the_cli_for_the_same_seed(files, cli_runs, tmp_path):
    with np.load(files["static"]) as f:
        model = jsnn.fit(f["x_train"], f["y_train"], test=(f["x_test"], f["y_test"]), hidden=[8], epochs=2,
                         batch_size=16, seed=3, out_dir=tmp_path / "py")
        x_test, y_test = f["x_test"], f["y_test"]
    cli_result = json.loads((cli_runs["bptt"] / "result.json").read_text())
    assert model.test_accuracy == cli_result["test_accuracy"]
    same = {k: v for k, v in cli_result["config"].items() if k not in ("data", "data_sha256")}
    assert {k: v for k, v in model.run.config.items() if k != "data"} == same
    # the two checkpoints hold the same network, and predict from either gives the same labels
    from_cli = model.predict(x_test, checkpoint=cli_runs["bptt"] / "checkpoint.eqx")
    np.testing.assert_array_equal(model.predict(x_test), from_cli)
    assert np.mean(from_cli == y_test) == model.test_accuracy


def test_signed_inputs_are_standardised_for_bptt_and_mapped_into_unit_range_for_exact():
    x, y = signed_data()
    run = bptt_run((x, y), None, {"hidden": [4]})
    np.testing.assert_allclose(run.config["input_shift"], x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.config["input_scale"], 1 / x.std(0), rtol=1e-5)
    run = exact_run((x, y), None, {"hidden": [4], "init": [[1.0, 1.0], [0.1, 0.3]]})
    assert run.config["input_scaling"] == "onoff" and run.config["input_levels"] == [0.0, 1.0]
    # 5 features -> on/off channels at 2 levels, plus the bias input
    assert run.method.network(run.method.init(jax.random.key(0))).weights[0].shape == (4, 5 * 4 + 1)
    # bundled [0, 1] data keeps its tuned encoding: no scaling
    assert bptt_run((np.clip(x, 0, 1), y), None, {"data": "digits"}).config["input_scaling"] == "none"
    assert exact_run((np.clip(x, 0, 1), y), None, {"data": "yinyang"}).config["input_scaling"] == "none"


def test_combinations_that_cannot_work_are_refused():
    x, y = signed_data()
    with pytest.raises(ValueError, match="needs features in \\[0, 1\\]"):
        bptt_run((x, y), None, {"encoding": "rate", "input_scaling": "none"})
    with pytest.raises(ValueError, match="latency-code features in \\[0, 1\\]"):
        exact_run((x, y), None, {"input_scaling": "none"})
    xs, _ = signed_data(steps=3)
    with pytest.raises(ValueError, match="T is the series length"):
        bptt_run((xs, y), None, {"T": 5})
    with pytest.raises(ValueError, match="applies to static features only"):
        bptt_run((xs, y), None, {"encoding": "latency"})
    layout = StateLayout(num_samples=4, num_steps=2)
    with pytest.raises(ValueError, match="init='forward'.*zero weights"):
        admm(layout=layout, init="forward").init(init_params([5, 4, 2]))


def test_time_series_get_recurrent_layers_with_the_series_length():
    xs, y = signed_data(steps=3)
    run = bptt_run((xs, y), None, {"hidden": [4]})
    assert run.config["T"] == 3 and run.config["recurrent"]
    net = run.method.network(run.method.init(jax.random.key(0)))
    assert [type(layer).__name__ for layer in net.layers] == ["Linear", "Recurrent", "Linear", "LI"]


def test_admm_reads_a_time_series_as_its_flattened_static_features():
    xs, y = signed_data(steps=3)
    flat = xs.reshape(len(xs), -1)
    series, static = admm_run((xs, y), (xs, y), {"hidden": [6]}), admm_run((flat, y), (flat, y), {"hidden": [6]})
    assert series.config == static.config and series.config["T"] == ADMM_DEFAULTS["own"]["T"]
    np.testing.assert_allclose(series.config["input_shift"], flat.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(series.train[0], flat)
    np.testing.assert_array_equal(series.test[0], flat)
    # the network's input currents: the 15 standardised features of each sample, the same at every step
    currents = series._inputs(xs)
    assert currents.shape == (80, ADMM_DEFAULTS["own"]["T"], 15)
    np.testing.assert_allclose(currents[:, 0], (flat - flat.mean(0)) / flat.std(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(currents, static._inputs(flat))
    assert np.all(currents == currents[:, :1])


def test_admm_calibration_is_deterministic_for_a_seed():
    x, _ = signed_data()
    x = np.repeat(x[:32, None, :], 4, axis=1)
    a, b, c = (calibrated_params([5, 16, 3], x, key=jax.random.key(s)) for s in (0, 0, 1))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0]["weight"], c[0]["weight"])


def test_exact_calibration_is_deterministic_and_hits_the_firing_target():
    x, _ = signed_data(n=32)
    x = (x - x.min(0)) / (x.max(0) - x.min(0))
    config = ExactConfig(hidden=(8,), max_spikes=(2, 2), sim="parallel", readout="integrator", loss="voltage")
    init = calibrated_init(config, x, key=jax.random.key(0), fire_fraction=0.5)
    assert init == calibrated_init(config, x, key=jax.random.key(0), fire_fraction=0.5)
    net = EventNet((6, 8, 1), key=jax.random.key(0), cfg=config.lif, max_spikes=2, init=init[:1] + ((0.0, 1.0),))
    out = eqx.filter_jit(jax.vmap(lambda xi: net(encode_latency(config, xi))))(x)
    fired = float(np.mean(np.isfinite(np.asarray(out[0].times[..., 0]))))
    assert abs(fired - 0.5) < 0.2, fired
