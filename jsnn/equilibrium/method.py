"""``jsnn train --method ide|spide``: equilibrium training of feedback SNNs through the shared loop.

The builders turn a run config into a :class:`jsnn.train.TrainingRun` (as
:func:`jsnn.methods.build_bptt`). One training step: one power iteration of the spectral norm
(IDE), materialise the weight-norm reparameterisation, :func:`~jsnn.equilibrium.equilibrium` with
the IDE or SPIDE backward, cross-entropy of the readout on the last layer's rate, SGD with momentum
and weight decay (ALGORITHMS §3.6). Variational dropout is not implemented (the digits and MNIST
defaults run without it).

Per-step metrics: ``loss``, ``correct``, ``fwd_rate`` (forward spikes per neuron and step),
``eq_residual`` (``||f(a_T) - a_T||_inf``), ``syn_ops`` (forward synaptic operations per sample),
IDE: ``solver_iters``, ``solver_residual``; SPIDE: ``bwd_rate``, ``bwd_syn_ops``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import PRNGKeyArray

from jsnn.equilibrium.config import EquilibriumConfig
from jsnn.equilibrium.ide import backward_stats, equilibrium
from jsnn.equilibrium.network import FeedbackNet, feedback_conv, feedback_fc
from jsnn.equilibrium.reparam import trainable
from jsnn.neurons import IF, LIF
from jsnn.train import Method, TrainingRun

__all__ = ["IDE_DEFAULTS", "SPIDE_DEFAULTS", "EquilibriumRunConfig", "build_ide", "build_spide",
           "equilibrium_method", "make_network"]

#: per data set defaults of ``jsnn train --method ide`` (flags override them)
IDE_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"arch": "fc", "hidden": [128], "T": 30, "epochs": 20, "batch_size": 32, "lr": 0.2,
               "lr_milestones": [15], "norm": "spectral"},
    "mnist": {"arch": "conv", "channels": 64, "T": 30, "epochs": 100, "batch_size": 128, "lr": 0.05,
              "lr_milestones": [30, 60, 90], "norm": "spectral"},
}
#: per data set defaults of ``jsnn train --method spide``
SPIDE_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"arch": "fc", "hidden": [128], "T": 30, "T_backward": 100, "epochs": 20, "batch_size": 32,
               "lr": 0.2, "lr_milestones": [15], "norm": "frobenius", "norm_bound": 2.0, "loss_scale": 5.0,
               "reset": "modified"},
    "mnist": {"arch": "conv", "channels": 64, "T": 30, "T_backward": 100, "epochs": 100, "batch_size": 128,
              "lr": 0.05, "lr_milestones": [30, 60, 90], "norm": "frobenius", "norm_bound": 2.0,
              "reset": "modified"},
}


@dataclass(frozen=True)
class EquilibriumRunConfig:
    """Hyperparameters of an IDE / SPIDE run (JSON-serialisable).

    Attributes:
      backward: "ide" or "spide".
      arch: "fc" (feedback MLP over ``hidden``) or "conv" (one ``channels``-channel 5x5 conv with feedback).
      hidden, channels: layer widths.
      T, T_backward: forward and SPIDE backward time steps.
      solver, solver_tol, solver_iters, on_fail: IDE's linear solve (:class:`EquilibriumConfig`).
      neuron: "if" or "lif"; decay is the LIF leak; threshold is ``V``.
      reset: "subtract" or "modified" (SPIDE's ``theta = V/2``).
      norm, norm_bound: weight-norm restriction of the feedback ("spectral", "frobenius", "none").
      loss_scale: SPIDE's per-sample ``sf``.
      lr, momentum, weight_decay, lr_milestones: SGD; the learning rate is multiplied by 0.1 at each
        milestone epoch.
    """

    backward: str = "ide"
    arch: str = "fc"
    hidden: tuple[int, ...] = (128,)
    channels: int = 64
    T: int = 30
    T_backward: int = 100
    solver: str = "broyden"
    solver_tol: float = 1e-4
    solver_iters: int = 30
    on_fail: str = "ignore"
    neuron: str = "if"
    decay: float = 0.95
    threshold: float = 2.0
    reset: str = "subtract"
    norm: str = "spectral"
    norm_bound: float = 2.0
    loss_scale: float = 1.0
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: tuple[int, ...] = ()

    def __post_init__(self):
        if self.arch not in ("fc", "conv"):
            raise ValueError(f"arch must be 'fc' or 'conv'; got {self.arch!r}.")
        if self.neuron not in ("if", "lif"):
            raise ValueError(f"neuron must be 'if' or 'lif'; got {self.neuron!r}.")
        self.equilibrium_config()  # validates T, T_backward, solver, ...

    def equilibrium_config(self) -> EquilibriumConfig:
        return EquilibriumConfig(T=self.T, backward=self.backward, solver=self.solver, tol=self.solver_tol,
                                 max_iter=self.solver_iters, on_fail=self.on_fail, T_backward=self.T_backward,
                                 loss_scale=self.loss_scale)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> EquilibriumRunConfig:
        """Pick this class's fields out of a (larger) run config."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in config.items() if k in names}
        for k in ("hidden", "lr_milestones"):
            if k in values:
                values[k] = tuple(values[k])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"], d["lr_milestones"] = list(self.hidden), list(self.lr_milestones)
        return d


def _input_shape(config: EquilibriumRunConfig, in_features: int) -> tuple[int, ...]:
    if config.arch == "fc":
        return (in_features,)
    side = math.isqrt(in_features)
    if side * side != in_features:
        raise ValueError(f"arch='conv' needs square single-channel images; got {in_features} features.")
    return (1, side, side)


def make_network(config: EquilibriumRunConfig, in_features: int, num_classes: int, *,
                 key: PRNGKeyArray) -> FeedbackNet:
    """The feedback net that ``config`` describes."""
    if config.neuron == "if":
        neuron = IF(threshold=config.threshold, cmp=">=")
    else:
        neuron = LIF(decay=config.decay, threshold=config.threshold, cmp=">=", order="reset_first")
    if config.arch == "fc":
        return feedback_fc(in_features, config.hidden, num_classes, neuron=neuron, reset=config.reset,
                           norm=config.norm, norm_bound=config.norm_bound, key=key)
    return feedback_conv(_input_shape(config, in_features), num_classes, channels=config.channels,
                         neuron=neuron, reset=config.reset, norm=config.norm, norm_bound=config.norm_bound,
                         key=key)


class EquilibriumState(NamedTuple):
    """Training state: the network (with its carried power-iteration vectors) and the optimiser state."""

    net: FeedbackNet
    opt_state: optax.OptState


def equilibrium_method(config: EquilibriumRunConfig, in_features: int, num_classes: int, *,
                       steps_per_epoch: int = 1) -> Method:
    """IDE or SPIDE training as a :class:`jsnn.train.Method`.

    Args:
      config: hyperparameters.
      in_features: width of a flattened input sample.
      num_classes: number of classes.
      steps_per_epoch: converts ``lr_milestones`` (epochs) into steps.

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp
      >>> m = equilibrium_method(EquilibriumRunConfig(hidden=(8,), T=5), 6, 3)
      >>> state = m.init(jax.random.key(0))
      >>> state, metrics = eqx.filter_jit(m.step)(state, jnp.ones((2, 6), jnp.float32), jnp.array([0, 1]),
      ...                                         jax.random.key(1))
      >>> sorted(metrics)[:4]
      ['correct', 'eq_residual', 'fwd_rate', 'loss']
    """
    eq_config = config.equilibrium_config()
    input_shape = _input_shape(config, in_features)
    schedule = optax.piecewise_constant_schedule(
        config.lr, {int(m * steps_per_epoch): 0.1 for m in config.lr_milestones})
    optimizer = optax.chain(optax.add_decayed_weights(config.weight_decay),
                            optax.sgd(schedule, momentum=config.momentum))

    def init(key):
        net = make_network(config, in_features, num_classes, key=key)
        return EquilibriumState(net, optimizer.init(eqx.filter(net, trainable(net))))

    def step(state: EquilibriumState, x, y, key):
        net = state.net.update_norms()
        params, static = eqx.partition(net, trainable(net))
        xs = x.reshape(x.shape[0], *input_shape)

        def loss_fn(diff):
            params, probe = diff
            model = eqx.combine(params, static)
            a, info = equilibrium(model.materialize(key=key), xs, eq_config, probe=probe)
            logits = jax.vmap(model.logits)(a)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, (logits, info)

        probe = jnp.zeros(4, xs.dtype)
        (loss, (logits, info)), (grads, probe_grad) = jax.value_and_grad(loss_fn, has_aux=True)((params, probe))
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, state.opt_state, params)
        stats = backward_stats(probe_grad)
        metrics = {"loss": loss, "correct": jnp.sum(jnp.argmax(logits, -1).astype(y.dtype) == y),
                   "fwd_rate": info.firing_rate, "eq_residual": info.residual, "syn_ops": info.syn_ops}
        if config.backward == "ide":
            metrics.update(solver_iters=stats["solver_iterations"], solver_residual=stats["solver_residual"])
        else:
            metrics.update(bwd_rate=stats["backward_rate"], bwd_syn_ops=stats["backward_syn_ops"])
        return EquilibriumState(eqx.apply_updates(net, updates), opt_state), metrics

    def predict(state: EquilibriumState, x):
        net = state.net
        a, _ = equilibrium(net.materialize(key=jax.random.key(0)), x.reshape(x.shape[0], *input_shape), eq_config)
        return jnp.argmax(jax.vmap(net.logits)(a), axis=-1)

    return Method(init=init, step=step, predict=predict, network=lambda state: state.net)


