"""Heaviside spike functions with surrogate derivatives.

The forward pass of every surrogate is the exact step ``1[x > 0]`` (or ``1[x >= 0]``),
where ``x = v - threshold``. The backward pass replaces the Dirac delta by a smooth
pseudo-derivative. Each surrogate is an Equinox module whose ``slope`` is an ordinary
leaf, so it can be traced, vmapped over in a sweep, or learned.

References:
  Neftci, Mostafa, Zenke, "Surrogate gradient learning in spiking neural networks",
  arXiv 1901.09948.
  Zenke, Ganguli, "SuperSpike: supervised learning in multilayer spiking neural
  networks", arXiv 1705.11146 (fast sigmoid).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "Arctan",
    "FastSigmoid",
    "StraightThrough",
    "Surrogate",
    "Triangle",
    "heaviside",
]


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def heaviside(
    derivative: Callable[[Array, Array], Array],
    inclusive: bool,
    x: Float[Array, "..."],
    slope: Float[ArrayLike, ""],
) -> Float[Array, "..."]:
    """Step function ``1[x > 0]`` (``1[x >= 0]`` when ``inclusive``) with a custom derivative.

    Args:
      derivative: ``derivative(x, slope)``, the surrogate used in place of the Dirac delta.
      inclusive: whether ``x == 0`` spikes (``>=`` comparison).
      x: distance to threshold, ``v - threshold``.
      slope: sharpness of the surrogate; gets no gradient.

    Returns:
      Spikes in ``{0, 1}`` with the dtype of ``x``.
    """
    del derivative, slope
    fired = x >= 0 if inclusive else x > 0
    return fired.astype(x.dtype)


@heaviside.defjvp
def _heaviside_jvp(derivative, inclusive, primals, tangents):
    x, slope = primals
    dx, _ = tangents
    out = heaviside(derivative, inclusive, x, slope)
    return out, derivative(x, jnp.asarray(slope, x.dtype)) * dx


def _fast_sigmoid(x: Array, k: Array) -> Array:
    return 1.0 / (1.0 + k * jnp.abs(x)) ** 2


def _arctan(x: Array, k: Array) -> Array:
    return (k / 2) / (1.0 + (jnp.pi / 2 * k * x) ** 2)


def _triangle(x: Array, k: Array) -> Array:
    return k * jnp.maximum(0.0, 1.0 - k * jnp.abs(x))


def _straight_through(x: Array, k: Array) -> Array:
    return jnp.broadcast_to(k, x.shape)


class Surrogate(eqx.Module):
    """Base class: a spike function ``1[x > 0]`` whose backward pass is ``derivative``.

    Subclasses set the class attribute ``_derivative``.
    """

    slope: float | Array = 25.0

    _derivative = staticmethod(_fast_sigmoid)

    def derivative(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """The pseudo-derivative at ``x = v - threshold``."""
        return type(self)._derivative(x, jnp.asarray(self.slope, x.dtype))

    def __call__(self, x: Float[Array, "..."], *, inclusive: bool = False) -> Float[Array, "..."]:
        """Spikes of ``x = v - threshold``; ``inclusive`` selects the ``>=`` comparison."""
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"surrogate spike functions need floating-point input; got {x.dtype}.")
        return heaviside(type(self)._derivative, inclusive, x, self.slope)


class FastSigmoid(Surrogate):
    """Fast-sigmoid (SuperSpike) surrogate: d/dx = 1 / (1 + slope*|x|)^2.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> sg = FastSigmoid(slope=25.0)
      >>> float(jax.grad(lambda x: sg(x))(jnp.float32(0.0)))
      1.0

    References:
      Zenke, Ganguli, "SuperSpike", arXiv 1705.11146.
    """

    _derivative = staticmethod(_fast_sigmoid)


class Arctan(Surrogate):
    """Arctan surrogate: d/dx = (slope/2) / (1 + (pi/2 * slope * x)^2); it integrates to 1.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> float(jax.grad(Arctan(slope=2.0))(jnp.float32(0.0)))
      1.0

    References:
      Fang et al., "Incorporating learnable membrane time constant to enhance learning
      of spiking neural networks", arXiv 2007.05785.
    """

    slope: float | Array = 2.0
    _derivative = staticmethod(_arctan)


class Triangle(Surrogate):
    """Triangle surrogate: d/dx = slope * max(0, 1 - slope*|x|); it integrates to 1.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> float(jax.grad(Triangle(slope=1.0))(jnp.float32(0.5)))
      0.5

    References:
      Esser et al., "Convolutional networks for fast, energy-efficient neuromorphic
      computing", arXiv 1603.08270.
    """

    slope: float | Array = 1.0
    _derivative = staticmethod(_triangle)


class StraightThrough(Surrogate):
    """Straight-through estimator: d/dx = slope everywhere (1 by default).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> float(jax.grad(StraightThrough())(jnp.float32(3.0)))
      1.0

    References:
      Bengio, Leonard, Courville, "Estimating or propagating gradients through
      stochastic neurons for conditional computation", arXiv 1308.3432.
    """

    slope: float | Array = 1.0
    _derivative = staticmethod(_straight_through)
