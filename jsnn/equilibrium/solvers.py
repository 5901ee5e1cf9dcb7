"""Linear solvers for the implicit backward system ``(I - J^T) y = g`` (ALGORITHMS §3.3).

Each solver takes the matrix-free ``jt(y) = J^T y`` (a vjp), the right-hand side ``g`` and returns
``(y, iterations, relative_residual)`` with ``relative_residual = ||(I - J^T) y - g|| / ||g||``
(0 for ``g = 0``). They act on one sample (flat vector); batch with ``jax.vmap``.

* ``fixed_point``: ``y <- (1 - beta) y + beta (J^T y + g)``; converges when ``||J|| < 1`` (``<= 1/2``
  after the spectral restriction). Not the authors' halved "iter" option
  ``y <- (J^T y + g)/2``, whose fixed point ``(2I - J^T)^{-1} g`` is wrong.
* ``broyden``: good Broyden on ``r(y) = J^T y - y + g`` from ``y = 0``, returning the
  lowest-residual iterate (the authors' default).
* ``gmres`` / ``bicgstab``: ``jax.scipy.sparse.linalg`` with ``y -> y - J^T y`` as the operator; they
  report no iteration count (``iterations = -1``).

References:
  Broyden, "A class of methods for solving nonlinear simultaneous equations", Math. Comp. 1965.
  Bai, Kolter, Koltun, "Deep equilibrium models", arXiv 1909.01377.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["SOLVERS", "bicgstab", "broyden", "fixed_point", "gmres"]

Matvec = Callable[[Array], Array]


def _rel(r: Array, gnorm: Array) -> Array:
    return jnp.where(gnorm > 0, jnp.linalg.norm(r) / jnp.where(gnorm > 0, gnorm, 1.0), jnp.linalg.norm(r))


def fixed_point(jt: Matvec, g: Float[Array, " n"], *, tol: float, max_iter: int,
                damping: float = 1.0) -> tuple[Array, Array, Array]:
    """Damped fixed-point iteration ``y <- (1 - beta) y + beta (J^T y + g)`` from ``y = g``."""
    gnorm = jnp.linalg.norm(g)

    def cond(c):
        _, k, rel = c
        return (k < max_iter) & ~(rel <= tol)

    def body(c):
        y, k, _ = c
        step = jt(y) + g - y  # the residual of the current iterate
        return y + damping * step, k + 1, _rel(step, gnorm)

    y, k, _ = jax.lax.while_loop(cond, body, (g, jnp.int32(0), jnp.asarray(jnp.inf, g.dtype)))
    return y, k, _rel(jt(y) + g - y, gnorm)


def broyden(jt: Matvec, g: Float[Array, " n"], *, tol: float, max_iter: int) -> tuple[Array, Array, Array]:
    """Good Broyden on ``r(y) = J^T y - y + g`` from ``y = 0``; the lowest-residual iterate.

    The inverse Jacobian estimate is ``B = -I + sum_i u_i v_i^T`` (rank ``max_iter``), updated by
    ``B += (dy - B dr)(dy^T B) / (dy^T B dr)``; the step is ``-B r``.
    """
    n = g.shape[0]
    gnorm = jnp.linalg.norm(g)
    U = jnp.zeros((max_iter, n), g.dtype)
    Vt = jnp.zeros((max_iter, n), g.dtype)

    def b_mul(U, Vt, z):  # B z
        return -z + U.T @ (Vt @ z)

    def bt_mul(U, Vt, z):  # B^T z
        return -z + Vt.T @ (U @ z)

    def cond(c):
        k, *_, best_rel = c
        return (k < max_iter) & ~(best_rel <= tol)

    def body(c):
        k, y, r, U, Vt, best_y, best_rel = c
        dy = -b_mul(U, Vt, r)
        y_new = y + dy
        r_new = jt(y_new) - y_new + g
        dr = r_new - r
        b_dr = b_mul(U, Vt, dr)
        denom = jnp.dot(dy, b_dr)
        ok = jnp.abs(denom) > 1e-30
        u = jnp.where(ok, (dy - b_dr) / jnp.where(ok, denom, 1.0), 0.0)
        v = jnp.where(ok, bt_mul(U, Vt, dy), 0.0)
        U, Vt = U.at[k].set(u), Vt.at[k].set(v)
        rel = _rel(r_new, gnorm)
        better = rel < best_rel
        return (k + 1, y_new, r_new, U, Vt, jnp.where(better, y_new, best_y), jnp.where(better, rel, best_rel))

    y0 = jnp.zeros_like(g)
    init = (jnp.int32(0), y0, g, U, Vt, y0, _rel(g, gnorm))
    k, *_, best_y, best_rel = jax.lax.while_loop(cond, body, init)
    return best_y, k, best_rel


def _krylov(method, jt: Matvec, g: Array, *, tol: float, max_iter: int) -> tuple[Array, Array, Array]:
    y, _ = method(lambda y: y - jt(y), g, tol=tol, atol=0.0, maxiter=max_iter)
    return y, jnp.int32(-1), _rel(jt(y) + g - y, jnp.linalg.norm(g))


def gmres(jt: Matvec, g: Float[Array, " n"], *, tol: float, max_iter: int) -> tuple[Array, Array, Array]:
    """Restarted GMRES (``jax.scipy.sparse.linalg.gmres``) on ``(I - J^T) y = g``."""
    return _krylov(jax.scipy.sparse.linalg.gmres, jt, g, tol=tol, max_iter=max_iter)


def bicgstab(jt: Matvec, g: Float[Array, " n"], *, tol: float, max_iter: int) -> tuple[Array, Array, Array]:
    """BiCGSTAB (``jax.scipy.sparse.linalg.bicgstab``) on ``(I - J^T) y = g``."""
    return _krylov(jax.scipy.sparse.linalg.bicgstab, jt, g, tol=tol, max_iter=max_iter)


#: solver name -> function ``(jt, g, *, tol, max_iter) -> (y, iterations, relative residual)``
SOLVERS: dict[str, Callable] = {"fixed_point": fixed_point, "broyden": broyden, "gmres": gmres, "bicgstab": bicgstab}
