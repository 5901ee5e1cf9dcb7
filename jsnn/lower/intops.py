"""Integer primitives of the bit-exact simulator (ALGORITHMS §5.4), on int32 arrays.

All functions are pure JAX and exact: no value is ever rounded by float arithmetic.

* ``shift_decay``: ``v - (v >> dash)`` with an arithmetic (flooring) shift.
* ``mul12_rtz``: ``sign(v) * ((|v| * f) >> 12)``, the 37-bit product split into two
  int32 products: ``(|v| >> 12) * f + (((|v| & 4095) * f) >> 12)``.
* ``mul_u32_floor``: ``floor(v * d / 2**32)`` for an unsigned 32-bit ``d``, with 16-bit limbs.
* ``wrap`` / ``saturate``: overflow rules of a b-bit register, with a count of the
  entries they changed.
* ``exact_matmul``: an integer matrix product computed with float32 matmuls (fast BLAS)
  on limbs small enough that every partial sum is an integer below 2**24, hence exact.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Int

__all__ = ["apply_decay", "exact_matmul", "mul12_rtz", "mul_u32_floor", "saturate", "shift_decay", "wrap"]

_EXACT_F32 = 2**24


def shift_decay(v: Int[Array, "..."], dash: int) -> Int[Array, "..."]:
    """``v - (v >> dash)`` (floor shift). Example: dash 2 maps -3 to -2 and 3 to 3.

    Example:
      >>> import jax.numpy as jnp
      >>> shift_decay(jnp.array([100, -100, 3, -3], jnp.int32), 2).tolist()
      [75, -75, 3, -2]
    """
    return v - lax.shift_right_arithmetic(v, jnp.full_like(v, dash))


def mul12_rtz(v: Int[Array, "..."], d: int) -> Int[Array, "..."]:
    """``sign(v) * ((|v| * (4096 - d)) >> 12)`` for ``|v| < 2**24`` (round toward zero).

    Example:
      >>> import jax.numpy as jnp
      >>> mul12_rtz(jnp.array([1000, -1000], jnp.int32), 410).tolist()
      [899, -899]
    """
    f = jnp.int32(4096 - d)
    a = jnp.abs(v)
    p = (a >> 12) * f + (((a & 4095) * f) >> 12)
    return jnp.where(v < 0, -p, p)


def mul_u32_floor(v: Int[Array, "..."], d: int) -> Int[Array, "..."]:
    """``floor(v * d / 2**32)`` for int32 ``v`` and ``0 <= d < 2**32``, exactly.

    With ``v = vh 2^16 + vl`` and ``d = dh 2^16 + dl`` (vl, dh, dl unsigned 16-bit):
    ``floor(v d / 2^32) = vh dh + (A >> 16) + (B >> 16) + ((A & M) + (B & M) + (C >> 16)) >> 16``
    with ``A = vh dl`` (int32), ``B = vl dh`` and ``C = vl dl`` (uint32), ``M = 0xFFFF``.

    Example:
      >>> import jax.numpy as jnp
      >>> mul_u32_floor(jnp.array([1000, -1000], jnp.int32), 3865470566).tolist()  # 0.9 * 2**32
      [899, -900]
    """
    dh, dl = d >> 16, d & 0xFFFF
    vh = lax.shift_right_arithmetic(v, jnp.full_like(v, 16))
    vl = v & 0xFFFF
    a = vh * jnp.int32(dl)
    b = vl.astype(jnp.uint32) * jnp.uint32(dh)
    c = vl.astype(jnp.uint32) * jnp.uint32(dl)
    low = (a & 0xFFFF) + (b & 0xFFFF).astype(jnp.int32) + (c >> 16).astype(jnp.int32)
    return (vh * jnp.int32(dh) + lax.shift_right_arithmetic(a, jnp.full_like(a, 16))
            + (b >> 16).astype(jnp.int32) + (low >> 16))


def apply_decay(v: Int[Array, "..."], encoding: str, code: int) -> Int[Array, "..."]:
    """One decay step of a state under a layer's encoding ("none" is the identity)."""
    if encoding == "none":
        return v
    if encoding == "shift":
        return shift_decay(v, code)
    if encoding == "mul12_rtz":
        return mul12_rtz(v, code)
    if encoding == "mul_u32_floor":
        return mul_u32_floor(v, code)
    raise ValueError(f"unknown decay encoding {encoding!r}.")


