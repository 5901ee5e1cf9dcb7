"""SPIDE: ternary neurons, the spiking backward against the cyclic adjoint, transposes (ALGORITHMS §3.8, 9-13)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilibrium_nets import F64, linear, net_from, scaled, simulate
from jsnn.equilibrium import EquilibriumConfig, FeedbackNet, cyclic_adjoint, equilibrium, local_gradients
from jsnn.equilibrium.network import apply
from jsnn.equilibrium.spide import masks, spiking_backward, ternary_fire, transposes
from jsnn.nn import Conv2d, Flatten


def _ternary_mean(c, T_b, threshold=0.5):
    def body(u, _):
        u, s = ternary_fire(u + c, threshold)
        return u, s

    _, s = jax.lax.scan(body, jnp.zeros_like(c), None, length=T_b)
    return s.mean(0)


def test_ternary_neuron_rate_tracks_its_input_and_saturates_at_A():
    c = jnp.linspace(-0.99, 0.99, 41, dtype=F64)
    for T_b in (30, 250):
        assert float(jnp.max(jnp.abs(_ternary_mean(c, T_b) - c))) <= 0.5 / T_b + 1e-12  # |u_T| <= theta_b
    big = jnp.array([-3.0, -1.5, 1.2, 7.0], F64)
    np.testing.assert_array_equal(_ternary_mean(big, 100), jnp.sign(big))


@pytest.fixture(scope="module")
def two_layer():
    """A 2-layer feedback net at its T = 30 state, and an input gradient scaled so max|g| = 0.8 A."""
    rng = np.random.default_rng(11)
    net = net_from(np.eye(16), [(scaled(rng, 12, 16, 1.0), rng.uniform(0, 0.3, 12)), scaled(rng, 16, 12, 1.0)],
                   reset="modified")
    x = jnp.asarray(rng.uniform(0.3, 1.5, (2, 16)), F64)
    rates = jax.vmap(lambda xi: simulate(net, xi, 30).rates)(x)
    g_bar = jnp.asarray(rng.normal(size=(2, 12)), F64)
    g = jax.vmap(lambda r, gb: cyclic_adjoint(net, r, gb))(rates, g_bar)
    scale = 0.8 / max(float(jnp.abs(gl).max()) for gl in g)
    return net, x, rates, g_bar * scale, tuple(gl * scale for gl in g)


def test_spiking_backward_converges_to_the_cyclic_adjoint(two_layer):
    net, x, rates, g_bar, g = two_layer
    errs = []
    for T_b in (30, 100, 250, 1000):
        g_hat, _ = jax.vmap(lambda r, gb, T_b=T_b: spiking_backward(net, r, gb, T_b=T_b))(rates, g_bar)
        err = max(float(jnp.abs(a - b).max()) for a, b in zip(g_hat, g))
        assert err <= 2.0 / T_b, (T_b, err)
        assert all(float(jnp.mean(jnp.abs(a) == 1.0)) == 0.0 for a in g_hat)  # max|g| < A: nothing saturates
        errs.append(err)
    assert errs[-1] < errs[1] < errs[0]


def _flat(tree):
    return jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))])


def test_spide_gradient_cosine_with_the_exact_adjoint_gradient(two_layer):
    net, x, rates, g_bar, g = two_layer
    g_hat, _ = jax.vmap(lambda r, gb: spiking_backward(net, r, gb, T_b=250))(rates, g_bar)
    spide, _ = local_gradients(net, x, rates, g_hat)
    exact, _ = local_gradients(net, x, rates, g)
    a, b = _flat(spide.connections), _flat(exact.connections)
    assert float(a @ b / jnp.linalg.norm(a) / jnp.linalg.norm(b)) >= 0.999


def test_custom_vjp_spide_backward_is_spiking_backward_then_local_update(two_layer):
    net, x, rates, g_bar, _ = two_layer
    cfg = EquilibriumConfig(T=30, backward="spide", T_backward=100, loss_scale=1.0)
    grads = eqx.filter_grad(lambda n: jnp.sum(g_bar * equilibrium(n, x, cfg)[0]))(net)
    # the custom_vjp scales sample i's input by loss_scale * B and divides it back out
    g_hat, _ = jax.vmap(lambda r, gb: spiking_backward(net, r, 2 * gb, T_b=100))(rates, g_bar)
    want, _ = local_gradients(net, x, rates, tuple(gh / 2 for gh in g_hat))
    np.testing.assert_allclose(_flat(grads.connections), _flat(want.connections), rtol=1e-12, atol=1e-14)


def test_cyclic_adjoint_is_the_composite_map_gradient_under_the_same_masks(two_layer):
    net, x, rates, g_bar, g = two_layer
    V = 2.0
    C0, C1 = np.asarray(net.connections[0].weight), np.asarray(net.connections[1].weight)
    m0, m1 = (np.asarray(m[0]) for m in masks(tuple(r for r in rates)))
    J = np.diag(m1) @ C0 / V @ np.diag(m0) @ C1 / V  # d a_1 / d a_1 through layer 0
    dense = np.linalg.solve(np.eye(12) - J.T, np.asarray(g_bar[0]))
    np.testing.assert_allclose(g[1][0], dense, atol=1e-12)
    np.testing.assert_allclose(g[0][0], C0.T @ (m1 * dense) / V, atol=1e-12)
    # connection l: post g_{l+1}, pre a_l
    grads, _ = local_gradients(net, x, rates, g)
    pre, post = np.asarray(rates[0]), np.asarray(masks(rates)[1] * g[1])
    np.testing.assert_allclose(grads.connections[0].weight, post.T @ pre / V, atol=1e-12)
    np.testing.assert_allclose(grads.connections[0].bias, post.sum(0) / V, atol=1e-12)


class Unflatten(eqx.Module):
    shape: tuple = eqx.field(static=True)

    def __call__(self, x):
        return x.reshape(self.shape)


def test_transposes_of_strided_conv_and_fc_reshape_equal_vjp():
    key = jax.random.key(3)
    conv = Conv2d(2, 3, 3, stride=2, padding=1, dtype=F64, key=key)  # (2, 6, 6) -> (3, 3, 3)
    fc = (Flatten(), linear(np.random.default_rng(3).normal(size=(72, 27))), Unflatten((2, 6, 6)))
    enc = Conv2d(1, 2, 3, padding=1, dtype=F64, key=jax.random.fold_in(key, 1))
    net = FeedbackNet(enc, [conv, fc], linear(np.ones((3, 27)), np.zeros(3)), input_shape=(1, 6, 6))
    tr = transposes(net, F64)
    rng = np.random.default_rng(4)
    for l, conn in enumerate(net.connections):
        src = jnp.asarray(rng.normal(size=net.layer_shapes[l]), F64)
        out_shape = net.layer_shapes[(l + 1) % 2]
        y = jnp.asarray(rng.normal(size=out_shape), F64)
        # linear part: subtract the map at zero (the biases)
        f = lambda a, c=conn: apply(c, a) - apply(c, jnp.zeros_like(a))  # noqa: E731
        _, vjp = jax.vjp(f, src)
        np.testing.assert_allclose(tr[l](y), vjp(y)[0] / 2.0, atol=1e-12)
        np.testing.assert_allclose(jnp.vdot(y, f(src)) / 2.0, jnp.vdot(tr[l](y), src), rtol=1e-12)
