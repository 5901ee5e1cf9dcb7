"""The equilibrium of a feedback SNN as a differentiable function: IDE (and SPIDE) backward passes.

:func:`equilibrium` simulates ``T`` steps (no gradient, memory independent of ``T``) and returns the
last layer's rate ``a_T`` bit for bit. Its ``custom_vjp`` replaces back-propagation through time by
the implicit function theorem at the equilibrium ``a = f(a)`` of the composite map (ALGORITHMS §3.3):

    solve (I - J^T) g = dL/da,   J = df/da taken at a_T;   dL/dp = (df/dp)^T g   (one vjp)

so ``jax.grad`` of any loss of ``a_T`` is the IDE gradient, and composes with optax in a user's own
jitted step. With ``config.backward="spide"`` the same function's backward pass is SPIDE's spiking
one (:mod:`jsnn.equilibrium.spide`). For a multi-layer net, ``J`` is the composite map's Jacobian
at the simulated last-layer rate ``a_{N-1}(T)`` (as IDE's single-layer module).

References:
  Xiao et al., "Training feedback spiking neural networks by implicit differentiation on the
  equilibrium state", arXiv 2109.14247.
  Xiao et al., "SPIDE: a purely spike-based method for training feedback spiking neural
  networks", arXiv 2302.00232.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jsnn.equilibrium.config import EquilibriumConfig
from jsnn.equilibrium.network import FeedbackNet, simulate_rates
from jsnn.equilibrium.reparam import FrobeniusNorm, SpectralNorm
from jsnn.equilibrium.solvers import SOLVERS
from jsnn.equilibrium.spide import local_gradients, spiking_backward
from jsnn.nn import Conv2d, Linear

__all__ = ["BACKWARD_STATS", "EquilibriumInfo", "backward_stats", "equilibrium", "fan_in", "fan_out", "implicit_vjp"]

#: the entries of the ``probe`` gradient, in order (see :func:`equilibrium`)
BACKWARD_STATS = ("solver_iterations", "solver_residual", "backward_rate", "backward_syn_ops")


class EquilibriumInfo(NamedTuple):
    """Forward statistics of a batch (not differentiated).

    Attributes:
      rates: every layer's rate, each ``(B, ...)``.
      firing_rate: mean spikes per neuron and step over all layers and samples.
      residual: max over samples of ``||f(a_T) - a_T||_inf``, the distance from the equilibrium.
      syn_ops: mean synaptic operations per sample (spikes times fan-out, over all steps).
    """

    rates: tuple[Array, ...]
    firing_rate: Array
    residual: Array
    syn_ops: Array


def _layer_fan(layer, out: bool) -> int:
    if isinstance(layer, tuple):
        return _layer_fan(layer[0 if out else -1], out)
    if isinstance(layer, (SpectralNorm, FrobeniusNorm)):
        return _layer_fan(layer.layer, out)
    if isinstance(layer, Linear):
        return layer.out_features if out else layer.in_features
    if isinstance(layer, Conv2d):
        cout, cin, kh, kw = layer.weight.shape
        if out:
            return cout * math.ceil(kh / layer.stride[0]) * math.ceil(kw / layer.stride[1])
        return cin * kh * kw
    raise TypeError(f"no fan-in/out rule for {type(layer).__name__}")


def fan_out(layer) -> int:
    """Synapses per presynaptic spike of a ``Linear`` / ``Conv2d`` connection (interior estimate for convs)."""
    return _layer_fan(layer, True)


def fan_in(layer) -> int:
    """Synapses per postsynaptic neuron (what one backward spike of a post neuron drives)."""
    return _layer_fan(layer, False)


def backward_stats(probe_grad: Float[Array, " 4"]) -> dict[str, Array]:
    """Name the entries of the ``probe`` gradient (:data:`BACKWARD_STATS`)."""
    return dict(zip(BACKWARD_STATS, probe_grad))


def _check_materialized(net: FeedbackNet) -> None:
    leaves = jax.tree.leaves(net, is_leaf=lambda m: isinstance(m, (SpectralNorm, FrobeniusNorm)))
    if any(isinstance(m, (SpectralNorm, FrobeniusNorm)) for m in leaves):
        raise ValueError("equilibrium() needs a materialised net: call net.materialize(key=...) first, inside "
                         "the function you differentiate, so the weight norm is part of the gradient.")


def _forward(net: FeedbackNet, x: Array, config: EquilibriumConfig):
    net = jax.lax.stop_gradient(net)
    x = jax.lax.stop_gradient(x)
    sim = jax.vmap(lambda xi: simulate_rates(net, xi, config.T))(x)
    a = sim.rates[-1]
    fa = jax.vmap(lambda xi, ai: net.fixed_point_map(ai, net.input_current(xi)))(x, a)
    residual = jnp.max(jnp.abs(fa - a))
    total = sum(c.size for c in sim.counts)
    firing = sum(jnp.sum(c) for c in sim.counts) / (total * config.T)
    syn_ops = sum(jnp.sum(c) * fan_out(conn) for c, conn in zip(sim.counts, net.connections)) / x.shape[0]
    return a, EquilibriumInfo(rates=sim.rates, firing_rate=firing, residual=residual, syn_ops=syn_ops)


@eqx.filter_custom_vjp
def _equilibrium(vjp_arg, config):
    net, x, _ = vjp_arg
    return _forward(net, x, config)


@_equilibrium.def_fwd
def _equilibrium_fwd(perturbed, vjp_arg, config):
    net, x, _ = vjp_arg
    a, info = _forward(net, x, config)
    return (a, info), info.rates


def _warn(residual, iterations, tol):
    if not residual <= tol:
        warnings.warn(f"equilibrium backward solve did not converge: relative residual {float(residual):.3e} > "
                      f"tol {tol:g} after {int(iterations)} iterations; raise max_iter, try another solver, or "
                      "tighten the weight-norm restriction.", RuntimeWarning, stacklevel=2)


def implicit_vjp(net: FeedbackNet, x: Array, a: Array, g_bar: Array, config: EquilibriumConfig):
    """IDE's backward for a batch at the rates ``a``: ``(grad_net, grad_x, stats)``.

    Solves ``(I - J^T) y = g_bar`` per sample with ``config.solver`` (``J = df/da`` at ``a``), then
    ``dL/dp = (df/dp)^T y`` with one vjp. ``stats`` are the first two :data:`BACKWARD_STATS`
    (and zeros). At an exact fixed point ``a = f(a)`` this is the gradient of ``L(a*(p))``.

    Args:
      net: materialised net.
      x: inputs ``(B, *input_shape)``.
      a: last-layer rates ``(B, ...)`` where ``J`` is taken.
      g_bar: ``dL/da``, shape of ``a``.
      config: solver settings.
    """
    shape = a.shape[1:]

    def solve_one(xi, ai, gi):
        fx = net.input_current(xi)
        _, vjp_a = jax.vjp(lambda aa: net.fixed_point_map(aa, fx), ai)
        jt = lambda y: vjp_a(y.reshape(shape))[0].reshape(-1)  # noqa: E731
        y, k, rel = SOLVERS[config.solver](jt, gi.reshape(-1), tol=config.tol, max_iter=config.max_iter)
        return y.reshape(shape), k, rel

    y, iters, rel = jax.vmap(solve_one)(x, a, g_bar)
    _, vjp_p = eqx.filter_vjp(
        lambda n, xx: jax.vmap(lambda xi, ai: n.fixed_point_map(ai, n.input_current(xi)))(xx, a), net, x)
    grad_net, grad_x = vjp_p(y)
    residual = jnp.max(rel)
    stats = jnp.stack([jnp.mean(iters.astype(a.dtype)), residual, jnp.zeros((), a.dtype), jnp.zeros((), a.dtype)])
    if config.on_fail == "warn":
        jax.debug.callback(_warn, residual, jnp.max(iters), config.tol)
    elif config.on_fail == "error":
        grad_net = eqx.error_if(grad_net, ~(residual <= config.tol),
                                "equilibrium backward solve did not reach tol (or is not finite); raise max_iter "
                                "or try another solver")
    return grad_net, grad_x, stats


def _spide_backward(net, x, rates, g_bar, config):
    sf = config.loss_scale * x.shape[0]  # per sample: sf times the gradient of its own loss term
    g_hat, counts = jax.vmap(lambda r, g: spiking_backward(net, r, sf * g, T_b=config.T_backward,
                                                           threshold=config.threshold_backward))(rates, g_bar)
    g_hat = tuple(g / sf for g in g_hat)
    grad_net, grad_x = local_gradients(net, x, rates, g_hat)
    total = sum(c.size for c in counts)
    rate = sum(jnp.sum(c) for c in counts) / (total * config.T_backward)
    # a backward spike of layer l+1 drives the fan-in of C_l (layer 0's drives the feedback C_{N-1})
    n = len(net.connections)
    syn = sum(jnp.sum(counts[(l + 1) % n]) * fan_in(net.connections[l]) for l in range(n)) / x.shape[0]
    zero = jnp.zeros((), rate.dtype)
    return grad_net, grad_x, jnp.stack([zero, zero, rate, syn])


@_equilibrium.def_bwd
def _equilibrium_bwd(residuals, grad_obj, perturbed, vjp_arg, config):
    net, x, probe = vjp_arg
    rates = residuals
    g_bar = grad_obj[0]
    if g_bar is None:
        g_bar = jnp.zeros_like(rates[-1])
    if config.backward == "ide":
        grad_net, grad_x, stats = implicit_vjp(net, x, rates[-1], g_bar, config)
    else:
        grad_net, grad_x, stats = _spide_backward(net, x, rates, g_bar, config)
    return grad_net, grad_x, (None if probe is None else stats.astype(probe.dtype))


def equilibrium(
    net: FeedbackNet,
    x: Array,
    config: EquilibriumConfig = EquilibriumConfig(),
    *,
    probe: Float[Array, " 4"] | None = None,
) -> tuple[Array, EquilibriumInfo]:
    """The last layer's rate after ``T`` steps, ``a_{N-1}(T)``, differentiable by IDE or SPIDE.

    Args:
      net: a *materialised* :class:`FeedbackNet` (``net.materialize(key=...)`` inside the function you
        differentiate, so the weight-norm reparameterisation is part of the gradient).
      x: one sample ``net.input_shape`` or a batch ``(B, *net.input_shape)``.
      config: the :class:`EquilibriumConfig` (static).
      probe: optional zeros of shape ``(4,)``: differentiate the loss with respect to it as well to
        read the backward pass's statistics (:data:`BACKWARD_STATS`: mean solver iterations, max
        relative residual, SPIDE's backward firing rate and backward synaptic operations per sample);
        see :func:`backward_stats`. A non-converged solve also warns or raises per ``config.on_fail``.

    Returns:
      ``(a, info)``: the rate ``a`` (shape of the last layer, batched like ``x``) and an
      :class:`EquilibriumInfo` of forward statistics (not differentiated).

    Raises:
      ValueError: ``x`` has the wrong shape, or ``net`` is not materialised.

    Example:
      A user's own jitted optax step; ``jax.grad`` through the equilibrium is the IDE gradient:

      >>> import equinox as eqx, jax, jax.numpy as jnp, optax
      >>> from jsnn.equilibrium import EquilibriumConfig, equilibrium, feedback_fc
      >>> net = feedback_fc(4, [8], 3, norm="spectral", key=jax.random.key(0))
      >>> cfg = EquilibriumConfig(T=10, solver="broyden")
      >>> def loss_fn(net, x, y):
      ...     a, _ = equilibrium(net.materialize(), x, cfg)
      ...     logits = jax.vmap(net.logits)(a)
      ...     return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      >>> opt = optax.sgd(0.1, momentum=0.9)
      >>> opt_state = opt.init(eqx.filter(net, eqx.is_inexact_array))
      >>> @eqx.filter_jit
      ... def step(net, opt_state, x, y):
      ...     loss, grads = eqx.filter_value_and_grad(loss_fn)(net, x, y)
      ...     updates, opt_state = opt.update(grads, opt_state)
      ...     return eqx.apply_updates(net, updates), opt_state, loss
      >>> x, y = jnp.ones((2, 4), jnp.float32), jnp.array([0, 2])
      >>> net, opt_state, loss = step(net, opt_state, x, y)
      >>> bool(jnp.isfinite(loss))
      True
    """
    if not isinstance(net, FeedbackNet):
        raise TypeError(f"equilibrium() expects a FeedbackNet; got {type(net).__name__}.")
    _check_materialized(net)
    single = x.shape == net.input_shape
    if not single and x.shape[1:] != net.input_shape:
        raise ValueError(f"x must be one sample of shape {net.input_shape} or a batch (B, *{net.input_shape}); "
                         f"got {x.shape}.")
    xb = x[None] if single else x
    a, info = _equilibrium((net, xb, probe), config)
    if single:
        a = a[0]
        info = info._replace(rates=tuple(r[0] for r in info.rates))
    return a, info
