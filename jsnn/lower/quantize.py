"""Host-side quantisation rules (ALGORITHMS §5.3): rounding, scales, decay codes.

Everything here runs once at lowering time in numpy float64, so the integer tables do
not depend on the float precision of the trained model (``round_mode`` also rounds JAX
arrays, for quantisation-aware fine-tuning).

    q = clip(round(s * w), -(2**(b-1) - 1), 2**(b-1) - 1)
    s = (2**(b-1) - 1) / max|W|                      (pow2: s = 2**floor(log2(...)))
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["decay_code", "decay_effective", "dequantize", "pow2_floor", "quantize", "round_mode", "signed_max"]


def round_mode(x, mode: str):
    """Round to integers with a named rule.

    Args:
      x: values: a JAX array (rounded in its own dtype, traceable, e.g. for fake
        quantisation in training) or anything else (rounded as a float64 NumPy array).
      mode: "half_even" (numpy/jnp.round), "half_away" (ties away from zero), "floor",
        "toward_zero".

    Returns:
      The rounded values (float64 NumPy, or a JAX array of the input's dtype).

    Example:
      >>> round_mode([2.5, -2.5, -1.7], "half_away").tolist()
      [3.0, -3.0, -2.0]
    """
    xp = jnp if isinstance(x, jax.Array) else np
    if xp is np:
        x = np.asarray(x, np.float64)
    if mode == "half_even":
        return xp.round(x)
    if mode == "half_away":
        return xp.sign(x) * xp.floor(xp.abs(x) + 0.5)
    if mode == "floor":
        return xp.floor(x)
    if mode == "toward_zero":
        return xp.trunc(x)
    raise ValueError(f"rounding must be half_even, half_away, floor or toward_zero; got {mode!r}.")


def signed_max(bits: int) -> int:
    """``2**(bits-1) - 1``, the symmetric limit of a signed field."""
    return 2 ** (bits - 1) - 1


def quantize(x, scale, limit: int, *, mode: str = "half_even", lower: int | None = None) -> tuple[np.ndarray, float]:
    """Quantise ``x`` with ``scale`` and clip to ``[lower, limit]`` (``lower = -limit`` by default).

    Args:
      x: float values.
      scale: positive scale (scalar, or broadcastable to ``x``: one per output channel).
      limit: largest integer value.
      mode: rounding rule (see :func:`round_mode`).
      lower: smallest integer value.

    Returns:
      ``(q, clip_fraction)``: int64 values and the fraction of entries that were clipped.

    Example:
      >>> q, clipped = quantize([0.5, -2.0], 10.0, 7)
      >>> q.tolist(), clipped
      ([5, -7], 0.5)
    """
    lower = -limit if lower is None else lower
    x = np.asarray(x, np.float64)
    if not np.isfinite(x).all():
        raise ValueError("cannot quantise NaN or infinite parameters; check the trained network.")
    r = round_mode(x * np.asarray(scale, np.float64), mode)
    clipped = (r > limit) | (r < lower)
    return np.clip(r, lower, limit).astype(np.int64), float(clipped.mean()) if clipped.size else 0.0


def dequantize(q, scale) -> np.ndarray:
    """``q / scale`` in float64 (the value a table entry stands for)."""
    return np.asarray(q, np.float64) / np.asarray(scale, np.float64)


def pow2_floor(x) -> np.ndarray:
    """The largest power of two not above ``x`` (elementwise, x > 0)."""
    return np.exp2(np.floor(np.log2(np.asarray(x, np.float64))))


def decay_code(decay: float, encoding: str) -> tuple[str, int]:
    """Encode a per-step decay for a target (ALGORITHMS §5.3).

    Args:
      decay: trained delta in [0, 1].
      encoding: "shift", "mul12_rtz", "mul_u32_floor" or "none".

    Returns:
      ``(layer_encoding, code)``: a decay of exactly 1 is stored as ``("none", 0)``.

    Raises:
      ValueError: delta outside [0, 1], or a leak on a target without one.

    Example:
      >>> decay_code(0.9, "shift"), decay_code(0.9, "mul12_rtz")
      (('shift', 3), ('mul12_rtz', 410))
    """
    decay = float(decay)
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must lie in [0, 1] for lowering; got {decay}.")
    if decay == 1.0:
        return "none", 0
    if encoding == "none":
        raise ValueError(f"the target has no leak (decay encoding 'none') but a layer has decay {decay}; "
                         "train with IF neurons or decay=1.0, or choose a target with a leak.")
    if encoding == "shift":
        dash = 0 if decay == 0.0 else int(round(math.log2(1.0 / (1.0 - decay))))
        return "shift", min(dash, 15)
    if encoding == "mul12_rtz":
        return "mul12_rtz", int(round_mode(4096.0 * (1.0 - decay), "half_even"))
    if encoding == "mul_u32_floor":
        return "mul_u32_floor", int(min(round_mode(decay * 2.0**32, "half_even"), 2.0**32 - 1))
    raise ValueError(f"unknown decay encoding {encoding!r}.")


def decay_effective(encoding: str, code: int) -> float:
    """The decay a code realises (for positive states far from zero).

    Example:
      >>> decay_effective("shift", 3)
      0.875
    """
    if encoding == "none":
        return 1.0
    if encoding == "shift":
        return 1.0 - 2.0**-code
    if encoding == "mul12_rtz":
        return (4096 - code) / 4096
    return code / 2.0**32
