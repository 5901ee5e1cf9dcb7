"""Discretising an event-driven CuBa-LIF network onto a time grid, and the way back.

Between events, a continuous-time CuBa-LIF neuron (ALGORITHMS §0.4) is the linear flow
``V(t+dt) = phi_vv V(t) + phi_vi I(t)``, ``I(t+dt) = phi_ii I(t)`` (``flow_coefficients``). The
discrete ``jsnn.neurons.CubaLIF`` (ALGORITHMS §0.3) computes ``i_n = delta_syn i_{n-1} + c_n`` and then
``v_n = delta_mem v_{n-1} + i_n`` (the new current feeds v in the same step). With

    delta_syn = phi_ii(dt) = exp(-dt/tau_syn),   delta_mem = phi_vv(dt) = exp(-dt/tau_mem),
    Linear weight = phi_vi(dt) W,               i_n = phi_vi(dt) I(n dt+),

the discrete potential is exactly the continuous one a step later, ``v_n = V((n+1) dt)``, as long as
every input event lies on the grid (an event at ``n dt`` enters step n): this is the exact per-step
propagator, no Euler error. :func:`to_sequential` builds that :class:`~jsnn.nn.Sequential`;
:func:`from_sequential` inverts it (``tau = -dt / ln delta``, ``W = weight / phi_vi(dt)``).

What is lost:

* **Spike times snap to the grid.** A crossing in ``(n dt, (n+1) dt]`` is detected at the end of step n
  and delivered to the next layer at ``n dt`` (up to one step early); the neuron's own reset happens at
  ``(n+1) dt`` instead of at the crossing. Two crossings within one step, or a crossing whose potential
  dips back below threshold before the grid point, are missed. Errors are O(dt) per layer and add up
  across layers; :func:`discrete_first_spike_times` reads the first spike at ``(n+1) dt`` or, by linear
  interpolation of V between grid points, to O(dt^2).
* **Inputs must be binned** (:func:`bin_spikes`): an input spike at t enters step ``floor(t / dt)``, i.e.
  it also moves to the grid point at or before it (exact for inputs already on the grid).
* **No spike buffer.** The discrete net transmits every spike; an EventNet transmits each neuron's first
  ``max_spikes`` spikes. They agree while the EventNet's hidden buffers do not overflow.
* Recurrent EventNets and ``max_events`` input caps are not discretised (refused).

A non-spiking integrator readout becomes a ``CubaLIF`` with ``reset="none"`` (its spikes are ignored);
the decision uses ``dt * sum_n v_n``, the Riemann sum of the integral the EventNet reads.

References:
  Rotter and Diesmann, "Exact digital simulation of time-invariant linear systems with applications to
  neuronal modeling", Biol. Cybern. 81, 1999.
  Wunderlich and Pehle, "Event-based backpropagation can compute exact gradients for spiking neural
  networks", Sci. Rep. 2021, arXiv 2009.08378.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jsnn.neurons import CubaLIF
from jsnn.nn import Linear, Sequential

from .flow import LIFConfig, flow_coefficients
from .net import EventNet

__all__ = ["COARSEST_DT_FRACTION", "bin_spikes", "check_dt", "discrete_first_spike_times", "from_sequential",
           "max_dt", "n_steps", "to_sequential"]

#: the coarsest accepted step, as a fraction of the smaller time constant (see :func:`max_dt`)
COARSEST_DT_FRACTION = 0.25
_GRID_TOL = 1e-6  # an event within this fraction of a step below a grid point counts as on it (float rounding)


def max_dt(cfg: LIFConfig) -> float:
    """The coarsest step :func:`check_dt` accepts: ``COARSEST_DT_FRACTION * min(tau_syn, tau_mem)``.

    Coarser steps deliver spikes up to a large fraction of the synaptic rise time early and merge
    crossings. Finer steps within the limit still cost accuracy: the Yin-Yang net of
    bench/results/exact_deploy_yinyang.json (tau_syn = 5, 96.8 % event-driven) discretised reads 82.1 % at
    dt = 1, 91.1 % at 0.5, 94.3 % at 0.25 and 96.3 % at 0.05.

    Example:
      >>> max_dt(LIFConfig(tau_syn=5.0, tau_mem=10.0))
      1.25
    """
    return COARSEST_DT_FRACTION * min(cfg.tau_syn, cfg.tau_mem)


def check_dt(cfg: LIFConfig, dt) -> float:
    """Validate a discretisation step for ``cfg`` (in the network's time units); returns it as a float.

    Raises:
      ValueError: dt is not a positive finite number, or coarser than :func:`max_dt` (the message names
        the largest step that works).

    Example:
      >>> check_dt(LIFConfig(), 0.5)
      0.5
    """
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be a positive number in the network's time units (tau_syn={cfg.tau_syn}, "
                         f"tau_mem={cfg.tau_mem}); got {dt!r}. Try dt={max_dt(cfg) / 2:g}.")
    if dt > max_dt(cfg):
        raise ValueError(f"dt={dt:g} is too coarse for tau_syn={cfg.tau_syn:g}, tau_mem={cfg.tau_mem:g}: use "
                         f"dt <= {max_dt(cfg):g} ({COARSEST_DT_FRACTION:g} x the smaller time constant), "
                         f"e.g. dt={max_dt(cfg) / 2:g}.")
    return float(dt)


def n_steps(cfg: LIFConfig, dt: float) -> int:
    """Number of steps that cover ``[0, t_end]``: ``ceil(t_end / dt)``.

    Example:
      >>> n_steps(LIFConfig(t_end=30.0), 0.25)
      120
    """
    return max(1, math.ceil(cfg.t_end / dt - _GRID_TOL))


def bin_spikes(in_times: Float[Array, "n_in K"], dt: float, steps: int) -> Float[Array, "T n_in"]:
    """Input spike times -> spike counts per step: a spike at t enters step ``floor(t / dt)``.

    Times that are infinite or fall at or past ``steps * dt`` are dropped.

    Args:
      in_times: spike times per input (n_in, K), ``inf`` for empty slots (a (n_in,) vector: one each).
      dt: step.
      steps: number of steps T.

    Returns:
      Counts ``(T, n_in)`` in the dtype of ``in_times``.

    Example:
      >>> import jax.numpy as jnp
      >>> bin_spikes(jnp.array([[0.0, 0.3], [jnp.inf, 0.25]]), 0.25, 2).tolist()
      [[1.0, 0.0], [1.0, 1.0]]
    """
    in_times = jnp.asarray(in_times)
    if in_times.ndim == 1:
        in_times = in_times[:, None]
    finite = jnp.isfinite(in_times)
    step = jnp.floor(jnp.where(finite, in_times, 0.0) / dt + _GRID_TOL)
    step = jnp.where(finite & (step >= 0), step, steps).astype(jnp.int32)
    return jax.nn.one_hot(step, steps, dtype=in_times.dtype).sum(axis=1).T


def to_sequential(net: EventNet, dt: float) -> Sequential:
    """The discrete :class:`~jsnn.nn.Sequential` of ``Linear`` + ``CubaLIF`` layers with the exact propagator.

    Feed it :func:`bin_spikes` of the EventNet's input times; ``v_n`` of every layer then equals the
    continuous ``V((n+1) dt)`` up to the grid effects listed in the module docstring.

    Args:
      net: a feed-forward EventNet.
      dt: step, in the network's time units (:func:`check_dt`).

    Returns:
      ``Sequential([Linear(phi_vi W_1), CubaLIF, ..., Linear(phi_vi W_L), CubaLIF])`` (bias-free, the
      EventNet's dtype, threshold and reset, comparison ``>``); an integrator readout's last CubaLIF has
      ``reset="none"``.

    Raises:
      ValueError: a recurrent net, input-event caps, or a bad dt.

    Example:
      >>> import jax
      >>> seq = to_sequential(EventNet((3, 4, 2), key=jax.random.key(0)), 0.5)
      >>> [type(layer).__name__ for layer in seq.layers]
      ['Linear', 'CubaLIF', 'Linear', 'CubaLIF']
    """
    if not isinstance(net, EventNet):
        raise ValueError(f"expected a jsnn.exact.EventNet; got {type(net).__name__}.")
    cfg = net.cfg
    dt = check_dt(cfg, dt)
    if net.rec_weights is not None:
        raise ValueError("recurrent EventNets are not discretised: a Sequential holds feed-forward layers only.")
    if any(cap is not None for cap in net.max_events):
        raise ValueError(f"an EventNet with input-event caps (max_events={net.max_events}) has no discrete form; "
                         "rebuild it with max_events=None.")
    dtype = net.weights[0].dtype
    c = flow_coefficients(jnp.asarray(dt, dtype), cfg)
    layers = []
    for index, weight in enumerate(net.weights):
        n_out, n_in = weight.shape
        lin = Linear(n_in, n_out, use_bias=False, dtype=dtype, key=jax.random.key(0))
        layers.append(eqx.tree_at(lambda m: m.weight, lin, weight * c.vi))
        integrator = net.readout == "integrator" and index == len(net.weights) - 1
        # the decays as Python floats in float64 (exp(-dt/tau), as flow_coefficients), whatever the weights' dtype
        layers.append(CubaLIF(decay_syn=math.exp(-dt / cfg.tau_syn), decay_mem=math.exp(-dt / cfg.tau_mem),
                              threshold=float(cfg.threshold),
                              reset="none" if integrator else cfg.reset, cmp=">"))
    return Sequential(layers)


def from_sequential(seq: Sequential, dt: float, *, t_end: float, max_spikes: int | tuple[int, ...] = 4,
                    reset: str | None = None) -> EventNet:
    """The EventNet whose exact discretisation with step ``dt`` is ``seq`` (inverse of :func:`to_sequential`).

    ``tau = -dt / ln(delta)`` and ``W = weight / phi_vi(dt)``. It exists for a ``Sequential`` of bias-free
    ``Linear`` + ``CubaLIF`` pairs that share one scalar threshold and decays in (0, 1); a last CubaLIF
    with ``reset="none"`` becomes an integrator readout.

    Args:
      seq: the discrete network.
      dt: its step, in the time units of the result.
      t_end: simulated window of the EventNet.
      max_spikes: spike buffer per neuron (one int, or one per layer).
      reset: the EventNet's reset (default: that of the spiking layers).

    Returns:
      An EventNet in the dtype of ``seq``'s weights.

    Raises:
      ValueError: a layer or parameter without a continuous-time form (named in the message).

    Example:
      >>> import jax
      >>> net = EventNet((3, 4, 2), key=jax.random.key(0))
      >>> back = from_sequential(to_sequential(net, 0.5), 0.5, t_end=net.cfg.t_end)
      >>> round(back.cfg.tau_syn, 6), round(back.cfg.tau_mem, 6)
      (5.0, 10.0)
    """
    layers = list(getattr(seq, "layers", ()))
    if not layers or len(layers) % 2:
        raise ValueError("expected a jsnn.nn.Sequential of (Linear, CubaLIF) pairs.")
    pairs = list(zip(layers[::2], layers[1::2]))
    for index, (lin, neuron) in enumerate(pairs):
        if not isinstance(lin, Linear) or lin.bias is not None or not isinstance(neuron, CubaLIF):
            raise ValueError(f"pair {index} is ({type(lin).__name__}, {type(neuron).__name__}); an EventNet needs "
                             "bias-free Linear layers followed by CubaLIF neurons.")
    params = {}
    for name in ("decay_syn", "decay_mem", "threshold"):
        values = {float(v) for _, n in pairs for v in np.ravel(np.asarray(getattr(n, name), np.float64))}
        if len(values) != 1:
            raise ValueError(f"an EventNet shares one {name} across all neurons and layers; got {sorted(values)}.")
        params[name] = values.pop()
    for name in ("decay_syn", "decay_mem"):
        if not 0 < params[name] < 1:
            raise ValueError(f"{name}={params[name]} has no time constant; it must lie in (0, 1).")
    resets = {n.reset for _, n in pairs[:-1]} | ({pairs[-1][1].reset} - {"none"})
    if "none" in resets or len(resets) > 1:
        raise ValueError(f"the spiking layers need one reset, 'zero' or 'subtract'; got {sorted(resets)}.")
    readout = "integrator" if pairs[-1][1].reset == "none" else "spiking"
    cfg = LIFConfig(tau_syn=-dt / math.log(params["decay_syn"]), tau_mem=-dt / math.log(params["decay_mem"]),
                    threshold=params["threshold"], t_end=float(t_end),
                    reset=reset or (resets.pop() if resets else "zero"))
    dtype = pairs[0][0].weight.dtype
    phi_vi = flow_coefficients(jnp.asarray(dt, dtype), cfg).vi
    sizes = (pairs[0][0].in_features, *(lin.out_features for lin, _ in pairs))
    net = EventNet(sizes, key=jax.random.key(0), cfg=cfg, max_spikes=max_spikes, dtype=dtype, readout=readout)
    return eqx.tree_at(lambda n: n.weights, net, [lin.weight / phi_vi for lin, _ in pairs])


def discrete_first_spike_times(spikes: Float[Array, "T n"], v: Float[Array, "T n"], threshold, dt: float,
                               t_end: float, *, interpolate: bool = True) -> Float[Array, " n"]:
    """First spike time per neuron of a discretised layer (``t_end`` for a silent neuron).

    A spike at step n means V crossed in ``(n dt, (n+1) dt]``; without ``interpolate`` it reads
    ``(n+1) dt`` (the grid point where it is detected), with it ``n dt + dt (theta - v_{n-1}) /
    (v_n - v_{n-1})``, the linear interpolation of V between the grid points (``v_{-1} = 0``).
    ``threshold`` and ``v`` may be integers of a lowered layer (the ratio is scale-free).

    Example:
      >>> import jax.numpy as jnp
      >>> s, v = jnp.array([[0.0], [1.0]]), jnp.array([[0.5], [1.5]])
      >>> discrete_first_spike_times(s, v, 1.0, 0.5, 10.0).tolist(), discrete_first_spike_times(
      ...     s, v, 1.0, 0.5, 10.0, interpolate=False).tolist()
      ([0.75], [1.0])
    """
    fired = jnp.asarray(spikes) > 0
    v = jnp.asarray(v)
    dtype = v.dtype if jnp.issubdtype(v.dtype, jnp.floating) else jnp.result_type(float)
    v = v.astype(dtype)
    step = jnp.argmax(fired, axis=0)
    cols = jnp.arange(v.shape[1])
    if interpolate:
        v_n = v[step, cols]
        v_prev = jnp.where(step > 0, v[jnp.maximum(step - 1, 0), cols], jnp.zeros_like(v_n))
        gap = v_n - v_prev
        safe = jnp.where(gap > 0, gap, jnp.ones_like(gap))
        frac = jnp.where(gap > 0, jnp.clip((jnp.asarray(threshold, dtype) - v_prev) / safe, 0.0, 1.0), 1.0)
    else:
        frac = jnp.ones(v.shape[1], dtype)
    t = jnp.minimum((step.astype(dtype) + frac) * dt, t_end)
    return jnp.where(fired.any(axis=0), t, jnp.full_like(t, t_end))

