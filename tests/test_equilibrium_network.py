"""Forward simulation of feedback SNNs: golden trace, the IF identity, O(1/T) rates (ALGORITHMS §3.8, 1-4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilibrium_nets import (F64, exact_fixed_point, layered_fixed_point, linear, net_from, scaled, simulate,
                             single_layer)
from jsnn.equilibrium import FeedbackNet, feedback_conv, feedback_fc, simulate_rates
from jsnn.neurons import IF, LIF

TS = (10, 30, 100, 300, 1000)


def test_golden_trace_two_layers_four_steps():
    # worked by hand: delta 0.5, theta 1; F = 0.7, C_0 = 1.2 (layer 0 -> 1), feedback C_1 = 0.8, x = 1
    # t1: u0 = 0.7 (no feedback yet)         -> 0, leak 0.35;   u1 = 0            -> 0
    # t2: u0 = 0.35 + 0.7 = 1.05             -> 1, (1.05-1)/2 = 0.025;   u1 = 1.2 -> 1, 0.1
    # t3: u0 = 0.025 + 0.7 + 0.8 = 1.525     -> 1, 0.2625;   u1 = 0.1 + 1.2 = 1.3 -> 1, 0.15
    # t4: u0 = 0.2625 + 0.7 + 0.8 = 1.7625   -> 1, 0.38125;  u1 = 0.15 + 1.2 = 1.35 -> 1, 0.175
    neuron = LIF(decay=0.5, threshold=1.0, cmp=">=", order="reset_first")
    net = net_from([[0.7]], [[[1.2]], [[0.8]]], neuron=neuron)
    sim = simulate(net, jnp.ones(1, F64), 4)
    assert [float(c[0]) for c in sim.counts] == [3.0, 3.0]
    np.testing.assert_allclose([float(u[0]) for u in sim.residual_potential], [0.38125, 0.175], rtol=0, atol=1e-15)
    # delta-weighted rate: (0.25 + 0.5 + 1) / (0.125 + 0.25 + 0.5 + 1)
    np.testing.assert_allclose(float(sim.rates[0][0]), 1.75 / 1.875, rtol=1e-15)


def test_if_identity_holds_exactly():
    net, x = single_layer(seed=1)
    W = net.connections[0].weight
    for T in (7, 30, 101):
        sim = simulate(net, x, T)
        a, u, s = sim.rates[0], sim.residual_potential[0], sim.last_spikes[0]
        rhs = (W @ a + x) / 2.0 - (u + W @ s) / (T * 2.0)
        np.testing.assert_allclose(a, rhs, rtol=0, atol=1e-12)


def _errors(net, x, a_star, Ts=TS):
    return np.array([float(jnp.max(jnp.abs(simulate(net, x, T).rates[-1] - a_star))) for T in Ts])


def test_if_rates_converge_at_one_over_T():
    net, x = single_layer(seed=2)
    a_star = exact_fixed_point(net, x)
    err = _errors(net, x, a_star)
    assert np.all(err <= 3.0 / np.array(TS)), err
    slope = np.polyfit(np.log(TS), np.log(err), 1)[0]
    assert -1.3 <= slope <= -0.7, slope


def test_modified_reset_has_the_same_equilibrium_and_smaller_error():
    ratios = []
    for seed in range(3):
        net, x = single_layer(seed=seed)
        mod, _ = single_layer(seed=seed, reset="modified")
        a_star = exact_fixed_point(net, x)
        Ts = (10, 30, 100, 300)
        e_plain, e_mod = _errors(net, x, a_star, Ts), _errors(mod, x, a_star, Ts)
        assert np.all(e_mod <= 3.0 / np.array(Ts))
        ratios.extend(e_mod / e_plain)
    assert np.median(ratios) <= 0.75, ratios


def test_lif_error_is_order_one_minus_delta_and_persists():
    delta = 0.95
    net, x = single_layer(seed=3, neuron=LIF(decay=delta, threshold=2.0, cmp=">=", order="reset_first"))
    a_star = exact_fixed_point(net, x)
    err = _errors(net, x, a_star)
    assert np.all(err <= 1.5 * ((1 - delta) + 1.0 / np.array(TS))), err
    assert err[-1] > 0.1 * (1 - delta)  # does not vanish as T grows


def test_multilayer_rates_approach_the_layered_fixed_point():
    rng = np.random.default_rng(4)
    sizes = [15, 12, 10]
    conns = [(scaled(rng, sizes[1], sizes[0], 1.0), rng.uniform(0, 0.5, sizes[1])),
             (scaled(rng, sizes[2], sizes[1], 1.0), rng.uniform(0, 0.5, sizes[2])),
             scaled(rng, sizes[0], sizes[2], 1.0)]
    net = net_from(np.eye(15), conns)
    x = jnp.asarray(rng.uniform(0.3, 1.5, 15), F64)
    a_last = exact_fixed_point(net, x)
    layered = layered_fixed_point(net, x)
    np.testing.assert_allclose(layered[-1], a_last, atol=1e-12)  # the composite map has the same fixed point
    for T in (30, 300):
        sim = simulate(net, x, T)
        for a_T, a_s in zip(sim.rates, layered):
            assert float(jnp.max(jnp.abs(a_T - a_s))) <= 3.0 / T


def test_wrong_feedback_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="feedback C_0 maps layer 0"):
        net_from(np.eye(4), [np.ones((5, 4))])
    with pytest.raises(ValueError, match="feedback C_1"):
        net_from(np.eye(4), [(np.ones((3, 4)), np.zeros(3)), np.ones((5, 3))])


def test_bad_inputs_are_clear_errors():
    net, x = single_layer(n=4)
    with pytest.raises(ValueError, match="T .* >= 1"):
        simulate_rates(net, x, 0)
    with pytest.raises(ValueError, match="shape"):
        simulate_rates(net, jnp.ones(5, F64), 3)
    with pytest.raises(ValueError, match="cmp='>='"):
        FeedbackNet(linear(np.eye(2)), [linear(np.eye(2))], linear(np.ones((2, 2)), np.zeros(2)),
                    input_shape=(2,), neuron=IF(threshold=2.0))
    with pytest.raises(ValueError, match="reset"):
        feedback_fc(3, [4], 2, reset="zero", key=jax.random.key(0))


def test_conv_net_shapes_and_rates_in_unit_interval():
    net = feedback_conv((1, 8, 8), 10, channels=3, kernel_size=3, dtype=F64, key=jax.random.key(0))
    sim = simulate_rates(net, jnp.ones((1, 8, 8), F64), 12)
    assert sim.rates[0].shape == (3, 4, 4)
    assert float(sim.rates[0].min()) >= 0 and float(sim.rates[0].max()) <= 1
