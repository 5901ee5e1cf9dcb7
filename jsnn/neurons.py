"""Discrete-time spiking neurons: LIF, IF, current-based LIF and the leaky-integrator readout.

Every neuron is an Equinox module with a one-step function ``step(state, current)``
and a ``__call__`` that runs it over a time series of one sample with ``lax.scan``.
The conventions follow ALGORITHMS §0.2-§0.3 of the design documents:

    order "leak_first":   v_t = decay * v_{t-1} - threshold * s_{t-1} + c_t
    order "reset_first":  v_t = decay * (v_{t-1} - threshold * s_{t-1}) + c_t
    reset "zero":         v_t = decay * (1 - s_{t-1}) * v_{t-1} + c_t
    reset "none":         v_t = decay * v_{t-1} + c_t
    spike:                s_t = 1[v_t > threshold]   (cmp ">"; 1[v_t >= threshold] for ">=")

``v_t`` is the potential *before* the threshold test; the reset is applied at the next
step. Neuron parameters (``decay``, ``threshold``, the surrogate ``slope``) are plain
leaves: Python floats by default (not trained by ``eqx.is_inexact_array`` filters), or
arrays of shape ``()`` or ``(n,)`` when they should be traced, vmapped or learned.

References:
  Eshraghian et al., "Training spiking neural networks using lessons from deep
  learning", arXiv 2109.12894.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jsnn.surrogate import FastSigmoid, Surrogate

__all__ = ["CubaLIF", "IF", "LI", "LIF", "Neuron", "Trace"]

Reset = Literal["subtract", "zero", "none"]
Order = Literal["leak_first", "reset_first"]
Comparison = Literal[">", ">="]


class Trace(NamedTuple):
    """What a neuron layer records over time for one sample.

    Attributes:
      v: membrane potential before the threshold test, shape ``(T, *features)``.
      spikes: spikes, shape ``(T, *features)``; ``None`` for non-spiking readouts.
    """

    v: Array
    spikes: Array | None


class Neuron(eqx.Module):
    """A layer whose output at step t depends on its state: run over time with ``lax.scan``.

    Subclasses implement ``init_state(shape, dtype)`` and ``step(state, current)``, which
    returns ``(new_state, (output, v, spikes))``.
    """

    def init_state(self, shape: tuple[int, ...], dtype: jnp.dtype):
        raise NotImplementedError

    def step(self, state, current):
        raise NotImplementedError

    def __call__(self, currents: Float[Array, "T *n"]) -> tuple[Float[Array, "T *n"], Trace]:
        """Run the neuron over a time series of input currents of one sample.

        Args:
          currents: input current per step, shape ``(T, *features)``.

        Returns:
          ``(outputs, trace)``: outputs are spikes (membrane potentials for readouts),
          and ``trace`` holds the potentials and spikes of every step.
        """
        if currents.ndim < 2:
            raise ValueError(
                f"{type(self).__name__} expects currents of shape (time, features...); got shape "
                f"{currents.shape}. Batch with jax.vmap, and keep the time axis first."
            )
        if not jnp.issubdtype(currents.dtype, jnp.floating):
            raise TypeError(
                f"{type(self).__name__} expects floating-point currents; got {currents.dtype}. "
                "Cast spikes with .astype(jnp.float32)."
            )
        state = self.init_state(currents.shape[1:], currents.dtype)
        _, out, trace = self.scan(currents, state)
        return out, trace

    def scan(self, currents: Float[Array, "T *n"], state) -> tuple[Any, Float[Array, "T *n"], Trace]:
        """Run from ``state`` over ``currents`` (no input checks): ``(final_state, outputs, trace)``.

        Running two halves of a sequence one after the other, the second from the first's
        final state, gives the same result as running it whole.
        """
        return self.run_steps(currents, state)

    def run_steps(self, currents: Float[Array, "T *n"], state=None) -> tuple[Any, Float[Array, "T *n"], Trace]:
        """``lax.scan`` of ``step`` over time, differentiated by autodiff (no input checks)."""
        if state is None:
            state = self.init_state(currents.shape[1:], currents.dtype)
        final, (out, v, spikes) = jax.lax.scan(lambda st, c: self.step(st, c), state, currents)
        return final, out, Trace(v=v, spikes=spikes)


def membrane_update(
    v: Array, s: Array, current: Array, decay, threshold, reset: Reset, order: Order
) -> Array:
    """One membrane update ``v_{t-1}, s_{t-1}, c_t -> v_t`` with explicit reset and order flags."""
    if reset == "subtract":
        if order == "leak_first":
            return decay * v - threshold * s + current
        return decay * (v - threshold * s) + current
    if reset == "zero":
        return decay * ((1 - s) * v) + current
    return decay * v + current


def _fire(neuron, v: Array) -> Array:
    return neuron.surrogate(v - neuron.threshold, inclusive=neuron.cmp == ">=")


def _check_flags(neuron) -> None:
    if neuron.reset not in ("subtract", "zero", "none"):
        raise ValueError(f"reset must be 'subtract', 'zero' or 'none'; got {neuron.reset!r}.")
    if neuron.cmp not in (">", ">="):
        raise ValueError(f"cmp must be '>' or '>='; got {neuron.cmp!r}.")
    order = getattr(neuron, "order", "leak_first")
    if order not in ("leak_first", "reset_first"):
        raise ValueError(f"order must be 'leak_first' or 'reset_first'; got {order!r}.")


def _check_range(neuron, name: str, low: float, high: float, *, open_low: bool = False) -> None:
    """Refuse a concrete parameter outside its range (traced values, as in a sweep, are not checked)."""
    value = getattr(neuron, name)
    if isinstance(value, jax.core.Tracer):
        return
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{type(neuron).__name__}.{name} must be a number or an array; got {value!r}.") from None
    ok = np.isfinite(arr) & (arr > low if open_low else arr >= low) & (arr <= high)
    if not bool(np.all(ok)):
        bad = arr[~ok].ravel()[0] if arr.ndim else float(arr)
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise ValueError(f"{type(neuron).__name__}.{name} must be finite and in {interval}; got {bad}.")


def _check_threshold(neuron) -> None:
    _check_range(neuron, "threshold", 0.0, np.inf, open_low=True)


class _SpikingState(NamedTuple):
    v: Array
    s: Array


class _ThresholdNeuron(Neuron):
    """Shared update of :class:`LIF` and :class:`IF`; subclasses define ``leak`` and ``update_order``."""

    def __check_init__(self):
        _check_flags(self)
        _check_threshold(self)
        if isinstance(self, LIF):
            _check_range(self, "decay", 0.0, 1.0)

    def init_state(self, shape, dtype):
        zeros = jnp.zeros(shape, dtype)
        return _SpikingState(v=zeros, s=zeros)

    def step(self, state, current):
        s_prev = jax.lax.stop_gradient(state.s) if self.detach_reset else state.s
        v = membrane_update(state.v, s_prev, current, self.leak, self.threshold, self.reset, self.update_order)
        s = _fire(self, v)
        return _SpikingState(v=v, s=s), (s, v, s)

    def scan(self, currents, state):
        from jsnn.fused import lif_scan  # the lean hand-written VJP; equal to autodiff of ``step``

        spikes, v = lif_scan(self, currents, state)
        return _SpikingState(v=v[-1], s=spikes[-1]), spikes, Trace(v=v, spikes=spikes)


class LIF(_ThresholdNeuron):
    """Discrete-time leaky integrate-and-fire neuron.

    Attributes:
      decay: per-step leak delta in [0, 1] (scalar or per neuron).
      threshold: firing threshold (also the amount subtracted by a "subtract" reset).
      reset: "subtract" (soft), "zero" (hard) or "none".
      order: "leak_first" (subtraction not decayed) or "reset_first" (subtraction decayed).
      cmp: spike comparison, ">" (default) or ">=".
      surrogate: the spike function used in the backward pass.
      detach_reset: if True, no gradient flows through the reset term (as in snnTorch);
        the forward values are unchanged.

    Example:
      >>> import jax.numpy as jnp
      >>> spikes, trace = LIF(decay=0.5, threshold=1.0)(jnp.full((4, 1), 0.8))
      >>> spikes[:, 0].tolist()  # v = 0.8, 1.2, 0.4, 1.0: strict '>' at v = 1.0 does not fire
      [0.0, 1.0, 0.0, 0.0]

    References:
      Gerstner, Kistler, Naud, Paninski, "Neuronal Dynamics" (2014), ch. 1;
      Eshraghian et al., arXiv 2109.12894.
    """

    decay: float | Array = 0.9
    threshold: float | Array = 1.0
    reset: Reset = eqx.field(static=True, default="subtract")
    order: Order = eqx.field(static=True, default="leak_first")
    cmp: Comparison = eqx.field(static=True, default=">")
    surrogate: Surrogate = eqx.field(default_factory=FastSigmoid)
    detach_reset: bool = eqx.field(static=True, default=True)

    @property
    def leak(self):
        return self.decay

    @property
    def update_order(self) -> Order:
        return self.order


class IF(_ThresholdNeuron):
    """Integrate-and-fire neuron: LIF without leak (decay = 1; both update orders coincide).

    Example:
      >>> import jax.numpy as jnp
      >>> spikes, _ = IF(threshold=1.0)(jnp.full((4, 1), 0.6))
      >>> spikes[:, 0].tolist()
      [0.0, 1.0, 0.0, 1.0]
    """

    threshold: float | Array = 1.0
    reset: Reset = eqx.field(static=True, default="subtract")
    cmp: Comparison = eqx.field(static=True, default=">")
    surrogate: Surrogate = eqx.field(default_factory=FastSigmoid)
    detach_reset: bool = eqx.field(static=True, default=True)

    leak = 1.0
    update_order = "leak_first"


class _CubaState(NamedTuple):
    i: Array
    v: Array
    s: Array


class CubaLIF(Neuron):
    """Current-based LIF: a synaptic current filters the input before the membrane.

    ``i_t = decay_syn * i_{t-1} + c_t``, then the membrane update of :class:`LIF` with
    ``decay_mem`` and input ``i_t`` (the new current feeds v in the same step, ALGORITHMS §0.3).

    Example:
      >>> import jax.numpy as jnp
      >>> spikes, trace = CubaLIF(decay_syn=0.5, decay_mem=0.5)(jnp.full((3, 1), 1.0))
      >>> trace.v[:, 0].tolist()
      [1.0, 2.0, 1.75]
    """

    decay_syn: float | Array = 0.8
    decay_mem: float | Array = 0.9
    threshold: float | Array = 1.0
    reset: Reset = eqx.field(static=True, default="subtract")
    order: Order = eqx.field(static=True, default="leak_first")
    cmp: Comparison = eqx.field(static=True, default=">")
    surrogate: Surrogate = eqx.field(default_factory=FastSigmoid)
    detach_reset: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        _check_flags(self)
        _check_threshold(self)
        _check_range(self, "decay_syn", 0.0, 1.0)
        _check_range(self, "decay_mem", 0.0, 1.0)

    def init_state(self, shape, dtype):
        zeros = jnp.zeros(shape, dtype)
        return _CubaState(i=zeros, v=zeros, s=zeros)

    def step(self, state, current):
        i = self.decay_syn * state.i + current
        s_prev = jax.lax.stop_gradient(state.s) if self.detach_reset else state.s
        v = membrane_update(state.v, s_prev, i, self.decay_mem, self.threshold, self.reset, self.order)
        s = _fire(self, v)
        return _CubaState(i=i, v=v, s=s), (s, v, s)


class LI(Neuron):
    """Leaky-integrator readout: ``v_t = decay * v_{t-1} + c_t``; no threshold, no reset.

    Its output sequence is the membrane potential.

    Example:
      >>> import jax.numpy as jnp
      >>> v, _ = LI(decay=0.5)(jnp.ones((3, 1)))
      >>> v[:, 0].tolist()
      [1.0, 1.5, 1.75]
    """

    decay: float | Array = 0.9

    def __check_init__(self):
        _check_range(self, "decay", 0.0, 1.0)

    def init_state(self, shape, dtype):
        return jnp.zeros(shape, dtype)

    def step(self, v, current):
        v = self.decay * v + current
        return v, (v, v, None)
