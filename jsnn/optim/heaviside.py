"""The exact Heaviside subroutine of ADMM: the membrane-potential block update U3 (ALGORITHMS §1.4).

For one hidden unit, one sample and one step t, with everything else fixed, the augmented
Lagrangian of ADMM depends on the membrane potential z only through

    phi(z) = (rho/2)(z - q)^2 + [t < T](rho/2)(r - decay*z + threshold*a)^2 + (beta/2)(a - H(z))^2,

with H(z) = 1[z > threshold] (strict). The quadratic part Q is convex with minimiser
z* = (q + decay*(r + threshold*a)) / (1 + decay^2) (z* = q at t = T). H jumps only at the
threshold, so the best point on the other side of the threshold from z* is the boundary point
nearest to it, and comparing the two costs gives the exact minimiser (up to the open spike side,
whose infimum at threshold+ is not attained and is approached to within ``eps``).

References:
  Perin, Bidini, Mazzieri, Rossi, "ADMM-based training for spiking neural networks",
  arXiv 2505.05527.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

__all__ = ["heaviside_prox", "spike_side_epsilon"]


def spike_side_epsilon(threshold: ArrayLike, dtype) -> Array:
    """The offset above threshold used for "spike just above": ``max(1e-5, 4 * eps(dtype) * |threshold|)``.

    It keeps ``threshold + epsilon > threshold`` in the working dtype (float32 loses a fixed 1e-5
    once the threshold is a few hundred).

    Args:
      threshold: the firing threshold (scalar or array).
      dtype: the working floating dtype.

    Returns:
      The offset, an array of ``dtype``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(spike_side_epsilon(1.0, jnp.float32)) == float(jnp.float32(1e-5))
      True
      >>> bool(spike_side_epsilon(1e4, jnp.float32) > 1e-5)   # grows with the threshold in float32
      True
    """
    threshold = jnp.asarray(threshold, dtype)
    return jnp.maximum(jnp.asarray(1e-5, dtype), 4 * jnp.finfo(dtype).eps * jnp.abs(threshold))


def heaviside_prox(
    q: Float[Array, "*shape"],
    r: Float[Array, "*shape"],
    a: Float[Array, "*shape"],
    *,
    rho: ArrayLike,
    beta: ArrayLike,
    decay: ArrayLike,
    threshold: ArrayLike,
    last: Bool[ArrayLike, "*#shape"],
) -> Float[Array, "*shape"]:
    """Exact elementwise minimiser of phi(z) above (ALGORITHMS §1.4), vectorised over any shape.

    With Delta1 = beta*(1 - 2a) (twice the activation cost of spiking minus resting) and
    Delta2 = 2*[Q(z*) - Q(threshold)] <= 0:

        if   z* > threshold and Delta1 + Delta2 > 0:  z = threshold         (rest at threshold)
        elif z* <= threshold and Delta2 - Delta1 > 0: z = threshold + eps   (spike just above)
        else:                                         z = z*

    Ties keep z*; at z* = threshold the unit spikes iff a > 1/2; beta -> 0 returns z*; a large
    beta forces H(z) = round(a); decay = 0 is allowed.

    Args:
      q: the potential predicted by the unit's own constraint at t,
        ``W a_{l-1,t} + decay*z_{t-1} - threshold*a_{t-1}``.
      r: ``z_{t+1} - W a_{l-1,t+1}``, the next step's residual without the leak and reset terms
        (ignored where ``last``).
      a: the relaxed spike a_{l,t} in [0, 1].
      rho: penalty of the membrane constraints (> 0).
      beta: penalty of the activation constraint (>= 0).
      decay: per-step leak in [0, 1].
      threshold: firing threshold.
      last: True where t = T (no next-step term); broadcastable to ``q``.

    Returns:
      The minimising z, same shape and dtype as ``q``.

    Raises:
      TypeError: if ``q``, ``r`` and ``a`` are not of one floating dtype.

    References:
      Perin, Bidini, Mazzieri, Rossi, "ADMM-based training for spiking neural networks",
      arXiv 2505.05527.

    Example:
      >>> import jax.numpy as jnp
      >>> z = heaviside_prox(jnp.array([0.5]), jnp.array([0.0]), jnp.array([1.0]),
      ...                    rho=1.0, beta=10.0, decay=0.0, threshold=1.0, last=True)
      >>> bool(z[0] > 1.0)   # a = 1 and a large beta: the unit is pushed just above threshold
      True
    """
    q, r, a = jnp.asarray(q), jnp.asarray(r), jnp.asarray(a)
    dtype = q.dtype
    if not jnp.issubdtype(dtype, jnp.floating) or r.dtype != dtype or a.dtype != dtype:
        raise TypeError(
            f"heaviside_prox needs q, r, a of one floating dtype; got {q.dtype}, {r.dtype}, {a.dtype}. "
            "Cast them with .astype(...) first."
        )
    rho, beta, decay, threshold = (jnp.asarray(v, dtype) for v in (rho, beta, decay, threshold))
    last = jnp.asarray(last, bool)
    z_star = jnp.where(last, q, (q + decay * (r + threshold * a)) / (1 + decay * decay))

    def quad(z):  # 2/rho * Q(z)
        nxt = r - decay * z + threshold * a
        return (z - q) ** 2 + jnp.where(last, 0, nxt * nxt)

    delta1 = beta * (1 - 2 * a)
    delta2 = rho * (quad(z_star) - quad(threshold))
    rest = (z_star > threshold) & (delta1 + delta2 > 0)
    spike = (z_star <= threshold) & (delta2 - delta1 > 0)
    eps = spike_side_epsilon(threshold, dtype)
    return jnp.where(rest, threshold, jnp.where(spike, threshold + eps, z_star))
