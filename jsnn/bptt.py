"""Surrogate-gradient back-propagation through time (BPTT): the baseline method.

The network is an ordinary :class:`jsnn.nn.Sequential`; the gradient is ``jax.grad``
through the ``lax.scan`` of each neuron layer, with the surrogate derivative in place
of the Heaviside's. The optimiser is any optax transformation.

References:
  Neftci, Mostafa, Zenke, "Surrogate gradient learning in spiking neural networks",
  arXiv 1901.09948.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from jsnn import encode, losses, surrogate
from jsnn.neurons import IF, LI, LIF, CubaLIF
from jsnn.nn import Linear, Recurrent, Sequential, conv_net, mlp
from jsnn.simulate import simulate
from jsnn.train import Method

__all__ = ["BPTTConfig", "bptt_loss", "bptt_method", "default_optimizer", "encode_batch", "image_shape",
           "make_network", "predict_labels", "trainable"]

SURROGATES = {
    "fast_sigmoid": surrogate.FastSigmoid,
    "arctan": surrogate.Arctan,
    "triangle": surrogate.Triangle,
    "straight_through": surrogate.StraightThrough,
}
ENCODINGS = ("direct", "rate", "latency")
ARCHS = ("mlp", "conv")


@dataclass(frozen=True)
class BPTTConfig:
    """Hyperparameters of a surrogate-BPTT run (all JSON-serialisable).

    Attributes:
      hidden: hidden layer widths (channels of the conv stages for ``arch="conv"``).
      arch: "mlp" (:func:`jsnn.nn.mlp`) or "conv" (:func:`jsnn.nn.conv_net` on square one-channel
        images, e.g. digits 8x8 or MNIST 28x28).
      depth: if set, the number of hidden layers, all of width ``hidden[0]``.
      T: number of time steps.
      encoding: "direct" (analog current every step), "rate" (Bernoulli) or "latency".
      loss: a key of :data:`jsnn.losses.LOSSES`; "ce_count" uses a LIF readout, the
        others a leaky-integrator (LI) readout.
      decay, threshold: LIF leak and threshold of the hidden (and spiking readout) neurons.
        The default leak 0.875 = 1 - 2**-3 is held exactly by every shipped lowering target
        (a shift decay cannot hold 0.9); it trains as well as 0.9 (MNIST 98.35 % vs 98.34 %).
      reset: "subtract" or "zero", the LIF reset. Train with the reset (and a decay) that a
        neuromorphic target holds exactly, e.g. ``reset="zero", decay=0.875`` for the
        Loihi-like profile, so that the lowered network computes what was trained.
      surrogate, slope: the surrogate spike derivative.
      lr: Adam learning rate (cosine-decayed to 10 % over the run when ``cosine``).
      weight_scale: initial weight gain.
      rate_reg: weight of the hidden firing-rate regulariser (0 disables it).
      recurrent: hidden layers are :class:`jsnn.nn.Recurrent` LIF layers (``c_t = W x_t + R s_{t-1}``),
        the recipe for time-series inputs ``(T, F)``.
    """

    hidden: tuple[int, ...] = (128,)
    arch: str = "mlp"
    depth: int | None = None
    T: int = 8
    encoding: str = "direct"
    loss: str = "ce_mean_membrane"
    decay: float = 0.875
    threshold: float = 1.0
    reset: str = "subtract"
    surrogate: str = "fast_sigmoid"
    slope: float = 25.0
    lr: float = 2e-3
    weight_scale: float = 1.0
    rate_reg: float = 0.0
    cosine: bool = True
    recurrent: bool = False

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}; got {self.encoding!r}.")
        if self.loss not in losses.LOSSES:
            raise ValueError(f"loss must be one of {sorted(losses.LOSSES)}; got {self.loss!r}.")
        if self.reset not in ("subtract", "zero"):
            raise ValueError(f"reset must be 'subtract' or 'zero'; got {self.reset!r}.")
        if self.surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {sorted(SURROGATES)}; got {self.surrogate!r}.")
        if self.T < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"T and hidden sizes must be positive; got T={self.T}, hidden={self.hidden}.")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}; got {self.arch!r}.")
        if self.depth is not None and (self.depth < 1 or not self.hidden):
            raise ValueError(f"depth must be a positive number of hidden layers (with a width in hidden); "
                             f"got depth={self.depth}, hidden={self.hidden}.")
        if self.arch == "conv" and not self.hidden:
            raise ValueError("arch='conv' needs at least one stage: give hidden channel counts.")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """The hidden widths (or conv channels), one per hidden layer, ``depth`` applied."""
        return self.hidden if self.depth is None else (self.hidden[0],) * self.depth

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> BPTTConfig:
        """Pick this class's fields out of a (larger) run config."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in config.items() if k in names}
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_shape(config: BPTTConfig, in_features: int) -> tuple[int, ...]:
    """One time step's network input: ``(in_features,)`` for an MLP, ``(1, H, W)`` for a conv net."""
    if config.arch == "mlp":
        return (in_features,)
    side = math.isqrt(in_features)
    if side * side != in_features:
        raise ValueError(f"arch='conv' needs square one-channel images; samples have {in_features} features, "
                         "not a square number. Use arch='mlp' for this data.")
    return (1, side, side)


