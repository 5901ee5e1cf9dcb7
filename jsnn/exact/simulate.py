"""Event-driven simulation of feed-forward continuous-time CuBa-LIF layers with fixed-size spike buffers.

A layer receives a list of input events (time, source) and its weight matrix W (out, in). Each neuron is
simulated independently (feed-forward: given its inputs, a neuron does not depend on its neighbours) by a
``lax.scan`` over ``K_in + max_spikes + 1`` event slots. At each slot the next event is either the neuron's
own threshold crossing (``crossing_time``, exact with the IFT tangent) before the next input, or the next
input, which adds ``W[n, source]`` to the current. Between events the closed-form flow advances (V, I).
Empty slots are no-ops, so the program is static-shaped, jittable and vmappable, and differentiable with
``jax.jvp`` (FP) and ``jax.grad`` (reverse mode). Spikes beyond the buffer are counted and flagged in
``LayerResult.overflow``, never silently dropped.

References:
  Lee, Haghighatshoar, Karbasi, "Exact gradient computation for spiking neural networks via forward
  propagation", AISTATS 2023, arXiv 2210.15415.
  Wunderlich and Pehle, "Event-based backpropagation can compute exact gradients for spiking neural
  networks", Sci. Rep. 2021, arXiv 2009.08378.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .flow import LIFConfig, crossing_slope, crossing_time, flow_coefficients

__all__ = ["LayerResult", "check_layer_inputs", "sort_events", "simulate_layer", "layer_core"]


class LayerResult(NamedTuple):
    """Output of one event-driven layer for one sample.

    Attributes:
      times: spike times (n, max_spikes), ascending per neuron, ``inf`` in empty slots.
      v_end: membrane potential at ``t_end`` (n,).
      v_int: integral of the membrane potential over [0, t_end] (n,).
      i_spike: synaptic current at each spike (n, max_spikes), 0 in empty slots (residual for the adjoint).
      count: number of spikes each neuron fired (n,); exact when the buffer held them all, otherwise
        ``max_spikes + 1`` or more (the scan stops there) and ``overflow`` is set.
      overflow: whether a neuron's results may be inexact because spikes were lost to a full buffer (n,):
        it fired more than ``max_spikes`` spikes, or (a recurrent layer) any neuron of its layer did, or
        (``EventNet``) a layer before it overflowed, or its layer's input events were cut. False means exact.
      grazing: number of grazing crossings (|dV/dt| below the guard) per neuron (n,).
    """

    times: Float[Array, "n K"]
    v_end: Float[Array, " n"]
    v_int: Float[Array, " n"]
    i_spike: Float[Array, "n K"]
    count: Int[Array, " n"]
    overflow: Bool[Array, " n"]
    grazing: Int[Array, " n"]


def sort_events(times: Float[Array, "n_in K"], max_events: int | None = None) -> tuple[Array, Array, Array]:
    """Flatten per-source spike times into one ascending event list.

    Args:
      times: spike times per source, ``inf`` for empty slots.
      max_events: keep only the earliest ``max_events`` events (a per-layer buffer); ``None`` keeps all.

    Returns:
      ``(event_times, sources, overflow)``: sorted times, int32 source indices, and whether finite events
      were cut by ``max_events``.

    Example:
      >>> import jax.numpy as jnp
      >>> t, src, over = sort_events(jnp.array([[3.0, jnp.inf], [1.0, 2.0]]))
      >>> t.tolist(), src.tolist(), bool(over)
      ([1.0, 2.0, 3.0, inf], [1, 1, 0, 0], False)
    """
    n_in, k = times.shape
    flat = times.reshape(-1)
    order = jnp.argsort(flat, stable=True)
    t = flat[order]
    src = (order // k).astype(jnp.int32)
    overflow = jnp.asarray(False)
    if max_events is not None and max_events < t.shape[0]:
        overflow = jnp.isfinite(t[max_events])
        t, src = t[:max_events], src[:max_events]
    return t, src, overflow


def _neuron(w_row, ev_t, ev_src, cfg: LIFConfig, max_spikes: int):
    """Simulate one neuron over the sorted input events; returns its buffers and diagnostics."""
    dtype = w_row.dtype
    n_ev = ev_t.shape[0]
    w_ev = w_row[ev_src]
    t_end = jnp.asarray(cfg.t_end, dtype)
    inf = jnp.asarray(jnp.inf, dtype)
    zero = jnp.zeros((), dtype)

    def step(carry, _):
        t, v, i, v_int, idx, count, graze = carry
        idx_c = jnp.minimum(idx, n_ev - 1)
        t_raw = ev_t[idx_c]
        in_valid = (idx < n_ev) & (t_raw < t_end)
        t_next = jnp.where(in_valid, t_raw, t_end)
        s, has = crossing_time(v, i, t_next - t, cfg)
        ds = jnp.where(has, s, t_next - t)
        c = flow_coefficients(ds, cfg)
        v1, i1 = c.vv * v + c.vi * i, c.ii * i
        v_int = v_int + c.int_vv * v + c.int_vi * i
        t1 = jnp.where(has, t + s, t_next)
        _, grazed = crossing_slope(i1, cfg)
        if cfg.reset == "zero":
            v_after = jnp.zeros_like(v1)
        else:
            v_after = v1 - cfg.threshold
        take = (~has) & in_valid
        v_new = jnp.where(has, v_after, v1)
        i_new = jnp.where(take, i1 + w_ev[idx_c], i1)
        carry = (t1, v_new, i_new, v_int, idx + take.astype(jnp.int32), count + has.astype(jnp.int32),
                 graze + (has & grazed).astype(jnp.int32))
        return carry, (jnp.where(has, t1, inf), jnp.where(has, i1, zero))

    init = (zero, zero, zero, zero, jnp.int32(0), jnp.int32(0), jnp.int32(0))
    (t, v, i, v_int, _, count, graze), (out_t, out_i) = jax.lax.scan(
        step, init, None, length=n_ev + max_spikes + 1)
    c = flow_coefficients(t_end - t, cfg)
    v_end = c.vv * v + c.vi * i
    v_int = v_int + c.int_vv * v + c.int_vi * i
    order = jnp.argsort(out_t, stable=True)[:max_spikes]
    return out_t[order], v_end, v_int, out_i[order], count, count > max_spikes, graze


def layer_core(weight: Float[Array, "n n_in"], ev_t: Float[Array, " M"], ev_src: Int[Array, " M"],
               cfg: LIFConfig, max_spikes: int) -> LayerResult:
    """Simulate a layer on a sorted event list (the differentiable core; see ``simulate_layer``)."""
    out = jax.vmap(_neuron, in_axes=(0, None, None, None, None))(weight, ev_t, ev_src, cfg, max_spikes)
    return LayerResult(*out)


def check_layer_inputs(weight, in_times, max_spikes: int) -> tuple[Array, Array]:
    """Validate a layer's weights (n, in), input times (in, K_in) and buffer size; return them as arrays.

    Raises:
      ValueError: for mismatched shapes or dtypes (with the fix), or a ``max_spikes`` that is not a positive int.
    """
    weight, in_times = jnp.asarray(weight), jnp.asarray(in_times)
    if weight.ndim != 2 or in_times.ndim != 2 or weight.shape[1] != in_times.shape[0]:
        raise ValueError(f"weight must be (out, in) and in_times (in, K_in) with matching 'in'; got "
                         f"{weight.shape} and {in_times.shape}. For one spike per input use times[:, None].")
    if weight.dtype != in_times.dtype or not jnp.issubdtype(weight.dtype, jnp.floating):
        raise ValueError(f"weight and in_times must share one floating dtype; got {weight.dtype} and "
                         f"{in_times.dtype}. Cast with .astype().")
    if not isinstance(max_spikes, int) or max_spikes < 1:
        raise ValueError(f"max_spikes must be a positive int; got {max_spikes!r}.")
    return weight, in_times


def simulate_layer(
    weight: Float[Array, "n n_in"],
    in_times: Float[Array, "n_in K_in"],
    cfg: LIFConfig,
    max_spikes: int,
    *,
    max_events: int | None = None,
) -> LayerResult:
    """Simulate one CuBa-LIF layer driven by input spike trains, event by event.

    Neuron n: ``tau_mem V' = -V + I``, ``tau_syn I' = -I``; an input spike of source j adds ``W[n, j]`` to
    I; V crossing the threshold upwards is a spike, then V is reset (``cfg.reset``). All neurons start at
    V = I = 0 at t = 0 and run to ``cfg.t_end``.

    Args:
      weight: weights (out, in).
      in_times: spike times per input (in, K_in); ``inf`` (or any time >= t_end) marks empty slots.
      cfg: neuron constants.
      max_spikes: buffer size per neuron.
      max_events: optional cap on the number of input events (earliest first); cut events set
        ``overflow`` of every neuron.

    Returns:
      A ``LayerResult``.

    Raises:
      ValueError: for mismatched shapes or dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> r = simulate_layer(jnp.array([[5.0]]), jnp.array([[1.0]]), LIFConfig(), max_spikes=2)
      >>> round(float(r.times[0, 0]), 6), int(r.count[0])
      (4.235072, 1)
    """
    weight, in_times = check_layer_inputs(weight, in_times, max_spikes)
    ev_t, ev_src, cut = sort_events(in_times, max_events)
    res = layer_core(weight, ev_t, ev_src, cfg, max_spikes)
    return res._replace(overflow=res.overflow | cut)
