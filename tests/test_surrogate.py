"""Surrogate derivatives against their formulas; the forward pass is the exact step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.surrogate import Arctan, FastSigmoid, StraightThrough, Triangle

X = jnp.array([-2.0, -0.3, -0.01, 0.0, 0.02, 0.5, 3.0], jnp.float64)

FORMULAS = [
    (FastSigmoid(slope=25.0), lambda x, k: 1 / (1 + k * np.abs(x)) ** 2),
    (FastSigmoid(slope=3.0), lambda x, k: 1 / (1 + k * np.abs(x)) ** 2),
    (Arctan(slope=2.0), lambda x, k: (k / 2) / (1 + (np.pi / 2 * k * x) ** 2)),
    (Triangle(slope=2.0), lambda x, k: k * np.maximum(0, 1 - k * np.abs(x))),
    (StraightThrough(slope=1.0), lambda x, k: np.full_like(x, k)),
    (StraightThrough(slope=0.5), lambda x, k: np.full_like(x, k)),
]


@pytest.mark.parametrize(("sg", "formula"), FORMULAS, ids=lambda v: getattr(v, "__class__", type(v)).__name__)
def test_derivative_matches_formula(sg, formula):
    grads = jax.vmap(jax.grad(sg))(X)
    np.testing.assert_allclose(grads, formula(np.asarray(X), sg.slope), rtol=1e-12)


@pytest.mark.parametrize(("sg", "formula"), FORMULAS)
def test_forward_is_the_exact_step(sg, formula):
    np.testing.assert_array_equal(sg(X), (np.asarray(X) > 0).astype(np.float64))
    np.testing.assert_array_equal(sg(X, inclusive=True), (np.asarray(X) >= 0).astype(np.float64))


@pytest.mark.parametrize(("sg", "expected"), [(Arctan(), 1.0), (Triangle(slope=1.0), 1.0), (FastSigmoid(slope=4.0), 0.5)])
def test_surrogate_area(sg, expected):
    # Arctan and Triangle integrate to 1; the fast sigmoid to 2 / slope (its tails are heavy).
    x = jnp.linspace(-5000.0, 5000.0, 4_000_001, dtype=jnp.float64)
    area = float(jnp.trapezoid(sg.derivative(x), x))
    assert abs(area - expected) < 2e-3, area


def test_slope_can_be_traced():
    slopes = jnp.array([1.0, 10.0], jnp.float64)
    grads = jax.vmap(lambda k: jax.grad(lambda x: FastSigmoid(slope=k)(x))(jnp.float64(0.1)))(slopes)
    np.testing.assert_allclose(grads, 1 / (1 + np.array([1.0, 10.0]) * 0.1) ** 2)


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="floating"):
        FastSigmoid()(jnp.array([1, 2]))
