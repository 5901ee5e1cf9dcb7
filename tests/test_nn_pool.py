"""jsnn.nn.AvgPool2d and conv_net: pooling against a plain loop, its gradient, the conv backbone's shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.nn import AvgPool2d, Conv2d, Sequential, conv_net
from jsnn.simulate import simulate


def _loop_pool(x, k, s):
    c, h, w = x.shape
    out = np.zeros((c, (h - k) // s + 1, (w - k) // s + 1))
    for ch in range(c):
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                out[ch, i, j] = x[ch, i * s : i * s + k, j * s : j * s + k].mean()
    return out


@pytest.mark.parametrize(("k", "s"), [(2, None), (3, 1), (2, 3), (3, 2)])
def test_avg_pool_matches_a_plain_loop(k, s):
    x = np.random.default_rng(0).normal(size=(2, 7, 8))
    got = AvgPool2d(k, stride=s)(jnp.asarray(x))
    np.testing.assert_allclose(got, _loop_pool(x, k, k if s is None else s), rtol=1e-12)


def test_avg_pool_gradient_counts_the_windows_of_each_pixel():
    # d(sum of outputs)/dx = (number of windows holding x) / k^2, here with overlapping windows
    x = jnp.zeros((1, 5, 5), jnp.float64)
    grad = jax.grad(lambda v: AvgPool2d(3, stride=1)(v).sum())(x)[0]
    per_axis = np.array([1, 2, 3, 2, 1])
    np.testing.assert_allclose(grad, np.outer(per_axis, per_axis) / 9, rtol=1e-12)


def test_avg_pool_bad_input():
    with pytest.raises(ValueError, match="positive"):
        AvgPool2d(0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        AvgPool2d(2)(jnp.ones((4, 4)))
    with pytest.raises(ValueError, match="H >= 3"):
        AvgPool2d(3)(jnp.ones((1, 2, 5)))


def test_conv_net_runs_over_time_and_pools_every_second_stage():
    net = conv_net((1, 8, 8), [4, 4, 4, 4], 10, key=jax.random.key(0))
    assert isinstance(net, Sequential)
    pools = [i for i, layer in enumerate(net.layers) if isinstance(layer, AvgPool2d)]
    assert pools == [4, 9]  # after stages 2 and 4: 8x8 -> 4x4 -> 2x2
    assert sum(isinstance(layer, Conv2d) for layer in net.layers) == 4
    assert net.layers[-2].in_features == 4 * 2 * 2
    out = jax.eval_shape(lambda x: simulate(net, x), jax.ShapeDtypeStruct((3, 1, 8, 8), jnp.float32))
    assert out.shape == (3, 10)
    with pytest.raises(ValueError, match="channel"):
        conv_net((1, 8, 8), [], 10, key=jax.random.key(0))
