"""Losses of jsnn.exact: hand-worked values and gradients through spike times and potentials."""

import jax
import jax.numpy as jnp
import numpy as np

from jsnn.exact.losses import (first_spike_times, predict_count, predict_first_spike, predict_voltage,
                               spike_count_loss, ttfs_loss, voltage_loss)
from jsnn.exact.simulate import LayerResult

F64 = jnp.float64
INF = jnp.inf


def result(times=None, v_int=None):
    return LayerResult(times, None, v_int, None, None, None, None)


def test_ttfs_loss_matches_hand_formula_and_its_gradient():
    t = jnp.array([[2.0, INF], [1.0, 4.0], [INF, INF]], F64)  # output 2 is silent -> reads t_end
    tau0, tau1, alpha, t_end = 0.5, 6.4, 3e-3, 10.0
    first = np.array([2.0, 1.0, 10.0])
    for c in range(3):
        logits = -first / tau0
        expected = -(logits[c] - np.log(np.sum(np.exp(logits)))) + alpha * (np.exp(first[c] / tau1) - 1)
        got = ttfs_loss(result(t), jnp.int32(c), t_end=t_end, tau0=tau0, tau1=tau1, alpha=alpha)
        np.testing.assert_allclose(float(got), expected, rtol=1e-13)
    g = jax.grad(lambda t: ttfs_loss(result(t), jnp.int32(0), t_end=t_end))(t)
    assert np.all(np.isfinite(np.asarray(g)))
    assert float(g[2, 0]) == 0.0 and float(g[1, 1]) == 0.0  # silent output and later spikes: no gradient
    p = np.exp(-first / tau0) / np.sum(np.exp(-first / tau0))
    np.testing.assert_allclose(float(g[1, 0]), -p[1] / tau0, rtol=1e-12)  # dL/dt_k = -p_k/tau0, k != c
    assert int(predict_first_spike(result(t), t_end)) == 1
    np.testing.assert_allclose(first_spike_times(result(t), t_end), first)


def test_spike_count_loss_uses_time_weighted_counts():
    t = jnp.array([[0.0, 5.0], [8.0, INF]], F64)  # weighted counts: 1 + 0.5 = 1.5 and 0.2
    counts = np.array([1.5, 0.2])
    expected = -(counts[1] - np.log(np.sum(np.exp(counts))))
    np.testing.assert_allclose(float(spike_count_loss(result(t), jnp.int32(1), t_end=10.0)), expected, rtol=1e-13)
    g = jax.grad(lambda t: spike_count_loss(result(t), jnp.int32(1), t_end=10.0))(t)
    p = np.exp(counts) / np.sum(np.exp(counts))
    np.testing.assert_allclose(float(g[0, 0]), -p[0] / 10.0, rtol=1e-12)  # dL/dc0 * dc0/dt = p0 * (-1/t_end)
    assert float(g[1, 1]) == 0.0
    assert int(predict_count(result(t), 10.0)) == 0


def test_voltage_loss_is_cross_entropy_on_mean_potential():
    v = jnp.array([3.0, 12.0, -1.0], F64)
    logits = np.array([3.0, 12.0, -1.0]) / 6.0
    expected = -(logits[2] - np.log(np.sum(np.exp(logits))))
    np.testing.assert_allclose(float(voltage_loss(result(v_int=v), jnp.int32(2), t_end=6.0)), expected, rtol=1e-13)
    assert int(predict_voltage(result(v_int=v))) == 1


def test_ttfs_silent_term_pushes_every_silent_output_up():
    t = jnp.array([[2.0], [INF], [INF]], F64)  # outputs 1 and 2 silent
    v_int = jnp.array([5.0, 3.0, -4.0], F64)
    t_end, w = 10.0, 0.25
    base = ttfs_loss(result(t), jnp.int32(0), t_end=t_end)
    for label in range(3):  # the term does not depend on which output is the true one
        r = LayerResult(t, None, v_int, None, None, None, None)
        got = ttfs_loss(r, jnp.int32(label), t_end=t_end, silent_weight=w) - ttfs_loss(
            result(t), jnp.int32(label), t_end=t_end)
        np.testing.assert_allclose(float(got), -w * (3.0 - 4.0) / t_end, rtol=1e-13)
    g = jax.grad(lambda v: ttfs_loss(LayerResult(t, None, v, None, None, None, None), jnp.int32(0),
                                     t_end=t_end, silent_weight=w))(v_int)
    np.testing.assert_allclose(np.asarray(g), [0.0, -w / t_end, -w / t_end], rtol=1e-13)  # firing output: none
    assert np.isfinite(float(base))
