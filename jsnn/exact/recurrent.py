"""Event-driven simulation of a recurrent continuous-time CuBa-LIF layer with exact spike-time gradients.

All n neurons of the layer share one clock. Neuron n obeys ``tau_mem V' = -V + I``, ``tau_syn I' = -I``; an
input spike of source j adds ``W[n, j]`` to I, a spike of neuron m adds ``R[n, m]`` to I (m = n included). One
``lax.scan`` over ``n_ev + n (max_spikes + 1) + 1`` event slots steps the whole layer from event to event
(ALGORITHMS §2.2): at each slot every neuron's next threshold crossing before the next input is found with
``crossing_time``; the earliest one fires (lowest index on ties), every neuron is advanced to it by the
closed-form flow, the firing neuron is reset and, within its first ``max_spikes`` spikes, delivers column m of
R. Without a crossing the layer advances to the next input, which adds a column of W. Slots past ``t_end``
are no-ops, so the program is static-shaped, jittable, vmappable and differentiable: the crossing durations
carry the implicit-function-theorem tangent, so ``jax.jvp``/``jax.jacfwd`` are forward propagation (FP) and
``jax.grad`` is reverse mode, exact on a fixed spike pattern.

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
from .simulate import LayerResult, check_layer_inputs, sort_events

__all__ = ["recurrent_layer_core", "simulate_recurrent_layer"]


class _State(NamedTuple):
    """Carry of the event loop: the layer at time ``t`` and the spike buffers filled so far."""

    t: Float[Array, ""]
    v: Float[Array, " n"]
    i: Float[Array, " n"]
    v_int: Float[Array, " n"]
    idx: Int[Array, ""]  # next input event
    count: Int[Array, " n"]
    graze: Int[Array, " n"]
    times: Float[Array, "n K"]
    i_spike: Float[Array, "n K"]
    busy: Bool[Array, ""]  # whether the last slot processed an event (a spike or an input)


def _crossings(v: Float[Array, " n"], i: Float[Array, " n"], horizon: Float[Array, ""],
               cfg: LIFConfig) -> tuple[Float[Array, " n"], Bool[Array, " n"]]:
    """Every neuron's duration to its next crossing within ``horizon`` (``crossing_time``).

    A neuron that a simultaneous crossing left at or above threshold by rounding (``crossing_time`` then sees
    no crossing ahead) fires now: duration 0 with the tangent of its linearised crossing ``(theta - V)/Vdot``,
    which is the IFT tangent of its own crossing time.
    """
    s, has = crossing_time(v, i, jnp.broadcast_to(horizon, v.shape), cfg)
    late = v >= cfg.threshold
    vdot, _ = crossing_slope(i, cfg)
    lin = (cfg.threshold - v) / vdot
    return jnp.where(late, lin - jax.lax.stop_gradient(lin), s), has | late


def _reset(v: Float[Array, " n"], cfg: LIFConfig) -> Float[Array, " n"]:
    """Membrane potential after a spike at V = threshold."""
    return jnp.zeros_like(v) if cfg.reset == "zero" else v - cfg.threshold


def _step(st: _State, weight: Float[Array, "n n_in"], rec_weight: Float[Array, "n n"], ev_t: Float[Array, " M"],
          ev_src: Int[Array, " M"], cfg: LIFConfig, max_spikes: int) -> _State:
    """One event slot: the earliest crossing before the next input fires, or else that input arrives."""
    n, n_ev = st.v.shape[0], ev_t.shape[0]
    t_end = jnp.asarray(cfg.t_end, st.v.dtype)
    idx_c = jnp.minimum(st.idx, n_ev - 1)
    in_valid = (st.idx < n_ev) & (ev_t[idx_c] < t_end)
    t_next = jnp.where(in_valid, ev_t[idx_c], t_end)
    s, has = _crossings(st.v, st.i, t_next - st.t, cfg)
    m = jnp.argmin(jnp.where(has, s, jnp.inf))  # first index among the earliest
    fire = has[m]
    ds = jnp.where(fire, s[m], t_next - st.t)  # the traced crossing duration: its IFT tangent reaches all
    c = flow_coefficients(ds, cfg)
    v1, i1 = c.vv * st.v + c.vi * st.i, c.ii * st.i
    t1 = st.t + ds
    spiker = fire & (jnp.arange(n) == m)
    take = ~fire & in_valid
    transmit = fire & (st.count[m] < max_spikes)
    slot = spiker[:, None] & (jnp.arange(max_spikes, dtype=jnp.int32) == st.count[:, None])
    zero = jnp.zeros_like(st.i)
    i_new = i1 + jnp.where(transmit, rec_weight[:, m], zero) + jnp.where(take, weight[:, ev_src[idx_c]], zero)
    _, grazed = crossing_slope(i1, cfg)
    return _State(
        t=t1,
        v=jnp.where(spiker, _reset(v1, cfg), v1),
        i=i_new,
        v_int=st.v_int + c.int_vv * st.v + c.int_vi * st.i,
        idx=st.idx + take.astype(jnp.int32),
        count=st.count + spiker.astype(jnp.int32),
        graze=st.graze + (spiker & grazed).astype(jnp.int32),
        times=jnp.where(slot, t1, st.times),
        i_spike=jnp.where(slot, i1[:, None], st.i_spike),
        busy=fire | take,
    )


def recurrent_layer_core(weight: Float[Array, "n n_in"], rec_weight: Float[Array, "n n"], ev_t: Float[Array, " M"],
                         ev_src: Int[Array, " M"], cfg: LIFConfig, max_spikes: int) -> LayerResult:
    """Simulate a recurrent layer on a sorted event list (the differentiable core; see
    ``simulate_recurrent_layer``).

    The loop has ``n_ev + n (max_spikes + 1) + 1`` slots: while every neuron fires at most ``max_spikes + 1``
    times they cannot all be used, so the last slot is idle. If it is not (some neuron fired far beyond its
    buffer), the simulation may have stopped before ``t_end``. Either way, once any neuron overflows, the
    spikes it does not transmit change the other neurons, so ``overflow`` is set for every neuron.
    """
    dtype = weight.dtype
    n = weight.shape[0]
    zeros = jnp.zeros((n,), dtype)
    init = _State(t=jnp.zeros((), dtype), v=zeros, i=zeros, v_int=zeros, idx=jnp.int32(0),
                  count=jnp.zeros((n,), jnp.int32), graze=jnp.zeros((n,), jnp.int32),
                  times=jnp.full((n, max_spikes), jnp.inf, dtype), i_spike=jnp.zeros((n, max_spikes), dtype),
                  busy=jnp.asarray(False))
    length = ev_t.shape[0] + n * (max_spikes + 1) + 1
    st, _ = jax.lax.scan(lambda s, _: (_step(s, weight, rec_weight, ev_t, ev_src, cfg, max_spikes), None), init,
                         None, length=length)
    c = flow_coefficients(jnp.asarray(cfg.t_end, dtype) - st.t, cfg)
    return LayerResult(times=st.times, v_end=c.vv * st.v + c.vi * st.i,
                       v_int=st.v_int + c.int_vv * st.v + c.int_vi * st.i, i_spike=st.i_spike, count=st.count,
                       overflow=jnp.broadcast_to(jnp.any(st.count > max_spikes) | st.busy, (n,)),
                       grazing=st.graze)


def simulate_recurrent_layer(
    weight: Float[Array, "n n_in"],
    rec_weight: Float[Array, "n n"],
    in_times: Float[Array, "n_in K_in"],
    cfg: LIFConfig,
    max_spikes: int,
    *,
    max_events: int | None = None,
) -> LayerResult:
    """Simulate one recurrent CuBa-LIF layer driven by input spike trains, event by event.

    Neuron n: ``tau_mem V' = -V + I``, ``tau_syn I' = -I``; an input spike of source j adds ``W[n, j]`` to
    I, a spike of neuron m adds ``R[n, m]`` to I (``R[n, n]`` is a self-connection); V crossing the threshold
    upwards is a spike, then V is reset (``cfg.reset``). All neurons start at V = I = 0 at t = 0 and run to
    ``cfg.t_end``. A neuron transmits its first ``max_spikes`` spikes; later ones are counted and reset it,
    but reach no neuron. Simultaneous crossings fire one after the other, lowest index first, at one time.

    Args:
      weight: feed-forward weights W (n, in).
      rec_weight: recurrent weights R (n, n); ``R[n, m]`` is the weight from neuron m to neuron n.
      in_times: spike times per input (in, K_in); ``inf`` (or any time >= t_end) marks empty slots.
      cfg: neuron constants.
      max_spikes: buffer size per neuron.
      max_events: optional cap on the number of input events (earliest first); cut events set
        ``overflow`` of every neuron.

    Returns:
      A ``LayerResult`` (times ascending per neuron, ``inf`` in empty slots); ``overflow`` marks every neuron
      when any neuron fired more than ``max_spikes`` spikes (its untransmitted spikes change the others).

    Raises:
      ValueError: for mismatched shapes or dtypes, or a ``max_spikes`` that is not a positive int.

    References:
      Lee, Haghighatshoar, Karbasi, "Exact gradient computation for spiking neural networks via forward
      propagation", arXiv 2210.15415.
      Wunderlich and Pehle, "Event-based backpropagation can compute exact gradients for spiking neural
      networks", arXiv 2009.08378.

    Example:
      >>> import jax.numpy as jnp
      >>> w, r = jnp.array([[5.0], [0.0]]), jnp.array([[0.0, 0.0], [6.0, 0.0]])  # input -> neuron 0 -> neuron 1
      >>> res = simulate_recurrent_layer(w, r, jnp.array([[1.0]]), LIFConfig(), max_spikes=2)
      >>> [round(float(t), 4) for t in res.times[:, 0]], res.count.tolist()
      ([4.2351, 6.6091], [1, 1])
    """
    weight, in_times = check_layer_inputs(weight, in_times, max_spikes)
    rec_weight = jnp.asarray(rec_weight)
    if rec_weight.shape != (weight.shape[0],) * 2:
        raise ValueError(f"rec_weight must be square (n, n) with n = weight.shape[0] = {weight.shape[0]}; got "
                         f"{rec_weight.shape}.")
    if rec_weight.dtype != weight.dtype:
        raise ValueError(f"rec_weight dtype {rec_weight.dtype} differs from the weights' {weight.dtype}; cast it "
                         "with .astype().")
    ev_t, ev_src, cut = sort_events(in_times, max_events)
    res = recurrent_layer_core(weight, rec_weight, ev_t, ev_src, cfg, max_spikes)
    return res._replace(overflow=res.overflow | cut)
