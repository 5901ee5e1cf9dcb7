"""Losses on the output layer of an event-driven network (one sample; batch with ``jax.vmap``).

All three are differentiable through exact spike times or exact potentials:

- ``ttfs_loss``: time-to-first-spike cross-entropy plus the regulariser of ALGORITHMS §2.8,
  ``L = -log softmax(-t/tau0)[c] + alpha (exp(t_c/tau1) - 1)``.
- ``spike_count_loss``: cross-entropy on a time-weighted spike count ``sum_k (1 - t_k/t_end)``. The integer
  count is piecewise constant (its exact derivative is zero almost everywhere); weighting each spike by how
  early it comes keeps the count's ranking while giving an exact gradient through the spike times.
- ``voltage_loss``: cross-entropy on the mean membrane potential ``(1/t_end) int_0^t_end V dt``.

References:
  Wunderlich and Pehle, "Event-based backpropagation can compute exact gradients for spiking neural
  networks", Sci. Rep. 2021, arXiv 2009.08378 (TTFS loss with the exponential regulariser).
  Default tau0, tau1, alpha: the GeNN EventProp reproduction on Yin-Yang (jsnn ALGORITHMS §2.8).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .simulate import LayerResult

__all__ = ["first_spike_times", "ttfs_loss", "spike_count_loss", "voltage_loss", "predict_first_spike",
           "predict_count", "predict_voltage"]


def first_spike_times(out: LayerResult, t_end: float) -> Float[Array, " n"]:
    """First spike time per neuron; a silent neuron reads ``t_end`` (with zero gradient).

    Example:
      >>> import jax.numpy as jnp
      >>> from jsnn.exact.simulate import LayerResult
      >>> r = LayerResult(jnp.array([[2.0], [jnp.inf]]), *([None] * 6))
      >>> first_spike_times(r, 10.0).tolist()
      [2.0, 10.0]
    """
    t = out.times[:, 0]
    return jnp.where(jnp.isfinite(t), t, jnp.full_like(t, t_end))


def ttfs_loss(out: LayerResult, label: Int[Array, ""], *, t_end: float, tau0: float = 0.5,
              tau1: float = 6.4, alpha: float = 3e-3, silent_weight: float = 0.0) -> Float[Array, ""]:
    """Time-to-first-spike cross-entropy with the exponential regulariser.

    ``L = -log(exp(-t_c/tau0) / sum_k exp(-t_k/tau0)) + alpha (exp(t_c/tau1) - 1)``, c the true class,
    t_k the first spike time of output k (``t_end`` if silent). A silent output's time has no derivative,
    so a silent output gets no signal and training can drift into silence (every output silent, no
    gradient at all). ``silent_weight > 0`` adds ``-silent_weight * sum_k mean_t V_k`` over the silent
    outputs k (the exact, always differentiable mean potential), which pushes silent outputs, true or
    wrong, back towards the threshold; once they fire the time terms take over.

    Args:
      out: the output layer's result.
      label: the true class.
      t_end: the simulation window (time of a silent output).
      tau0: softmax temperature.
      tau1: regulariser time scale.
      alpha: regulariser weight.
      silent_weight: weight of the mean-potential term for silent outputs (needs ``out.v_int``).

    Returns:
      The scalar loss.

    Example:
      >>> import jax.numpy as jnp
      >>> from jsnn.exact.simulate import LayerResult
      >>> r = LayerResult(jnp.array([[1.0], [2.0]]), *([None] * 6))
      >>> round(float(ttfs_loss(r, jnp.int32(0), t_end=10.0, alpha=0.0)), 6)
      0.126928
    """
    t = first_spike_times(out, t_end)
    loss = -jax.nn.log_softmax(-t / tau0)[label] + alpha * (jnp.exp(t[label] / tau1) - 1)
    if silent_weight:
        silent = ~jnp.isfinite(out.times[:, 0])
        loss = loss - silent_weight * jnp.sum(jnp.where(silent, out.v_int / t_end, jnp.zeros_like(out.v_int)))
    return loss


def _soft_counts(out: LayerResult, t_end: float) -> Array:
    finite = jnp.isfinite(out.times)
    safe = jnp.where(finite, out.times, jnp.full_like(out.times, t_end))
    return jnp.sum(1 - safe / t_end, axis=1)


def spike_count_loss(out: LayerResult, label: Int[Array, ""], *, t_end: float,
                     scale: float = 1.0) -> Float[Array, ""]:
    """Cross-entropy on the time-weighted spike counts ``c_n = sum_k (1 - t_{n,k}/t_end)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jsnn.exact.simulate import LayerResult
      >>> r = LayerResult(jnp.array([[0.0, 5.0], [jnp.inf, jnp.inf]]), *([None] * 6))
      >>> round(float(spike_count_loss(r, jnp.int32(0), t_end=10.0)), 6)  # counts 1.5 and 0
      0.201413
    """
    return -jax.nn.log_softmax(scale * _soft_counts(out, t_end))[label]


def voltage_loss(out: LayerResult, label: Int[Array, ""], *, t_end: float, scale: float = 1.0) -> Float[Array, ""]:
    """Cross-entropy on the mean membrane potential over the window, ``scale/t_end int V dt``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jsnn.exact.simulate import LayerResult
      >>> r = LayerResult(None, None, jnp.array([10.0, 0.0]), *([None] * 4))
      >>> round(float(voltage_loss(r, jnp.int32(0), t_end=10.0)), 6)
      0.313262
    """
    return -jax.nn.log_softmax(scale * out.v_int / t_end)[label]


def predict_first_spike(out: LayerResult, t_end: float) -> Int[Array, ""]:
    """The class whose output spikes first (the decision ``ttfs_loss`` trains)."""
    return jnp.argmin(first_spike_times(out, t_end)).astype(jnp.int32)


def predict_count(out: LayerResult, t_end: float) -> Int[Array, ""]:
    """The class with the largest time-weighted spike count."""
    return jnp.argmax(_soft_counts(out, t_end)).astype(jnp.int32)


def predict_voltage(out: LayerResult) -> Int[Array, ""]:
    """The class with the largest mean membrane potential."""
    return jnp.argmax(out.v_int).astype(jnp.int32)
