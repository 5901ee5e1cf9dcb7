"""Hyperparameter sweeps as one compiled program: ``jax.vmap`` over configurations, sharded over devices.

:func:`sweep` trains a grid (or a random sample, or a list) of configurations of one method at once.
The swept numeric hyperparameters (learning rate, neuron ``decay`` and ``threshold``, surrogate
``slope``, ADMM ``rho``, ``beta``, ``ridge``) are traced array leaves of a leading *configuration axis*:
the method's step is built inside ``jax.vmap`` from a config whose values are tracers, so one
compilation serves every value. Seeds (and ADMM's ``target_rate``) only change the initial state,
which is drawn per configuration. Parameters that change a shape or the program (``hidden``, ``T``,
``epochs``, ``batch_size``, ``loss``, ...) split the configurations into groups; each group compiles
once (``SweepResult.groups`` says how many programs were compiled and why).

A lane equals its separate run: the same initial state, the same batches (each lane draws the epoch
order of its own seed exactly as :func:`jsnn.train.fit` does) and the same step keys, so the final
parameters agree with ``jsnn train`` of that configuration to float32 round-off.

Devices: the configuration axis is sharded over a 1-D :class:`jax.sharding.Mesh` (axis ``"config"``)
of ``devices`` (default: every device JAX sees); the result equals the one-device result. On several
hosts, call ``jax.distributed.initialize()`` in every process first (before any other JAX call; on
Slurm, Cloud TPU and Kubernetes it finds the coordinator by itself, elsewhere pass
``coordinator_address``, ``num_processes`` and ``process_id``), then run the same script everywhere:
``jax.devices()`` then lists the devices of all hosts and the mesh spans them. Every process must see
the same configurations and data, and should write to its own ``out_dir`` (or only process 0 writes).

Memory: before compiling, the sweep estimates the bytes of a chunk of configurations (state, a copy for
the update, gradients and activations) and, when ``chunk`` is not given, runs as many configurations at
once as fit in half of the free device memory; a given ``chunk`` that would not fit is refused with the
largest one that does. Chunks run one after another; each writes its results atomically under
``out_dir/chunks``, and ``resume=True`` skips the chunks already written.

Robustness: a configuration whose loss or state becomes NaN or infinite (or that trips the method's
divergence guard) is frozen at its last finite state and marked failed; the other lanes are untouched.

Sweepable methods: ``bptt`` and ``admm`` (:data:`SWEEPABLE`). ``exact``, ``ide``, ``spide`` and
``shortcut`` are refused with the reason (:data:`NOT_SWEEPABLE`).

References:
  Bradbury et al., "JAX: composable transformations of Python+NumPy programs" (``jax.vmap``,
  ``jax.sharding``), and Perin et al., "ADMM-based training for spiking neural networks", arXiv 2505.05527.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, PRNGKeyArray, PyTree

from jsnn.bptt import BPTTConfig
from tqdm.auto import tqdm

__all__ = ["NOT_SWEEPABLE", "SWEEPABLE", "Random", "SweepResult", "expand_space", "plot_sweep", "sweep"]


@dataclass(frozen=True)
class Rules:
    """What a method's sweep may vary.

    Attributes:
      traced: hyperparameters that are traced values of the compiled step (no recompilation).
      per_lane: hyperparameters that only change a configuration's initial state (drawn per lane).
      reads: every config key the method reads; the others (``hidden``, ``T``, ...) are static: they
        group the configurations, one compilation per group.
    """

    traced: frozenset[str]
    per_lane: frozenset[str]
    reads: frozenset[str]


_BPTT_READS = {"hidden", "arch", "depth", "T", "encoding", "loss", "decay", "threshold", "reset", "surrogate", "slope",
               "lr", "weight_scale", "rate_reg", "cosine", "recurrent", "epochs", "batch_size", "seed",
               "input_scaling"}
_ADMM_READS = {"hidden", "T", "iters", "warmup", "rho", "beta", "ridge", "decay", "threshold", "sweep", "init",
               "target_rate", "train_samples", "chunk_size", "seed", "log_every", "refit_readout", "input_scaling"}

#: method -> what its sweep may vary
SWEEPABLE: dict[str, Rules] = {
    "bptt": Rules(frozenset({"lr", "decay", "threshold", "slope"}), frozenset({"seed"}), frozenset(_BPTT_READS)),
    "admm": Rules(frozenset({"rho", "beta", "ridge", "decay", "threshold"}), frozenset({"seed", "target_rate"}),
                  frozenset(_ADMM_READS)),
}

#: methods a sweep refuses, and why
NOT_SWEEPABLE = {
    "exact": "its builder calibrates the initial weight distribution on the host per configuration and its "
             "event-slot simulation has no sweep plan yet; train its configurations with jsnn train",
    "ide": "its implicit backward solve runs a data-dependent number of iterations (vmap would run every lane "
           "to the slowest one); train its configurations with jsnn train",
    "spide": "its implicit backward solve runs a data-dependent number of iterations (vmap would run every lane "
             "to the slowest one); train its configurations with jsnn train",
    "shortcut": "its balance schedule and branch set change the program per configuration; train its "
                "configurations with jsnn train",
}

#: every config key some method reads (an unknown name is refused)
_KNOWN = _BPTT_READS | _ADMM_READS | {"grad", "sim", "readout", "lr_decay", "invert", "T_backward", "solver",
                                      "solver_tol", "solver_iters", "branches", "schedule", "clip", "max_spikes"}


# ----------------------------------------------------------------------------- spaces


@dataclass(frozen=True)
class Random:
    """A random sample of ``n`` configurations: each name draws uniformly from its list of values, or
    log-uniformly from a ``(low, high)`` tuple of positive numbers, with the sweep's ``key``.

    Example:
      >>> import jax
      >>> configs = expand_space(Random({"lr": (1e-4, 1e-2), "seed": [0, 1]}, n=3), key=jax.random.key(0))
      >>> len(configs), sorted(configs[0])
      (3, ['lr', 'seed'])
    """

    space: dict[str, Any]
    n: int


def expand_space(space: dict[str, Sequence] | Sequence[dict[str, Any]] | Random, *,
                 key: PRNGKeyArray | None = None) -> list[dict[str, Any]]:
    """The configurations of a space: a dict ``{name: [values]}`` is the full grid (last name fastest), a
    list of dicts is taken as it is, a :class:`Random` is sampled with ``key``.

    Raises:
      ValueError: an empty space, an empty value list, or configurations with different names.

    Example:
      >>> expand_space({"lr": [1e-3, 1e-2], "seed": [0, 1]})[1]
      {'lr': 0.001, 'seed': 1}
    """
    if isinstance(space, Random):
        if space.n < 1 or not space.space:
            raise ValueError(f"a random space needs n >= 1 and at least one name; got n={space.n}, {space.space}.")
        if key is None:
            raise ValueError("a Random space needs key= (e.g. jax.random.key(0)).")
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
        configs = [{} for _ in range(space.n)]
        for name, values in space.space.items():
            if isinstance(values, tuple) and len(values) == 2 and min(values) > 0:
                draws = np.exp(rng.uniform(math.log(values[0]), math.log(values[1]), space.n)).tolist()
            elif isinstance(values, (list, tuple)) and values:
                draws = [values[i] for i in rng.integers(0, len(values), space.n)]
            else:
                raise ValueError(f"{name}: give a list of values or a (low, high) tuple of positive numbers.")
            for config, value in zip(configs, draws):
                config[name] = value
        return configs
    if isinstance(space, dict):
        if not space:
            raise ValueError("the space is empty: give at least one hyperparameter and its values.")
        for name, values in space.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"{name}: give a non-empty list of values; got {values!r}.")
        names = list(space)
        return [dict(zip(names, combo)) for combo in itertools.product(*space.values())]
    configs = [dict(c) for c in space]
    if not configs:
        raise ValueError("the space is empty: give at least one configuration.")
    if any(set(c) != set(configs[0]) for c in configs):
        raise ValueError("every configuration of a list must set the same names.")
    return configs


def _check_names(method: str, names: Sequence[str]) -> None:
    if method in NOT_SWEEPABLE:
        raise ValueError(f"method {method!r} cannot be swept: {NOT_SWEEPABLE[method]}. Sweepable: "
                         f"{', '.join(sorted(SWEEPABLE))}.")
    if method not in SWEEPABLE:
        raise ValueError(f"unknown method {method!r}; sweepable: {', '.join(sorted(SWEEPABLE))}.")
    rules = SWEEPABLE[method]
    for name in names:
        if name not in _KNOWN:
            raise ValueError(f"unknown hyperparameter {name!r}: no jsnn method reads it.")
        if name not in rules.reads:
            raise ValueError(f"hyperparameter {name!r} is not read by method {method!r}; it reads "
                             f"{', '.join(sorted(rules.reads))}.")


# ----------------------------------------------------------------------------- method plans


class _Plan:
    """How one group of configurations of a method trains as lanes (the method's side of a sweep)."""

    #: wait for each step before dispatching the next (ADMM's LAPACK solves: as its own loop does)
    blocking = False

    full: dict[str, Any]  # the group's full config (defaults filled in)
    epochs: int

    def steps_in(self, epoch: int) -> int:
        raise NotImplementedError

    def init(self, configs: list[dict[str, Any]], hp: dict[str, Array]) -> PyTree:
        """The stacked initial states of the lanes."""
        raise NotImplementedError

    def step(self, hp, state, x, y, key):
        """One lane's step (traced; vmapped by the engine)."""
        raise NotImplementedError

    def predict(self, hp, state, x):
        """One lane's labels for a batch of (prepared) test inputs."""
        raise NotImplementedError


class _BpttPlan(_Plan):
    def __init__(self, train, test, base: dict[str, Any], num_classes: int):
        from jsnn.methods import bptt_method_for, bptt_run

        self.run = bptt_run(train, test, base, num_classes)
        self.full = self.run.config
        self.train, self.test = train, test
        self.epochs = self.full["epochs"]
        self.batch_size = self.full["batch_size"]
        self.per_epoch = len(train[1]) // self.batch_size
        if self.per_epoch == 0:
            raise ValueError(f"batch_size={self.batch_size} is larger than the training set ({len(train[1])}).")
        x = np.asarray(train[0])
        self.num_classes = num_classes
        self._method_for = lambda hp: bptt_method_for({**self.full, **hp}, x.shape[-1], num_classes, len(train[1]))
        self.test_inputs = None if test is None else np.asarray(test[0])

    def steps_in(self, epoch):
        return self.per_epoch

    def keys(self, seed: int):
        return jax.random.split(jax.random.key(seed), 3)  # init, data, step: as jsnn.train.fit

    def init(self, configs, hp):
        init_keys = jnp.stack([self.keys(c["seed"])[0] for c in configs])
        return self._init(hp, init_keys)

    @eqx.filter_jit
    def _init(self, hp, keys):
        return eqx.filter_vmap(lambda h, k: self._method_for(h).init(k))(hp, keys)

    def step(self, hp, state, x, y, key):
        return self._method_for(hp).step(state, x, y, key)

    def predict(self, hp, state, x):
        return self._method_for(hp).predict(state, x)

    def batches(self, configs, epoch: int):
        """Per step, the ``(lanes, batch)`` sample indices: lane l follows its own seed's epoch order."""
        n = len(self.train[1])
        orders = {}
        for c in configs:
            if c["seed"] not in orders:
                orders[c["seed"]] = np.asarray(jax.random.permutation(jax.random.fold_in(self.keys(c["seed"])[1],
                                                                                         epoch), n))
        order = np.stack([orders[c["seed"]] for c in configs])
        for b in range(self.per_epoch):
            yield order[:, b * self.batch_size:(b + 1) * self.batch_size]

    def monitor(self):
        from jsnn.train import DivergenceGuard, _DivergenceMonitor

        return _DivergenceMonitor(DivergenceGuard())

    def finish(self, config, state):
        return state

    def final_test_accuracy(self, config, state, last):
        return last

    def save(self, path: Path, config: dict[str, Any], state, step: int, reference_loss) -> None:
        """The lane's state in ``jsnn train``'s checkpoint format (its Python-float constants restored)."""
        from jsnn.checkpoint import save_checkpoint
        from jsnn.methods import bptt_run

        run = bptt_run(self.train, self.test, config)
        like = run.method.init(jax.random.key(0))
        normal = jax.tree.map(lambda l, s: s if eqx.is_array(l) else l, like, state)
        save_checkpoint(path, normal, {"config": run.config, "epoch": self.epochs, "batch": 0, "step": step,
                                       "reference_loss": reference_loss})


class _AdmmPlan(_Plan):
    blocking = True

    def __init__(self, train, test, base: dict[str, Any], num_classes: int):
        from jsnn.optim.admm_method import admm_run

        self.num_classes = num_classes
        self.train, self.test = train, test
        self.run = admm_run(train, test, base, num_classes)
        self.full = self.run.config
        self.log_every = self.full["log_every"]
        self.epochs = -(-self.full["iters"] // self.log_every)
        self.layout, self.batch, _, _ = self.run._setup()
        self.test_inputs = None if test is None else self.run._inputs(test[0])
        self.dtype = jnp.float32

    def steps_in(self, epoch):
        return min(self.log_every, self.full["iters"] - epoch * self.log_every)

    def _lane_run(self, config):
        from jsnn.optim.admm_method import admm_run

        return admm_run(self.train, self.test, config, self.num_classes)

    def init(self, configs, hp):
        states = []
        for c in configs:
            _, _, params, opt = self._lane_run(c)._setup()
            states.append((params, opt.init(params)))
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)

    def _optimizer(self, hp):
        from jsnn.optim.admm import AdmmOptions, admm

        c = {**self.full, **hp}
        return admm(c["rho"], c["beta"], layout=self.layout, decay=c["decay"], threshold=c["threshold"],
                    warmup=c["warmup"], ridge=c["ridge"], seed=c["seed"], options=AdmmOptions(sweep=c["sweep"]),
                    init=c["init"])

    def step(self, hp, state, x, y, key):
        import optax

        params, opt_state = state
        updates, opt_state = self._optimizer(hp).update(params, opt_state, params, batch=self.batch)
        return (optax.apply_updates(params, updates), opt_state), {}

    def predict(self, hp, state, x):
        from jsnn.optim.admm_method import _predict

        c = {**self.full, **hp}
        return _predict(state[0], x, jnp.asarray(c["decay"], self.dtype), jnp.asarray(c["threshold"], self.dtype))

    def batches(self, configs, epoch):
        for _ in range(self.steps_in(epoch)):
            yield None

    def monitor(self):
        from jsnn.optim.admm_method import _ResidualMonitor

        return _ResidualMonitor()

    def epoch_metrics(self, config, state) -> dict[str, Any]:
        from jsnn.optim.admm import admm_metrics

        params, opt_state = state
        return admm_metrics(params, opt_state, self.batch, rho=config["rho"], beta=config["beta"],
                            decay=config["decay"], threshold=config["threshold"])

    def finish(self, config, state):
        from jsnn.optim.admm_method import refit_readout

        params, opt_state = state
        if not config["refit_readout"]:
            return state, params
        run = self._lane_run(config)
        x, y = run.train
        model = refit_readout(params, run._inputs(x), np.eye(self.num_classes)[y], decay=config["decay"],
                              threshold=config["threshold"], ridge=config["ridge"])
        return state, model

    def final_test_accuracy(self, config, finished, last):
        if self.test is None:
            return None
        return self._lane_run(config)._accuracy(finished[1], *self.test)

    def save(self, path, config, finished, step, reference_loss):
        from jsnn.checkpoint import save_checkpoint

        (params, opt_state), model = finished
        save_checkpoint(path, (params, opt_state, model[-1]),
                        {"config": self._lane_run(config).config, "step": step, "epoch": step, "batch": 0})


_PLANS = {"bptt": _BpttPlan, "admm": _AdmmPlan}


# ----------------------------------------------------------------------------- the engine


@dataclass
class SweepResult:
    """What :func:`sweep` returns.

    Attributes:
      rows: one dict per configuration: ``index``, the swept values, ``group``, ``final_test_accuracy``,
        ``best_test_accuracy``, ``final_loss``, ``status`` (``"ok"`` or ``"failed: why"``).
      curves: per configuration, one record per epoch (``epoch``, ``train_loss``, ``test_accuracy``, ...).
      groups: per compiled group: its static settings, configurations, chunks, compilations, memory estimate.
      best: index of the configuration with the best final test accuracy (None if all failed).
      checkpoint: the best configuration's checkpoint (``jsnn train`` format) when ``out_dir`` was given.
      interrupted: the sweep stopped early (``resume=True`` continues it).
      names: the swept names.
      states: with ``keep_states=True``, each configuration's final state (host arrays; ``None`` for a
        failed one or one read back from a finished chunk): the training state for BPTT, ``(iterate,
        model parameters)`` for ADMM.
    """

    rows: list[dict[str, Any]]
    curves: list[list[dict[str, Any]]]
    groups: list[dict[str, Any]]
    best: int | None
    checkpoint: str | None = None
    interrupted: bool = False
    names: list[str] = field(default_factory=list)
    states: list[PyTree] | None = None

    @property
    def best_config(self) -> dict[str, Any] | None:
        """The swept values of the best configuration."""
        return None if self.best is None else {k: self.rows[self.best][k] for k in self.names}


def _lanes_finite(tree, lanes: int) -> Array:
    ok = jnp.ones((lanes,), bool)
    for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array)):
        ok = ok & jnp.all(jnp.isfinite(leaf).reshape(lanes, -1), axis=1)
    return ok


