"""Closed-form block updates of ADMM training for spiking networks, as public pure functions.

All per-sample arrays have shape ``(N, T, d)`` (samples, time, units), with the state at t = 0
equal to zero. Weights are ``(d_out, d_in)`` as in :class:`jsnn.nn.Linear`; an optional bias
``(d_out,)`` is handled as an extra input column of ones. The problem (ALGORITHMS §1.2):

    hidden l < L: C^z_{l,t} = z_{l,t} - decay*z_{l,t-1} - W_l a_{l-1,t} - b_l + threshold*a_{l,t-1}
    readout:      C^z_{L,t} = z_{L,t} - decay*z_{L,t-1} - W_L a_{L-1,t} - b_L
    activation:   C^a_{l,t} = a_{l,t} - H(z_{l,t}),  H(z) = 1[z > threshold]
    L_rho = sum_n ||z_{L,T} - y||^2 + <Lambda, C^z_{L,T}> + (rho/2) sum ||C^z||^2 + (beta/2) sum ||C^a||^2

Each block update below is the exact minimiser of L_rho over its block with the others fixed
(except the clip of the spike update), as derived in ALGORITHMS §1.3. The weight updates are split
into per-sample statistics (:func:`weight_statistics`, summable over chunks, shards and devices)
and a solve (:func:`solve_weights`), which is what makes the method separable over samples.

References:
  Perin, Bidini, Mazzieri, Rossi, "ADMM-based training for spiking neural networks",
  arXiv 2505.05527.
  Taylor et al., "Training neural networks without gradients: a scalable ADMM approach",
  arXiv 1605.02026.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jsnn.optim.heaviside import heaviside_prox

__all__ = [
    "augmented_lagrangian",
    "check_hyperparameter",
    "currents",
    "dual_update",
    "hidden_membrane_update",
    "hidden_weight_update",
    "input_gram",
    "last_step_mask",
    "membrane_targets",
    "readout_dual_numerator",
    "readout_membrane_update",
    "readout_weight_update",
    "hidden_membrane_step",
    "readout_membrane_step",
    "shift_next",
    "shift_prev",
    "solve_spike_system",
    "solve_weights",
    "spike_rhs",
    "spike_rhs_fixed",
    "spike_shifts",
    "spike_system",
    "spike_update",
    "weight_statistics",
]

Seq = Float[Array, "N T d"]


def check_hyperparameter(name: str, value: ArrayLike, *, zero_ok: bool = False) -> None:
    """Refuse a concrete ``value`` that is not finite and positive (non-negative with ``zero_ok``).

    ``rho`` and ``beta`` must be positive (``beta = 0`` makes the spike system singular at t = T,
    and the solve returns NaN), the ridge non-negative. Traced values (inside ``jit``/``vmap``, e.g.
    hyperparameters injected with ``optax.inject_hyperparams``) cannot be checked here: it is the
    caller's contract that they lie in range too.

    Args:
      name: what to call the value in the message (e.g. ``"beta"`` or ``"--beta"``).
      value: a scalar or array; checked elementwise.
      zero_ok: accept 0.

    Raises:
      ValueError: for a concrete value out of range.

    Example:
      >>> check_hyperparameter("ridge", 0.0, zero_ok=True)
      >>> check_hyperparameter("beta", 0.0)
      Traceback (most recent call last):
      ...
      ValueError: beta must be positive and finite; got 0.0.
    """
    if isinstance(value, jax.core.Tracer):
        return
    arr = np.asarray(value, dtype=np.float64)
    ok = np.isfinite(arr) & ((arr >= 0) if zero_ok else (arr > 0))
    if not ok.all():
        what = "non-negative" if zero_ok else "positive"
        shown = arr.item() if arr.ndim == 0 else arr[~ok].tolist()
        raise ValueError(f"{name} must be {what} and finite; got {shown}.")


# ----------------------------------------------------------------------------- time shifts


def shift_prev(x: Float[Array, "*b T d"]) -> Float[Array, "*b T d"]:
    """``x_{t-1}`` along the time axis (second to last), with ``x_0 = 0``.

    Example:
      >>> import jax.numpy as jnp
      >>> shift_prev(jnp.array([[1.0], [2.0]]))[:, 0].tolist()
      [0.0, 1.0]
    """
    pad = [(0, 0)] * (x.ndim - 2) + [(1, 0), (0, 0)]
    return jnp.pad(x, pad)[..., :-1, :]


def shift_next(x: Float[Array, "*b T d"]) -> Float[Array, "*b T d"]:
    """``x_{t+1}`` along the time axis (second to last), with ``x_{T+1} = 0``.

    Example:
      >>> import jax.numpy as jnp
      >>> shift_next(jnp.array([[1.0], [2.0]]))[:, 0].tolist()
      [2.0, 0.0]
    """
    pad = [(0, 0)] * (x.ndim - 2) + [(0, 1), (0, 0)]
    return jnp.pad(x, pad)[..., 1:, :]


def last_step_mask(num_steps: int) -> Array:
    """(T, 1) boolean mask, True at the last step t = T (broadcasts over units)."""
    return (jnp.arange(num_steps) == num_steps - 1)[:, None]


def _with_ones(a: Array) -> Array:
    return jnp.concatenate([a, jnp.ones(a.shape[:-1] + (1,), a.dtype)], axis=-1)


def currents(a_prev: Float[Array, "*b d_in"], weight: Float[Array, "d_out d_in"], bias=None) -> Array:
    """Input currents ``c = W a_prev + b`` of every sample and step (one matmul).

    Example:
      >>> import jax.numpy as jnp
      >>> currents(jnp.ones((1, 2, 3)), jnp.ones((4, 3))).shape
      (1, 2, 4)
    """
    c = a_prev @ weight.T
    return c if bias is None else c + bias


# ----------------------------------------------------------------------------- U1 / U4: weights


def membrane_targets(z: Seq, a: Seq | None, *, decay: ArrayLike, threshold: ArrayLike) -> Seq:
    """Targets of the weighted input: ``P_t = z_t - decay*z_{t-1} + threshold*a_{t-1}``.

    For the readout pass ``a=None`` (no reset term): ``P_t = z_t - decay*z_{t-1}``.

    Example:
      >>> import jax.numpy as jnp
      >>> membrane_targets(jnp.ones((1, 2, 1)), None, decay=0.5, threshold=1.0)[0, :, 0].tolist()
      [1.0, 0.5]
    """
    dtype = z.dtype
    p = z - jnp.asarray(decay, dtype) * shift_prev(z)
    if a is not None:
        p = p + jnp.asarray(threshold, dtype) * shift_prev(a)
    return p


def weight_statistics(
    targets: Float[Array, "*b d_out"],
    a_prev: Float[Array, "*b d_in"],
    *,
    use_bias: bool = False,
    mask: Float[Array, "*m"] | None = None,
) -> tuple[Float[Array, "d_out k"], Float[Array, "k k"]]:
    """Numerator ``sum P^T A`` and Gram matrix ``sum A^T A`` of a least-squares weight solve.

    Sums run over every leading axis (samples and time), so statistics of chunks, shards or
    devices add up (``lax.psum``) to those of the full batch. With ``use_bias`` a column of ones
    is appended to ``A`` (k = d_in + 1).

    Args:
      targets: ``P``, shape ``(..., d_out)``.
      a_prev: ``A``, shape ``(..., d_in)`` with the same leading axes.
      use_bias: append the ones column.
      mask: optional 0/1 weights over the leading sample axes (padding samples get 0); it is
        broadcast against the leading axes from the left.

    Returns:
      ``(numerator (d_out, k), gram (k, k))``.

    Example:
      >>> import jax.numpy as jnp
      >>> num, gram = weight_statistics(jnp.ones((2, 3, 4)), jnp.ones((2, 3, 5)), use_bias=True)
      >>> num.shape, gram.shape, float(gram[0, 0])
      ((4, 6), (6, 6), 6.0)
    """
    a, flat_w = _weighted_rows(a_prev, use_bias, mask)
    num = targets.reshape(-1, targets.shape[-1]).T @ flat_w
    gram = a.reshape(-1, a.shape[-1]).T @ flat_w
    return num, gram


def input_gram(a_prev: Float[Array, "*b d_in"], *, use_bias: bool = False, mask=None) -> Float[Array, "k k"]:
    """The Gram matrix of :func:`weight_statistics` alone (the cached first-layer Gram).

    Example:
      >>> import jax.numpy as jnp
      >>> input_gram(jnp.ones((2, 3, 4))).shape
      (4, 4)
    """
    a, flat_w = _weighted_rows(a_prev, use_bias, mask)
    return a.reshape(-1, a.shape[-1]).T @ flat_w


def _weighted_rows(a_prev, use_bias, mask):
    """(A with optional ones column, masked A flattened to rows)."""
    a = _with_ones(a_prev) if use_bias else a_prev
    if mask is not None:
        mask = mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)).astype(a.dtype)
        a_w = a * mask
    else:
        a_w = a
    return a, a_w.reshape(-1, a.shape[-1])


def _one_lane_at_a_time_on_cpu(solve):
    """``solve`` with a batching rule that, on CPU, runs a vmapped batch lane by lane (``lax.map``).

    jaxlib's batched LAPACK kernels on CPU (Cholesky, symmetric eigendecomposition) spread a batch over
    XLA's intra-op thread pool and wait for it from a thread of that pool. When as many of them run at
    once as the pool has threads (two on a 2-core machine: e.g. a sweep's hidden and readout solves, or
    the two branches of a traced ridge), every thread waits and none is left to work: the program hangs
    with the CPU idle (seen in ADMM sweeps; native stacks in ``bench/README.md``). One matrix at a time
    has nothing to wait for. Elsewhere (GPU, TPU) the batched kernel runs as it is.
    """
    lanes = jax.custom_batching.custom_vmap(solve)

    @lanes.def_vmap
    def _batched(axis_size, in_batched, *args):
        args = [a if b else jnp.broadcast_to(a, (axis_size, *jnp.shape(a))) for a, b in zip(args, in_batched)]
        by_lane = lambda *xs: jax.lax.map(lambda lane: lanes(*lane), xs)  # noqa: E731
        return jax.lax.platform_dependent(*args, cpu=by_lane, default=jax.vmap(solve)), True

    return lanes


def solve_weights(
    numerator: Float[Array, "d_out k"],
    gram: Float[Array, "k k"],
    *,
    ridge: ArrayLike = 1e-6,
    use_bias: bool = False,
) -> tuple[Float[Array, "d_out d_in"], Float[Array, " d_out"] | None]:
    """Solve ``W (G + eps I) = numerator`` by Cholesky, eps = ridge * (tr(G)/k + 1); ``W = numerator G^+`` at 0.

    A positive ridge gives the ridge-stabilised form of ``W = numerator G^+`` (ALGORITHMS §1.6): with a
    singular Gram the two agree on ``W A``, not on ``W``. ``ridge = 0`` gives the exact minimum-norm least
    squares ``W = numerator G^+`` (the reference's ``pinv``, by a symmetric eigendecomposition), which is
    ``lstsq(A, P)^T`` when ``numerator = P^T A`` and ``G = A^T A``, also for a singular Gram (e.g. fewer
    samples than inputs). The branch is picked in Python for a concrete ridge, else by ``lax.cond`` (a
    traced NaN or negative ridge takes the Cholesky branch and gives NaN, for divergence checks to see).

    Args:
      numerator: ``sum P^T A`` (plus the multiplier term for the readout).
      gram: ``sum A^T A``.
      ridge: relative ridge (>= 0).
      use_bias: split the last column off as the bias.

    Returns:
      ``(weight, bias)``; ``bias`` is None without ``use_bias``.

    Raises:
      ValueError: for a concrete ridge that is negative or not finite.

    Example:
      >>> import jax.numpy as jnp
      >>> w, b = solve_weights(2 * jnp.eye(2), jnp.eye(2), ridge=0.0)
      >>> w.tolist(), b
      ([[2.0, 0.0], [0.0, 2.0]], None)
      >>> w, _ = solve_weights(jnp.ones((1, 2)), jnp.ones((2, 2)), ridge=0.0)  # singular Gram: min-norm
      >>> jnp.round(w, 6).tolist()
      [[0.5, 0.5]]
    """
    check_hyperparameter("ridge", ridge, zero_ok=True)
    dtype = gram.dtype
    k = gram.shape[0]
    eps = jnp.asarray(ridge, dtype) * (jnp.trace(gram) / k + 1)

    def ridge_solve(numerator, gram, eps):
        chol = jnp.linalg.cholesky(gram + eps * jnp.eye(k, dtype=dtype))
        return jax.scipy.linalg.cho_solve((chol, True), numerator.T).T

    def least_squares(numerator, gram, eps):
        del eps
        return numerator @ jnp.linalg.pinv(gram, hermitian=True)

    if isinstance(ridge, jax.core.Tracer):
        solve = lambda *args: jax.lax.cond(args[2] == 0, least_squares, ridge_solve, *args)  # noqa: E731
    else:
        solve = least_squares if np.all(np.asarray(ridge) == 0) else ridge_solve
    w = _one_lane_at_a_time_on_cpu(solve)(numerator, gram, eps)
    if use_bias:
        return w[:, :-1], w[:, -1]
    return w, None


def hidden_weight_update(
    z: Seq, a: Seq, a_prev: Seq, *, decay: ArrayLike, threshold: ArrayLike, ridge: ArrayLike = 1e-6,
    use_bias: bool = False,
) -> tuple[Array, Array | None]:
    """U1: ``W_l = (sum_t P_t^T A_{l-1,t}) (sum_t A_{l-1,t}^T A_{l-1,t} + eps I)^{-1}``.

    ``P_t = Z_{l,t} - decay Z_{l,t-1} + threshold A_{l,t-1}`` (rows = samples). The hidden weights
    are decoupled from each other.

    Args:
      z: membrane potentials of layer l, ``(N, T, d_l)``.
      a: relaxed spikes of layer l.
      a_prev: relaxed spikes (or inputs) of layer l-1, ``(N, T, d_{l-1})``.
      decay, threshold: neuron constants.
      ridge: relative ridge of :func:`solve_weights`.
      use_bias: also fit a bias.

    Returns:
      ``(W_l, b_l)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = jax.random.uniform(jax.random.key(0), (3, 4, 5))
      >>> w, _ = hidden_weight_update(jnp.ones((3, 4, 2)), jnp.zeros((3, 4, 2)), x, decay=0.9, threshold=1.0)
      >>> w.shape
      (2, 5)
    """
    num, gram = weight_statistics(membrane_targets(z, a, decay=decay, threshold=threshold), a_prev,
                                  use_bias=use_bias)
    return solve_weights(num, gram, ridge=ridge, use_bias=use_bias)


def readout_dual_numerator(
    dual: Float[Array, "N d_L"], a_prev_last: Float[Array, "N d"], *, rho: ArrayLike, use_bias: bool = False
) -> Float[Array, "d_L k"]:
    """The multiplier term ``(1/rho) Lambda^T A_{L-1,T}`` of the readout numerator (summable over samples).

    Example:
      >>> import jax.numpy as jnp
      >>> readout_dual_numerator(jnp.ones((2, 1)), jnp.ones((2, 3)), rho=2.0).tolist()
      [[1.0, 1.0, 1.0]]
    """
    a = _with_ones(a_prev_last) if use_bias else a_prev_last
    return dual.T @ a / jnp.asarray(rho, dual.dtype)


def readout_weight_update(
    z: Seq, a_prev: Seq, dual: Float[Array, "N d_L"], *, rho: ArrayLike, decay: ArrayLike,
    ridge: ArrayLike = 1e-6, use_bias: bool = False,
) -> tuple[Array, Array | None]:
    """U4: ``W_L = (sum_t (Z_t - decay Z_{t-1})^T A_t + Lambda^T A_T / rho)(sum_t A_t^T A_t + eps I)^{-1}``.

    Args:
      z: readout potentials ``(N, T, d_L)``.
      a_prev: last hidden layer's relaxed spikes ``(N, T, d_{L-1})``.
      dual: multiplier ``Lambda`` ``(N, d_L)`` on the readout constraint at t = T.
      rho: penalty.
      decay: readout leak.
      ridge: relative ridge.
      use_bias: also fit a bias.

    Returns:
      ``(W_L, b_L)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> a = jax.random.uniform(jax.random.key(0), (3, 4, 5))
      >>> w, _ = readout_weight_update(jnp.ones((3, 4, 2)), a, jnp.zeros((3, 2)), rho=1.0, decay=0.9)
      >>> w.shape
      (2, 5)
    """
    num, gram = weight_statistics(membrane_targets(z, None, decay=decay, threshold=0.0), a_prev,
                                  use_bias=use_bias)
    num = num + readout_dual_numerator(dual, a_prev[:, -1], rho=rho, use_bias=use_bias)
    return solve_weights(num, gram, ridge=ridge, use_bias=use_bias)


# ----------------------------------------------------------------------------- U2: spikes


def spike_system(weight_up: Float[Array, "d_up d"], shift: ArrayLike) -> Float[Array, "d d"]:
    """Inverse of the spike system ``M = W_{l+1}^T W_{l+1} + shift*I`` (SPD for shift > 0), by Cholesky.

    ``shift`` is ``threshold^2 + beta/rho`` for t < T and ``beta/rho`` for t = T, so M takes two
    values per layer, shared by all samples and steps: factor each once per iteration, after which
    every solve is one matmul (:func:`solve_spike_system`). When ``d_{l+1} < d_l`` the smaller
    ``shift*I + W W^T`` is factored instead (Woodbury):
    ``M^{-1} = (I - W^T (shift*I + W W^T)^{-1} W) / shift``.

    Raises:
      ValueError: for a concrete shift that is not positive (``beta <= 0`` makes M singular at t = T).

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.ones((2, 3))
      >>> jnp.allclose(spike_system(w, 1.0) @ (w.T @ w + jnp.eye(3)), jnp.eye(3), atol=1e-5).item()
      True
    """
    check_hyperparameter("the spike-system shift (threshold^2 [t < T] + beta/rho)", shift)
    dtype = weight_up.dtype
    d_up, d = weight_up.shape
    shift = jnp.asarray(shift, dtype)
    if d_up < d:
        chol = jnp.linalg.cholesky(weight_up @ weight_up.T + shift * jnp.eye(d_up, dtype=dtype))
        inner = jax.scipy.linalg.cho_solve((chol, True), weight_up)
        return (jnp.eye(d, dtype=dtype) - weight_up.T @ inner) / shift
    chol = jnp.linalg.cholesky(weight_up.T @ weight_up + shift * jnp.eye(d, dtype=dtype))
    return jax.scipy.linalg.cho_solve((chol, True), jnp.eye(d, dtype=dtype))


def solve_spike_system(inverse: Float[Array, "d d"], rhs: Float[Array, "*b d"]) -> Float[Array, "*b d"]:
    """Rows ``x = rhs M^{-1}`` (M symmetric) with the inverse from :func:`spike_system`.

    Example:
      >>> import jax.numpy as jnp
      >>> solve_spike_system(2 * jnp.eye(2), jnp.ones((1, 2))).tolist()
      [[2.0, 2.0]]
    """
    return rhs @ inverse


def spike_rhs_fixed(
    z_up: Seq, a_up: Seq | None, weight_up: Array, bias_up: Array | None, dual: Array | None, *,
    rho: ArrayLike, decay: ArrayLike, threshold: ArrayLike,
) -> Seq:
    """The part of the spike right-hand side that does not depend on layer l's own state.

    ``W_{l+1}^T e_{l+1,t} + [l+1 = L, t = T] W_L^T Lambda / rho`` with
    ``e_{l+1,t} = z_{l+1,t} - decay z_{l+1,t-1} + threshold a_{l+1,t-1}[l+1 < L] - b_{l+1}``.
    """
    dtype = z_up.dtype
    e = membrane_targets(z_up, a_up, decay=decay, threshold=threshold)
    if bias_up is not None:
        e = e - bias_up
    g = e @ weight_up
    if dual is not None:
        last = last_step_mask(z_up.shape[-2])
        g = g + jnp.where(last, (dual @ weight_up)[..., None, :] / jnp.asarray(rho, dtype), 0)
    return g


def spike_rhs(
    fixed: Array, z: Array, z_next: Array, c_next: Array, last: Array, *, rho, beta, decay, threshold
) -> Array:
    """Full spike right-hand side at the given steps from its fixed part and layer l's own state.

    ``rhs = fixed + (beta/rho) H(z_t) - threshold * w_{t+1} [t < T]`` with
    ``w_{t+1} = z_{t+1} - decay z_t - c_{t+1}``. Works on whole sequences (with shifted
    ``z_next``/``c_next``) and on single steps alike.
    """
    dtype = z.dtype
    rho, beta, decay, threshold = (jnp.asarray(v, dtype) for v in (rho, beta, decay, threshold))
    h = (z > threshold).astype(dtype)
    w = z_next - decay * z - c_next
    return fixed + (beta / rho) * h - jnp.where(last, 0, threshold * w)


def spike_shifts(*, rho, beta, threshold, dtype) -> tuple[Array, Array]:
    """The two diagonal shifts of M: ``threshold^2 + beta/rho`` (t < T) and ``beta/rho`` (t = T).

    Example:
      >>> import jax.numpy as jnp
      >>> [float(v) for v in spike_shifts(rho=1.0, beta=0.5, threshold=1.0, dtype=jnp.float32)]
      [1.5, 0.5]
    """
    rho, beta, threshold = (jnp.asarray(v, dtype) for v in (rho, beta, threshold))
    return threshold * threshold + beta / rho, beta / rho


def spike_update(
    z: Seq, a_prev: Seq, weight: Array, bias: Array | None, z_up: Seq, a_up: Seq | None,
    weight_up: Array, bias_up: Array | None, dual: Array | None = None, *,
    rho: ArrayLike, beta: ArrayLike, decay: ArrayLike, threshold: ArrayLike, clip: bool = True,
) -> Seq:
    """U2: the relaxed spikes of hidden layer l at every step (vectorised over time; exact up to the clip).

    a_{l,t} enters the next layer's constraint at t, its own reset at t+1 and the beta penalty:

        M_t = W_{l+1}^T W_{l+1} + (threshold^2 [t < T] + beta/rho) I
        b   = W_{l+1}^T e_{l+1,t} - threshold w_{l,t+1} [t < T] + (beta/rho) H(z_{l,t})
              + [l = L-1, t = T] W_L^T Lambda / rho
        a_{l,t} = clip(M_t^{-1} b, 0, 1)

    The a_{l,t} are decoupled across t, so updating every step at once is the exact block
    minimiser (before the clip, which is exact only for diagonal ``W^T W``).

    Args:
      z: layer l's potentials ``(N, T, d)``.
      a_prev: layer l-1's spikes (or the inputs) ``(N, T, d_{l-1})``.
      weight, bias: layer l's weights ``(d, d_{l-1})`` and bias (or None).
      z_up, a_up: layer l+1's potentials and spikes (``a_up=None`` when l+1 is the readout).
      weight_up, bias_up: layer l+1's weights ``(d_up, d)`` and bias.
      dual: multiplier ``(N, d_L)`` when l+1 is the readout, else None.
      rho, beta, decay, threshold: hyperparameters (beta > 0 keeps M_T nonsingular).
      clip: clip to [0, 1] (False gives the unconstrained minimiser, for tests and analysis).

    Returns:
      The new ``a_l`` ``(N, T, d)``.

    Example:
      >>> import jax.numpy as jnp
      >>> z, x = jnp.full((1, 3, 2), 2.0), jnp.ones((1, 3, 2))
      >>> a = spike_update(z, x, jnp.eye(2), None, jnp.ones((1, 3, 1)), None, jnp.ones((1, 2)), None,
      ...                  jnp.zeros((1, 1)), rho=1.0, beta=0.1, decay=0.9, threshold=1.0)
      >>> a.shape
      (1, 3, 2)
    """
    dtype = z.dtype
    fixed = spike_rhs_fixed(z_up, a_up, weight_up, bias_up, dual, rho=rho, decay=decay, threshold=threshold)
    c = currents(a_prev, weight, bias)
    last = last_step_mask(z.shape[-2])
    rhs = spike_rhs(fixed, z, shift_next(z), shift_next(c), last, rho=rho, beta=beta, decay=decay,
                    threshold=threshold)
    s_inner, s_last = spike_shifts(rho=rho, beta=beta, threshold=threshold, dtype=dtype)
    inner = solve_spike_system(spike_system(weight_up, s_inner), rhs[..., :-1, :])
    final = solve_spike_system(spike_system(weight_up, s_last), rhs[..., -1:, :])
    a_new = jnp.concatenate([inner, final], axis=-2)
    return jnp.clip(a_new, 0, 1) if clip else a_new


# ----------------------------------------------------------------------------- U3 / U5: membranes


def hidden_membrane_step(c, c_next, z_prev, z_next, a, a_prev_t, last, *, rho, beta, decay, threshold):
    """U3 at given steps from explicit neighbours: ``q = c_t + decay z_{t-1} - threshold a_{t-1}``,
    ``r = z_{t+1} - c_{t+1}``, then :func:`jsnn.optim.heaviside.heaviside_prox`."""
    dtype = c.dtype
    decay_, threshold_ = jnp.asarray(decay, dtype), jnp.asarray(threshold, dtype)
    q = c + decay_ * z_prev - threshold_ * a_prev_t
    r = z_next - c_next
    return heaviside_prox(q, r, a, rho=rho, beta=beta, decay=decay, threshold=threshold, last=last)


def hidden_membrane_update(
    z: Seq, a: Seq, c: Seq, *, rho: ArrayLike, beta: ArrayLike, decay: ArrayLike, threshold: ArrayLike,
    sweep: str = "red_black",
) -> Seq:
    """U3: hidden potentials by the exact Heaviside subroutine, vectorised over time.

    ``z_{l,t}`` couples only to ``z_{l,t-1}`` and ``z_{l,t+1}``. ``sweep="jacobi"`` updates every
    step from the old neighbours (vectorised, not a block minimiser: it can raise L_rho);
    ``sweep="red_black"`` updates even steps, then odd steps from the new even ones (an exact
    block minimisation, still vectorised). The time-unrolled Gauss-Seidel sweep lives in
    :func:`jsnn.optim.admm.admm_step`, interleaved with the spike update as in the reference.

    Args:
      z: layer l's potentials ``(N, T, d)``.
      a: layer l's relaxed spikes.
      c: layer l's input currents ``W_l a_{l-1} + b_l`` (see :func:`currents`).
      rho, beta, decay, threshold: hyperparameters.
      sweep: ``"jacobi"`` or ``"red_black"``.

    Returns:
      The new ``z_l``.

    Example:
      >>> import jax.numpy as jnp
      >>> z = hidden_membrane_update(jnp.zeros((1, 4, 2)), jnp.ones((1, 4, 2)), jnp.full((1, 4, 2), 2.0),
      ...                            rho=1.0, beta=0.1, decay=0.9, threshold=1.0)
      >>> z.shape
      (1, 4, 2)
    """
    last = last_step_mask(z.shape[-2])
    kw = dict(rho=rho, beta=beta, decay=decay, threshold=threshold)

    def proposal(z):
        return hidden_membrane_step(c, shift_next(c), shift_prev(z), shift_next(z), a, shift_prev(a), last, **kw)

    if sweep == "jacobi":
        return proposal(z)
    if sweep == "red_black":
        even = (jnp.arange(z.shape[-2]) % 2 == 0)[:, None]
        z = jnp.where(even, proposal(z), z)
        return jnp.where(even, z, proposal(z))
    raise ValueError(f"sweep must be 'jacobi' or 'red_black' here; got {sweep!r}.")


def readout_membrane_step(c, z_prev, z_next, c_next, y, dual, last, penult, *, rho, decay):
    """U5 at given steps from explicit neighbours, with ``s_t = c_t + decay z_{t-1}``:

        t < T:  z_t = (s_t + decay (z_{t+1} - c_{t+1}) + [t = T-1] decay Lambda / rho) / (1 + decay^2)
        t = T:  z_T = (rho s_T + 2 y - Lambda) / (2 + rho)
    """
    dtype = c.dtype
    rho, decay = jnp.asarray(rho, dtype), jnp.asarray(decay, dtype)
    s = c + decay * z_prev
    inner = (s + decay * (z_next - c_next) + jnp.where(penult, decay * dual / rho, 0)) / (1 + decay * decay)
    final = (rho * s + 2 * y - dual) / (2 + rho)
    return jnp.where(last, final, inner)


def readout_membrane_update(
    z: Seq, c: Seq, y: Float[Array, "N d_L"], dual: Float[Array, "N d_L"], *, rho: ArrayLike, decay: ArrayLike,
    sweep: str = "exact",
) -> Seq:
    """U5: readout potentials.

    ``sweep="exact"`` minimises over the whole readout block at once: per unit and sample one
    symmetric tridiagonal system with diagonal rho(1+decay^2) (rho+2 at t = T), off-diagonal
    -rho*decay and right-hand side rho(c_t - decay c_{t+1}) + [t = T-1] decay Lambda
    (rho c_T + 2y - Lambda at t = T). ``"jacobi"`` and ``"red_black"`` apply the per-step
    closed form of :func:`readout_membrane_step` from old neighbours / in two colours.

    Args:
      z: readout potentials ``(N, T, d_L)``.
      c: readout currents ``W_L a_{L-1} + b_L``.
      y: targets (one-hot labels) ``(N, d_L)``.
      dual: multiplier ``(N, d_L)``.
      rho, decay: hyperparameters.
      sweep: ``"exact"``, ``"jacobi"`` or ``"red_black"``.

    Returns:
      The new ``z_L``.

    Example:
      >>> import jax.numpy as jnp
      >>> z = readout_membrane_update(jnp.zeros((1, 3, 2)), jnp.ones((1, 3, 2)), jnp.eye(2)[:1],
      ...                             jnp.zeros((1, 2)), rho=1.0, decay=0.9)
      >>> z.shape
      (1, 3, 2)
    """
    dtype = z.dtype
    num_steps = z.shape[-2]
    last = last_step_mask(num_steps)
    penult = (jnp.arange(num_steps) == num_steps - 2)[:, None]
    y_t, dual_t = y[..., None, :], dual[..., None, :]
    if sweep == "exact":
        rho_, decay_ = jnp.asarray(rho, dtype), jnp.asarray(decay, dtype)
        diag = jnp.where(last, rho_ + 2, rho_ * (1 + decay_ * decay_))
        rhs = jnp.where(last, rho_ * c + 2 * y_t - dual_t,
                        rho_ * (c - decay_ * shift_next(c)) + jnp.where(penult, decay_ * dual_t, 0))
        # tridiagonal_solve works on the last two axes (T, columns): put units in columns.
        rhs_tm = jnp.swapaxes(rhs, -1, -2)  # (N, d, T)
        n_sys = rhs_tm.shape[:-1]
        off = jnp.full((num_steps,), -rho_ * decay_, dtype)
        dl = jnp.broadcast_to(off.at[0].set(0), n_sys + (num_steps,))
        du = jnp.broadcast_to(off.at[-1].set(0), n_sys + (num_steps,))
        dd = jnp.broadcast_to(diag[:, 0], n_sys + (num_steps,))
        sol = jax.lax.linalg.tridiagonal_solve(dl, dd, du, rhs_tm[..., None])[..., 0]
        return jnp.swapaxes(sol, -1, -2)

    def proposal(z):
        return readout_membrane_step(c, shift_prev(z), shift_next(z), shift_next(c), y_t, dual_t, last, penult,
                                     rho=rho, decay=decay)

    if sweep == "jacobi":
        return proposal(z)
    if sweep == "red_black":
        even = (jnp.arange(num_steps) % 2 == 0)[:, None]
        z = jnp.where(even, proposal(z), z)
        return jnp.where(even, z, proposal(z))
    raise ValueError(f"sweep must be 'exact', 'jacobi' or 'red_black' here; got {sweep!r}.")


# ----------------------------------------------------------------------------- U6 and L_rho


def dual_update(
    dual: Float[Array, "N d_L"], z: Seq, c: Seq, *, rho: ArrayLike, decay: ArrayLike
) -> Float[Array, "N d_L"]:
    """U6: ``Lambda <- Lambda + rho (z_{L,T} - decay z_{L,T-1} - W_L a_{L-1,T} - b_L)``.

    Args:
      dual: multiplier ``(N, d_L)``.
      z: readout potentials ``(N, T, d_L)``.
      c: readout currents ``(N, T, d_L)``.
      rho, decay: hyperparameters.

    Returns:
      The new multiplier.

    Example:
      >>> import jax.numpy as jnp
      >>> dual_update(jnp.zeros((1, 1)), jnp.ones((1, 2, 1)), jnp.zeros((1, 2, 1)), rho=2.0, decay=0.5).tolist()
      [[1.0]]
    """
    dtype = z.dtype
    prev = z[..., -2, :] if z.shape[-2] > 1 else jnp.zeros_like(z[..., -1, :])
    residual = z[..., -1, :] - jnp.asarray(decay, dtype) * prev - c[..., -1, :]
    return dual + jnp.asarray(rho, dtype) * residual


def augmented_lagrangian(
    weights: list[tuple[Array, Array | None]], z: list[Seq], a: list[Seq], dual: Array, x: Seq, y: Array, *,
    rho: ArrayLike, beta: ArrayLike, decay: ArrayLike, threshold: ArrayLike, mask: Float[Array, " N"] | None = None,
) -> dict[str, Array]:
    """L_rho of ALGORITHMS §1.2 and its parts, for monitoring.

    Args:
      weights: ``[(W_l, b_l)]`` for l = 1..L.
      z: potentials of every layer (readout last), each ``(N, T, d_l)``.
      a: relaxed spikes of the hidden layers.
      dual: multiplier ``(N, d_L)``.
      x: inputs ``(N, T, d_0)``.
      y: targets ``(N, d_L)``.
      rho, beta, decay, threshold: hyperparameters.
      mask: optional per-sample weights (0 for padding samples).

    Returns:
      dict with ``lagrangian``, ``loss`` (sum of ``||z_{L,T} - y||^2``), ``dual_term``, and the
      sums of squares ``cz`` (per layer) and ``ca`` (per hidden layer).

    Example:
      >>> import jax.numpy as jnp
      >>> out = augmented_lagrangian([(jnp.zeros((1, 2)), None)], [jnp.zeros((1, 3, 1))], [],
      ...                            jnp.zeros((1, 1)), jnp.ones((1, 3, 2)), jnp.ones((1, 1)),
      ...                            rho=1.0, beta=0.1, decay=0.9, threshold=1.0)
      >>> float(out["lagrangian"])
      1.0
    """
    dtype = x.dtype
    rho_, beta_, threshold_ = (jnp.asarray(v, dtype) for v in (rho, beta, threshold))
    inputs = [x] + list(a)
    cz, ca = [], []
    for l, ((w, b), z_l) in enumerate(zip(weights, z, strict=True)):
        hidden = l < len(weights) - 1
        res = membrane_targets(z_l, a[l] if hidden else None, decay=decay, threshold=threshold)
        res = res - currents(inputs[l], w, b)
        cz.append(res)
        if hidden:
            ca.append(a[l] - (z_l > threshold_).astype(dtype))
    def total(v):  # sum over samples (weighted by the mask) of per-sample sums
        per_sample = jnp.sum(v.reshape(v.shape[0], -1), axis=1)
        return jnp.sum(per_sample if mask is None else per_sample * mask)

    last_res = cz[-1][..., -1, :]
    loss = total((z[-1][..., -1, :] - y) ** 2)
    dual_term = total(dual * last_res)
    cz_sq = [total(r * r) for r in cz]
    ca_sq = [total(r * r) for r in ca]
    lag = loss + dual_term + rho_ / 2 * sum(cz_sq) + beta_ / 2 * sum(ca_sq, jnp.zeros((), dtype))
    return {"lagrangian": lag, "loss": loss, "dual_term": dual_term, "cz": cz_sq, "ca": ca_sq,
            "primal": total(last_res * last_res)}
