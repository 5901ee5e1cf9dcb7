"""Weight-norm reparameterisations that keep the equilibrium map contractive (ALGORITHMS §3.4).

* :class:`SpectralNorm` (IDE): ``W = clip(g, -1, 1) W~ / sigma(W~)``, ``g`` learnable and initialised
  to the initial spectral norm (10 power iterations); ``sigma`` from **one** power iteration per
  forward, its vector ``u`` carried as explicit (non-trained) state. With ``V = 2`` the map's
  Jacobian then has norm <= 1/2.
* :class:`FrobeniusNorm` (SPIDE): ``W = W~ min(f, c) / f`` with ``f^2`` the mean of
  ``||W~^T v_k||^2`` over 64 fresh Gaussian probes ``v_k`` (unbiased for ``||W~||_F^2``; needs a key).

Both act on the *operator* of a ``Linear`` or ``Conv2d`` layer (its bias is left alone), so a
convolution's norm is that of the whole map on its input shape. ``materialize`` returns the
effective plain layer, differentiably in the underlying parameters.

References:
  Miyato et al., "Spectral normalization for generative adversarial networks", arXiv 1802.05957.
  Xiao et al., arXiv 2109.14247 (IDE); Xiao et al., arXiv 2302.00232 (SPIDE).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

__all__ = ["FrobeniusNorm", "SpectralNorm", "linear_part", "materialize", "trainable", "update_norms", "wrap_norm"]


def linear_part(layer):
    """The linear part ``x -> W x`` of an affine layer or tuple of layers (every bias dropped)."""
    if isinstance(layer, tuple):
        return tuple(linear_part(sub) for sub in layer)
    if getattr(layer, "bias", None) is None:
        return layer
    return eqx.tree_at(lambda m: m.bias, layer, None, is_leaf=lambda x: x is None)


def _normalize(x: Array) -> Array:
    return x / (jnp.linalg.norm(x.reshape(-1)) + 1e-12)


def _transpose(layer, input_shape, dtype):
    return jax.linear_transpose(linear_part(layer), jax.ShapeDtypeStruct(input_shape, dtype))


def _power_step(layer, u: Array, input_shape) -> tuple[Array, Array]:
    """``v = normalize(W^T u)``, ``u' = normalize(W v)``."""
    (v,) = _transpose(layer, input_shape, u.dtype)(u)
    v = _normalize(v)
    return _normalize(linear_part(layer)(v)), v


class SpectralNorm(eqx.Module):
    """``W = clip(scale, -1, 1) W~ / sigma(W~)`` with ``sigma`` from a carried power iteration.

    Attributes:
      layer: the underlying layer ``W~`` (``jsnn.nn.Linear`` or ``Conv2d``).
      scale: learnable ``g``.
      u: the carried left singular vector estimate (output-shaped; excluded from training by
        :func:`trainable`, updated by :meth:`power_iteration`).
      input_shape: the shape the layer acts on.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jsnn.nn import Linear
      >>> sn = SpectralNorm(Linear(5, 5, use_bias=False, key=jax.random.key(0)), (5,), key=jax.random.key(1))
      >>> w = sn.materialize().weight
      >>> bool(jnp.linalg.norm(w, 2) <= 1.0 + 1e-3)
      True
    """

    layer: eqx.Module
    scale: Array
    u: Array
    input_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, layer, input_shape, *, iters: int = 10, key: PRNGKeyArray):
        self.layer = layer
        self.input_shape = tuple(input_shape)
        dtype = layer.weight.dtype
        out_shape = jax.eval_shape(layer, jax.ShapeDtypeStruct(self.input_shape, dtype)).shape
        u = _normalize(jax.random.normal(key, out_shape, dtype))
        for _ in range(iters):
            u, v = _power_step(layer, u, self.input_shape)
        self.u = u
        self.scale = jnp.sum(u * linear_part(layer)(v))

    def power_iteration(self) -> SpectralNorm:
        """One power iteration: a copy with the updated ``u`` (no gradient flows through it)."""
        u, _ = _power_step(self.layer, jax.lax.stop_gradient(self.u), self.input_shape)
        return eqx.tree_at(lambda m: m.u, self, jax.lax.stop_gradient(u))

    def sigma(self) -> Array:
        """``sigma = u^T W~ v`` with ``v = normalize(W~^T u)``; differentiable in ``W~``, not in ``u, v``."""
        u = jax.lax.stop_gradient(self.u)
        (v,) = _transpose(jax.lax.stop_gradient(self.layer), self.input_shape, u.dtype)(u)
        v = jax.lax.stop_gradient(_normalize(v))
        return jnp.sum(u * linear_part(self.layer)(v))

    def materialize(self, *, key: PRNGKeyArray | None = None):
        """The effective layer with weight ``clip(scale, -1, 1) W~ / sigma``."""
        factor = jnp.clip(self.scale, -1.0, 1.0) / self.sigma()
        return eqx.tree_at(lambda m: m.weight, self.layer, factor * self.layer.weight)

    def __call__(self, x: Array) -> Array:
        return self.materialize()(x)


