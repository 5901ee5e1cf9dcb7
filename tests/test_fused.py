"""The lean LIF reverse pass equals autodiff of the step function, for every flag combination."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.fused import lif_scan
from jsnn.neurons import IF, LIF
from jsnn.surrogate import Arctan, FastSigmoid

FLAGS = list(itertools.product(["subtract", "zero", "none"], ["leak_first", "reset_first"], [">", ">="],
                               [True, False]))


def _grads(neuron, currents, weights, fn):
    def loss(decay, threshold, c):
        n = neuron
        if hasattr(n, "decay"):
            n = type(n)(**{**{f: getattr(n, f) for f in n.__dataclass_fields__}, "decay": decay, "threshold": threshold})
        else:
            n = type(n)(**{**{f: getattr(n, f) for f in n.__dataclass_fields__}, "threshold": threshold})
        s, v = fn(n, c)
        return jnp.sum(weights[0] * s) + jnp.sum(weights[1] * v ** 2)

    decay = jnp.asarray(getattr(neuron, "decay", 1.0), jnp.float64)
    return jax.grad(loss, argnums=(0, 1, 2))(decay, jnp.asarray(neuron.threshold, jnp.float64), currents)


def _autodiff(neuron, c):
    _, out, trace = neuron.run_steps(c)
    return trace.spikes, trace.v


@pytest.mark.parametrize(("reset", "order", "cmp", "detach"), FLAGS)
def test_fused_gradient_equals_autodiff(reset, order, cmp, detach):
    key = jax.random.key(0)
    currents = 0.6 * jax.random.normal(key, (12, 5), jnp.float64) + 0.5
    weights = jax.random.normal(jax.random.key(1), (2, 12, 5), jnp.float64)
    neuron = LIF(decay=jnp.float64(0.8), threshold=jnp.float64(0.7), reset=reset, order=order, cmp=cmp,
                 detach_reset=detach, surrogate=Arctan(slope=2.0))
    s_ref, v_ref = _autodiff(neuron, currents)
    s, v = lif_scan(neuron, currents)
    assert float(s_ref.sum()) > 3, "the test neuron must spike"
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_allclose(v, v_ref, rtol=1e-14)
    got = _grads(neuron, currents, weights, lif_scan)
    expected = _grads(neuron, currents, weights, _autodiff)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


def test_fused_gradient_per_neuron_parameters_and_vmap():
    currents = jax.random.normal(jax.random.key(2), (3, 9, 4), jnp.float64) + 0.6
    decay = jnp.array([0.5, 0.7, 0.9, 0.95], jnp.float64)
    threshold = jnp.array([0.6, 0.8, 1.0, 1.2], jnp.float64)

    def loss(decay, threshold, fn):
        neuron = LIF(decay=decay, threshold=threshold, surrogate=FastSigmoid(5.0), detach_reset=False)
        s, v = jax.vmap(lambda c: fn(neuron, c))(currents)
        return jnp.sum(s * jnp.arange(9.0, dtype=jnp.float64)[:, None]) + jnp.sum(jnp.sin(v))

    got = jax.grad(loss, argnums=(0, 1))(decay, threshold, lif_scan)
    expected = jax.grad(loss, argnums=(0, 1))(decay, threshold, _autodiff)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == (4,)
        np.testing.assert_allclose(g, e, rtol=1e-10)


def test_if_uses_the_fused_path_with_unit_decay():
    currents = jax.random.normal(jax.random.key(3), (10, 3), jnp.float64) + 0.4
    neuron = IF(threshold=jnp.float64(0.9), detach_reset=False)
    grad = jax.grad(lambda c: jnp.sum(neuron(c)[1].v ** 2 + neuron(c)[0]))(currents)
    ref = jax.grad(lambda c: jnp.sum(_autodiff(neuron, c)[1] ** 2 + _autodiff(neuron, c)[0]))(currents)
    np.testing.assert_allclose(grad, ref, rtol=1e-12)


@pytest.mark.parametrize("unroll", [5, 12])
def test_unrolled_scan_gives_the_same_spikes_and_gradients(unroll):
    # GPUs run the LIF scans unrolled (jsnn.fused.default_unroll); CPU tests must still cover that path.
    currents = 0.6 * jax.random.normal(jax.random.key(3), (12, 5), jnp.float64) + 0.5
    weights = jax.random.normal(jax.random.key(4), (2, 12, 5), jnp.float64)
    neuron = LIF(decay=jnp.float64(0.8), threshold=jnp.float64(0.7), detach_reset=False, surrogate=Arctan(2.0))
    s, v = lif_scan(neuron, currents, unroll=1)
    s_u, v_u = lif_scan(neuron, currents, unroll=unroll)
    assert float(s.sum()) > 3, "the test neuron must spike"
    np.testing.assert_array_equal(s_u, s)
    np.testing.assert_allclose(v_u, v, rtol=1e-14)
    got = _grads(neuron, currents, weights, lambda n, c: lif_scan(n, c, unroll=unroll))
    expected = _grads(neuron, currents, weights, lambda n, c: lif_scan(n, c, unroll=1))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("unroll", [0, -2, 2.5, True])
def test_bad_unroll_is_refused(unroll):
    with pytest.raises(ValueError, match="unroll must be a positive int"):
        lif_scan(LIF(), jnp.ones((4, 2)), unroll=unroll)


def test_default_unroll_is_one_on_cpu_and_ten_on_accelerators():
    from jsnn.fused import default_unroll

    assert [default_unroll(100, b) for b in ("cpu", "gpu", "tpu")] == [1, 10, 10]
    assert default_unroll(3, "gpu") == 3
