"""Integrator readout (jsnn.exact.readout): closed form against the event simulation, in a net, config rules."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.exact.flow import LIFConfig
from jsnn.exact.method import ExactConfig, exact_method
from jsnn.exact.net import EventNet
from jsnn.exact.readout import integrator_readout
from jsnn.exact.simulate import simulate_layer

from test_exact_simulate import jit

# a threshold no potential reaches: the spiking layer is then the same linear integrator
HIGH = LIFConfig(tau_syn=5.0, tau_mem=10.0, threshold=1e6, t_end=30.0)


def test_readout_equals_a_never_firing_event_layer_values_and_gradients():
    key_w, key_t = jax.random.split(jax.random.key(0))
    weight = jax.random.normal(key_w, (4, 6), jnp.float64)
    times = jax.random.uniform(key_t, (6, 3), jnp.float64, 0.0, 35.0)  # some past t_end: never taken
    times = times.at[2, 1:].set(jnp.inf)
    assert bool(jnp.any(times >= HIGH.t_end))

    def both(w, t):
        r, e = integrator_readout(w, t, HIGH), simulate_layer(w, t, HIGH, 1)
        return (r.v_int, r.v_end), (e.v_int, e.v_end), e.count

    (r_int, r_end), (e_int, e_end), count = jit(both)(weight, times)
    assert int(count.max()) == 0
    np.testing.assert_allclose(r_int, e_int, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r_end, e_end, rtol=1e-12, atol=1e-12)

    def loss(which):
        def f(w, t):
            v_int, v_end = both(w, t)[which]
            return jnp.sum(jnp.sin(v_int)) + jnp.sum(v_end**2)
        return f

    finite = jnp.isfinite(times)
    g_r = jit(jax.grad(loss(0), argnums=(0, 1)))(weight, times)
    g_e = jit(jax.grad(loss(1), argnums=(0, 1)))(weight, times)
    np.testing.assert_allclose(g_r[0], g_e[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jnp.where(finite, g_r[1], 0), jnp.where(finite, g_e[1], 0), rtol=1e-10, atol=1e-12)
    assert float(jnp.max(jnp.abs(g_r[1]))) > 0  # the readout passes gradient to the input spike times


def test_integrator_net_keeps_hidden_layers_and_reads_out_without_spikes():
    kw = dict(key=jax.random.key(1), cfg=LIFConfig(t_end=30.0), max_spikes=2, init=[(2.0, 1.0), (0.5, 1.0)],
              dtype=jnp.float64)
    spiking, integ = EventNet((3, 5, 2), **kw), EventNet((3, 5, 2), readout="integrator", **kw)
    x = jnp.array([[1.0], [2.0], [0.5]], jnp.float64)
    a, b = jit(lambda n: n(x))(spiking), jit(lambda n: n(x))(integ)
    np.testing.assert_array_equal(a[0].times, b[0].times)
    assert int(a[0].count.sum()) > 0 and not bool(jnp.any(jnp.isfinite(b[1].times)))
    np.testing.assert_allclose(b[1].v_int, integrator_readout(integ.weights[1], b[0].times, integ.cfg).v_int)
    # forward mode and reverse mode through the hidden spike times agree on the readout's potential
    f = lambda w: eqx.tree_at(lambda n: n.weights, integ, w)(x)[-1].v_int  # noqa: E731
    fwd, rev = jit(jax.jacfwd(f))(integ.weights), jit(jax.jacrev(f))(integ.weights)
    for jf, jr in zip(fwd, rev):
        np.testing.assert_allclose(jf, jr, rtol=1e-9, atol=1e-12)
    assert float(jnp.max(jnp.abs(fwd[0]))) > 0


def test_readout_config_errors_say_what_to_do():
    with pytest.raises(ValueError, match="readout must be 'spiking' or 'integrator'"):
        EventNet((2, 2), key=jax.random.key(0), readout="linear")
    with pytest.raises(ValueError, match="set the last max_events entry to None"):
        EventNet((2, 3, 2), key=jax.random.key(0), readout="integrator", max_events=(None, 4))
    with pytest.raises(ValueError, match="use loss='voltage'"):
        ExactConfig(readout="integrator", loss="ttfs")
    with pytest.raises(ValueError, match="readout must be one of"):
        ExactConfig(readout="linear")
    config = ExactConfig(hidden=(4,), max_spikes=(2, 2), loss="voltage", readout="integrator")
    assert ExactConfig.from_dict(config.to_dict()) == config
    assert exact_method(config, 2, 3).init(jax.random.key(0)).net.readout == "integrator"
