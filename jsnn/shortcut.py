"""Shortcut back-propagation with the evolutionary balance coefficient, for deep SNNs.

Surrogate gradients shrink layer by layer, so the shallow layers of a deep spiking net
barely learn. Shortcut back-propagation adds training-only classifier *branches* from
intermediate layers straight to the loss, which carry the output gradient directly to
the shallow layers; *evolutionary* training moves the loss weight from the branches to
the main output as training proceeds. The branches are removed for inference.

* :func:`attach` wraps a :class:`jsnn.nn.Sequential` backbone (MLP or conv) into a
  :class:`ShortcutNet`: the backbone, untouched, plus a separate tuple of heads;
* :func:`strip` returns the backbone: the plain network, for evaluation, lowering, NIR;
* :func:`shortcut_loss` is ``w_main * CE(main) + w_branch * sum_i CE(branch_i)``;
* :func:`balance_schedule` maps the step to ``(w_main, w_branch)`` = ``(1 - lam, lam)`` with
  ``lam`` any optax schedule (linear 1 -> 0 by default, cosine), or ``(1, 1)`` for plain
  shortcut BP ("constant"); a pure function of the step, so a resumed run is exact;
* :func:`build_shortcut` is ``jsnn train --method shortcut``.

Branch positions count *stages*: stage ``i`` (1-based) is the ``i``-th temporal (neuron) layer of
the backbone, and a branch at stage ``i`` reads that layer's output; its loss therefore reaches
only the layers up to stage ``i``. The last temporal layer is the readout, so ``1 <= i < stages``.

Loss form (ALGORITHMS §4.2 leaves it open): with ``lam`` the branch weight, the loss is
``(1 - lam) CE(O_n) + lam sum_i CE(O_i)``. The alternative ``CE(O_n) + lam' sum_i CE(O_i)`` is the
same up to the factor ``1 / (1 - lam)`` (``lam' = lam / (1 - lam)``); under Adam a constant factor
hardly matters, but a time-varying one acts on the relative weight only through this form, and
at ``lam = 1`` (the first step) the main head gets no gradient, as in the paper's description.

Deep backbones need their spikes to reach the last layer at initialisation: rather than a batch
norm over time and batch (a cross-sample statistic that single-sample modules, the integer
lowering and NIR do not hold), jsnn scales the initial weights (``BPTTConfig.weight_scale``): a
gain of 4 keeps every layer of a 10-hidden-layer LIF MLP (decay 0.875, threshold 1, direct
MNIST input) firing at about 20 % (gain 1: silent from layer 3 on), and the trained net stays a
plain ``Linear``/``LIF`` stack that ``jsnn lower`` accepts unchanged.

References:
  Guo, Chen, Hao, Peng, Jie, Zhang, Liu, Ma, "Take a shortcut back: mitigating the gradient
  vanishing for training spiking neural networks", NeurIPS 2024, arXiv 2401.04486.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from jsnn import losses
from jsnn.bptt import BPTTConfig, default_optimizer, encode_batch, image_shape, make_network, predict_labels
from jsnn.neurons import Trace
from jsnn.nn import Conv2d, Linear, Sequential
from jsnn.train import Method, TrainingRun

__all__ = [
    "SCHEDULES",
    "SHORTCUT_DEFAULTS",
    "PoolHead",
    "ShortcutConfig",
    "ShortcutNet",
    "ShortcutState",
    "attach",
    "balance_schedule",
    "build_shortcut",
    "layer_grad_norms",
    "shortcut_loss",
    "shortcut_method",
    "strip",
]

SCHEDULES = ("linear", "cosine", "constant")


class PoolHead(eqx.Module):
    """The default branch head: average over time and space, then a :class:`jsnn.nn.Linear` to the classes.

    ``logits = W mean_{t, h, w} x[t, :, h, w] + b`` for a conv stage ``(T, C, H, W)``, and
    ``W mean_t x[t, :] + b`` for an MLP stage ``(T, n)``.

    Args:
      shape: one time step's shape at the branch point, ``(C, ...)``.
      num_classes: number of logits.
      key: PRNG key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> head = PoolHead((4, 3, 3), 10, key=jax.random.key(0))
      >>> head(jnp.ones((5, 4, 3, 3), jnp.float32)).shape
      (10,)
    """

    linear: Linear

    def __init__(self, shape: tuple[int, ...], num_classes: int, *, key: PRNGKeyArray):
        self.linear = Linear(shape[0], num_classes, key=key)

    def __call__(self, x: Float[Array, "T C *space"]) -> Float[Array, " K"]:
        return self.linear(x.mean(axis=(0, *range(2, x.ndim))))


class ShortcutNet(eqx.Module):
    """A backbone with training-only branch heads (build it with :func:`attach`).

    Attributes:
      backbone: the plain network, exactly as given to :func:`attach`.
      heads: one head per branch, mapping a stage's outputs ``(T, *shape)`` to logits ``(K,)``.
      at: the stage (1-based temporal-layer number) each head reads.
    """

    backbone: Sequential
    heads: tuple[eqx.Module, ...]
    at: tuple[int, ...] = eqx.field(static=True)

    def _segments(self) -> list[Sequential]:
        layers, chunk = self.backbone.layers, self.backbone.time_chunk
        cuts = [0, *(self.backbone.neuron_layers[i - 1] + 1 for i in self.at), len(layers)]
        return [Sequential(layers[a:b], time_chunk=chunk) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

    def run(self, inputs: Float[Array, "T ..."]) -> tuple[Array, Float[Array, "n K"], list[Trace]]:
        """``(main_outputs, branch_logits, traces)`` of one sample.

        ``main_outputs`` and ``traces`` are the backbone's own (``backbone.run(inputs)``): the
        backbone runs segment by segment, and each head reads the output at its cut.
        """
        x, logits, traces = inputs, [], []
        segments = self._segments()
        for segment, head in zip(segments[:-1], self.heads, strict=True):
            x, seg_traces = segment.run(x)
            traces += seg_traces
            logits.append(head(x))
        out, seg_traces = segments[-1].run(x)
        return out, jnp.stack(logits), traces + seg_traces

    def __call__(self, inputs: Float[Array, "T ..."]) -> tuple[Array, Float[Array, "n K"]]:
        """``(main_outputs (T, K), branch_logits (n_branches, K))`` of one sample."""
        out, logits, _ = self.run(inputs)
        return out, logits


def _stage_shapes(backbone: Sequential, input_shape: tuple[int, ...], at: Sequence[int]):
    """Per-step output shapes of the branch stages and of the backbone (``eval_shape``: no compute)."""
    probe = ShortcutNet(backbone, tuple(eqx.nn.Identity() for _ in at), tuple(at))
    dtype = next((leaf.dtype for leaf in jax.tree.leaves(eqx.filter(backbone, eqx.is_inexact_array))), jnp.float32)

    def shapes(x):
        segments = probe._segments()
        taps = []
        for segment in segments[:-1]:
            x = segment(x)
            taps.append(x)
        return taps, segments[-1](x)

    taps, out = jax.eval_shape(shapes, jax.ShapeDtypeStruct((1, *input_shape), dtype))
    return [t.shape[1:] for t in taps], out.shape[1:], dtype


def _check_positions(at: Sequence[int], stages: int) -> tuple[int, ...]:
    at = tuple(at)
    if not at or any(not isinstance(i, int) or isinstance(i, bool) for i in at):
        raise ValueError(f"at must be a non-empty list of stage numbers; got {list(at)}.")
    if any(i < 1 or i >= stages for i in at) or list(at) != sorted(set(at)):
        raise ValueError(f"branch positions {list(at)} are outside the backbone: give increasing stage numbers "
                         f"in 1..{stages - 1} (the backbone has {stages} temporal layers; the last is the readout).")
    return at


def attach(
    backbone: Sequential,
    at: Sequence[int],
    head: Callable[..., eqx.Module] = PoolHead,
    *,
    input_shape: tuple[int, ...] | None = None,
    key: PRNGKeyArray,
) -> ShortcutNet:
    """Add branch heads after chosen stages of a backbone.

    Args:
      backbone: a :class:`jsnn.nn.Sequential` (MLP or conv) ending in its readout layer.
      at: stages to branch from, strictly increasing, each in ``1 .. stages - 1`` (a stage is a
        temporal layer, counted from 1; the last one is the readout).
      head: head factory ``head(shape, num_classes, *, key) -> module``, where ``shape`` is one time
        step's shape at the branch point; the module maps ``(T, *shape)`` to ``(num_classes,)``
        logits. Default :class:`PoolHead` (average over time and space, then Linear). The heads'
        floating-point parameters are cast to the backbone's dtype.
      input_shape: one time step's input shape; needed when the first layer is not a ``Linear``.
      key: PRNG key of the heads (the backbone is not touched).

    Returns:
      A :class:`ShortcutNet` whose ``backbone`` is ``backbone`` itself.

    Raises:
      ValueError: a position outside ``1 .. stages - 1`` or not increasing; no input shape for a
        conv backbone; a head whose output is not ``(num_classes,)``.

    Example:
      >>> import jax, jsnn
      >>> net = jsnn.mlp(6, [8, 8, 8], 3, key=jax.random.key(0))
      >>> model = attach(net, at=[1, 2], key=jax.random.key(1))
      >>> strip(model) is net, len(model.heads)
      (True, 2)
    """
    if not isinstance(backbone, Sequential):
        raise TypeError(f"attach needs a jsnn.nn.Sequential backbone; got {type(backbone).__name__}.")
    at = _check_positions(at, len(backbone.neuron_layers))
    if input_shape is None:
        first = backbone.layers[0]
        if not isinstance(first, Linear):
            raise ValueError(f"attach cannot infer the input shape of a backbone starting with "
                             f"{type(first).__name__}; pass input_shape=(C, H, W).")
        input_shape = (first.in_features,)
    shapes, out_shape, dtype = _stage_shapes(backbone, tuple(input_shape), at)
    num_classes = out_shape[-1]
    keys = jax.random.split(key, len(at))
    heads = tuple(head(shape, num_classes, key=k) for shape, k in zip(shapes, keys, strict=True))
    cast = lambda leaf: leaf.astype(dtype) if eqx.is_inexact_array(leaf) else leaf  # noqa: E731
    heads = jax.tree.map(cast, heads)
    for i, shape, h in zip(at, shapes, heads, strict=True):
        got = jax.eval_shape(h, jax.ShapeDtypeStruct((1, *shape), dtype)).shape
        if got != (num_classes,):
            raise ValueError(f"the head at stage {i} outputs shape {got}, but the backbone has {num_classes} "
                             f"classes: a head must map (T, *{shape}) to ({num_classes},) logits.")
    return ShortcutNet(backbone, heads, at)


def strip(model: ShortcutNet) -> Sequential:
    """The plain backbone of a :class:`ShortcutNet`: no heads, no inference cost.

    It is the very pytree given to :func:`attach` (after training: the trained backbone), so its
    outputs and spike counts are the training model's main output bit for bit.
    """
    if not isinstance(model, ShortcutNet):
        raise TypeError(f"strip needs a ShortcutNet (from attach); got {type(model).__name__}.")
    return model.backbone


def balance_schedule(
    schedule: str | optax.Schedule = "linear", total: int | None = None, *, steps_per_epoch: int = 1,
) -> Callable[[Int[Array, ""] | int], tuple[Float[Array, ""], Float[Array, ""]]]:
    """The balance coefficient: ``weights(step) -> (w_main, w_branch)``, a pure function of the step.

    ``w_main = 1 - lam(n)``, ``w_branch = lam(n)`` with ``n = step // steps_per_epoch`` and

    * "linear": ``lam(n) = 1 - n / total`` (clipped at 0), the evolutionary default;
    * "cosine": ``lam(n) = (1 + cos(pi n / total)) / 2``;
    * a callable: any optax schedule ``lam(n)`` (e.g. ``optax.exponential_decay``);
    * "constant": plain shortcut BP, ``(w_main, w_branch) = (1, 1)`` at every step.

    Args:
      schedule: a name in :data:`SCHEDULES` or a schedule function of ``n``.
      total: length of the decay in units of ``n`` (steps, or epochs with ``steps_per_epoch``);
        needed by "linear" and "cosine".
      steps_per_epoch: step the coefficient once per this many steps (per epoch).

    Returns:
      ``weights(step)``, float32 scalars, traceable inside ``jit``.

    Raises:
      ValueError: an unknown schedule name, or a missing or non-positive ``total``.

    Example:
      >>> w = balance_schedule("linear", 4)
      >>> [tuple(round(float(v), 2) for v in w(s)) for s in (0, 2, 4, 9)]
      [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0), (1.0, 0.0)]
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be positive; got {steps_per_epoch}.")
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown balance schedule {schedule!r}; use one of {SCHEDULES} or an optax schedule.")
        if schedule != "constant" and (total is None or total < 1):
            raise ValueError(f"the {schedule!r} balance schedule needs the run length: total >= 1; got {total}.")
    elif not callable(schedule):
        raise ValueError(f"schedule must be one of {SCHEDULES} or a function of the step; got {schedule!r}.")

    if schedule == "constant":
        lam = None
    elif schedule == "linear":
        lam = optax.linear_schedule(1.0, 0.0, total)
    elif schedule == "cosine":
        lam = optax.cosine_decay_schedule(1.0, total)
    else:
        lam = schedule

    def weights(step):
        if lam is None:
            return jnp.ones((), jnp.float32), jnp.ones((), jnp.float32)
        count = (jnp.asarray(step) // steps_per_epoch).astype(jnp.float32)
        branch = jnp.asarray(lam(count), jnp.float32)
        return 1.0 - branch, branch

    return weights


def shortcut_loss(
    model: ShortcutNet,
    inputs: Float[Array, "B T ..."],
    labels: Int[Array, " B"],
    weights: tuple[Float[Array, ""], Float[Array, ""]],
    *,
    loss: str = "ce_mean_membrane",
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """``w_main * L(main) + w_branch * sum_i CE(branch_i)``, averaged over the batch.

    ``L`` is a loss of :data:`jsnn.losses.LOSSES` on the backbone's output sequence (cross-entropy
    of the time-averaged readout potential by default); ``CE(branch_i)`` is the cross-entropy of
    head i's logits.

    Args:
      model: the training model.
      inputs: encoded inputs ``(B, T, ...)``.
      labels: integer labels ``(B,)``.
      weights: ``(w_main, w_branch)``, e.g. ``balance_schedule(...)(step)``.
      loss: the main output's loss, a key of :data:`jsnn.losses.LOSSES`.

    Returns:
      ``(loss, aux)``: aux holds ``correct`` (main-output predictions), ``main_loss`` and
      ``branch_loss`` (the sum over branches), batch means.

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp, optax, jsnn
      >>> model = attach(jsnn.mlp(6, [8, 8, 8], 3, key=jax.random.key(0)), at=[1, 2], key=jax.random.key(1))
      >>> weights = balance_schedule("linear", total=100)   # evolutionary: branches first
      >>> opt = optax.adam(1e-2)
      >>> opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))
      >>> @eqx.filter_jit
      ... def train_step(model, opt_state, step, x, y):
      ...     grads, aux = eqx.filter_grad(shortcut_loss, has_aux=True)(model, x, y, weights(step))
      ...     updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
      ...     return eqx.apply_updates(model, updates), opt_state, aux
      >>> x, y = jnp.ones((4, 5, 6), jnp.float32), jnp.array([0, 1, 2, 0])
      >>> model, opt_state, aux = train_step(model, opt_state, 0, x, y)
      >>> net = strip(model)   # the plain trained backbone: evaluate, lower, export
      >>> jsnn.simulate(net, x[0]).shape
      (5, 3)
    """
    loss_fn, logits_fn = losses.LOSSES[loss]
    out, branch_logits = jax.vmap(model)(inputs)
    main = jnp.mean(jax.vmap(loss_fn)(out, labels))
    per_branch = optax.softmax_cross_entropy_with_integer_labels(branch_logits, labels[:, None])
    branch = jnp.mean(jnp.sum(per_branch, axis=1))
    w_main, w_branch = weights
    total = w_main * main + w_branch * branch
    correct = jnp.sum(jnp.argmax(jax.vmap(logits_fn)(out), axis=-1).astype(labels.dtype) == labels)
    return total, {"correct": correct, "main_loss": main, "branch_loss": branch}


def layer_grad_norms(grads: Sequential) -> dict[str, Float[Array, ""]]:
    """``gnorm_k``: the L2 norm of the gradient of the k-th ``Linear``/``Conv2d`` layer of a backbone (k from 0)."""
    layers = [layer for layer in grads.layers if isinstance(layer, Linear | Conv2d)]
    return {f"gnorm_{k}": optax.tree_utils.tree_norm(eqx.filter(layer, eqx.is_inexact_array))
            for k, layer in enumerate(layers)}


@dataclass(frozen=True)
class ShortcutConfig:
    """Shortcut-specific hyperparameters (the backbone and optimiser come from :class:`jsnn.bptt.BPTTConfig`).

    Attributes:
      branches: stages to branch from (see :func:`attach`); ``None``: every hidden stage but the last.
      schedule: balance coefficient, a name in :data:`SCHEDULES` (stepped per training step).
    """

    branches: tuple[int, ...] | None = None
    schedule: str = "linear"

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown balance schedule {self.schedule!r}; use one of {SCHEDULES}.")

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ShortcutConfig:
        """Pick this class's fields out of a (larger) run config."""
        values = {f.name: config[f.name] for f in fields(cls) if config.get(f.name) is not None}
        if "branches" in values:
            values["branches"] = tuple(values["branches"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["branches"] = None if self.branches is None else list(self.branches)
        return values


class ShortcutState(NamedTuple):
    """Training state: the model with its heads, the optimiser state and the step count (for the schedule)."""

    model: ShortcutNet
    opt_state: optax.OptState
    step: Int[Array, ""]


def shortcut_method(
    config: BPTTConfig, shortcut: ShortcutConfig, in_features: int, num_classes: int, *,
    total_steps: int, optimizer: optax.GradientTransformation | None = None,
) -> Method:
    """Shortcut BP as a :class:`jsnn.train.Method`: BPTT's backbone, encoding and optimiser, plus branches.

    Args:
      config: backbone, encoding, loss and optimiser hyperparameters (as for ``--method bptt``).
      shortcut: branch positions and the balance schedule.
      in_features: width of a flattened input sample.
      num_classes: number of outputs.
      total_steps: length of the run (the balance and learning-rate schedules).
      optimizer: overrides the default Adam.

    Returns:
      A Method whose state is a :class:`ShortcutState`, whose metrics include the balance weight
      ``w_branch`` and the per-layer gradient norms ``gnorm_k``, and whose ``network`` is the
      stripped backbone.

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp
      >>> m = shortcut_method(BPTTConfig(hidden=(8,), depth=3, T=4), ShortcutConfig(), 6, 3, total_steps=10)
      >>> state = m.init(jax.random.key(0))
      >>> state, metrics = eqx.filter_jit(m.step)(state, jnp.ones((2, 6), jnp.float32), jnp.array([0, 1]),
      ...                                         jax.random.key(1))
      >>> sorted(metrics)[:4], type(m.network(state)).__name__
      (['branch_loss', 'correct', 'gnorm_0', 'gnorm_1'], 'Sequential')
    """
    if config.rate_reg:
        raise ValueError("shortcut BP does not take rate_reg; train with rate_reg=0.")
    optimizer = default_optimizer(config, total_steps) if optimizer is None else optimizer
    weights = balance_schedule(shortcut.schedule, total_steps)
    hidden = len(config.layer_sizes)
    branches = shortcut.branches if shortcut.branches is not None else tuple(range(1, hidden))
    if not branches:
        raise ValueError(f"shortcut BP needs a backbone with at least 2 hidden layers (or explicit branches); "
                         f"this one has {hidden}.")
    _check_positions(branches, hidden + 1)  # before any work: the readout is the last stage

    def init(key):  # the backbone from the same key as --method bptt's: the same initial network
        net = make_network(config, in_features, num_classes, key=key)
        model = attach(net, branches, input_shape=image_shape(config, in_features), key=jax.random.fold_in(key, 1))
        return ShortcutState(model, optimizer.init(eqx.filter(model, eqx.is_inexact_array)), jnp.zeros((), jnp.int32))

    def step(state: ShortcutState, x, y, key):
        inputs = encode_batch(config, x, key=key)
        w = weights(state.step)
        (loss, aux), grads = eqx.filter_value_and_grad(shortcut_loss, has_aux=True)(state.model, inputs, y, w,
                                                                                    loss=config.loss)
        # Adam's bias correction mixes a float with its int32 count (see jsnn.bptt.bptt_method).
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, state.opt_state,
                                                  eqx.filter(state.model, eqx.is_inexact_array))
        metrics = {"loss": loss, **aux, "w_branch": w[1],
                   **layer_grad_norms(grads.backbone)}
        return ShortcutState(eqx.apply_updates(state.model, updates), opt_state, state.step + 1), metrics

    def predict(state: ShortcutState, x):
        return predict_labels(strip(state.model), config, x)

    return Method(init=init, step=step, predict=predict, network=lambda state: strip(state.model))


#: per data set defaults of ``jsnn train --method shortcut`` (flags override them)
SHORTCUT_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"hidden": [128], "depth": 3, "T": 8, "epochs": 30, "batch_size": 32, "lr": 3e-3, "weight_scale": 2.0},
    "mnist": {"hidden": [128], "depth": 10, "T": 6, "epochs": 10, "batch_size": 128, "lr": 1e-3,
              "weight_scale": 4.0},
    "yinyang": {"hidden": [64], "depth": 4, "T": 16, "epochs": 40, "batch_size": 32, "lr": 3e-3,
                "weight_scale": 3.0},
}


def build_shortcut(config: dict[str, Any], *, data_dir: str | None = None) -> TrainingRun:
    """A shortcut-BP run for ``config`` (defaults filled in from :data:`SHORTCUT_DEFAULTS`)."""
    from jsnn.methods import load_split_arrays

    full = {"method": "shortcut", "data": "digits", "seed": 0}
    full.update(config)
    full = {**SHORTCUT_DEFAULTS[full["data"]], **full}
    bptt_config = BPTTConfig.from_dict(full)
    shortcut = ShortcutConfig.from_dict(full)
    full.update(bptt_config.to_dict())
    full.update(shortcut.to_dict())
    full["hidden"] = list(full["hidden"])
    train, test, num_classes = load_split_arrays(full["data"], data_dir)
    total = full["epochs"] * (len(train[1]) // full["batch_size"])
    method = shortcut_method(bptt_config, shortcut, train[0].shape[1], num_classes, total_steps=total)
    return TrainingRun(method, train, test, full)
