"""``jsnn train --method exact``: event-driven CuBa-LIF networks trained with exact spike-time gradients.

``exact_method`` turns an :class:`ExactConfig` into a :class:`jsnn.train.Method` (init, jitted-able step,
predict, network); ``exact_run`` turns arrays and a config into a :class:`jsnn.train.TrainingRun` with the
tuned defaults (``jsnn.fit(..., method="exact")``), and ``build_exact`` loads the data of a run config
(CLI flags or a checkpoint header) and calls ``exact_run``.

Own data (``EXACT_DEFAULTS["own"]``): features outside [0, 1] become on/off channels in [0, 1]
(``input_scaling="onoff"``: the standardised value's positive and negative parts beyond 0 and beyond 1
standard deviation, so the size of a deviation shows in which inputs spike; see :mod:`jsnn.data.scaling`),
latency-coded bright-early (``invert``) in the window ``[t_min, t_max]`` =
[0, tau_mem], so a feature at its mean sends no spike, like an image's black pixels; a time series
``(T, F)`` is read as ``T F`` static features (the event-driven recurrent layer is not fed by time-series
inputs here; use BPTT's ``Recurrent`` recipe for sequences). The hidden weights' scale is calibrated on
128 training samples so that about half the hidden neurons spike per sample (:func:`calibrated_init`). The gradient of a step comes from ``config.grad``:

- ``"autodiff"``: reverse mode through the event scan with the IFT spike-time rule;
- ``"adjoint"``: the hand EventProp ``custom_vjp`` (O(spikes) memory);
- ``"fp"``: forward mode (``jax.jacfwd``), one tangent per parameter; exact but its cost grows with the
  parameter count, so use it for small networks.

All three give the same gradient to rounding (tests/test_exact_grad.py).

References:
  Lee, Haghighatshoar, Karbasi, "Exact gradient computation for spiking neural networks via forward
  propagation", AISTATS 2023, arXiv 2210.15415.
  Wunderlich and Pehle, "Event-based backpropagation can compute exact gradients for spiking neural
  networks", Sci. Rep. 2021, arXiv 2009.08378.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple, get_args

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from jsnn.train import Method, TrainingRun

from .flow import LIFConfig
from .losses import predict_count, predict_first_spike, predict_voltage, spike_count_loss, ttfs_loss, voltage_loss
from .net import EventNet, ReadoutMode, SimMode

__all__ = ["EXACT_DEFAULTS", "ExactConfig", "ExactState", "build_exact", "calibrated_init", "encode_latency",
           "exact_loss", "exact_method", "exact_run"]

#: per data set defaults of ``jsnn train --method exact`` (flags override them)
EXACT_DEFAULTS: dict[str, dict[str, Any]] = {
    "yinyang": {"hidden": [200], "epochs": 40, "batch_size": 32, "lr": 2e-3, "lr_decay": 0.93, "invert": False,
                "t_min": 0.0, "t_max": 10.0, "t_bias": 0.0, "t_end": 30.0, "max_spikes": [4, 2],
                "init": [[1.2, 0.8], [0.1, 0.3]], "silent_weight": 1.0},
    "digits": {"hidden": [100], "epochs": 30, "batch_size": 32, "lr": 3e-3, "invert": True,
               "t_min": 0.0, "t_max": 10.0, "t_bias": 0.0, "t_end": 30.0, "max_spikes": [2, 2],
               "init": [[0.1, 0.3], [0.05, 0.3]]},
    "mnist": {"hidden": [350], "epochs": 12, "batch_size": 64, "lr": 2e-3, "invert": True,
              "t_min": 0.0, "t_max": 10.0, "t_bias": 0.0, "t_end": 30.0, "max_spikes": [2, 2],
              "init": [[0.035, 0.08], [0.05, 0.2]], "sim": "parallel", "lr_decay": 0.85, "loss": "voltage",
              "readout": "integrator", "scale": 10.0, "grad": "autodiff"},
    "own": {"hidden": [100], "epochs": 30, "batch_size": 32, "lr": 2e-3, "lr_decay": 0.93, "invert": True,
            "t_min": 0.0, "t_max": 10.0, "t_bias": 0.0, "t_end": 30.0, "max_spikes": [2, 2],
            "init": "calibrated", "fire_fraction": 0.5, "sim": "parallel", "loss": "voltage",
            "readout": "integrator", "scale": 10.0, "grad": "autodiff", "input_scaling": "auto"},
}

#: the readout init that calibrated_init keeps (the hidden layers' scale is calibrated)
READOUT_INIT = {"integrator": (0.05, 0.2), "spiking": (0.1, 0.3)}

GRADS = ("fp", "autodiff", "adjoint")
LOSSES = ("ttfs", "count", "voltage")
SIMS = get_args(SimMode)
READOUTS = get_args(ReadoutMode)


@dataclass(frozen=True)
class ExactConfig:
    """Hyperparameters of an exact-gradient run (all JSON-serialisable).

    Attributes:
      hidden: hidden layer widths.
      grad: ``"fp"``, ``"autodiff"`` or ``"adjoint"`` (see the module docstring).
      sim: layer simulator of the ``"fp"``/``"autodiff"`` modes: ``"event"`` (event-slot scan) or
        ``"parallel"`` (all neurons at once, a root solve only where a spike is; same results; ``EventNet.sim``).
      loss: ``"ttfs"`` (first-spike cross-entropy + regulariser), ``"count"`` or ``"voltage"``.
      readout: ``"spiking"`` output layer or ``"integrator"`` (non-spiking, closed form; ``EventNet.readout``),
        which needs ``loss="voltage"``: its smooth mean potential avoids the jumps a spiking output's reset puts
        into a voltage loss.
      tau_syn, tau_mem, threshold, t_end, reset: neuron constants (``LIFConfig``).
      t_min, t_max: latency window: feature value x spikes at ``t_min + (t_max - t_min) x`` (or ``1 - x``
        when ``invert``); with ``invert``, features equal to 0 do not spike.
      t_bias: time of the extra bias input spike.
      invert: brighter-is-earlier encoding (images) instead of value-is-time (Yin-Yang).
      max_spikes: spike buffer per neuron, per layer (a neuron transmits its first ``max_spikes`` spikes;
        more are counted as overflow).
      max_events: optional cap per layer on the number of input events (earliest first), or None.
      init: (mean, std) of the Gaussian initial weights, per layer.
      lr: Adam learning rate, multiplied by ``lr_decay`` every epoch.
      lr_decay: per-epoch learning-rate factor.
      clip: global-norm gradient clip before Adam (None disables). Exact gradients have 1/Vdot factors
        that spike near grazing crossings; without the clip, TTFS training can push all outputs silent.
      tau0, tau1, alpha, silent_weight: TTFS loss constants (``ttfs_loss``); ``scale`` multiplies count/voltage logits.
      steps_per_epoch: steps per epoch for the learning-rate schedule.
    """

    hidden: tuple[int, ...] = (120,)
    grad: str = "adjoint"
    sim: str = "event"
    loss: str = "ttfs"
    readout: str = "spiking"
    tau_syn: float = 5.0
    tau_mem: float = 10.0
    threshold: float = 1.0
    t_end: float = 30.0
    reset: str = "zero"
    t_min: float = 0.0
    t_max: float = 10.0
    t_bias: float = 0.0
    invert: bool = False
    max_spikes: tuple[int, ...] = (3, 3)
    max_events: tuple[int | None, ...] | None = None
    init: tuple[tuple[float, float], ...] = ((1.5, 1.0), (0.1, 0.3))
    lr: float = 5e-3
    lr_decay: float = 0.95
    clip: float | None = 1.0
    tau0: float = 0.5
    tau1: float = 6.4
    alpha: float = 3e-3
    silent_weight: float = 0.1
    scale: float = 1.0
    steps_per_epoch: int = 156

    def __post_init__(self):
        if self.grad not in GRADS:
            raise ValueError(f"grad must be one of {GRADS}; got {self.grad!r}.")
        if self.sim not in SIMS:
            raise ValueError(f"sim must be one of {SIMS}; got {self.sim!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {self.loss!r}.")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}; got {self.readout!r}.")
        if self.readout == "integrator" and self.loss != "voltage":
            raise ValueError(f"an integrator readout does not spike; use loss='voltage' (got {self.loss!r}).")
        n_layers = len(self.hidden) + 1
        if len(self.max_spikes) != n_layers or len(self.init) != n_layers:
            raise ValueError(f"max_spikes and init need one entry per layer ({n_layers}); got "
                             f"{self.max_spikes!r} and {self.init!r}.")
        if not self.t_min <= self.t_max < self.t_end:
            raise ValueError(f"need t_min <= t_max < t_end; got {self.t_min}, {self.t_max}, {self.t_end}.")

    @property
    def lif(self) -> LIFConfig:
        """The neuron constants."""
        return LIFConfig(tau_syn=self.tau_syn, tau_mem=self.tau_mem, threshold=self.threshold,
                         t_end=self.t_end, reset=self.reset)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ExactConfig:
        """Pick this class's fields out of a (larger) run config."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in config.items() if k in names}
        for name in ("hidden", "max_spikes", "max_events"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        if "init" in values:
            values["init"] = tuple(tuple(p) for p in values["init"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        d = asdict(self)
        d["hidden"], d["max_spikes"] = list(self.hidden), list(self.max_spikes)
        d["max_events"] = None if self.max_events is None else list(self.max_events)
        d["init"] = [list(p) for p in self.init]
        return d


def encode_latency(config: ExactConfig, x: Float[Array, " F"]) -> Float[Array, "F1 1"]:
    """Latency-encode one sample's features in [0, 1] into one spike time per input plus a bias spike.

    ``t = t_min + (t_max - t_min) x`` (``1 - x`` when ``config.invert``; then x = 0 gives no spike, inf).

    Example:
      >>> import jax.numpy as jnp
      >>> encode_latency(ExactConfig(), jnp.array([0.0, 0.5])).ravel().tolist()
      [0.0, 5.0, 0.0]
    """
    span = config.t_max - config.t_min
    if config.invert:
        t = config.t_min + span * (1 - x)
        t = jnp.where(x > 0, t, jnp.full_like(t, jnp.inf))
    else:
        t = config.t_min + span * x
    return jnp.concatenate([t, jnp.full((1,), config.t_bias, x.dtype)])[:, None]


def _output(net: EventNet, config: ExactConfig, x: Array, grad: str):
    return net(encode_latency(config, x), grad=grad)


def exact_loss(net: EventNet, config: ExactConfig, x: Float[Array, "B F"], y: Int[Array, " B"],
               grad: str = "autodiff") -> tuple[Float[Array, ""], dict[str, Array]]:
    """Mean loss over a batch of raw samples, with diagnostics (correct count, overflow, silent outputs).

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp
      >>> cfg = ExactConfig(hidden=(4,), max_spikes=(2, 2), init=((2.0, 1.0), (1.0, 0.5)))
      >>> net = EventNet((3, 4, 3), key=jax.random.key(0), cfg=cfg.lif, max_spikes=(2, 2), init=cfg.init)
      >>> loss, aux = eqx.filter_jit(exact_loss)(net, cfg, jnp.full((2, 2), 0.5, jnp.float32), jnp.array([0, 1]))
      >>> sorted(aux)
      ['correct', 'dead', 'grazing', 'overflow', 'overflow_out', 'saturated', 'silent']
    """
    t_end = config.t_end

    def one(xi, yi):
        layers = _output(net, config, xi, grad)
        out = layers[-1]
        if config.loss == "ttfs":
            loss = ttfs_loss(out, yi, t_end=t_end, tau0=config.tau0, tau1=config.tau1, alpha=config.alpha,
                             silent_weight=config.silent_weight)
            pred = predict_first_spike(out, t_end)
        elif config.loss == "count":
            loss, pred = spike_count_loss(out, yi, t_end=t_end, scale=config.scale), predict_count(out, t_end)
        else:
            loss, pred = voltage_loss(out, yi, t_end=t_end, scale=config.scale), predict_voltage(out)
        overflow = jnp.any(jnp.stack([jnp.any(r.overflow) for r in layers[:-1]] + [jnp.asarray(False)]))
        grazing = sum(jnp.sum(r.grazing) for r in layers)
        fired = [jnp.isfinite(r.times[:, 0]) for r in layers[:-1]]
        # saturated: every output overflowed at one and the same (finite) first spike time, so no output can win
        # (count and first-spike decisions tie); a run stuck there has diverged (lr 1e6 on Yin-Yang: from step 1).
        # An integrator readout never spikes: its overflow flag only says that a hidden layer lost spikes.
        first = out.times[:, 0]
        saturated = jnp.all(out.overflow) & jnp.all(first == first[0]) & jnp.isfinite(first[0])
        return (loss, pred == yi, overflow, jnp.any(out.overflow), saturated, grazing,
                jnp.all(~jnp.isfinite(out.times[:, 0])), fired)

    loss, correct, overflow, overflow_out, saturated, grazing, silent, fired = jax.vmap(one)(x, y)
    count = lambda b: jnp.sum(b.astype(jnp.int32))  # noqa: E731
    dead = [~jnp.any(f, axis=0) for f in fired]  # hidden neurons silent on every sample: no gradient reaches them
    aux = {"correct": count(correct), "overflow": count(overflow), "overflow_out": count(overflow_out),
           "grazing": jnp.sum(grazing), "silent": count(silent), "saturated": jnp.mean(saturated),
           "dead": count(jnp.concatenate([*dead, jnp.zeros((0,), bool)]))}
    return jnp.mean(loss), aux


class ExactState(NamedTuple):
    """Training state: the network and the optimiser state."""

    net: EventNet
    opt_state: optax.OptState


def exact_method(config: ExactConfig, in_features: int, num_classes: int, *,
                 optimizer: optax.GradientTransformation | None = None) -> Method:
    """Exact-gradient training as a :class:`jsnn.train.Method`.

    Args:
      config: hyperparameters.
      in_features: features per raw sample (the bias input is added).
      num_classes: outputs.
      optimizer: overrides the default (global-norm clip, then Adam with per-epoch exponential decay).

    Returns:
      A Method whose state is an :class:`ExactState`; ``step`` returns metrics ``loss``, ``correct``,
      ``overflow`` (samples where a hidden layer's spike buffer overflowed, so spikes were lost),
      ``overflow_out`` (the same for the output layer: harmless for the first-spike loss), ``grazing``,
      ``silent`` (samples with no output spike), ``saturated`` (the fraction of samples whose every output
      neuron overflowed its spike buffer with one and the same first spike time, so no class can win:
      :func:`jsnn.train.fit` stops a run that stays there) and ``dead``
      (hidden neurons that fired on no sample of the batch: exact gradients reach a neuron only through its
      spike times).

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp
      >>> cfg = ExactConfig(hidden=(4,), max_spikes=(2, 2), init=((2.0, 1.0), (1.0, 0.5)))
      >>> m = exact_method(cfg, 2, 3)
      >>> state = m.init(jax.random.key(0))
      >>> step = eqx.filter_jit(m.step)
      >>> state, metrics = step(state, jnp.full((2, 2), 0.5, jnp.float32), jnp.array([0, 1]), jax.random.key(1))
      >>> float(metrics["loss"]) > 0
      True
    """
    if optimizer is None:
        schedule = optax.exponential_decay(config.lr, config.steps_per_epoch, config.lr_decay, staircase=True)
        optimizer = optax.adam(schedule)
        if config.clip is not None:
            optimizer = optax.chain(optax.clip_by_global_norm(config.clip), optimizer)
    sizes = (in_features + 1, *config.hidden, num_classes)

    def init(key):
        net = EventNet(sizes, key=key, cfg=config.lif, max_spikes=config.max_spikes,
                       max_events=config.max_events, init=config.init, sim=config.sim,
                       readout=config.readout)
        return ExactState(net, optimizer.init(net.weights))

    def loss_of(weights, net, x, y, grad):
        return exact_loss(eqx.tree_at(lambda n: n.weights, net, weights), config, x, y, grad)

    def step(state: ExactState, x, y, key):
        del key
        net = state.net
        if config.grad == "fp":
            grads = jax.jacfwd(lambda w: loss_of(w, net, x, y, "fp")[0])(net.weights)
            loss, aux = loss_of(net.weights, net, x, y, "fp")
        else:
            (loss, aux), grads = jax.value_and_grad(loss_of, has_aux=True)(net.weights, net, x, y, config.grad)
        # optax's Adam bias correction mixes a float with its int32 count (rejected by strict promotion).
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, state.opt_state, net.weights)
        new_net = eqx.tree_at(lambda n: n.weights, net, optax.apply_updates(net.weights, updates))
        return ExactState(new_net, opt_state), {"loss": loss, **aux}

    def predict(state: ExactState, x):
        t_end = config.t_end

        def one(xi):
            out = _output(state.net, config, xi, "autodiff")[-1]
            if config.loss == "ttfs":
                return predict_first_spike(out, t_end)
            return predict_count(out, t_end) if config.loss == "count" else predict_voltage(out)

        return jax.vmap(one)(x)

    return Method(init=init, step=step, predict=predict, network=lambda state: state.net)


def calibrated_init(config: ExactConfig, x: Float[Array, "N F"], *, key, fire_fraction: float = 0.5,
                    batch: int = 128) -> tuple[tuple[float, float], ...]:
    """Initial ``(mean, std)`` per layer whose hidden neurons spike on about ``fire_fraction`` of the samples.

    Hidden layer ``l`` (in order) gets ``g * (2 / n, 1 / sqrt(n))`` with ``n`` its fan-in (inputs plus bias)
    and the gain ``g`` from the geometric grid ``2^-4 .. 2^5`` whose fraction of (sample, neuron) pairs with
    at least one spike, on the first ``batch`` samples of ``x``, is closest to ``fire_fraction``. The
    readout keeps :data:`READOUT_INIT`. Deterministic for a key: the trial networks draw from ``key``.

    Args:
      config: the run's config (its ``init`` is ignored).
      x: training samples in [0, 1], ``(N, F)``.
      key: PRNG key of the trial networks.
      fire_fraction: target fraction of hidden neurons that spike per sample.
      batch: samples used.

    Returns:
      ``init`` for :class:`ExactConfig`.

    Example:
      >>> import jax, numpy as np
      >>> cfg = ExactConfig(hidden=(6,), max_spikes=(2, 2))
      >>> x = np.random.default_rng(0).random((16, 4)).astype(np.float32)
      >>> init = calibrated_init(cfg, x, key=jax.random.key(0))
      >>> len(init), init[1]
      (2, (0.1, 0.3))
    """
    sizes = (x.shape[1] + 1, *config.hidden)
    inputs = jax.vmap(lambda xi: encode_latency(config, xi))(jnp.asarray(x[:batch], jnp.float32))
    gains = [2.0 ** (k / 2) for k in range(-8, 11)]
    init = [READOUT_INIT[config.readout]] * (len(sizes))

    @eqx.filter_jit
    def fired(net, inputs, layer):
        out = jax.vmap(lambda t: net(t, grad="autodiff"))(inputs)
        return jnp.mean(jnp.isfinite(out[layer].times[..., 0]).astype(jnp.float32))

    for layer, fan_in in enumerate(sizes[:-1]):
        base = (2.0 / fan_in, 1.0 / fan_in**0.5)
        fractions = []
        for g in gains:
            trial = init[:layer] + [(g * base[0], g * base[1])] + init[layer + 1:]
            net = EventNet((*sizes[:layer + 2], 1), key=key, cfg=config.lif, max_spikes=2,
                           init=trial[:layer + 2], sim=config.sim)
            fractions.append(float(fired(net, inputs, layer)))
        g = gains[int(np.argmin(np.abs(np.array(fractions) - fire_fraction)))]
        init[layer] = (g * base[0], g * base[1])
    return tuple(init)


def exact_run(train: tuple[Array, Array], test: tuple[Array, Array] | None, config: dict[str, Any],
              num_classes: int | None = None) -> TrainingRun:
    """An exact-gradient run on arrays with the tuned defaults (:data:`EXACT_DEFAULTS`).

    Args:
      train: ``(x, y)`` training arrays; ``(N, T, F)`` time series are flattened to ``T F`` features.
      test: ``(x, y)`` test arrays, evaluated after every epoch (or None).
      config: overrides of the defaults (any :class:`ExactConfig` field, ``epochs``, ``batch_size``,
        ``seed``, ``input_scaling``, ``init="calibrated"`` with ``fire_fraction``); ``data`` picks the
        defaults (default: own data).
      num_classes: number of classes (default: from the labels).

    Returns:
      A :class:`jsnn.train.TrainingRun`; call it to train.

    Raises:
      ValueError: for a combination that cannot work, e.g. latency coding of features outside [0, 1]
        with ``input_scaling="none"``.
    """
    from jsnn.data import scale_inputs, scaled_width
    from jsnn.methods import OWN, method_defaults, num_classes_of, resolve_scaling, with_input_scaling

    full = {"method": "exact", "data": OWN, "seed": 0, **config}
    full = {**method_defaults(EXACT_DEFAULTS, full["data"]), **full}
    flat = lambda s: (np.asarray(s[0]).reshape(len(s[0]), -1), s[1])  # noqa: E731
    train, test = flat(train), None if test is None else flat(test)
    n_layers = len(full["hidden"]) + 1
    if len(full["max_spikes"]) != n_layers:
        full["max_spikes"] = [full["max_spikes"][0]] * n_layers
    resolve_scaling(full, train[0], preferred="onoff")
    x = np.asarray(train[0])
    if full["input_scaling"] == "none" and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"exact gradients latency-code features in [0, 1]; these span {x.min():.3g}..{x.max():.3g}. "
                         "Use input_scaling='unit' (or 'auto').")
    full["steps_per_epoch"] = max(1, len(train[1]) // full["batch_size"])
    if full["init"] == "calibrated":
        placeholder = ExactConfig.from_dict({**full, "init": [(0.0, 1.0)] * n_layers})
        scaled = np.asarray(scale_inputs(full, x))
        full["init"] = [list(p) for p in calibrated_init(placeholder, scaled, key=jax.random.key(full["seed"]),
                                                         fire_fraction=full.get("fire_fraction", 0.5))]
    elif len(full["init"]) != n_layers:
        full["init"] = [full["init"][0]] * (n_layers - 1) + [full["init"][-1]]
    exact_config = ExactConfig.from_dict(full)
    full.update(exact_config.to_dict())
    method = exact_method(exact_config, scaled_width(full, x.shape[1]), num_classes or num_classes_of(train, test))
    return TrainingRun(with_input_scaling(method, full), train, test, full)


def build_exact(config: dict[str, Any], *, data_dir: str | None = None) -> TrainingRun:
    """An exact-gradient run for ``config`` (``jsnn train --method exact``): ``load_run_data`` + :func:`exact_run`.

    Example:
      >>> run = build_exact({"data": "yinyang", "epochs": 1, "hidden": [8]})  # doctest: +SKIP
    """
    from jsnn.methods import load_run_data

    full = {"data": "yinyang", **config}
    train, test, num_classes = load_run_data(full, data_dir)
    return exact_run(train, test, full, num_classes)
