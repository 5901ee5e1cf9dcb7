"""Weight-norm restrictions (ALGORITHMS §3.8, oracle 8)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from equilibrium_nets import F64, linear
from jsnn.equilibrium import FrobeniusNorm, SpectralNorm, feedback_fc, trainable
from jsnn.nn import Conv2d


def test_spectral_norm_bound_after_the_carried_power_iteration_converges():
    w = np.random.default_rng(0).normal(size=(12, 12)) * 3.0  # ||W||_2 about 20
    sn = SpectralNorm(linear(w), (12,), key=jax.random.key(0))
    for _ in range(30):
        sn = sn.power_iteration()
    assert float(jnp.linalg.norm(sn.materialize().weight, 2)) <= 1 + 1e-3
    np.testing.assert_allclose(float(sn.sigma()), np.linalg.norm(w, 2), rtol=1e-3)


def test_spectral_norm_of_a_convolution_operator():
    conv = Conv2d(2, 2, 3, padding=1, use_bias=False, scale=5.0, dtype=F64, key=jax.random.key(1))
    sn = SpectralNorm(conv, (2, 5, 5), key=jax.random.key(2))
    # close top singular values: the carried iteration needs a few hundred forwards here
    sn = eqx.filter_jit(lambda m: jax.lax.fori_loop(0, 500, lambda _, m: m.power_iteration(), m))(sn)
    eff = sn.materialize()
    J = jax.jacobian(lambda x: eff(x).reshape(-1))(jnp.zeros((2, 5, 5), F64)).reshape(50, 50)
    assert float(jnp.linalg.norm(J, 2)) <= 1 + 1e-3


def test_frobenius_restriction_bounds_the_exact_norm_and_passes_gradients():
    w = np.random.default_rng(1).normal(size=(30, 30))  # ||W||_F about 30
    fn = FrobeniusNorm(linear(w), (30,), bound=2.0)
    for k in range(5):
        assert float(jnp.linalg.norm(fn.materialize(key=jax.random.key(k)).weight)) <= 1.2 * 2.0
    g = eqx.filter_grad(lambda m: jnp.sum(m.materialize(key=jax.random.key(0)).weight[0]))(fn)
    assert float(jnp.abs(g.layer.weight).sum()) > 0


def test_trainable_excludes_the_power_iteration_vector():
    net = feedback_fc(3, [4], 2, norm="spectral", key=jax.random.key(0))
    spec = trainable(net)
    assert spec.connections[0].u is False
    assert spec.connections[0].scale is True and spec.connections[0].layer.weight is True
