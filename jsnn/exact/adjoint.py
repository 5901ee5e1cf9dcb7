"""Hand-written EventProp adjoint of an event-driven CuBa-LIF layer, as a ``jax.custom_vjp`` with O(spikes) memory.

The forward pass is ``layer_core``; it keeps only the spike times and the synaptic current at each spike
(plus the inputs), i.e. O(number of events) residuals, no trajectory. The backward pass runs, for each
neuron, over its events in reverse time with the adjoint a = (dL/dV, dL/dI) of the state:

    between events (reverse duration s):  a(t) = Phi(s)^T a(t + s) + g int_0^s Phi(u)^T e_V du
    own spike k (current I, slope Vdot = (I - threshold)/tau_mem, guarded):
        a_V^- = (a_V^+ I/tau_mem - dL/dt_k - g threshold) / Vdot,      a_I^- = a_I^+
    input event from source j with weight w at time t:
        dL/dW[n, j] += a_I(t),        dL/dt += w (a_I/tau_syn - a_V/tau_mem)

with terminal condition a_V(t_end) = dL/dV(t_end), a_I(t_end) = 0, and g = dL/d(int_0^t_end V dt). This
is EventProp (ALGORITHMS §2.5) written for a = gradient of the loss with respect to the state (their
lambda_I equals -a_I/tau_syn); its sign was fixed against finite differences and reverse autodiff.

References:
  Wunderlich and Pehle, "Event-based backpropagation can compute exact gradients for spiking neural
  networks", Sci. Rep. 2021, arXiv 2009.08378.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .flow import LIFConfig, crossing_slope, flow_coefficients
from .simulate import LayerResult, layer_core

__all__ = ["layer_core_adjoint"]


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def layer_core_adjoint(weight: Float[Array, "n n_in"], ev_t: Float[Array, " M"], ev_src: Int[Array, " M"],
                       cfg: LIFConfig, max_spikes: int) -> LayerResult:
    """``layer_core`` whose reverse-mode derivative is the hand EventProp adjoint (O(spikes) memory).

    Differentiable outputs: ``times``, ``v_end`` and ``v_int``; the other fields are diagnostics.
    Forward mode (``jax.jvp``) is not defined for it: use ``layer_core`` for FP.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jsnn.exact.flow import LIFConfig
      >>> w, t, src = jnp.array([[5.0]]), jnp.array([1.0]), jnp.array([0], jnp.int32)
      >>> g = jax.grad(lambda w: layer_core_adjoint(w, t, src, LIFConfig(), 1).times[0, 0])(w)
      >>> round(float(g[0, 0]), 6)
      -1.236068
    """
    return layer_core(weight, ev_t, ev_src, cfg, max_spikes)


def _fwd(weight, ev_t, ev_src, cfg, max_spikes):
    res = layer_core(weight, ev_t, ev_src, cfg, max_spikes)
    return res, (weight, ev_t, ev_src, res.times, res.i_spike)


def _neuron_bwd(w_row, ev_t, ev_src, out_t, out_i, ct_t, ct_vend, ct_vint, cfg: LIFConfig):
    dtype = w_row.dtype
    m, k = ev_t.shape[0], out_t.shape[0]
    t_end = jnp.asarray(cfg.t_end, dtype)
    times = jnp.concatenate([ev_t, out_t])
    is_spike = jnp.concatenate([jnp.zeros(m, bool), jnp.ones(k, bool)])
    valid = times < t_end
    key = jnp.where(valid, times, jnp.asarray(-jnp.inf, dtype))
    order = jnp.argsort(-key, stable=True)
    w_ev = jnp.concatenate([w_row[ev_src], jnp.zeros(k, dtype)])
    i_ev = jnp.concatenate([jnp.zeros(m, dtype), out_i])
    ct_ev = jnp.concatenate([jnp.zeros(m, dtype), ct_t])
    zero = jnp.zeros((), dtype)

    def step(carry, e):
        t_cur, a_v, a_i = carry
        t_e, spike, ok, w_e, i_e, ct_e = e
        s = jnp.where(ok, t_cur - t_e, zero)
        c = flow_coefficients(s, cfg)
        a_v, a_i = c.vv * a_v + ct_vint * c.int_vv, c.vi * a_v + c.ii * a_i + ct_vint * c.int_vi
        g_w = jnp.where(ok & ~spike, a_i, zero)
        g_t = jnp.where(ok & ~spike, w_e * (a_i / cfg.tau_syn - a_v / cfg.tau_mem), zero)
        vdot, _ = crossing_slope(i_e, cfg)
        a_v_jump = (a_v * i_e / cfg.tau_mem - ct_e - ct_vint * cfg.threshold) / vdot
        a_v = jnp.where(ok & spike, a_v_jump, a_v)
        return (jnp.where(ok, t_e, t_cur), a_v, a_i), (g_w, g_t)

    events = (times[order], is_spike[order], valid[order], w_ev[order], i_ev[order], ct_ev[order])
    _, (g_w, g_t) = jax.lax.scan(step, (t_end, ct_vend, zero), events)
    inv = jnp.argsort(order)
    g_w, g_t = g_w[inv][:m], g_t[inv][:m]
    return jnp.zeros(w_row.shape, dtype).at[ev_src].add(g_w), g_t


def _bwd(cfg, max_spikes, residuals, cts):
    del max_spikes
    weight, ev_t, ev_src, out_t, out_i = residuals
    zeros = jnp.zeros_like
    ct_t = cts.times if cts.times is not None else zeros(out_t)
    ct_vend = cts.v_end if cts.v_end is not None else zeros(weight[:, 0])
    ct_vint = cts.v_int if cts.v_int is not None else zeros(weight[:, 0])
    # Cotangents of empty buffer slots carry no information (their time is a constant inf).
    ct_t = jnp.where(jnp.isfinite(out_t), ct_t, zeros(ct_t))
    g_w, g_t = jax.vmap(_neuron_bwd, in_axes=(0, None, None, 0, 0, 0, 0, 0, None))(
        weight, ev_t, ev_src, out_t, out_i, ct_t, ct_vend, ct_vint, cfg)
    return g_w, g_t.sum(axis=0), None


layer_core_adjoint.defvjp(_fwd, _bwd)
