"""A LIF layer over time with a hand-written reverse pass (a lean ``custom_vjp``).

Autodiff through ``lax.scan`` stores every intermediate of the step and replays a
generic transposed scan. The LIF recurrence has a short closed-form adjoint, so this
module runs the forward scan, keeps only the potentials ``v`` and spikes ``s``, and
computes the gradients with one elementwise reverse scan:

    v_t = f(v_{t-1}, s_{t-1}) + c_t,      s_t = H(v_t - thr)      (f: leak and reset, ALGORITHMS §0.2)
    mu_t     = dL/ds_t  = gs_t + lam_{t+1} * df_{t+1}/ds_t        (second term absent with detach_reset)
    lam_t    = dL/dv_t  = gv_t + mu_t * H'(v_t - thr) + lam_{t+1} * df_{t+1}/dv_t
    dL/dc_t  = lam_t
    dL/dδ    = sum_t lam_t * df_t/dδ
    dL/dthr  = sum_t lam_t * df_t/dthr - sum_t mu_t * H'(v_t - thr)

where ``H'`` is the surrogate derivative. The result equals autodiff of the step
function exactly (tests/test_fused.py checks every flag combination against it).

References:
  Neftci, Mostafa, Zenke, "Surrogate gradient learning in spiking neural networks",
  arXiv 1901.09948.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["lif_scan"]


def _forward(flags, derivative, decay, threshold, slope, currents):
    from jsnn.neurons import membrane_update

    reset, order, inclusive, _ = flags

    def step(carry, c):
        v_prev, s_prev = carry
        v = membrane_update(v_prev, s_prev, c, decay, threshold, reset, order)
        x = v - threshold
        s = (x >= 0 if inclusive else x > 0).astype(v.dtype)
        return (v, s), (s, v)

    zeros = jnp.zeros(currents.shape[1:], currents.dtype)
    _, (s, v) = jax.lax.scan(step, (zeros, zeros), currents)
    return s, v


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _lif_scan(flags, derivative, decay, threshold, slope, currents):
    return _forward(flags, derivative, decay, threshold, slope, currents)


def _lif_scan_fwd(flags, derivative, decay, threshold, slope, currents):
    s, v = _forward(flags, derivative, decay, threshold, slope, currents)
    return (s, v), (decay, threshold, slope, s, v)


def _sum_to(x: Array, like: Array) -> Array:
    """Sum ``x`` (time, *features) down to the (broadcastable) shape of ``like``."""
    x = x.sum(axis=0)
    extra = x.ndim - like.ndim
    x = x.sum(axis=tuple(range(extra))) if extra > 0 else x
    axes = tuple(i for i, n in enumerate(like.shape) if n == 1 and x.shape[i] != 1)
    return x.sum(axis=axes, keepdims=True).reshape(like.shape)


def _partials(reset, order, decay, threshold, v_prev, s_prev):
    """df_t/dv_{t-1}, df_t/ds_{t-1}, df_t/d(decay), df_t/d(threshold) of the leak-and-reset map f."""
    one = jnp.ones_like(v_prev)
    if reset == "subtract":
        if order == "leak_first":
            return decay * one, -threshold * one, v_prev, -s_prev
        return decay * one, -decay * threshold * one, v_prev - threshold * s_prev, -decay * s_prev
    if reset == "zero":
        return decay * (1 - s_prev), -decay * v_prev, (1 - s_prev) * v_prev, jnp.zeros_like(v_prev)
    return decay * one, jnp.zeros_like(v_prev), v_prev, jnp.zeros_like(v_prev)


def _lif_scan_bwd(flags, derivative, residuals, cotangents):
    reset, order, _, detach = flags
    decay, threshold, slope, s, v = residuals
    gs, gv = cotangents
    sg = derivative(v - threshold, jnp.asarray(slope, v.dtype))
    v_prev = jnp.concatenate([jnp.zeros_like(v[:1]), v[:-1]])
    s_prev = jnp.concatenate([jnp.zeros_like(s[:1]), s[:-1]])
    fv, fs, fd, fth = _partials(reset, order, decay, threshold, v_prev, s_prev)
    # f_{t+1}'s partials seen from step t; nothing follows the last step.
    fv_next = jnp.concatenate([fv[1:], jnp.zeros_like(fv[:1])])
    fs_next = jnp.concatenate([fs[1:], jnp.zeros_like(fs[:1])])

    def back(lam_next, inputs):
        gs_t, gv_t, sg_t, fv_t, fs_t = inputs
        mu = gs_t if detach else gs_t + lam_next * fs_t
        lam = gv_t + mu * sg_t + lam_next * fv_t
        return lam, (lam, mu)

    _, (lam, mu) = jax.lax.scan(back, jnp.zeros_like(v[0]), (gs, gv, sg, fv_next, fs_next), reverse=True)
    g_decay = _sum_to(lam * fd, decay)
    g_threshold = _sum_to(lam * fth - mu * sg, threshold)
    return g_decay, g_threshold, jnp.zeros_like(slope), lam


_lif_scan.defvjp(_lif_scan_fwd, _lif_scan_bwd)


def lif_scan(neuron, currents: Float[Array, "T *n"]) -> tuple[Float[Array, "T *n"], Float[Array, "T *n"]]:
    """Spikes and potentials of a :class:`jsnn.neurons.LIF` (or ``IF``) over time, with the lean VJP.

    Args:
      neuron: a LIF or IF module (its flags, decay, threshold and surrogate are used).
      currents: input currents ``(T, *features)``.

    Returns:
      ``(spikes, v)``, both ``(T, *features)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jsnn.neurons import LIF
      >>> s, v = lif_scan(LIF(decay=0.5), jnp.full((4, 1), 0.8))
      >>> v[:, 0].tolist(), s[:, 0].tolist()
      ([0.800000011920929, 1.2000000476837158, 0.40000003576278687, 1.0], [0.0, 1.0, 0.0, 0.0])
    """
    dtype = currents.dtype
    decay = jnp.asarray(getattr(neuron, "decay", 1.0), dtype)
    threshold = jnp.asarray(neuron.threshold, dtype)
    slope = jnp.asarray(neuron.surrogate.slope, dtype)
    order = getattr(neuron, "order", "leak_first")
    flags = (neuron.reset, order, neuron.cmp == ">=", neuron.detach_reset)
    return _lif_scan(flags, type(neuron.surrogate)._derivative, decay, threshold, slope, currents)
