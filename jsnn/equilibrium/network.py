"""Feedback spiking networks and their forward simulation to the equilibrium of firing rates.

A :class:`FeedbackNet` has spiking layers ``l = 0..N-1``. The input map ``F`` (``encoder``) drives
layer 0; connection ``C_l`` maps layer ``l`` to layer ``l+1 (mod N)``, so ``C_{N-1}`` is the
feedback (``N = 1``: ``C_0 = W``, a recurrent layer). One step of the simulation (ALGORITHMS §3.1):

    layer 0:      u_0 += F x + [t > 1] C_{N-1}(s_{N-1}(t-1))      (the feedback is delayed one step)
    l = 1..N-1:   u_l += C_{l-1}(s_{l-1}(t))                        (same step, in order)
    every layer:  s = 1[u >= theta];  u -= V s;  u *= delta          (fire, subtract, then leak)

``V`` is the core neuron's threshold (the amount a spike subtracts). With ``reset="subtract"`` a
neuron fires at ``V`` (IDE: ``V = 2``); with ``reset="modified"`` it fires at ``V/2`` (SPIDE's
``theta = 1, u_rest = -1`` for ``V = 2``), which turns the rate error from flooring into rounding.
The average firing rates ``a_l`` approach the equilibrium of (ALGORITHMS §3.2)

    a_0 = sigma((C_{N-1}(a_{N-1}) + F x) / V),    a_{l+1} = sigma(C_l(a_l) / V),    sigma = clip(., 0, 1)

at ``O(1/T)`` for IF neurons. Modules have single-sample semantics: batch with ``jax.vmap``.

References:
  Xiao et al., "Training feedback spiking neural networks by implicit differentiation on the
  equilibrium state", arXiv 2109.14247.
  Xiao et al., "SPIDE: a purely spike-based method for training feedback spiking neural
  networks", arXiv 2302.00232.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from jsnn.neurons import IF, LIF
from jsnn.nn import Conv2d, Linear

__all__ = ["FeedbackNet", "SimResult", "feedback_conv", "feedback_fc", "simulate_rates"]

Reset = Literal["subtract", "modified"]


def clip01(z: Array) -> Array:
    """``sigma(z) = clip(z, 0, 1)`` whose derivative is exactly ``1[0 < z < 1]`` (0 at the kinks)."""
    return jnp.where(z <= 0, jnp.zeros_like(z), jnp.where(z >= 1, jnp.ones_like(z), z))


def apply(layer, x: Array) -> Array:
    """Apply a stateless layer, a reparameterised one (its ``materialize()``d map) or a tuple in order."""
    if isinstance(layer, tuple):
        for sub in layer:
            x = apply(sub, x)
        return x
    return layer(x)


def _check_neuron(neuron) -> None:
    if not isinstance(neuron, (IF, LIF)):
        raise TypeError(f"neuron must be jsnn.IF or jsnn.LIF; got {type(neuron).__name__}.")
    if neuron.cmp != ">=" or neuron.reset != "subtract" or (isinstance(neuron, LIF) and neuron.order != "reset_first"):
        raise ValueError("equilibrium nets use the authors' neuron: cmp='>=', reset='subtract' and (LIF) "
                         "order='reset_first' (fire, subtract, then leak), e.g. IF(threshold=2.0, cmp='>=').")


class FeedbackNet(eqx.Module):
    """A feedback spiking network: input map, cyclic connections, neuron, and a readout on the last rate.

    Attributes:
      encoder: ``F``: a stateless ``jsnn.nn`` layer (or tuple of them) from one input sample to layer 0.
      connections: ``(C_0, ..., C_{N-1})``; ``C_l`` maps layer ``l`` to ``l+1 (mod N)``, ``C_{N-1}`` is
        the feedback. Layers, tuples of layers, or the reparameterisations of
        :mod:`jsnn.equilibrium.reparam` (call :meth:`materialize` before simulating).
      readout: a ``jsnn.nn.Linear`` classifier on the flattened last-layer rate ``a_{N-1}``.
      neuron: a core ``IF`` or ``LIF`` with ``cmp='>='`` (and ``order='reset_first'``); its threshold is ``V``.
      reset: "subtract" (fire at ``V``) or "modified" (fire at ``V/2``: SPIDE's reset).
      input_shape: shape of one input sample.
      layer_shapes: shape of every spiking layer (inferred).

    Raises:
      ValueError: a connection's output does not fit the next layer (e.g. a feedback of the wrong shape).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> net = feedback_fc(4, [6], 3, key=jax.random.key(0))
      >>> net.layer_shapes
      ((6,),)
      >>> simulate_rates(net, jnp.ones(4, jnp.float32), 8).rates[0].shape
      (6,)
    """

    encoder: eqx.Module | tuple
    connections: tuple
    readout: Linear
    neuron: IF | LIF
    reset: Reset = eqx.field(static=True)
    input_shape: tuple[int, ...] = eqx.field(static=True)
    layer_shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    def __init__(self, encoder, connections: Sequence, readout: Linear, *, input_shape: Sequence[int],
                 neuron: IF | LIF | None = None, reset: Reset = "subtract"):
        self.encoder = encoder
        self.connections = tuple(connections)
        self.readout = readout
        self.neuron = IF(threshold=2.0, cmp=">=") if neuron is None else neuron
        self.reset = reset
        self.input_shape = tuple(int(d) for d in input_shape)
        if reset not in ("subtract", "modified"):
            raise ValueError(f"reset must be 'subtract' or 'modified'; got {reset!r}.")
        _check_neuron(self.neuron)
        if not self.connections:
            raise ValueError("a FeedbackNet needs at least one connection (the feedback C_{N-1}).")
        self.layer_shapes = _infer_shapes(self)
        n_out = math.prod(self.layer_shapes[-1])
        if not isinstance(readout, Linear) or readout.in_features != n_out:
            raise ValueError(f"readout must be a jsnn.nn.Linear with in_features={n_out} (the flattened last "
                             f"layer {self.layer_shapes[-1]}); got {readout!r:.80}.")

    @property
    def V(self):
        """The amount one spike subtracts, ``theta_r`` (ALGORITHMS §3.2)."""
        return self.neuron.threshold

    @property
    def decay(self):
        """The leak per step (1 for IF)."""
        return self.neuron.leak

    def materialize(self, *, key: PRNGKeyArray | None = None) -> FeedbackNet:
        """This net with every reparameterised connection replaced by its effective layer."""
        from jsnn.equilibrium.reparam import materialize

        return materialize(self, key=key)

    def update_norms(self) -> FeedbackNet:
        """One power iteration for every spectral-norm connection (the carried vectors; no gradient)."""
        from jsnn.equilibrium.reparam import update_norms

        return update_norms(self)

    def input_current(self, x: Array) -> Array:
        """``F x``: the constant input current of layer 0."""
        if x.shape != self.input_shape:
            raise ValueError(f"FeedbackNet expects one sample of shape {self.input_shape}; got {x.shape}. "
                             "Batch with jax.vmap.")
        return apply(self.encoder, x)

    def layer_map(self, rates: tuple[Array, ...], fx: Array) -> tuple[Array, ...]:
        """The layered equilibrium map ``(a_0..a_{N-1}) -> (sigma((C_{N-1}(a_{N-1}) + Fx)/V), sigma(C_0(a_0)/V), ...)``."""
        pre = self.pre_activations(rates, fx)
        return tuple(clip01(z / self.V) for z in pre)

    def pre_activations(self, rates: tuple[Array, ...], fx: Array) -> tuple[Array, ...]:
        """``(C_{N-1}(a_{N-1}) + Fx, C_0(a_0), ..., C_{N-2}(a_{N-2}))``: the input of each layer at the rates."""
        n = len(self.connections)
        return (apply(self.connections[-1], rates[-1]) + fx,
                *(apply(self.connections[l - 1], rates[l - 1]) for l in range(1, n)))

    def fixed_point_map(self, a_last: Array, fx: Array) -> Array:
        """The composite map ``f(a_{N-1})``: layer 0 from the feedback, then layers 1..N-1 in order."""
        a = clip01((apply(self.connections[-1], a_last) + fx) / self.V)
        for conn in self.connections[:-1]:
            a = clip01(apply(conn, a) / self.V)
        return a

    def logits(self, a_last: Array) -> Array:
        """The readout on the flattened last-layer rate."""
        return self.readout(a_last.reshape(-1))


def _param_dtype(module):
    leaves = jax.tree.leaves(eqx.filter(module, eqx.is_inexact_array))
    return leaves[0].dtype if leaves else jnp.float32


def _infer_shapes(net: FeedbackNet) -> tuple[tuple[int, ...], ...]:
    dtype = _param_dtype(net.encoder)
    x = jax.ShapeDtypeStruct(net.input_shape, dtype)
    try:
        shape0 = jax.eval_shape(lambda z: apply(net.encoder, z), x).shape
    except Exception as err:  # noqa: BLE001: re-raised with context
        raise ValueError(f"the encoder does not accept an input of shape {net.input_shape}: {err}") from None
    shapes = [tuple(shape0)]
    for l, conn in enumerate(net.connections):
        src = jax.ShapeDtypeStruct(shapes[-1], dtype)
        try:
            out = tuple(jax.eval_shape(lambda z, c=conn: apply(c, z), src).shape)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"connection C_{l} does not accept layer {l} of shape {shapes[-1]}: {err}") from None
        if l == len(net.connections) - 1:
            if out != shapes[0]:
                raise ValueError(f"the feedback C_{l} maps layer {l} {shapes[-1]} to shape {out}, but layer 0 has "
                                 f"shape {shapes[0]}; the feedback must map the last layer back onto layer 0.")
        else:
            shapes.append(out)
    return tuple(shapes)


class SimResult(NamedTuple):
    """The forward simulation of one sample.

    Attributes:
      rates: per layer, the average firing rate ``a_l`` (IF: spike count / T; LIF: delta-weighted).
      counts: per layer, the number of spikes of each neuron.
      residual_potential: per layer, ``u_T`` after the last subtraction (and leak), in the authors' frame.
      last_spikes: per layer, ``s_T``.
    """

    rates: tuple[Array, ...]
    counts: tuple[Array, ...]
    residual_potential: tuple[Array, ...]
    last_spikes: tuple[Array, ...]


def simulate_rates(net: FeedbackNet, x: Array, T: int) -> SimResult:
    """Simulate ``T`` steps of one sample with a constant input current and return the firing rates.

    Uses the core neuron's ``step`` (``jsnn.neurons``) for every layer. The modified reset is the
    same neuron seen with its potential shifted by ``V/2``: it starts at ``V/2`` and receives the
    constant ``(1 - delta) V/2`` that keeps the shift under the leak. Nothing is stored per step: the
    rate is a running sum, so memory does not grow with ``T``. Not differentiable (use
    :func:`jsnn.equilibrium.equilibrium`).

    Args:
      net: a materialised :class:`FeedbackNet`.
      x: one input sample of shape ``net.input_shape`` (a constant current every step).
      T: number of time steps, >= 1.

    Returns:
      A :class:`SimResult`.
    """
    if int(T) < 1:
        raise ValueError(f"T (time steps) must be >= 1; got {T}.")
    fx = net.input_current(x)
    V, delta, neuron = net.V, net.decay, net.neuron
    shift = 0.5 * V if net.reset == "modified" else 0.0
    extra = (1.0 - delta) * shift
    n = len(net.connections)
    dtype = fx.dtype

    def init(shape):
        st = neuron.init_state(shape, dtype)
        return st._replace(v=st.v + shift)

    def fire(state, current):
        state, (s, _, _) = neuron.step(state, current + extra)
        return state, s

    def body(carry, t):
        states, acc, counts = carry
        feedback = apply(net.connections[-1], states[-1].s)
        new_states, spikes = [], []
        st, s = fire(states[0], fx + jnp.where(t > 0, feedback, jnp.zeros_like(feedback)))
        new_states.append(st)
        spikes.append(s)
        for l in range(1, n):
            st, s = fire(states[l], apply(net.connections[l - 1], s))
            new_states.append(st)
            spikes.append(s)
        acc = tuple(delta * a + s for a, s in zip(acc, spikes))
        counts = tuple(c + s for c, s in zip(counts, spikes))
        return (tuple(new_states), acc, counts), None

    zeros = tuple(jnp.zeros(s, dtype) for s in net.layer_shapes)
    states = tuple(init(s) for s in net.layer_shapes)
    (states, acc, counts), _ = jax.lax.scan(body, (states, zeros, zeros), jnp.arange(T))
    steps = jnp.arange(T, dtype=dtype)
    norm = jnp.sum(jnp.asarray(delta, dtype) ** steps)  # sum_t delta^(T-t): T for IF
    rates = tuple(a / norm for a in acc)
    # core state v is the pre-threshold potential; the authors' u_T subtracts, leaks and unshifts it
    resid = tuple(delta * (st.v - V * st.s) - shift * delta for st in states)
    return SimResult(rates=rates, counts=counts, residual_potential=resid, last_spikes=tuple(st.s for st in states))


def _uniform_unit_rows(layer, *, key):
    """The authors' init: U(-1, 1), then each output filter scaled to unit L2 norm."""
    w = jax.random.uniform(key, layer.weight.shape, layer.weight.dtype, -1.0, 1.0)
    axes = tuple(range(1, w.ndim))
    w = w / jnp.sqrt(jnp.sum(w * w, axis=axes, keepdims=True))
    return eqx.tree_at(lambda m: m.weight, layer, w)


def feedback_fc(
    in_features: int,
    hidden: Sequence[int],
    num_classes: int,
    *,
    neuron: IF | LIF | None = None,
    reset: Reset = "subtract",
    norm: Literal["spectral", "frobenius", "none"] = "none",
    norm_bound: float = 1.0,
    feedback_scale: float = 1.0,
    dtype=jnp.float32,
    key: PRNGKeyArray,
) -> FeedbackNet:
    """A fully connected feedback net: ``F: in -> h_0``, ``C_l: h_l -> h_{l+1}``, feedback ``h_{N-1} -> h_0``.

    One hidden width gives the single-layer net ``a = sigma((W a + F x + b)/V)``. Weights follow the
    authors' init (uniform, unit-norm rows); the feedback has no bias.

    Args:
      in_features: input width.
      hidden: widths of the spiking layers (``N = len(hidden)``).
      num_classes: readout width.
      neuron: core neuron (default ``IF(threshold=2.0, cmp='>=')``).
      reset: "subtract" or "modified".
      norm: restriction of the feedback weight: "spectral" (IDE), "frobenius" (SPIDE) or "none".
      norm_bound: the Frobenius bound ``c`` (ignored for the others).
      feedback_scale: multiplies the initial feedback weight.
      dtype: parameter dtype.
      key: PRNG key.

    Returns:
      A :class:`FeedbackNet`.
    """
    from jsnn.equilibrium.reparam import wrap_norm

    hidden = [int(h) for h in hidden]
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must be a non-empty list of positive widths; got {hidden}.")
    keys = jax.random.split(key, len(hidden) + 3)
    enc = _uniform_unit_rows(Linear(in_features, hidden[0], dtype=dtype, key=keys[0]), key=keys[1])
    conns = []
    for l in range(len(hidden)):
        src, dst = hidden[l], hidden[(l + 1) % len(hidden)]
        is_fb = l == len(hidden) - 1
        layer = _uniform_unit_rows(Linear(src, dst, use_bias=not is_fb, dtype=dtype, key=keys[l + 2]),
                                   key=jax.random.fold_in(keys[l + 2], 1))
        if is_fb:
            layer = eqx.tree_at(lambda m: m.weight, layer, feedback_scale * layer.weight)
            layer = wrap_norm(layer, (src,), norm, bound=norm_bound, key=jax.random.fold_in(keys[l + 2], 2))
        conns.append(layer)
    readout = Linear(hidden[-1], num_classes, dtype=dtype, key=keys[-1])
    return FeedbackNet(enc, conns, readout, input_shape=(in_features,), neuron=neuron, reset=reset)


def feedback_conv(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    channels: int = 64,
    kernel_size: int = 5,
    stride: int = 2,
    neuron: IF | LIF | None = None,
    reset: Reset = "subtract",
    norm: Literal["spectral", "frobenius", "none"] = "none",
    norm_bound: float = 2.0,
    dtype=jnp.float32,
    key: PRNGKeyArray,
) -> FeedbackNet:
    """The convolutional feedback net of ALGORITHMS §3.6 (MNIST: 64 channels, recurrent 5x5 conv).

    ``F`` = ``Conv2d(C_in, channels, kernel_size, stride)`` ("same" padding), feedback
    ``W`` = ``Conv2d(channels, channels, kernel_size)`` ("same", no bias), readout Linear on the
    flattened rate. ``stride=2`` halves the map (14x14 for MNIST) to keep the CPU cost down.

    Example:
      >>> import jax
      >>> net = feedback_conv((1, 8, 8), 10, channels=4, kernel_size=3, key=jax.random.key(0))
      >>> net.layer_shapes
      ((4, 4, 4),)
    """
    from jsnn.equilibrium.reparam import wrap_norm

    c_in = int(input_shape[0])
    k1, k2, k3, k4 = jax.random.split(key, 4)
    pad = kernel_size // 2
    enc = _uniform_unit_rows(Conv2d(c_in, channels, kernel_size, stride=stride, padding=pad, dtype=dtype, key=k1),
                             key=jax.random.fold_in(k1, 1))
    fb = _uniform_unit_rows(Conv2d(channels, channels, kernel_size, padding=pad, use_bias=False, dtype=dtype, key=k2),
                            key=jax.random.fold_in(k2, 1))
    shape0 = tuple(jax.eval_shape(enc, jax.ShapeDtypeStruct(tuple(input_shape), dtype)).shape)
    fb = wrap_norm(fb, shape0, norm, bound=norm_bound, key=k3)
    readout = Linear(math.prod(shape0), num_classes, dtype=dtype, key=k4)
    return FeedbackNet(enc, [fb], readout, input_shape=input_shape, neuron=neuron, reset=reset)

