"""The exact Heaviside subroutine (ALGORITHMS §1.4, oracle §1.7.2) against brute force, in float64."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsnn.optim.heaviside import heaviside_prox, spike_side_epsilon

EPS = 1e-5


def phi(z, q, r, a, rho, beta, decay, threshold, last):
    """phi(z) of §1.4, coded directly in numpy (the oracle)."""
    h = (z > threshold).astype(np.float64)
    nxt = 0.0 if last else 0.5 * rho * (r - decay * z + threshold * a) ** 2
    return 0.5 * rho * (z - q) ** 2 + nxt + 0.5 * beta * (a - h) ** 2


def brute_min(q, r, a, rho, beta, decay, threshold, last):
    """Min of phi over a dense grid on [q - 10, q + 10] (and around the threshold), phi(th), phi(th+)."""
    grid = np.concatenate([np.linspace(q - 10, q + 10, 100001),
                           np.linspace(threshold - 1e-3, threshold + 1e-3, 2001)])
    vals = phi(grid, q, r, a, rho, beta, decay, threshold, last)
    return min(vals.min(), phi(np.array(threshold), q, r, a, rho, beta, decay, threshold, last),
               phi(np.array(threshold + 1e-12), q, r, a, rho, beta, decay, threshold, last))


def prox(q, r, a, rho, beta, decay, threshold, last):
    out = heaviside_prox(jnp.array([q], jnp.float64), jnp.array([r], jnp.float64), jnp.array([a], jnp.float64),
                         rho=rho, beta=beta, decay=decay, threshold=threshold, last=last)
    return float(out[0])


def slack(q, r, a, rho, decay, threshold, last):
    """(|Q'(threshold)| + 1) * eps: what the unattained spike-side infimum may cost."""
    dq = rho * (threshold - q) - (0.0 if last else rho * decay * (r - decay * threshold + threshold * a))
    return (abs(dq) + 1) * EPS


def check(q, r, a, rho, beta, decay, threshold, last):
    z = prox(q, r, a, rho, beta, decay, threshold, last)
    got = phi(np.array(z), q, r, a, rho, beta, decay, threshold, last)
    best = brute_min(q, r, a, rho, beta, decay, threshold, last)
    assert got <= best + slack(q, r, a, rho, decay, threshold, last) + 1e-9, (z, got, best)
    return z


@settings(max_examples=40, deadline=None)
@given(
    q=st.floats(-3, 3), r=st.floats(-3, 3), a=st.floats(0, 1), rho=st.floats(0.05, 5), beta=st.floats(0, 5),
    decay=st.floats(0, 1), threshold=st.floats(-1, 2), last=st.booleans(),
)
def test_heaviside_prox_matches_grid_search(q, r, a, rho, beta, decay, threshold, last):
    check(q, r, a, rho, beta, decay, threshold, last)


def z_star(q, r, a, decay, threshold, last):
    return q if last else (q + decay * (r + threshold * a)) / (1 + decay**2)


@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("a", [0.0, 0.5, 1.0])
def test_unconstrained_minimiser_at_threshold_spikes_iff_a_above_half(a, last):
    decay, threshold, r = 0.9, 1.0, 0.3
    # choose q so that z* = threshold exactly
    q = threshold if last else threshold * (1 + decay**2) - decay * (r + threshold * a)
    assert z_star(q, r, a, decay, threshold, last) == pytest.approx(threshold, abs=1e-15)
    z = check(q, r, a, 1.0, 0.5, decay, threshold, last)
    assert (z > threshold) == (a > 0.5)
    if a <= 0.5:
        assert z == pytest.approx(threshold, abs=1e-12)  # ties and the resting side keep z*


@pytest.mark.parametrize("a", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("last", [False, True])
def test_zero_decay(a, last):
    for q in (-0.5, 0.9, 1.05, 2.0):
        check(q, 0.7, a, 1.0, 0.3, 0.0, 1.0, last)


@pytest.mark.parametrize("last", [False, True])
def test_small_beta_returns_quadratic_minimiser(last):
    rng = np.random.default_rng(1)
    for q, r, a in rng.uniform([-2, -2, 0], [3, 3, 1], size=(20, 3)):
        z = prox(q, r, a, 1.3, 1e-14, 0.8, 1.0, last)
        zs = z_star(q, r, a, 0.8, 1.0, last)
        if abs(zs - 1.0) > 1e-6:  # away from the threshold nothing can flip
            assert z == pytest.approx(zs, abs=1e-12)


@pytest.mark.parametrize("last", [False, True])
def test_large_beta_forces_spike_to_round_a(last):
    rng = np.random.default_rng(2)
    for q, r in rng.uniform(-3, 4, size=(20, 2)):
        for a in (0.0, 0.2, 0.8, 1.0):
            z = check(q, r, a, 1.0, 1e6, 0.9, 1.0, last)
            assert (z > 1.0) == (a > 0.5)
        # a = 1/2: both activations cost the same, z* is kept
        z = prox(q, r, 0.5, 1.0, 1e6, 0.9, 1.0, last)
        assert z == pytest.approx(z_star(q, r, 0.5, 0.9, 1.0, last), abs=1e-12)


def test_spike_side_offset_stays_above_large_thresholds_in_float32():
    for threshold in (1.0, 300.0, 1e4):
        eps = spike_side_epsilon(threshold, jnp.float32)
        th = jnp.float32(threshold)
        assert bool(th + eps > th)
    assert float(spike_side_epsilon(1.0, jnp.float64)) == EPS


def test_vectorised_over_time_with_last_mask():
    q = jnp.array([[0.5, 1.5], [0.5, 1.5]], jnp.float64)
    r = jnp.zeros_like(q)
    a = jnp.ones_like(q)
    last = jnp.array([[False], [True]])
    z = heaviside_prox(q, r, a, rho=1.0, beta=0.2, decay=0.5, threshold=1.0, last=last)
    for i in range(2):
        for j in range(2):
            assert float(z[i, j]) == prox(float(q[i, j]), 0.0, 1.0, 1.0, 0.2, 0.5, 1.0, bool(i == 1))


def test_mixed_dtypes_raise():
    with pytest.raises(TypeError, match="one floating dtype"):
        heaviside_prox(jnp.zeros(2, jnp.float32), jnp.zeros(2, jnp.float64), jnp.zeros(2, jnp.float32),
                       rho=1.0, beta=0.1, decay=0.9, threshold=1.0, last=False)