def _select(ok: Array, new, old):
    def pick(a, b):
        if not eqx.is_array(a):
            return a
        return jnp.where(ok.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, new, old)


def _nbytes(tree) -> int:
    return sum(int(leaf.nbytes) for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_array)))


def _free_memory(devices) -> int:
    """Free bytes of the smallest device (accelerator memory stats, else the host's available memory)."""
    stats = devices[0].memory_stats() if hasattr(devices[0], "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume 4 GiB
        return 4 * 2**30


class _Group:
    """The engine for one group: compiled step, evaluation and chunking over a device mesh."""

    def __init__(self, plan: _Plan, traced: list[str], devices):
        self.plan, self.traced = plan, traced
        self.mesh = Mesh(np.asarray(devices), ("config",))
        self.lanes = NamedSharding(self.mesh, PartitionSpec("config"))
        self.compiles = 0

        def step(hp, state, failed, x, y, step_keys, k):
            keys = jax.vmap(jax.random.fold_in, (0, None))(step_keys, k)
            self.compiles += 1  # runs when the step is traced, i.e. once per compilation
            new, metrics = eqx.filter_vmap(plan.step)(hp, state, x, y, keys)
            ok = ~failed & _lanes_finite(new, failed.shape[0])
            if "loss" in metrics:
                ok = ok & jnp.isfinite(metrics["loss"])
            return _select(ok, new, state), metrics, ~ok

        def predict(hp, state, x):
            return eqx.filter_vmap(plan.predict, in_axes=(eqx.if_array(0), eqx.if_array(0), None))(hp, state, x)

        self._step = eqx.filter_jit(step)
        self._predict = eqx.filter_jit(predict)

    def place(self, tree):
        return jax.tree.map(lambda a: jax.device_put(a, self.lanes) if eqx.is_array(a) else a, tree)

    def hp(self, configs):
        return {name: jnp.asarray([c[name] for c in configs], jnp.float32) for name in self.traced}

    def test_accuracy(self, hp, state) -> np.ndarray | None:
        """Per lane, the accuracy on the test set (batches of 256, the last padded, as jsnn.train.evaluate)."""
        if self.plan.test is None:
            return None
        x, y = self.plan.test_inputs, np.asarray(self.plan.test[1])
        size = min(256, len(y))
        correct = 0
        for start in range(0, len(y), size):
            xb = x[start:start + size]
            valid = len(xb)
            if valid < size:
                xb = np.concatenate([xb, np.repeat(xb[-1:], size - valid, axis=0)])
            labels = np.asarray(self._predict(hp, state, jnp.asarray(xb)))[:, :valid]
            correct = correct + (labels == y[start:start + valid]).sum(axis=1)
        return correct / len(y)

    def estimate(self, state_per_lane: int, lanes: int) -> int:
        """Bytes of a chunk of ``lanes``: the state, its update and gradients, and the step's activations."""
        plan = self.plan
        if isinstance(plan, _BpttPlan):  # per sample and step: the input, and v, s, surrogate residuals per neuron
            widths = sum(BPTTConfig.from_dict(plan.full).layer_sizes) + plan.num_classes
            act = plan.batch_size * plan.full["T"] * (np.asarray(plan.train[0]).shape[-1] + 4 * widths) * 4
        else:
            act = state_per_lane
        return lanes * (3 * state_per_lane + act)

    def train(self, configs: list[dict[str, Any]], progress: bool, stop) -> list[dict[str, Any]]:
        """Train one chunk of lanes; per lane: curve, status, final state (host copies)."""
        plan = self.plan
        n = len(configs)
        hp = self.place(self.hp(configs))
        state = self.place(plan.init(configs, hp))
        failed = self.place(jnp.zeros((n,), bool))
        step_keys = self.place(jnp.stack([plan.keys(c["seed"])[2] for c in configs])) if isinstance(
            plan, _BpttPlan) else self.place(jax.random.split(jax.random.key(0), n))
        monitors = [plan.monitor() for _ in configs]
        reasons: list[str | None] = [None] * n
        curves: list[list[dict[str, Any]]] = [[] for _ in configs]
        x_train = np.asarray(plan.train[0]) if isinstance(plan, _BpttPlan) else None
        y_train = np.asarray(plan.train[1]) if isinstance(plan, _BpttPlan) else None
        dummy = self.place(jnp.zeros((n, 1), jnp.float32))
        k = 0
        bar = tqdm(total=plan.epochs, desc="epochs", disable=not progress, leave=False, dynamic_ncols=True)
        for epoch in range(plan.epochs):
            metrics: dict[str, Any] = {}
            epoch_metrics: list[dict[str, Array]] = []
            for index in plan.batches(configs, epoch):
                if index is None:
                    x = y = dummy
                else:
                    x, y = self.place(jnp.asarray(x_train[index])), self.place(jnp.asarray(y_train[index]))
                state, metrics, failed = self._step(hp, state, failed, x, y, step_keys, jnp.asarray(k, jnp.int32))
                if plan.blocking:
                    jax.block_until_ready(state)
                k += 1
                if "loss" in metrics:
                    epoch_metrics.append(metrics)
            if epoch_metrics:  # the divergence guard reads every step's metrics, once per epoch (no per-step sync)
                failed = self._guard(monitors, reasons, epoch_metrics, failed, k - len(epoch_metrics))
            host = jax.device_get(metrics)
            acc = self.test_accuracy(hp, state)
            lane_failed = np.asarray(failed)
            for l, c in enumerate(configs):
                if lane_failed[l] and reasons[l] is None:
                    reasons[l] = f"step {k}: the loss or the state became NaN or infinite"
                record: dict[str, Any] = {"epoch": epoch + 1, "step": k}
                if "loss" in host:
                    record["train_loss"] = float(host["loss"][l])
                if "correct" in host:
                    record["train_accuracy"] = float(host["correct"][l]) / self.plan.batch_size
                if hasattr(plan, "epoch_metrics") and reasons[l] is None:
                    m = plan.epoch_metrics({**plan.full, **c}, jax.tree.map(lambda a: a[l], state))
                    record |= {"train_loss": m["loss"], "train_accuracy": m["train_accuracy"]}
                    problem = monitors[l].check(m)
                    if problem:
                        reasons[l] = f"step {k}: {problem}"
                if acc is not None:
                    record["test_accuracy"] = float(acc[l])
                curves[l].append(record)
            if hasattr(plan, "epoch_metrics") and any(r is not None for r in reasons):
                failed = self.place(jnp.asarray([r is not None for r in reasons]))
            bar.update(1)
            if stop.requested:
                bar.close()
                return []
        bar.close()
        lanes = []
        host_state = jax.device_get(state)
        for l, c in enumerate(configs):
            lanes.append({"curve": curves[l], "reason": reasons[l], "steps": k,
                          "state": jax.tree.map(lambda a: a[l] if isinstance(a, np.ndarray) else a, host_state),
                          "reference_loss": getattr(monitors[l], "reference", None)})
        return lanes

    def _guard(self, monitors, reasons, steps: list[dict[str, Array]], failed, first: int):
        """Apply the method's divergence guard (as :func:`jsnn.train.fit` does) to every live lane's metrics of
        the steps ``first + 1, ...``; a lane it stops is frozen from the next epoch on and marked failed."""
        host = jax.device_get(steps)
        changed = False
        for l, monitor in enumerate(monitors):
            for s, metrics in enumerate(host):
                if reasons[l] is not None:
                    break
                problem = monitor.check({name: value[l] for name, value in metrics.items()})
                if problem:
                    reasons[l], changed = f"step {first + s + 1}: {problem}", True
        if changed:
            return self.place(jnp.asarray([r is not None for r in reasons]))
        return failed


#: compiled engines of recent groups, so that running a sweep again (a notebook cell, a resume) does not recompile
_ENGINES: dict[tuple, _Group] = {}
_MAX_ENGINES = 8


def _engine(name: str, group_base: dict[str, Any], traced: list[str], devices, train, test, num_classes) -> _Group:
    """The engine of a group: built once per (method, config, traced names, devices, data) and reused."""
    digest = hashlib.sha256()
    for array in (*train, *(test or ())):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.data)
    key = (name, json.dumps(group_base, sort_keys=True, default=str), tuple(traced), tuple(map(str, devices)),
           num_classes, digest.hexdigest())
    if key not in _ENGINES:
        if len(_ENGINES) >= _MAX_ENGINES:
            _ENGINES.pop(next(iter(_ENGINES)))
        _ENGINES[key] = _Group(_PLANS[name](train, test, group_base, num_classes), traced, devices)
    return _ENGINES[key]


