"""A LIF layer over time with a hand-written reverse pass (a lean ``custom_vjp``).

Autodiff through ``lax.scan`` stores every intermediate of the step and replays a
generic transposed scan. The LIF recurrence has a short closed-form adjoint, so this
module runs the forward scan, keeps only the potentials ``v`` and spikes ``s``, and
computes the gradients with one elementwise reverse scan:

    v_t = f(v_{t-1}, s_{t-1}) + c_t,      s_t = H(v_t - thr)      (f: leak and reset, ALGORITHMS §0.2)
    mu_t     = dL/ds_t  = gs_t + lam_{t+1} * df_{t+1}/ds_t        (second term absent with detach_reset)
    lam_t    = dL/dv_t  = gv_t + mu_t * H'(v_t - thr) + lam_{t+1} * df_{t+1}/dv_t
    dL/dc_t  = lam_t
    dL/dδ    = sum_t lam_{t+1} * df_{t+1}/dδ
    dL/dthr  = sum_t lam_{t+1} * df_{t+1}/dthr - sum_t mu_t * H'(v_t - thr)

The partials of f_{t+1} depend only on (v_t, s_t), so the reverse scan reads one stored
array (v; spikes are recomputed from it) and accumulates the parameter gradients in its
carry. The scan may start from any state (v_{-1}, s_{-1}), which gets its cotangent
lam_0 * df_0/d(v, s), so a long sequence can be run in chunks.

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

__all__ = ["default_unroll", "lif_scan"]

#: Time steps per loop iteration of the LIF scans on a GPU or TPU (see :func:`default_unroll`).
ACCELERATOR_UNROLL = 10


def default_unroll(steps: int, backend: str | None = None) -> int:
    """Time steps per loop iteration of :func:`lif_scan` on ``backend`` (default: JAX's default backend).

    A LIF step after the hoisted input projection is a few elementwise operations. On a GPU
    each loop iteration costs a kernel launch and a round trip through the loop condition,
    which cost far more than that work; unrolling 10 steps lets XLA fuse them into one
    kernel. Workload B1 (784-256-10, batch 128) on an H200: 2.79 -> 1.25 ms per training
    step at T=25 and 5.49 -> 1.87 ms at T=100 (bench/results/b1_gpu_unroll.json; a full
    unroll compiled for 52 s). On CPU, XLA's code for an unrolled body is slower (B1 at
    T=25: 21 -> 39 ms with 5 steps per iteration), so the loop is not unrolled there.

    Args:
      steps: the number of time steps the scan runs.
      backend: ``"cpu"``, ``"gpu"``, ``"tpu"``...; ``None`` asks ``jax.default_backend()``.

    Returns:
      The ``unroll`` argument for ``lax.scan``: 1 on CPU, ``min(steps, 10)`` elsewhere.

    Example:
      >>> default_unroll(25, "cpu"), default_unroll(25, "gpu"), default_unroll(4, "gpu")
      (1, 10, 4)
    """
    if (backend or jax.default_backend()) == "cpu":
        return 1
    return max(1, min(steps, ACCELERATOR_UNROLL))


def _fired(x: Array, inclusive: bool) -> Array:
    return (x >= 0 if inclusive else x > 0).astype(x.dtype)


def _forward(flags, decay, threshold, v0, s0, currents):
    from jsnn.neurons import membrane_update

    reset, order, inclusive, _, unroll = flags

    def step(carry, c):
        v_prev, s_prev = carry
        v = membrane_update(v_prev, s_prev, c, decay, threshold, reset, order)
        s = _fired(v - threshold, inclusive)
        return (v, s), (s, v)

    _, (s, v) = jax.lax.scan(step, (v0, s0), currents, unroll=unroll)
    return s, v


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _lif_scan(flags, derivative, decay, threshold, slope, v0, s0, currents):
    return _forward(flags, decay, threshold, v0, s0, currents)


def _lif_scan_fwd(flags, derivative, decay, threshold, slope, v0, s0, currents):
    s, v = _forward(flags, decay, threshold, v0, s0, currents)
    return (s, v), (decay, threshold, slope, v0, s0, v)  # spikes are recomputed from v in the reverse pass


def _sum_to(x: Array, like: Array) -> Array:
    """Sum ``x`` (*features) down to the (broadcastable) shape of ``like``."""
    extra = x.ndim - like.ndim
    x = x.sum(axis=tuple(range(extra))) if extra > 0 else x
    axes = tuple(i for i, n in enumerate(like.shape) if n == 1 and x.shape[i] != 1)
    return x.sum(axis=axes, keepdims=True).reshape(like.shape)


def _partials(reset, order, decay, threshold, v, s):
    """Partials of the next step's leak-and-reset map f(v, s) wrt v, s, decay and threshold.

    They are broadcastable (scalars where constant), so nothing of size (T, *features) is built.
    """
    if reset == "subtract":
        if order == "leak_first":
            return decay, -threshold, v, -s
        return decay, -decay * threshold, v - threshold * s, -decay * s
    if reset == "zero":
        return decay * (1 - s), -decay * v, (1 - s) * v, 0.0
    return decay, 0.0, v, 0.0


def _lif_scan_bwd(flags, derivative, residuals, cotangents):
    reset, order, inclusive, detach, unroll = flags
    decay, threshold, slope, v0, s0, v = residuals
    gs, gv = cotangents
    slope = jnp.asarray(slope, v.dtype)

    def back(carry, inputs):
        lam_next, g_decay, g_threshold = carry  # lam_next = dL/dv_{t+1} (zero after the last step)
        gs_t, gv_t, v_t = inputs
        x = v_t - threshold
        s_t = _fired(x, inclusive)
        sg_t = derivative(x, slope)
        fv, fs, fd, fth = _partials(reset, order, decay, threshold, v_t, s_t)  # of f_{t+1} at (v_t, s_t)
        mu = gs_t if detach else gs_t + lam_next * fs
        lam = gv_t + mu * sg_t + lam_next * fv
        return (lam, g_decay + lam_next * fd, g_threshold + lam_next * fth - mu * sg_t), lam

    zeros = jnp.zeros_like(v[0])
    (lam0, g_decay, g_threshold), lam = jax.lax.scan(
        back, (zeros, zeros, zeros), (gs, gv, v), reverse=True, unroll=unroll
    )
    # The first step's map f_0 acts on the initial state (v0, s0).
    fv, fs, fd, fth = _partials(reset, order, decay, threshold, v0, s0)
    g_decay, g_threshold = g_decay + lam0 * fd, g_threshold + lam0 * fth
    g_v0 = jnp.broadcast_to(lam0 * fv, v0.shape)
    g_s0 = jnp.zeros_like(s0) if detach else jnp.broadcast_to(lam0 * fs, s0.shape)
    return _sum_to(g_decay, decay), _sum_to(g_threshold, threshold), jnp.zeros_like(slope), g_v0, g_s0, lam


_lif_scan.defvjp(_lif_scan_fwd, _lif_scan_bwd)


def lif_scan(
    neuron, currents: Float[Array, "T *n"], state=None, *, unroll: int | None = None
) -> tuple[Float[Array, "T *n"], Float[Array, "T *n"]]:
    """Spikes and potentials of a :class:`jsnn.neurons.LIF` (or ``IF``) over time, with the lean VJP.

    Args:
      neuron: a LIF or IF module (its flags, decay, threshold and surrogate are used).
      currents: input currents ``(T, *features)``.
      state: initial ``(v, s)`` (previous potential and spike); zeros when ``None``.
      unroll: time steps per loop iteration of the forward and reverse scans; ``None`` picks
        :func:`default_unroll` for the default backend. It changes speed, not results
        (up to floating-point rounding of fused operations).

    Returns:
      ``(spikes, v)``, both ``(T, *features)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jsnn.neurons import LIF
      >>> s, v = lif_scan(LIF(decay=0.5), jnp.full((4, 1), 0.8, jnp.float32))
      >>> [round(x, 4) for x in v[:, 0].tolist()], s[:, 0].tolist()
      ([0.8, 1.2, 0.4, 1.0], [0.0, 1.0, 0.0, 0.0])
    """
    dtype = currents.dtype
    decay = jnp.asarray(neuron.leak, dtype)
    threshold = jnp.asarray(neuron.threshold, dtype)
    slope = jnp.asarray(neuron.surrogate.slope, dtype)
    if unroll is None:
        unroll = default_unroll(currents.shape[0])
    elif not isinstance(unroll, int) or isinstance(unroll, bool) or unroll < 1:
        raise ValueError(f"unroll must be a positive int (time steps per loop iteration); got {unroll!r}.")
    flags = (neuron.reset, neuron.update_order, neuron.cmp == ">=", neuron.detach_reset, unroll)
    if state is None:
        v0 = s0 = jnp.zeros(currents.shape[1:], dtype)
    else:
        v0, s0 = state
    return _lif_scan(flags, type(neuron.surrogate)._derivative, decay, threshold, slope, v0, s0, currents)
