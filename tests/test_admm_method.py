"""The ADMM run behind ``jsnn train --method admm``: metrics, checkpoints, exact resume, divergence."""

import json
import math

import jax
import numpy as np
import pytest

from jsnn.checkpoint import load_checkpoint
from jsnn.optim.admm_method import DivergenceError, build_admm

TINY = {"data": "digits", "hidden": [8], "T": 3, "warmup": 1, "log_every": 1, "checkpoint_every": 1,
        "train_samples": 60, "refit_readout": False}


def _params(run, path):
    """The ADMM iterate in a checkpoint (the model's readout rides beside it)."""
    _, _, params, opt = run._setup()
    (params, _, _), header = load_checkpoint(path, (params, opt.init(params), params[-1]))
    return params, header


def test_resumed_run_equals_the_uninterrupted_run(tmp_path):
    whole = build_admm({**TINY, "iters": 4, "plot": True})
    summary = whole(out_dir=tmp_path / "whole", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows] == [1, 2, 3, 4]
    for key in ("loss", "lagrangian", "primal_residual", "rms_cz", "rms_ca", "train_accuracy",
                "spike_disagreement", "test_accuracy"):
        assert key in rows[-1]
    assert len(rows[-1]["rms_cz"]) == 2 and len(rows[-1]["rms_ca"]) == 1
    assert (tmp_path / "whole" / "metrics.png").stat().st_size > 0
    assert 0.0 <= summary["test_accuracy"] <= 1.0

    build_admm({**TINY, "iters": 2})(out_dir=tmp_path / "split", progress=False)
    build_admm({**TINY, "iters": 4})(out_dir=tmp_path / "split", resume=True, progress=False)
    a, header = _params(whole, tmp_path / "whole" / "checkpoint.eqx")
    b, _ = _params(whole, tmp_path / "split" / "checkpoint.eqx")
    assert header["step"] == 4
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, v)
    split_rows = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    drop_time = lambda rs: [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]  # noqa: E731
    assert drop_time(split_rows) == drop_time(rows)


def test_divergence_stops_with_the_last_good_checkpoint(tmp_path):
    build_admm({**TINY, "iters": 2})(out_dir=tmp_path, progress=False)
    with pytest.raises(DivergenceError, match=r"iteration 3.*last good checkpoint is .*checkpoint\.eqx"):
        build_admm({**TINY, "iters": 4, "ridge": math.nan})(out_dir=tmp_path, resume=True, progress=False)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="--rho must be positive"):
        build_admm({**TINY, "rho": -1.0})
    for bad in (0.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="--beta must be positive and finite"):
            build_admm({**TINY, "beta": bad})
    with pytest.raises(ValueError, match="unknown data set"):
        build_admm({**TINY, "data": "nope"})


@pytest.mark.parametrize("use_bias", [False, True])
def test_refit_readout_is_the_least_squares_fit_of_the_forward_readout(use_bias):
    import jax.numpy as jnp

    from jsnn.optim.admm import to_sequential
    from jsnn.optim.admm_method import refit_readout
    from jsnn.simulate import simulate

    rng = np.random.default_rng(0)
    x = rng.random((40, 4, 5)) * rng.uniform(0, 2, (40, 1, 1))  # sample intensities spread the firing
    params = ({"weight": jnp.asarray(np.abs(rng.normal(0.3, 0.2, (6, 5))))}, {"weight": jnp.zeros((3, 6))})
    if use_bias:
        params = (params[0], {**params[1], "bias": jnp.zeros(3)})
    y = np.eye(3)[rng.integers(0, 3, 40)]
    new = refit_readout(params, x, y, decay=0.9, threshold=0.5, ridge=0.0)
    net = to_sequential(new, decay=jnp.float64(0.9), threshold=jnp.float64(0.5))
    outputs, traces = jax.vmap(lambda xi: simulate(net, xi, record=True))(jnp.asarray(x))
    spikes = np.asarray(traces[net.neuron_layers[0]].spikes)
    assert (0.05 < spikes.mean((0, 1))).all() and (spikes.mean((0, 1)) < 0.95).all()  # a nonsingular Gram
    # oracle: the LI readout at t = T is linear in (W, b) with features sum_t 0.9^(T-t) s_t (and sum_t 0.9^(T-t))
    powers = 0.9 ** np.arange(3, -1, -1)
    phi = np.einsum("ntd,t->nd", spikes, powers)
    if use_bias:
        phi = np.concatenate([phi, np.full((40, 1), powers.sum())], axis=1)
    want = np.linalg.lstsq(phi, y, rcond=None)[0]
    got = np.asarray(new[-1]["weight"]).T
    if use_bias:
        got = np.concatenate([got, np.asarray(new[-1]["bias"])[None]], axis=0)
    np.testing.assert_allclose(got, want, atol=1e-8)
    np.testing.assert_allclose(np.asarray(outputs[:, -1]), phi @ want, atol=1e-8)


def test_refit_readout_run_keeps_the_admm_iterate_and_lowers_the_refit_model(tmp_path):
    from jsnn.lower import lower
    from jsnn.lower.cli import load_network

    run = build_admm({**TINY, "iters": 2, "refit_readout": True})
    summary = run(out_dir=tmp_path, progress=False)
    path = tmp_path / "checkpoint.eqx"
    assert "test_accuracy_before_refit" in summary
    assert run.evaluate(path)["test_accuracy"] == summary["test_accuracy"]
    params, _ = _params(run, path)  # the ADMM iterate, from which a resume continues
    net, _ = load_network(str(path))  # what `jsnn lower` reads
    assert not np.array_equal(np.asarray(net.layers[-2].weight), np.asarray(params[-1]["weight"]))
    tables, _ = lower(net, "loihi", np.repeat(run.train[0][:8, None], TINY["T"], axis=1))
    readout = tables.arrays["layer1.weight"] / tables.arrays["layer1.scale"][:, None]
    step = 2 ** tables.manifest["layers"][1]["weight_exp"]  # weights are mantissa << weight_exp
    np.testing.assert_allclose(readout, np.asarray(net.layers[-2].weight),
                               atol=0.5 * step / tables.arrays["layer1.scale"].min())