def _build(backward: str, defaults: dict[str, dict[str, Any]], config: dict[str, Any],
           data_dir: str | None) -> TrainingRun:
    from jsnn.methods import load_split_arrays

    full = {"method": backward, "data": "digits", "seed": 0}
    full.update(config)
    if full["data"] not in defaults:
        raise ValueError(f"--method {backward} has defaults for {sorted(defaults)}; got --data {full['data']}.")
    full = {**defaults[full["data"]], **full, "backward": backward}
    run_config = EquilibriumRunConfig.from_dict(full)
    full.update(run_config.to_dict())
    train, test, num_classes = load_split_arrays(full["data"], data_dir)
    method = equilibrium_method(run_config, train[0].shape[1], num_classes,
                                steps_per_epoch=len(train[1]) // full["batch_size"])
    return TrainingRun(method, train, test, full)


def build_ide(config: dict[str, Any], *, data_dir: str | None = None) -> TrainingRun:
    """An IDE run for ``config`` (defaults from :data:`IDE_DEFAULTS`)."""
    return _build("ide", IDE_DEFAULTS, config, data_dir)


def build_spide(config: dict[str, Any], *, data_dir: str | None = None) -> TrainingRun:
    """A SPIDE run for ``config`` (defaults from :data:`SPIDE_DEFAULTS`)."""
    return _build("spide", SPIDE_DEFAULTS, config, data_dir)
