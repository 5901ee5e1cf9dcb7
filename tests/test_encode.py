"""Encoders against their definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn import encode


def test_rate_is_bernoulli_with_the_given_probability():
    x = jnp.array([0.0, 0.25, 0.9, 1.0], jnp.float64)
    spikes = encode.rate(x, 4000, key=jax.random.key(0))
    assert spikes.shape == (4000, 4) and spikes.dtype == jnp.float64
    np.testing.assert_allclose(spikes.mean(axis=0), x, atol=0.02)
    assert set(np.unique(spikes)) <= {0.0, 1.0}


def test_rate_is_deterministic_in_the_key():
    x = jnp.full((5,), 0.5, jnp.float32)
    a = encode.rate(x, 10, key=jax.random.key(1))
    np.testing.assert_array_equal(a, encode.rate(x, 10, key=jax.random.key(1)))
    assert not np.array_equal(a, encode.rate(x, 10, key=jax.random.key(2)))


def test_latency_places_one_spike_at_the_rounded_time():
    x = jnp.array([1.0, 0.75, 0.5, 0.2, 0.005], jnp.float64)
    spikes = np.asarray(encode.latency(x, 5))
    assert spikes.shape == (5, 5)
    np.testing.assert_array_equal(spikes.sum(axis=0), [1, 1, 1, 1, 0])
    np.testing.assert_array_equal(spikes[:, :4].argmax(axis=0), [0, 1, 2, 3])  # round((1-x)*4)


def test_direct_repeats_the_value():
    x = jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3) / 10
    out = encode.direct(x, 3)
    assert out.shape == (3, 2, 3)
    for t in range(3):
        np.testing.assert_array_equal(out[t], x)


def test_delta_matches_a_python_loop():
    x = np.asarray(jax.random.uniform(jax.random.key(3), (12, 4), jnp.float64))
    out = np.asarray(encode.delta(jnp.asarray(x), threshold=0.3))
    prev = np.zeros(4)
    for t in range(12):
        np.testing.assert_array_equal(out[t, 0], (x[t] - prev > 0.3).astype(float))
        np.testing.assert_array_equal(out[t, 1], (prev - x[t] > 0.3).astype(float))
        prev = x[t]


@pytest.mark.parametrize("fn", [lambda x: encode.rate(x, 3, key=jax.random.key(0)), lambda x: encode.latency(x, 3)])
def test_values_outside_unit_interval_are_rejected(fn):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fn(jnp.array([0.5, 1.5], jnp.float32))


def test_bad_step_count_is_rejected():
    with pytest.raises(ValueError, match="num_steps"):
        encode.direct(jnp.ones(3, jnp.float32), 0)