def make_network(config: BPTTConfig, in_features: int, num_classes: int, *, key: PRNGKeyArray) -> Sequential:
    """The LIF MLP or conv net that ``config`` describes (``in_features``: flattened sample width)."""
    sg = SURROGATES[config.surrogate](slope=config.slope)
    neuron = LIF(decay=config.decay, threshold=config.threshold, reset=config.reset, surrogate=sg)
    readout = neuron if config.loss == "ce_count" else LI(decay=config.decay)
    if config.arch == "conv":
        if config.recurrent:
            raise ValueError("recurrent=True applies to the MLP architecture; a conv net has no recurrent layers.")
        return conv_net(image_shape(config, in_features), config.layer_sizes, num_classes, neuron=neuron,
                        readout=readout, scale=config.weight_scale, key=key)
    if not config.recurrent:
        return mlp(in_features, config.layer_sizes, num_classes, neuron=neuron, readout=readout,
                   scale=config.weight_scale, key=key)
    sizes = [in_features, *config.layer_sizes, num_classes]
    keys = jax.random.split(key, 2 * len(sizes))
    layers: list[eqx.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out, scale=config.weight_scale, key=keys[2 * i]))
        hidden = i < len(sizes) - 2
        layers.append(Recurrent(n_out, neuron, scale=config.weight_scale, key=keys[2 * i + 1]) if hidden else readout)
    return Sequential(layers)


def encode_batch(config: BPTTConfig, x: Float[Array, "B F"] | Float[Array, "B T F"], *,
                 key: PRNGKeyArray) -> Float[Array, "B T F"]:
    """Encode a batch of static samples into ``(B, T, F)`` inputs (``(B, T, 1, H, W)`` for a conv net); a batch
    of time series passes as it is.

    "direct" takes any real features (the input current of every step); "rate" and "latency" need [0, 1].
    """
    if x.ndim == 3:
        return x
    if config.encoding == "rate":
        keys = jax.random.split(key, x.shape[0])
        out = jax.vmap(lambda xi, k: encode.rate(xi, config.T, key=k))(x, keys)
    elif config.encoding == "latency":
        out = jax.vmap(lambda xi: encode.latency(xi, config.T))(x)
    else:
        out = jax.vmap(lambda xi: encode.direct(xi, config.T))(x)
    return out if config.arch == "mlp" else out.reshape(*out.shape[:2], *image_shape(config, x.shape[-1]))


def bptt_loss(
    net: Sequential, config: BPTTConfig, inputs: Float[Array, "B T F"], labels: Int[Array, " B"]
) -> tuple[Float[Array, ""], Int[Array, ""]]:
    """Mean loss over a batch of encoded inputs, and the number of correct predictions."""
    loss_fn, logits_fn = losses.LOSSES[config.loss]
    if config.rate_reg:
        out, traces = jax.vmap(lambda x: simulate(net, x, record=True))(inputs)
        reg = sum(jnp.mean(jax.vmap(losses.rate_regularizer)(t.spikes)) for t in traces.values()
                  if t.spikes is not None)
    else:
        out = jax.vmap(lambda x: simulate(net, x))(inputs)
        reg = 0.0
    loss = jnp.mean(jax.vmap(loss_fn)(out, labels)) + config.rate_reg * reg
    correct = jnp.sum(jnp.argmax(jax.vmap(logits_fn)(out), axis=-1).astype(labels.dtype) == labels)
    return loss, correct


