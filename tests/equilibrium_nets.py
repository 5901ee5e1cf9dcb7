"""Small float64 feedback nets with chosen weights, shared by the equilibrium tests."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jsnn.equilibrium import FeedbackNet, simulate_rates
from jsnn.neurons import IF
from jsnn.nn import Linear

F64 = jnp.float64


def linear(w, b=None):
    """A jsnn Linear holding exactly ``w`` (out, in) and ``b``."""
    w = jnp.asarray(w, F64)
    layer = Linear(w.shape[1], w.shape[0], use_bias=b is not None, dtype=F64, key=jax.random.key(0))
    layer = eqx.tree_at(lambda m: m.weight, layer, w)
    if b is not None:
        layer = eqx.tree_at(lambda m: m.bias, layer, jnp.asarray(b, F64))
    return layer


def net_from(enc_w, conns, *, enc_b=None, neuron=None, reset="subtract", classes=3):
    """A FeedbackNet from an encoder matrix and connection matrices (feedback last, no bias)."""
    conns = [linear(c) if not isinstance(c, tuple) else linear(*c) for c in conns]
    n_last = conns[-2].weight.shape[0] if len(conns) > 1 else conns[0].weight.shape[0]
    readout = linear(np.random.default_rng(7).normal(size=(classes, n_last)) * 0.5, np.zeros(classes))
    return FeedbackNet(linear(enc_w, enc_b), conns, readout, input_shape=(np.shape(enc_w)[1],),
                       neuron=IF(threshold=2.0, cmp=">=") if neuron is None else neuron, reset=reset)


def scaled(rng, n, m, norm2):
    """A random (n, m) matrix with spectral norm ``norm2``."""
    w = rng.normal(size=(n, m))
    return w * (norm2 / np.linalg.norm(w, 2))


def single_layer(seed=0, n=30, norm2=1.0, reset="subtract", neuron=None):
    """``a = sigma((W a + x)/2)`` with ``F = I``, ``||W||_2 = norm2``, and an input with unsaturated units."""
    rng = np.random.default_rng(seed)
    net = net_from(np.eye(n), [scaled(rng, n, n, norm2)], reset=reset, neuron=neuron)
    x = jnp.asarray(rng.uniform(0.3, 1.5, size=n), F64)
    return net, x


#: jitted simulation (T is a static Python int)
simulate = eqx.filter_jit(simulate_rates)


@eqx.filter_jit
def exact_fixed_point(net, x, iters=3000):
    """The equilibrium of the composite map by plain iteration (a contraction here)."""
    fx = net.input_current(x)
    a = jnp.zeros(net.layer_shapes[-1], F64)
    return jax.lax.fori_loop(0, iters, lambda _, a: net.fixed_point_map(a, fx), a)


@eqx.filter_jit
def layered_fixed_point(net, x, iters=3000):
    """The equilibrium of the layered map ``(a_0..a_{N-1}) -> layer_map`` by plain iteration."""
    fx = net.input_current(x)
    a = tuple(jnp.zeros(s, F64) for s in net.layer_shapes)
    return jax.lax.fori_loop(0, iters, lambda _, a: net.layer_map(a, fx), a)
