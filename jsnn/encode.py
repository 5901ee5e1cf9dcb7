"""Encoders from static values or sequences to spike trains with the time axis first.

All encoders take one sample (any feature shape) and return ``(T, *features)`` arrays;
batch with ``jax.vmap``.

References:
  Eshraghian et al., "Training spiking neural networks using lessons from deep
  learning", arXiv 2109.12894 (rate, latency and delta coding).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["delta", "direct", "latency", "rate"]


def _check_steps(num_steps: int) -> None:
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int; got {num_steps!r}.")


def _check_unit_interval(x: Array, name: str) -> None:
    if not isinstance(x, jax.core.Tracer) and x.size and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ValueError(f"{name} expects values in [0, 1]; got range [{float(x.min())}, {float(x.max())}]. "
                         "Normalise the data first.")


def rate(x: Float[Array, "..."], num_steps: int, *, key: PRNGKeyArray) -> Float[Array, "T ..."]:
    """Bernoulli rate code: ``s_t ~ Bernoulli(x)`` independently at every step.

    Args:
      x: firing probabilities in [0, 1].
      num_steps: T.
      key: PRNG key.

    Returns:
      Spikes of shape ``(T, *x.shape)`` with the dtype of ``x``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> rate(jnp.array([0.0, 1.0]), 3, key=jax.random.key(0)).tolist()
      [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    """
    _check_steps(num_steps)
    x = jnp.asarray(x)
    _check_unit_interval(x, "rate")
    return jax.random.bernoulli(key, x, (num_steps, *x.shape)).astype(x.dtype)


def latency(x: Float[Array, "..."], num_steps: int, *, threshold: float = 0.01) -> Float[Array, "T ..."]:
    """Latency (time-to-first-spike) code: one spike at ``t = round((1 - x) * (T - 1))``.

    Brighter inputs spike earlier; inputs ``<= threshold`` never spike.

    Args:
      x: intensities in [0, 1].
      num_steps: T.
      threshold: values at or below it emit no spike.

    Returns:
      One-hot-in-time spikes ``(T, *x.shape)``.

    Example:
      >>> import jax.numpy as jnp
      >>> latency(jnp.array([1.0, 0.5, 0.0]), 3).T.tolist()
      [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    _check_steps(num_steps)
    x = jnp.asarray(x)
    _check_unit_interval(x, "latency")
    t = jnp.round((1 - x) * (num_steps - 1)).astype(jnp.int32)
    steps = jnp.arange(num_steps, dtype=jnp.int32).reshape((num_steps,) + (1,) * x.ndim)
    return ((steps == t) & (x > threshold)).astype(x.dtype)


def direct(x: Float[Array, "..."], num_steps: int) -> Float[Array, "T ..."]:
    """Direct (current) code: the analog value is the input current at every step.

    Example:
      >>> import jax.numpy as jnp
      >>> direct(jnp.array([0.5]), 2).tolist()
      [[0.5], [0.5]]
    """
    _check_steps(num_steps)
    x = jnp.asarray(x)
    return jnp.broadcast_to(x, (num_steps, *x.shape))


def delta(
    x: Float[Array, "T ..."], *, threshold: float = 0.1, off_spikes: bool = True
) -> Float[Array, "T ..."]:
    """Delta modulation: spike where the signal changes by more than ``threshold``.

    ``on_t = 1[x_t - x_{t-1} > threshold]`` (with ``x_{-1} = 0``), and with ``off_spikes``
    also ``off_t = 1[x_{t-1} - x_t > threshold]``, stacked on a new axis 1: ``(T, 2, ...)``.

    Example:
      >>> import jax.numpy as jnp
      >>> delta(jnp.array([[0.0], [0.5], [0.5], [0.0]]), threshold=0.2)[:, :, 0].tolist()
      [[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    """
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"delta expects a sequence with the time axis first; got shape {x.shape}.")
    diff = jnp.diff(x, axis=0, prepend=jnp.zeros_like(x[:1]))
    on = (diff > threshold).astype(x.dtype)
    if not off_spikes:
        return on
    off = (-diff > threshold).astype(x.dtype)
    return jnp.stack([on, off], axis=1)
