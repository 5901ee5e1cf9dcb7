"""Losses and regularisers on the output of a spiking network, for one sample.

Each loss takes the output sequence ``(T, K)`` of one sample and an integer label, and
returns a scalar; average over a batch with ``jax.vmap`` and ``mean``. Each classification
loss reads one of the ``*_logits`` functions (``count_logits``, ``max_logits``, ``last_logits``,
``mean_logits``), whose argmax is the decision it trains for; :data:`LOSSES` pairs each loss with
its logits. A concrete label outside ``[0, K)`` raises ``ValueError``; under ``jit`` or ``vmap``
(a traced label) it makes the loss NaN, which :func:`jsnn.train.fit` reports as a diverged run,
never a finite loss on a wrong class.

References:
  Eshraghian et al., "Training spiking neural networks using lessons from deep
  learning", arXiv 2109.12894.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

__all__ = [
    "LOSSES",
    "ce_count",
    "ce_last_membrane",
    "ce_max_membrane",
    "ce_mean_membrane",
    "count_logits",
    "last_logits",
    "max_logits",
    "mean_logits",
    "mse_membrane",
    "rate_regularizer",
]


def _check_outputs(out: Array) -> None:
    if out.ndim != 2:
        raise ValueError(f"losses expect one sample's outputs of shape (time, classes); got {out.shape}. "
                         "Use jax.vmap over the batch.")


def _check_label(label, num_classes: int) -> None:
    """Refuse a concrete label outside ``[0, num_classes)``; a traced one is handled by the caller (NaN loss)."""
    if isinstance(label, jax.core.Tracer):
        return
    value = np.asarray(label)
    if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer):
        raise ValueError(f"a label must be one integer; got {label!r}. Use jax.vmap over a batch of labels.")
    if not 0 <= int(value) < num_classes:
        raise ValueError(f"label {int(value)} is outside [0, {num_classes}) for {num_classes} output classes.")


def _valid(loss: Array, label, num_classes: int) -> Array:
    """``loss``, or NaN where a traced label lies outside ``[0, num_classes)`` (so the training loop stops)."""
    _check_label(label, num_classes)
    ok = (label >= 0) & (label < num_classes)
    return jnp.where(ok, loss, jnp.nan)


def _ce(logits: Float[Array, " K"], label: Int[Array, ""]) -> Float[Array, ""]:
    k = logits.shape[-1]
    return _valid(-jax.nn.log_softmax(logits)[jnp.clip(label, 0, k - 1)], label, k)


def count_logits(spikes: Float[Array, "T K"]) -> Float[Array, " K"]:
    """Spike counts per class."""
    _check_outputs(spikes)
    return spikes.sum(axis=0)


def max_logits(v: Float[Array, "T K"]) -> Float[Array, " K"]:
    """Maximum membrane potential over time per class."""
    _check_outputs(v)
    return v.max(axis=0)


def last_logits(v: Float[Array, "T K"]) -> Float[Array, " K"]:
    """Membrane potential at the last step per class."""
    _check_outputs(v)
    return v[-1]


def mean_logits(v: Float[Array, "T K"]) -> Float[Array, " K"]:
    """Mean membrane potential over time per class."""
    _check_outputs(v)
    return v.mean(axis=0)


def ce_count(spikes: Float[Array, "T K"], label: Int[Array, ""]) -> Float[Array, ""]:
    """Cross-entropy of the softmax of output spike counts.

    Example:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[1.0, 0.0], [1.0, 0.0]])
      >>> round(float(ce_count(s, 0)), 4)
      0.1269
    """
    return _ce(count_logits(spikes), label)


def ce_max_membrane(v: Float[Array, "T K"], label: Int[Array, ""]) -> Float[Array, ""]:
    """Cross-entropy of the softmax of the maximum membrane potential over time."""
    return _ce(max_logits(v), label)


def ce_last_membrane(v: Float[Array, "T K"], label: Int[Array, ""]) -> Float[Array, ""]:
    """Cross-entropy of the softmax of the last membrane potential."""
    return _ce(last_logits(v), label)


def ce_mean_membrane(v: Float[Array, "T K"], label: Int[Array, ""]) -> Float[Array, ""]:
    """Cross-entropy of the softmax of the time-averaged membrane potential."""
    return _ce(mean_logits(v), label)


def mse_membrane(
    v: Float[Array, "T K"], label: Int[Array, ""], *, on: float = 1.0, off: float = 0.0
) -> Float[Array, ""]:
    """Mean squared error of every step's membrane potential to the target ``on``/``off`` one-hot.

    Example:
      >>> import jax.numpy as jnp
      >>> float(mse_membrane(jnp.array([[1.0, 0.0]]), 0))
      0.0
    """
    _check_outputs(v)
    target = jnp.where(jnp.arange(v.shape[1]) == label, on, off).astype(v.dtype)
    return _valid(jnp.mean((v - target) ** 2), label, v.shape[1])


def rate_regularizer(
    spikes: Float[Array, "T *n"], *, target: float = 0.0, power: int = 2
) -> Float[Array, ""]:
    """Firing-rate regulariser: mean over neurons of ``|rate - target| ** power``.

    ``rate`` is the fraction of steps with a spike. Add it, scaled, to a loss to keep
    activity sparse (``target=0``) or near a set point.

    Example:
      >>> import jax.numpy as jnp
      >>> float(rate_regularizer(jnp.array([[1.0, 0.0], [1.0, 0.0]]), target=0.5))
      0.25
    """
    r = spikes.mean(axis=0)
    return jnp.mean(jnp.abs(r - target) ** power)


#: name -> (loss, logits used for the prediction); the CLI and the training loop read it.
LOSSES = {
    "ce_count": (ce_count, count_logits),
    "ce_max_membrane": (ce_max_membrane, max_logits),
    "ce_last_membrane": (ce_last_membrane, last_logits),
    "ce_mean_membrane": (ce_mean_membrane, mean_logits),
    "mse_membrane": (mse_membrane, mean_logits),
}