def wrap(x: Int[Array, "..."], bits: int) -> tuple[Int[Array, "..."], Int[Array, ""]]:
    """Two's complement wrap to ``bits`` (<= 31): ``(x << (32-b)) >> (32-b)``, and the count of wraps.

    Example:
      >>> import jax.numpy as jnp
      >>> y, n = wrap(jnp.array([127, 128, -129], jnp.int32), 8)
      >>> y.tolist(), int(n)
      ([127, -128, 127], 2)
    """
    s = 32 - bits
    y = lax.shift_right_arithmetic(x << s, jnp.full_like(x, s))
    return y, jnp.sum(y != x, dtype=jnp.int32)


def saturate(x: Int[Array, "..."], bits: int) -> tuple[Int[Array, "..."], Int[Array, ""]]:
    """Clip to ``±(2**(bits-1) - 1)``, and the count of saturated entries.

    Example:
      >>> import jax.numpy as jnp
      >>> y, n = saturate(jnp.array([127, 128, -129], jnp.int32), 8)
      >>> y.tolist(), int(n)
      ([127, 127, -127], 2)
    """
    m = 2 ** (bits - 1) - 1
    y = jnp.clip(x, -m, m)
    return y, jnp.sum(y != x, dtype=jnp.int32)


def _limb_bits(budget: int) -> int:
    """Largest k (<= 30) with ``budget * (2**k - 1) < 2**24``; 0 if even k = 1 fails."""
    k = 0
    while k < 30 and budget * (2 ** (k + 1) - 1) < _EXACT_F32:
        k += 1
    return k


def exact_matmul(
    x: Int[Array, "T n_in"], weight: Int[Array, "n_out n_in"], *, x_max: int, w_max: int,
    row_l1: int | None = None,
) -> Int[Array, "T n_out"]:
    """``x @ weight.T`` on integers, exact, via float32 matmuls on limbs of the weights.

    If ``row_l1 * x_max < 2**24`` (``row_l1`` bounds every row's ``sum_j |w_ij|``), every
    partial sum of one float32 matmul is an integer below 2**24 in magnitude, whatever the
    summation order, so one matmul is exact. Otherwise the weights are split into ``k``-bit
    limbs (low limbs unsigned, the top one signed) with ``n_in * x_max * (2**k - 1) < 2**24``
    and the limb products are recombined with int32 shifts (the lowering bounds the true
    sum below 2**30).

    Args:
      x: non-negative integer inputs, at most ``x_max``.
      weight: signed integer weights, ``|w| <= w_max``.
      x_max, w_max: static bounds (from the tables).
      row_l1: optional static bound of the rows' L1 norms (the tables' weights are known
        when the simulator is traced).

    Returns:
      int32 products.

    Example:
      >>> import jax.numpy as jnp
      >>> exact_matmul(jnp.array([[3, 1]], jnp.int32), jnp.array([[100, -7]], jnp.int32), x_max=3, w_max=100).tolist()
      [[293]]
    """
    if row_l1 is not None and row_l1 * max(x_max, 1) < _EXACT_F32:
        return (x.astype(jnp.float32) @ weight.astype(jnp.float32).T).astype(jnp.int32)
    k = _limb_bits(weight.shape[1] * max(x_max, 1))
    if k == 0:
        raise ValueError(f"fan-in {weight.shape[1]} with inputs up to {x_max} is too large for an exact "
                         "float32 product; use fewer input bits.")
    xf = x.astype(jnp.float32)
    out = None
    shift, w = 0, weight
    while (w_max >> shift) + (shift > 0) > 2**k - 1:  # |w >> shift| <= (w_max >> shift) + 1
        part = (xf @ (w & (2**k - 1)).astype(jnp.float32).T).astype(jnp.int32) << shift
        out = part if out is None else out + part
        w = lax.shift_right_arithmetic(w, jnp.full_like(w, k))
        shift += k
    part = (xf @ w.astype(jnp.float32).T).astype(jnp.int32) << shift
    return part if out is None else out + part
