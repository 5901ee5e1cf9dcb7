"""jsnn.exact.method: the training step for every gradient mode, encoding, config errors, no recompiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.exact.method import ExactConfig, encode_latency, exact_loss, exact_method
from jsnn.exact.net import EventNet

from test_exact_simulate import jit

CFG = ExactConfig(hidden=(4,), max_spikes=(2, 2), init=((2.0, 1.0), (2.0, 0.5)), lr=1e-2)


def test_latency_encoding_formula():
    x = jnp.array([0.0, 0.25, 1.0], jnp.float32)
    t = encode_latency(ExactConfig(t_min=1.0, t_max=9.0, t_bias=0.5), x)
    np.testing.assert_allclose(t.ravel(), [1.0, 3.0, 9.0, 0.5])
    inv = encode_latency(ExactConfig(t_min=1.0, t_max=9.0, invert=True), x).ravel()
    assert not np.isfinite(float(inv[0]))
    np.testing.assert_allclose(inv[1:3], [7.0, 1.0])


def float64_method(grad):
    """The method for ``grad`` with a float64 initial state (the tests' oracle precision)."""
    m = exact_method(ExactConfig.from_dict({**CFG.to_dict(), "grad": grad}), 2, 3)
    state = m.init(jax.random.key(0))
    state = state._replace(net=jax.tree.map(lambda a: a.astype(jnp.float64), state.net))
    state = state._replace(opt_state=jax.tree.map(
        lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, state.opt_state))
    return m, state


@pytest.fixture(scope="module")
def adjoint_step():
    m, state = float64_method("adjoint")
    return m, state, jit(m.step)


def test_all_gradient_modes_take_the_same_step(adjoint_step):
    x = jax.random.uniform(jax.random.key(1), (2, 2), jnp.float64)
    y = jnp.array([0, 2], jnp.int32)
    states = {}
    for grad in ("fp", "autodiff", "adjoint"):
        m, state, step = adjoint_step if grad == "adjoint" else (*float64_method(grad), None)
        new, metrics = (step or jit(m.step))(state, x, y, jax.random.key(1))
        assert int(metrics["overflow"]) == 0 and np.isfinite(float(metrics["loss"]))
        states[grad] = new.net.weights
    for a, b, c in zip(states["fp"], states["autodiff"], states["adjoint"]):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(c, a, rtol=1e-9, atol=1e-12)


def test_training_step_learns_and_compiles_once(adjoint_step):
    m, state, step = adjoint_step  # the step compiled above: same shapes, no new compile
    x = jax.random.uniform(jax.random.key(2), (2, 2), jnp.float64)
    y = (x[:, 0] > 0.5).astype(jnp.int32)
    losses = []
    for k in range(8):
        state, metrics = step(state, x, y, jax.random.key(k))
        losses.append(float(metrics["loss"]))
    assert step._cache_size() == 1
    assert losses[-1] < losses[0]
    assert jit(m.predict)(state, x).shape == (2,)


def test_config_errors_say_what_to_do():
    with pytest.raises(ValueError, match="grad must be one of"):
        ExactConfig(grad="bptt")
    with pytest.raises(ValueError, match="one entry per layer"):
        ExactConfig(hidden=(4, 4))
    with pytest.raises(ValueError, match="t_min <= t_max < t_end"):
        ExactConfig(t_max=40.0)


@pytest.mark.parametrize(("readout", "loss", "saturated"), [("spiking", "count", 1.0), ("integrator", "voltage", 0.0)])
def test_saturated_means_tied_output_spikes_not_a_hidden_overflow(readout, loss, saturated):
    # weights so large that every neuron fires at the first input spike and overflows its buffer
    cfg = ExactConfig(hidden=(3,), max_spikes=(2, 2), init=((50.0, 0.0), (50.0, 0.0)), readout=readout, loss=loss)
    net = EventNet((3, 3, 3), key=jax.random.key(0), cfg=cfg.lif, max_spikes=(2, 2), init=cfg.init, readout=readout)
    x, y = jnp.full((2, 2), 0.5, jnp.float32), jnp.array([0, 1], jnp.int32)
    _, aux = jit(lambda net, x, y: exact_loss(net, cfg, x, y))(net, x, y)
    assert int(aux["overflow"]) == 2 and float(aux["saturated"]) == saturated
