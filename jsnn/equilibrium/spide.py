"""SPIDE: the implicit backward pass computed by spiking ternary neuron couples (ALGORITHMS §3.5).

Each forward neuron gets a backward neuron whose spikes are ``+-A`` or 0:

    s_b = A (1[u >= theta_b] - 1[u <= -theta_b]),   u <- u - s_b   (LIF: u <- delta u)

Run for ``T_b`` steps on the input ``g_s = sf dL/da_o`` (``o = N-1``), in the forward order reversed:

    u_o += g_s + [t > 1] (1/V) C_{N-1}^T(m_0 * s_0(t-1))
    l = N-2..0:  u_l += (1/V) C_l^T(m_{l+1} * s_{l+1}(t))

their rates ``g^_l`` converge at ``O(1/T_b)`` to the cyclic adjoint
``g_l = 1[l = o] g_s + (1/V) C_l^T(m_{l+1} * g_{l+1})`` (indices mod N), with the masks
``m_l = 1[0 < a_l < 1]`` taken from the forward rates, as long as ``|g| < A``. The weights are then
updated locally from the two stages' rates: ``grad C_l = (1/V) vjp_W[C_l(a_l; W)](m_{l+1} * g^_{l+1})``,
and the same for ``F`` at the input.

References:
  Xiao et al., "SPIDE: a purely spike-based method for training feedback spiking neural
  networks", arXiv 2302.00232.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from jsnn.equilibrium.network import FeedbackNet, apply
from jsnn.equilibrium.reparam import linear_part

__all__ = ["cyclic_adjoint", "local_gradients", "masks", "spiking_backward", "ternary_fire", "transposes"]


def ternary_fire(u: Array, threshold: float) -> tuple[Array, Array]:
    """One ternary backward neuron step with ``u_rest = -threshold``: ``(u - s, s)``, ``s in {-A, 0, A}``, ``A = 2 threshold``."""
    amp = 2.0 * threshold
    s = amp * ((u >= threshold).astype(u.dtype) - (u <= -threshold).astype(u.dtype))
    return u - s, s


def transposes(net: FeedbackNet, dtype) -> tuple:
    """``(y -> (1/V) C_l^T y)`` for every connection, from ``jax.linear_transpose`` of its linear part."""
    out = []
    for l, conn in enumerate(net.connections):
        src = jax.ShapeDtypeStruct(net.layer_shapes[l], dtype)
        transpose = jax.linear_transpose(lambda a, c=linear_part(conn): apply(c, a), src)
        out.append(lambda y, tr=transpose: tr(y)[0] / net.V)
    return tuple(out)


def masks(rates: tuple[Array, ...]) -> tuple[Array, ...]:
    """``m_l = 1[0 < a_l < 1]`` from the forward rates."""
    return tuple(((a > 0) & (a < 1)).astype(a.dtype) for a in rates)


def spiking_backward(net: FeedbackNet, rates: tuple[Array, ...], g_bar: Array, *, T_b: int,
                     threshold: float = 0.5) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
    """The backward neurons' rates ``g^_l`` for one sample, and their spike counts (``|s|/A`` summed).

    Args:
      net: the materialised net.
      rates: the forward rates ``a_l`` of every layer (one sample).
      g_bar: the (scaled) input ``g_s`` to the last layer, shape of ``a_{N-1}``.
      T_b: backward steps.
      threshold: ``theta_b``.

    Returns:
      ``(g_hat, counts)``, each a tuple over layers.
    """
    if int(T_b) < 1:
        raise ValueError(f"T_backward must be >= 1; got {T_b}.")
    n = len(net.connections)
    m = masks(rates)
    tr = transposes(net, g_bar.dtype)
    delta = net.decay
    amp = 2.0 * threshold

    def body(carry, t):
        u, s_prev, acc, cnt = carry
        u, s = list(u), [None] * n
        fb = tr[n - 1](m[0] * s_prev[0])
        u[n - 1], s[n - 1] = ternary_fire(u[n - 1] + g_bar + jnp.where(t > 0, fb, jnp.zeros_like(fb)), threshold)
        for l in range(n - 2, -1, -1):
            u[l], s[l] = ternary_fire(u[l] + tr[l](m[l + 1] * s[l + 1]), threshold)
        u = tuple(delta * x for x in u)
        acc = tuple(delta * a + x for a, x in zip(acc, s))
        cnt = tuple(c + jnp.abs(x) / amp for c, x in zip(cnt, s))
        return (u, tuple(s), acc, cnt), None

    zeros = tuple(jnp.zeros_like(a) for a in rates)
    (_, _, acc, cnt), _ = jax.lax.scan(body, (zeros, zeros, zeros, zeros), jnp.arange(T_b))
    norm = jnp.sum(jnp.asarray(delta, g_bar.dtype) ** jnp.arange(T_b, dtype=g_bar.dtype))
    return tuple(a / norm for a in acc), cnt


def cyclic_adjoint(net: FeedbackNet, rates: tuple[Array, ...], g_bar: Array, *, tol: float = 1e-12,
                   max_iter: int = 1000) -> tuple[Array, ...]:
    """The exact adjoint SPIDE's rates approximate: ``g_l = 1[l = o] g_bar + (1/V) C_l^T(m_{l+1} * g_{l+1})``.

    Solved by the layered fixed-point iteration (a contraction under the norm restriction), to a
    relative change below ``tol`` or ``max_iter`` sweeps. Same forward state, same masks.
    """
    n = len(net.connections)
    m = masks(rates)
    tr = transposes(net, g_bar.dtype)

    def sweep(g):
        new = [None] * n
        new[n - 1] = g_bar + tr[n - 1](m[0] * g[0])
        for l in range(n - 2, -1, -1):
            new[l] = tr[l](m[l + 1] * new[l + 1])
        return tuple(new)

    def cond(c):
        k, _, change = c
        return (k < max_iter) & (change > tol)

    def body(c):
        k, g, _ = c
        new = sweep(g)
        num = sum(jnp.sum((a - b) ** 2) for a, b in zip(new, g))
        den = sum(jnp.sum(a**2) for a in new)
        return k + 1, new, jnp.sqrt(num / jnp.maximum(den, 1e-300))

    zeros = tuple(jnp.zeros_like(a) for a in rates)
    _, g, _ = jax.lax.while_loop(cond, body, (0, zeros, jnp.asarray(jnp.inf, g_bar.dtype)))
    return g


def local_gradients(net: FeedbackNet, x: Array, rates: tuple[Array, ...], g: tuple[Array, ...]):
    """The local weight update from the two stages' rates, for a batch: ``(grad_net, grad_x)``.

    ``(1/V) m_l * g_l`` is the cotangent of every layer's input ``(C_{N-1}(a_{N-1}) + F x, C_0(a_0), ...)``
    at the (constant) forward rates; one ``vjp`` turns it into ``grad C_l`` (post ``g_{l+1}``, pre
    ``a_l``), ``grad F`` and ``grad b``.

    Args:
      net: the materialised net.
      x: the batch of inputs ``(B, *input_shape)``.
      rates: forward rates per layer, each ``(B, ...)``.
      g: adjoint rates per layer, each ``(B, ...)``.
    """
    cot = tuple(mk * gl / net.V for mk, gl in zip(masks(rates), g))

    def pre(n_, x_):
        return jax.vmap(lambda xi, r: n_.pre_activations(r, n_.input_current(xi)))(x_, rates)

    _, vjp = eqx.filter_vjp(pre, net, x)
    return vjp(cot)