def _fingerprint(method: str, base: dict[str, Any], configs: list[dict[str, Any]], chunk) -> str:
    text = json.dumps({"method": method, "base": base, "configs": configs, "chunk": chunk}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _method_name(method: str | Callable) -> str:
    if isinstance(method, str):
        return method
    from jsnn.cli import METHODS

    for name, target in METHODS.items():
        if target.endswith(":" + getattr(method, "__name__", "")):
            return name
    raise ValueError(f"{method!r} is not the builder of a jsnn method ({', '.join(sorted(METHODS))}).")


def sweep(method: str | Callable, base_config: dict[str, Any], space, *, key: PRNGKeyArray | None = None,
          devices: Sequence | None = None, chunk: int | None = None, data: tuple | None = None,
          data_dir: str | None = None, out_dir: str | Path | None = None, resume: bool = False,
          progress: bool = True, stop_after_chunks: int | None = None, keep_states: bool = False) -> SweepResult:
    """Train every configuration of ``space`` as lanes of one vmapped, sharded program.

    Args:
      method: ``"bptt"`` or ``"admm"`` (or its builder, e.g. :func:`jsnn.methods.build_bptt`).
      base_config: the settings every configuration shares (as for ``jsnn train``: ``data``, ``hidden``,
        ``epochs``, ...); the method's tuned defaults fill in the rest.
      space: ``{name: [values]}`` (the full grid), a list of configurations, or a :class:`Random` sample.
        ``seed`` may be swept like any other name.
      key: draws a :class:`Random` space.
      devices: devices to shard the configurations over (default: ``jax.devices()``).
      chunk: configurations trained at once (default: as many as fit in memory); rounded up to a
        multiple of the number of devices.
      data: ``((x_train, y_train), (x_test, y_test))`` arrays instead of ``base_config["data"]``.
      data_dir: the MNIST folder.
      out_dir: where ``chunks/``, ``results.csv``, ``results.json`` and the best ``checkpoint.eqx`` go.
      resume: continue an interrupted sweep in ``out_dir``, skipping the chunks already written.
      progress: progress bars over chunks and epochs.
      stop_after_chunks: stop after this many chunks (as an interruption would).
      keep_states: return every configuration's final state (memory: one state per configuration).

    Returns:
      A :class:`SweepResult`.

    Raises:
      ValueError: an unknown or unsweepable method, an unknown hyperparameter or one the method does not
        read, an empty space, a chunk that does not fit in memory, or a resume of a different sweep.

    Example:
      >>> r = sweep("bptt", {"data": "digits", "hidden": [8], "T": 2, "epochs": 1, "batch_size": 256},
      ...           {"lr": [1e-3, 1e-2]}, progress=False)
      >>> [row["status"] for row in r.rows], len(r.curves[0])
      (['ok', 'ok'], 1)
    """
    from jsnn.checkpoint import atomic_write_bytes, check_output_folder
    from jsnn.methods import load_run_data, num_classes_of
    from jsnn.train import StopRequest

    name = _method_name(method)
    configs = expand_space(space, key=key)
    names = list(configs[0])
    _check_names(name, [*names, *(k for k in base_config if k not in ("data", "method"))])
    for c in configs:
        for k, v in c.items():
            if k in SWEEPABLE[name].traced and not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"{k} must be a finite number; got {v!r}.")
    devices = list(jax.devices() if devices is None else devices)
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be a positive number of configurations; got {chunk}.")
    out = check_output_folder(out_dir, flag="out_dir") if out_dir is not None else None
    base = {"data": "digits", **base_config, "method": name}
    if data is None:
        train, test, num_classes = load_run_data(base, data_dir, keep_time=True)
    else:
        train, test = data
        num_classes = num_classes_of(train, test)
        base["data"] = base_config.get("data", "own")
    rules = SWEEPABLE[name]
    static = [n for n in names if n not in rules.traced | rules.per_lane]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(tuple(json.dumps(c[n]) for n in static), []).append(i)
    fingerprint = _fingerprint(name, base, configs, chunk)
    if out is not None:
        plan_file = out / "sweep.json"
        if resume:
            if not plan_file.exists():
                raise ValueError(f"resume: {out} holds no sweep (no sweep.json); start without resume.")
            if json.loads(plan_file.read_text()).get("fingerprint") != fingerprint:
                raise ValueError(f"resume: {out} holds a different sweep (method, base config, space or chunk "
                                 "changed); choose a new output folder or restore the settings.")
        elif plan_file.exists():
            raise ValueError(f"{out} already holds a sweep; pass resume to continue it or choose another folder.")
        else:
            atomic_write_bytes(plan_file, json.dumps({"method": name, "base": base, "configs": configs,
                                                      "chunk": chunk, "fingerprint": fingerprint},
                                                     indent=1, default=str).encode())
    rows: list[dict[str, Any]] = [{} for _ in configs]
    curves: list[list[dict[str, Any]]] = [[] for _ in configs]
    states: list[PyTree] = [None] * len(configs)
    group_info = []
    best_files: list[tuple[float, int, Path]] = []
    chunks_done = 0
    interrupted = False
    with StopRequest() as stop:
        for g, (values, members) in enumerate(groups.items()):
            group_static = {n: json.loads(v) for n, v in zip(static, values)}
            traced = [n for n in names if n in rules.traced]
            engine = _engine(name, {**base, **group_static}, traced, devices, train, test, num_classes)
            plan = engine.plan
            compiles_before = engine.compiles
            size, estimate = _chunk_size(engine, plan, configs, members, chunk, len(devices))
            info = {"group": g, "static": group_static, "configurations": len(members), "chunk": size,
                    "traced": traced, "memory_estimate_bytes": estimate}
            group_info.append(info)
            if progress:
                tqdm.write(f"sweep group {g + 1}/{len(groups)} {group_static or ''}: {len(members)} configurations, "
                           f"chunks of {size}, about {estimate / 2**20:.1f} MiB per chunk (estimated)")
            starts = list(range(0, len(members), size))
            bar = tqdm(total=len(starts), desc=f"group {g + 1}/{len(groups)} chunks", disable=not progress,
                       dynamic_ncols=True)
            for c_index, start in enumerate(starts):
                ids = members[start:start + size]
                tag = f"g{g:03d}-c{c_index:04d}"
                done_file = out / "chunks" / f"{tag}.json" if out is not None else None
                if done_file is not None and resume and done_file.exists():
                    saved = json.loads(done_file.read_text())
                else:
                    if stop_after_chunks is not None and chunks_done >= stop_after_chunks:
                        interrupted = True
                        break
                    lane_configs = [{**plan.full, **configs[i]} for i in ids]
                    padded = lane_configs + [lane_configs[0]] * (size - len(ids))  # one compiled shape per group
                    lanes = engine.train(padded, progress, stop)
                    if not lanes:
                        interrupted = True
                        break
                    saved = _chunk_record(plan, ids, configs, lane_configs, lanes, names, g, done_file)
                    chunks_done += 1
                    if keep_states:
                        for i, done in zip(ids, saved.pop("states")):
                            states[i] = done
                for i, row, curve in zip(ids, saved["rows"], saved["curves"]):
                    rows[i], curves[i] = row, curve
                if saved.get("best") is not None:
                    best_files.append((saved["best"]["accuracy"], saved["best"]["index"],
                                       Path(saved["best"]["checkpoint"]) if saved["best"]["checkpoint"] else None))
                bar.update(1)
            bar.close()
            info["compiled_programs"] = engine.compiles - compiles_before  # 0: reused from an earlier sweep
            if interrupted:
                break
    result_best = None
    ranked = [(row["final_test_accuracy"], -i) for i, row in enumerate(rows)
              if row and row["status"] == "ok" and row["final_test_accuracy"] is not None]
    if ranked:
        result_best = -max(ranked)[1]
    result = SweepResult(rows, curves, group_info, result_best, interrupted=interrupted, names=names,
                         states=states if keep_states else None)
    if out is not None and not interrupted:
        chosen = [p for acc, i, p in best_files if i == result_best and p is not None]
        if chosen:
            atomic_write_bytes(out / "checkpoint.eqx", chosen[0].read_bytes())
            result.checkpoint = str(out / "checkpoint.eqx")
        write_results(result, out)
    return result