class FrobeniusNorm(eqx.Module):
    """``W = W~ min(f, c) / f``, ``f`` the probe estimate of the Frobenius norm of the operator ``W~``.

    Attributes:
      layer: the underlying layer ``W~``.
      bound: ``c``.
      input_shape: the shape the layer acts on.
      probes: number of Gaussian probes (64).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jsnn.nn import Linear
      >>> fn = FrobeniusNorm(Linear(20, 20, use_bias=False, scale=10.0, key=jax.random.key(0)), (20,), bound=1.0)
      >>> w = fn.materialize(key=jax.random.key(1)).weight
      >>> bool(jnp.linalg.norm(w) < 1.5)
      True
    """

    layer: eqx.Module
    bound: float = eqx.field(static=True)
    input_shape: tuple[int, ...] = eqx.field(static=True)
    probes: int = eqx.field(static=True)

    def __init__(self, layer, input_shape, *, bound: float, probes: int = 64):
        if not bound > 0:
            raise ValueError(f"the Frobenius bound c must be positive; got {bound}.")
        self.layer, self.bound, self.input_shape, self.probes = layer, float(bound), tuple(input_shape), int(probes)

    def norm_estimate(self, *, key: PRNGKeyArray) -> Array:
        """``f = sqrt(mean_k ||W~^T v_k||^2)``, ``v_k ~ N(0, I)`` on the output space."""
        dtype = self.layer.weight.dtype
        out_shape = jax.eval_shape(self.layer, jax.ShapeDtypeStruct(self.input_shape, dtype)).shape
        v = jax.random.normal(key, (self.probes, *out_shape), dtype)
        transpose = _transpose(self.layer, self.input_shape, dtype)
        wt_v = jax.vmap(lambda p: transpose(p)[0])(v)
        return jnp.sqrt(jnp.mean(jnp.sum(wt_v.reshape(self.probes, -1) ** 2, axis=1)))

    def materialize(self, *, key: PRNGKeyArray | None = None):
        """The effective layer; needs a fresh ``key`` for the probes."""
        if key is None:
            raise ValueError("FrobeniusNorm.materialize needs key= for its random probes.")
        f = self.norm_estimate(key=key)
        return eqx.tree_at(lambda m: m.weight, self.layer, (jnp.minimum(f, self.bound) / f) * self.layer.weight)

    def __call__(self, x: Array) -> Array:  # shape inference only: the unnormalised operator
        return self.layer(x)


def wrap_norm(layer, input_shape, norm: str, *, bound: float = 1.0, key: PRNGKeyArray):
    """``layer`` wrapped in the named restriction: "spectral", "frobenius" or "none"."""
    if norm == "spectral":
        return SpectralNorm(layer, input_shape, key=key)
    if norm == "frobenius":
        return FrobeniusNorm(layer, input_shape, bound=bound)
    if norm == "none":
        return layer
    raise ValueError(f"norm must be 'spectral', 'frobenius' or 'none'; got {norm!r}.")


def _is_norm(x) -> bool:
    return isinstance(x, (SpectralNorm, FrobeniusNorm))


def materialize(net, *, key: PRNGKeyArray | None = None):
    """``net`` with every reparameterised module replaced by its effective layer (one key per module)."""
    leaves, treedef = jax.tree.flatten(net, is_leaf=_is_norm)
    out = []
    for i, leaf in enumerate(leaves):
        if _is_norm(leaf):
            leaf = leaf.materialize(key=None if key is None else jax.random.fold_in(key, i))
        out.append(leaf)
    return jax.tree.unflatten(treedef, out)


def update_norms(net):
    """``net`` after one power iteration of every :class:`SpectralNorm` in it."""
    return jax.tree.map(lambda m: m.power_iteration() if isinstance(m, SpectralNorm) else m, net, is_leaf=_is_norm)


def trainable(net):
    """Filter spec for the trained leaves: the inexact arrays, except the carried power-iteration vectors."""
    spec = jax.tree.map(eqx.is_inexact_array, net)

    def fix(m):
        return eqx.tree_at(lambda s: s.u, m, False) if isinstance(m, SpectralNorm) else m

    return jax.tree.map(fix, spec, is_leaf=_is_norm)