def predict_labels(net: Sequential, config: BPTTConfig, x: Float[Array, "B F"]) -> Int[Array, " B"]:
    """Predicted classes of a batch of raw samples (encoded with a fixed key, decided by the loss's logits)."""
    inputs = encode_batch(config, x, key=jax.random.key(0))
    out = jax.vmap(lambda xi: simulate(net, xi))(inputs)
    return jnp.argmax(jax.vmap(losses.LOSSES[config.loss][1])(out), axis=-1)


def default_optimizer(config: BPTTConfig, total_steps: int | None) -> optax.GradientTransformation:
    """Adam at ``config.lr``, cosine-decayed to 10 % over ``total_steps`` when ``config.cosine``."""
    lr = optax.cosine_decay_schedule(config.lr, total_steps, alpha=0.1) if config.cosine and total_steps else config.lr
    return optax.adam(lr)


#: modules that hold only neuron constants (leak, threshold, surrogate slope), never trained weights
_CONSTANTS = (LIF, IF, LI, CubaLIF, surrogate.Surrogate)


def trainable(net: eqx.Module) -> eqx.Module:
    """The parameters BPTT trains: the inexact arrays of ``net`` outside its neurons and surrogates.

    Neuron constants (``decay``, ``threshold``, the surrogate ``slope``) are not trained even when they
    are arrays, for instance traced hyperparameters in a :func:`jsnn.sweep.sweep`; so a sweep lane trains
    exactly what a run with Python-float constants trains.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jsnn.nn import mlp
      >>> net = mlp(3, [4], 2, neuron=LIF(decay=jnp.float32(0.9)), key=jax.random.key(0))
      >>> len(jax.tree.leaves(trainable(net))) == len(jax.tree.leaves(eqx.filter(net, eqx.is_inexact_array))) - 1
      True
    """
    return eqx.filter(net, _trainable_spec(net))


def _trainable_spec(net: eqx.Module):
    """Filter spec of :func:`trainable`: True at the weights, False at neuron constants and non-arrays."""
    is_constant = lambda m: isinstance(m, _CONSTANTS)  # noqa: E731
    return jax.tree.map(lambda m: not is_constant(m) and eqx.is_inexact_array(m), net, is_leaf=is_constant)


class BPTTState(NamedTuple):
    """Training state: the network and the optimiser state."""

    net: Sequential
    opt_state: optax.OptState


def bptt_method(
    config: BPTTConfig, in_features: int, num_classes: int, *, total_steps: int | None = None,
    optimizer: optax.GradientTransformation | None = None,
) -> Method:
    """Surrogate BPTT as a :class:`jsnn.train.Method`.

    Args:
      config: hyperparameters.
      in_features: width of a flattened input sample.
      num_classes: number of outputs.
      total_steps: length of the run, for the cosine learning-rate schedule.
      optimizer: overrides the default Adam (with the config's learning rate).

    Returns:
      A Method whose state is a :class:`BPTTState`.

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp
      >>> m = bptt_method(BPTTConfig(hidden=(8,), T=4), 6, 3)
      >>> state = m.init(jax.random.key(0))
      >>> step = eqx.filter_jit(m.step)
      >>> state, metrics = step(state, jnp.ones((2, 6), jnp.float32), jnp.array([0, 1]), jax.random.key(1))
      >>> sorted(metrics)
      ['correct', 'loss']
    """
    optimizer = default_optimizer(config, total_steps) if optimizer is None else optimizer

    def init(key):
        net = make_network(config, in_features, num_classes, key=key)
        return BPTTState(net, optimizer.init(trainable(net)))

    def step(state: BPTTState, x, y, key):
        inputs = encode_batch(config, x, key=key)
        params, rest = eqx.partition(state.net, _trainable_spec(state.net))
        loss_of = lambda p: bptt_loss(eqx.combine(p, rest), config, inputs, y)  # noqa: E731
        (loss, correct), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
        # optax's Adam bias correction mixes a float with its int32 step count, which strict dtype
        # promotion (our test suite, and careful users) rejects; the update itself is dtype-clean.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, state.opt_state, params)
        return BPTTState(eqx.apply_updates(state.net, updates), opt_state), {"loss": loss, "correct": correct}

    def predict(state: BPTTState, x):
        return predict_labels(state.net, config, x)

    return Method(init=init, step=step, predict=predict, network=lambda state: state.net)