def _chunk_size(engine: _Group, plan: _Plan, configs, members, chunk, num_devices) -> tuple[int, int]:
    """The chunk of a group (a multiple of the device count) and its memory estimate, before compiling."""
    probe = [{**plan.full, **configs[members[0]]}]
    shapes = jax.eval_shape(lambda: plan.init(probe, engine.hp(probe))) if isinstance(plan, _BpttPlan) else None
    per_lane = _nbytes(shapes) if shapes is not None else _admm_state_bytes(plan)
    budget = _free_memory(engine.mesh.devices.ravel().tolist()) // 2 * num_devices
    fits = max(1, budget // max(1, engine.estimate(per_lane, 1)))
    round_up = lambda n: -(-n // num_devices) * num_devices  # noqa: E731
    if chunk is None:
        size = min(len(members), fits)
    else:
        size = min(chunk, len(members))
        if engine.estimate(per_lane, round_up(size)) > budget:
            raise ValueError(f"chunk={chunk} needs about {engine.estimate(per_lane, round_up(size)) / 2**20:.0f} MiB, "
                             f"more than half the free memory ({budget / 2**20:.0f} MiB); use chunk <= {fits}.")
    size = round_up(max(1, size))
    return size, engine.estimate(per_lane, size)


def _admm_state_bytes(plan: _AdmmPlan) -> int:
    from jsnn.optim.admm import init_state

    sizes = [np.asarray(plan.train[0]).shape[-1], *plan.full["hidden"], plan.num_classes]
    params = tuple({"weight": jax.ShapeDtypeStruct((o, i), jnp.float32)} for i, o in zip(sizes[:-1], sizes[1:]))
    state = jax.eval_shape(lambda p: init_state(p, plan.layout, init="zeros"), params)
    return _nbytes(params) + sum(int(np.prod(s.shape)) * s.dtype.itemsize for s in jax.tree.leaves(state))


def _chunk_record(plan, ids, configs, lane_configs, lanes, names, group, done_file) -> dict[str, Any]:
    """Rows and curves of a finished chunk, its best lane's checkpoint; written atomically when asked."""
    from jsnn.checkpoint import atomic_write_bytes

    rows, curves, finished = [], [], []
    for i, config, lane in zip(ids, lane_configs, lanes):
        ok = lane["reason"] is None
        done = plan.finish(config, lane["state"]) if ok else None
        accs = [r["test_accuracy"] for r in lane["curve"] if "test_accuracy" in r]
        last = accs[-1] if accs else None
        final = plan.final_test_accuracy(config, done, last) if ok else None
        losses = [r["train_loss"] for r in lane["curve"] if "train_loss" in r]
        rows.append({"index": i, **{n: configs[i][n] for n in names}, "group": group,
                     "final_test_accuracy": final,
                     "best_test_accuracy": max(accs + ([final] if final is not None else [])) if ok and accs else None,
                     "final_loss": losses[-1] if ok and losses else None,
                     "status": "ok" if ok else f"failed: {lane['reason']}"})
        curves.append(lane["curve"])
        finished.append(done)
    record: dict[str, Any] = {"rows": rows, "curves": curves, "best": None}
    scored = [(row["final_test_accuracy"], -n) for n, row in enumerate(rows)
              if row["status"] == "ok" and row["final_test_accuracy"] is not None]
    if scored:
        n = -max(scored)[1]
        path = None
        if done_file is not None:
            path = done_file.with_suffix(".eqx")
            path.parent.mkdir(parents=True, exist_ok=True)
            plan.save(path, lane_configs[n], finished[n], lanes[n]["steps"], lanes[n]["reference_loss"])
        record["best"] = {"index": ids[n], "accuracy": rows[n]["final_test_accuracy"],
                          "checkpoint": str(path) if path else None}
    if done_file is not None:
        atomic_write_bytes(done_file, json.dumps(record, default=float).encode())
    return {**record, "states": finished}


# ----------------------------------------------------------------------------- outputs


def write_results(result: SweepResult, out: Path) -> None:
    """``results.csv`` (one row per configuration) and ``results.json`` (rows, curves, groups), atomically."""
    from jsnn.checkpoint import atomic_write_bytes

    rows = [r for r in result.rows if r]
    columns = list(rows[0]) if rows else []
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    atomic_write_bytes(out / "results.csv", text.getvalue().encode())
    atomic_write_bytes(out / "results.json", json.dumps(
        {"rows": result.rows, "curves": result.curves, "groups": result.groups, "best": result.best,
         "checkpoint": result.checkpoint}, indent=1, default=float).encode())


def plot_sweep(result: SweepResult, path: str | Path | None = None, *, names: Sequence[str] | None = None):
    """Final test accuracy against each swept parameter (mean over the others); a heat map for two.

    Args:
      result: a :class:`SweepResult`.
      path: write the figure there as PNG (atomically); None only returns it.
      names: the parameters to plot (default: the swept ones other than ``seed``, or ``seed``).

    Returns:
      The matplotlib figure.

    Raises:
      ImportError: without matplotlib (``pip install 'jsnn[plot]'``).
    """
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'jsnn[plot]'.") from err
    names = list(names or [n for n in result.names if n != "seed"] or result.names)
    rows = [r for r in result.rows if r]

    def mean_acc(match):
        accs = [r["final_test_accuracy"] for r in rows if match(r) and r["final_test_accuracy"] is not None]
        return float(np.mean(accs)) if accs else np.nan

    values = {n: sorted({json.dumps(r[n]) for r in rows}, key=lambda v: (isinstance(json.loads(v), str),
                                                                          json.loads(v))) for n in names}
    if len(names) == 2:
        a, b = names
        grid = np.array([[mean_acc(lambda r, va=va, vb=vb: json.dumps(r[a]) == va and json.dumps(r[b]) == vb)
                          for vb in values[b]] for va in values[a]])
        fig, ax = plt.subplots(figsize=(4.5, 3.8))
        image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(values[b])), values[b])
        ax.set_yticks(range(len(values[a])), values[a])
        ax.set_xlabel(b)
        ax.set_ylabel(a)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "failed" if np.isnan(v) else f"{v:.3f}", ha="center", va="center", color="w", fontsize=8)
        fig.colorbar(image, ax=ax, label="test accuracy")
    else:
        fig, axes = plt.subplots(1, len(names), figsize=(3.5 * len(names), 3), squeeze=False)
        for ax, n in zip(axes[0], names):
            ax.plot(range(len(values[n])), [mean_acc(lambda r, v=v: json.dumps(r[n]) == v) for v in values[n]], "o-")
            ax.set_xticks(range(len(values[n])), values[n])
            ax.set_xlabel(n)
            ax.set_ylabel("test accuracy")
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
        os.close(fd)
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    return fig
