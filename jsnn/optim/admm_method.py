"""``jsnn train --method admm``: full-batch ADMM runs with metrics, checkpoints, resume and plots.

ADMM is full-batch (one iteration sweeps every sample), so it does not use the mini-batch loop of
:func:`jsnn.train.fit`; :class:`AdmmRun` offers the same face as :class:`jsnn.train.TrainingRun`
(``run(out_dir=..., resume=..., progress=...)`` and ``run.evaluate(checkpoint)``) and writes the
same files: ``checkpoint.eqx`` (jsnn checkpoint format, atomic) and ``metrics.jsonl``.

Inputs are direct-coded (the features are the input current at every step), standardised first
when they lie outside [0, 1]. A time series ``(N, T, F)`` is read as ``T F`` static features (the
whole window at once, as exact gradients read it): the network is feed-forward and its readout is read
at the last step, so a series fed one step at a time would leave it no memory but the membrane leak
(45 % against BPTT's 94 % on bench/own_data.py's sine task; 100 % as static features). The network starts from random weights whose gains are calibrated on the training data so
each hidden layer fires at about ``target_rate`` (:func:`calibrated_params`, deterministic for a
seed), and ADMM starts from their forward simulation (``init="forward"``).

:func:`admm_run` is the array-level entry (``jsnn.fit(..., method="admm")``), :func:`build_admm` the
CLI's (``jsnn train --method admm``); both fill in :data:`ADMM_DEFAULTS` and :data:`ADMM_COMMON`.

References:
  Perin, Bidini, Mazzieri, Rossi, "ADMM-based training for spiking neural networks",
  arXiv 2505.05527.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jsnn.optim.admm import (
    AdmmOptions,
    StateLayout,
    admm,
    admm_metrics,
    make_batch,
    to_sequential,
)
from jsnn.optim.admm_blocks import check_hyperparameter

__all__ = ["ADMM_COMMON", "ADMM_DEFAULTS", "AdmmRun", "DivergenceError", "accuracy", "admm_run", "build_admm",
           "calibrated_params", "plot_metrics", "refit_readout"]

CHECKPOINT_NAME = "checkpoint.eqx"
METRICS_NAME = "metrics.jsonl"

#: per data set defaults of ``jsnn train --method admm`` (flags override them); measured in bench/admm_accuracy.py
ADMM_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"hidden": [256], "T": 8, "iters": 100, "warmup": 30},
    "mnist": {"hidden": [1024], "T": 8, "iters": 70, "warmup": 15, "train_samples": 10000, "chunk_size": 2500},
    "own": {"hidden": [256], "T": 8, "iters": 100, "warmup": 30, "input_scaling": "auto"},
}
#: the tuned settings every ADMM run starts from (ridge, warm start, readout refit; bench/admm_accuracy.py)
ADMM_COMMON = {"rho": 1.0, "beta": 0.1, "ridge": 1e-2, "decay": 0.95, "threshold": 1.0, "sweep": "red_black",
           "init": "forward", "target_rate": 0.15, "log_every": 10, "checkpoint_every": 10, "seed": 0,
           "plot": False, "refit_readout": True}


#: the largest rho or beta a run accepts: beyond it the penalties swamp the loss in float32 (7 digits), the
#: weights stop moving and the residuals look converged (rho = beta = 1e30 on digits: ADMM's own readout at
#: chance level while every residual fell)
MAX_PENALTY = 1e6


class DivergenceError(ValueError):
    """ADMM produced NaNs or exploding residuals; the message names the last good checkpoint."""


def calibrated_params(sizes: list[int], x: np.ndarray, *, key, decay: float = 0.95, threshold: float = 1.0,
                      target_rate: float = 0.15, dtype=jnp.float32):
    """Random Gaussian weights whose per-layer gain makes each hidden layer fire at about ``target_rate``.

    Layer by layer, the gain is chosen from a geometric grid on a sample ``x`` ``(n, T, d_0)``.

    Example:
      >>> import numpy as np, jax
      >>> x = np.random.default_rng(0).random((16, 4, 5)).astype(np.float32)
      >>> p = calibrated_params([5, 8, 2], x, key=jax.random.key(0))
      >>> p[0]["weight"].shape
      (8, 5)
    """
    keys = jax.random.split(key, len(sizes) - 1)
    params = tuple({"weight": jax.random.normal(k, (o, i), dtype) / math.sqrt(i)}
                   for k, i, o in zip(keys, sizes[:-1], sizes[1:]))
    xj = jnp.asarray(x, dtype)
    gains = 2.0 ** np.arange(-2, 6, 0.5)
    for l in range(len(sizes) - 2):
        rates = [float(_layer_rate(params, xj, jnp.asarray(g, dtype), decay, threshold, layer=l)) for g in gains]
        best = gains[int(np.argmin(np.abs(np.array(rates) - target_rate)))]
        params = params[:l] + ({"weight": params[l]["weight"] * jnp.asarray(best, dtype)},) + params[l + 1:]
    return params


@partial(jax.jit, static_argnames="layer")
def _layer_rate(params, x, gain, decay, threshold, *, layer):
    """Mean firing rate of hidden ``layer`` with its weights scaled by ``gain``."""
    from jsnn.simulate import simulate

    trial = params[:layer] + ({"weight": params[layer]["weight"] * gain},) + params[layer + 1:]
    net = to_sequential(trial, decay=decay, threshold=threshold)
    _, traces = jax.vmap(lambda xi: simulate(net, xi, record=True))(x)
    return traces[net.neuron_layers[layer]].spikes.mean()


def _direct(x: np.ndarray, num_steps: int) -> np.ndarray:
    """Direct coding: static ``(N, F)`` features repeated over ``num_steps``."""
    return np.repeat(x[:, None, :], num_steps, axis=1)


def _static(x: np.ndarray) -> np.ndarray:
    """Samples as static feature vectors: a ``(N, T, F)`` series becomes ``(N, T F)``."""
    x = np.asarray(x)
    return x.reshape(len(x), -1)


@dataclass
class AdmmRun:
    """An ADMM run bound to its data and config (the face of :class:`jsnn.train.TrainingRun`)."""

    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None
    num_classes: int
    config: dict[str, Any]
    model: Any = field(default=None, repr=False)  #: the trained parameters after a call

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        """Raw samples (static or series) -> the network's input currents ``(N, T, d_0)`` (scaling, direct coding)."""
        from jsnn.data import scale_inputs

        return _direct(np.asarray(scale_inputs(self.config, _static(x).astype(np.float32))), self.config["T"])

    def _setup(self):
        c = self.config
        x, y = self.train
        layout = StateLayout(num_samples=len(y), num_steps=c["T"], chunk_size=c.get("chunk_size"))
        batch = make_batch(self._inputs(x), y, layout, targets=np.eye(self.num_classes)[y])
        sizes = [x.shape[-1], *c["hidden"], self.num_classes]
        params = calibrated_params(sizes, self._inputs(x[:256]), key=jax.random.key(c["seed"]),
                                   decay=c["decay"], threshold=c["threshold"], target_rate=c["target_rate"])
        opt = admm(c["rho"], c["beta"], layout=layout, decay=c["decay"], threshold=c["threshold"],
                   warmup=c["warmup"], ridge=c["ridge"], seed=c["seed"], options=AdmmOptions(sweep=c["sweep"]),
                   init=c["init"])
        return layout, batch, params, opt

    def _accuracy(self, params, x, y) -> float:
        return accuracy(params, self._inputs(x), y, decay=self.config["decay"], threshold=self.config["threshold"])

    def _test_accuracy(self, params) -> float | None:
        return None if self.test is None else self._accuracy(params, *self.test)

    def __call__(self, *, out_dir: str | Path | None, resume: bool = False, progress: bool = True) -> dict[str, Any]:
        """Run (or resume) the iterations; return a JSON-able summary."""
        from jsnn.checkpoint import NonFiniteStateError, load_checkpoint, save_checkpoint
        from jsnn.train import StopRequest

        c = self.config
        start = time.perf_counter()
        _, batch, params, opt = self._setup()
        opt_state = opt.init(params)
        out = Path(out_dir) if out_dir is not None else None
        ckpt = out / CHECKPOINT_NAME if out else None
        metrics_path = out / METRICS_NAME if out else None
        it = 0
        if resume:
            if ckpt is None or not ckpt.exists():
                raise FileNotFoundError(f"--resume needs a checkpoint at {ckpt}; none found. Start without --resume.")
            (params, opt_state, _), header = load_checkpoint(ckpt, (params, opt_state, params[-1]))
            it = header["step"]
            _keep_metrics_until(metrics_path, it)
        elif out:
            out.mkdir(parents=True, exist_ok=True)
            metrics_path.unlink(missing_ok=True)

        @partial(jax.jit, donate_argnums=1)  # the old per-sample state is not kept: peak memory ~ one state
        def step(params, opt_state, batch):
            updates, opt_state = opt.update(params, opt_state, params, batch=batch)
            new = optax.apply_updates(params, updates)
            finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(new)]))
            return new, opt_state, finite

        saved = it if ckpt is not None and ckpt.exists() else None  # the iteration of the checkpoint on disk

        def last_good() -> str | None:
            return None if saved is None else f"{ckpt} (iteration {saved}, kept)"

        def save(model_readout) -> None:
            nonlocal saved
            if ckpt is None:
                return
            try:  # the model's readout rides beside the ADMM iterate, so a resume continues the iterate
                save_checkpoint(ckpt, (params, opt_state, model_readout),
                                {"config": c, "step": it, "epoch": it, "batch": 0})
            except NonFiniteStateError:
                raise DivergenceError(_diverged_message(it, "the state holds NaN or infinite values",
                                                        last_good())) from None
            saved = it

        monitor = _ResidualMonitor()
        bar = tqdm(total=c["iters"], initial=it, desc="admm", disable=not progress, dynamic_ncols=True)
        record: dict[str, Any] = {}
        interrupted = False
        with StopRequest() as stop:
            while it < c["iters"]:
                params, opt_state, finite = step(params, opt_state, batch)
                it += 1
                bar.update(1)
                if not bool(finite):
                    raise DivergenceError(_diverged_message(it, "the weights became NaN or infinite", last_good()))
                if it % c["log_every"] == 0 or it == c["iters"]:
                    m = admm_metrics(params, opt_state, batch, rho=c["rho"], beta=c["beta"], decay=c["decay"],
                                     threshold=c["threshold"])
                    record = {"iter": it, **m, "test_accuracy": self._test_accuracy(params),
                              "wall_s": round(time.perf_counter() - start, 2)}
                    problem = monitor.check(m)
                    if problem:
                        raise DivergenceError(_diverged_message(it, problem, last_good()))
                    if metrics_path:
                        with metrics_path.open("a") as f:
                            f.write(json.dumps(record) + "\n")
                    bar.set_postfix(loss=f"{m['loss']:.3g}", train=f"{m['train_accuracy']:.3f}",
                                    test=f"{record['test_accuracy'] or 0:.3f}")
                interrupted = stop.requested
                if interrupted or (it % c["checkpoint_every"] == 0 and it < c["iters"]):  # the last one follows
                    save(params[-1])
                if interrupted:
                    break
        bar.close()
        if interrupted:
            return {"config": c, "interrupted": True, "iterations": it, "test_accuracy": None,
                    "wall_s": round(time.perf_counter() - start, 2),
                    **({"checkpoint": str(ckpt)} if ckpt is not None else {})}
        summary: dict[str, Any] = {}
        model = params
        if c["refit_readout"]:
            x, y = self.train
            summary["test_accuracy_before_refit"] = self._test_accuracy(params)
            model = refit_readout(params, self._inputs(x), np.eye(self.num_classes)[y], decay=c["decay"],
                                  threshold=c["threshold"], ridge=c["ridge"])
        save(model[-1])
        if out and c.get("plot"):
            plot_metrics(metrics_path, out / "metrics.png")
        self.model = model
        summary |= {"config": c, "test_accuracy": self._test_accuracy(model),
                   "train_accuracy": record.get("train_accuracy"), "iterations": it,
                   "interrupted": False, "wall_s": round(time.perf_counter() - start, 2)}
        if ckpt is not None:
            summary["checkpoint"] = str(ckpt)
        return summary

    def _load_model(self, checkpoint: str | Path):
        """``(model params, header)``: the ADMM iterate's hidden weights with the model's readout."""
        from jsnn.checkpoint import load_checkpoint

        _, _, params, opt = self._setup()
        (params, _, readout), header = load_checkpoint(checkpoint, (params, opt.init(params), params[-1]))
        return (*params[:-1], readout), header

    def load_network(self, checkpoint: str | Path):
        """The trained network in a checkpoint written by this run's config (a jsnn ``Sequential``)."""
        model, _ = self._load_model(checkpoint)
        return to_sequential(model, decay=self.config["decay"], threshold=self.config["threshold"])

    def predict(self, x: np.ndarray, *, checkpoint: str | Path | None = None) -> np.ndarray:
        """Labels for raw samples ``x`` from the model of the last call, or from ``checkpoint``."""
        if checkpoint is not None:
            model, _ = self._load_model(checkpoint)
        elif self.model is None:
            raise ValueError("nothing trained yet: call the run first, or pass checkpoint=.")
        else:
            model = self.model
        c = self.config
        dtype = model[0]["weight"].dtype
        return np.asarray(_predict(model, jnp.asarray(self._inputs(x), dtype), jnp.asarray(c["decay"], dtype),
                                   jnp.asarray(c["threshold"], dtype)))

    def evaluate(self, checkpoint: str | Path) -> dict[str, Any]:
        """Test accuracy of a checkpoint written by this run's config."""
        model, header = self._load_model(checkpoint)
        return {"checkpoint": str(checkpoint), "step": header["step"],
                "test_accuracy": self._accuracy(model, *self.test)}


@jax.jit
def _readout_features(params, x, decay, threshold):
    """``phi = sum_t decay^(T-t) s_{L-1,t}`` of the forward model: the readout at t = T is ``W_L phi``."""
    from jsnn.simulate import simulate

    net = to_sequential(params, decay=decay, threshold=threshold)
    last_hidden = net.neuron_layers[-2]
    _, traces = jax.vmap(lambda xi: simulate(net, xi, record=[last_hidden]))(x)
    spikes = traces[last_hidden].spikes
    weights = decay ** jnp.arange(spikes.shape[1] - 1, -1, -1, dtype=spikes.dtype)
    return jnp.einsum("ntd,t->nd", spikes, weights), jnp.sum(weights)


def refit_readout(params, x: np.ndarray, targets: np.ndarray, *, decay: float, threshold: float,
                  ridge: float = 1e-2, chunk: int = 1000):
    """Re-solve the readout weights on the forward model's spikes (the U4 solve without the relaxation).

    ADMM fits ``W_L`` to its relaxed spikes ``a``, which disagree with the spikes the hidden
    weights actually produce on a few per cent of entries. With the hidden weights fixed, the
    forward readout at ``t = T`` is linear in ``W_L``: ``z_T = W_L phi`` with
    ``phi = sum_t decay^(T-t) s_{L-1,t}``, so the least squares
    ``min_W sum_n ||W phi_n - y_n||^2`` (the output term of the ADMM objective) has the closed
    form ``W = (sum Y^T phi)(sum phi^T phi + eps I)^{-1}`` of :func:`solve_weights`, summed over
    sample chunks. A readout bias ``b`` is the coefficient of the feature ``sum_t decay^(T-t)``.

    Args:
      params: ADMM parameters (tuple of ``{"weight", ["bias"]}``), the readout last.
      x: direct-coded inputs ``(N, T, d_0)``.
      targets: ``(N, d_L)`` readout targets (one-hot labels).
      decay, threshold: neuron constants.
      ridge: relative ridge of :func:`solve_weights`.
      chunk: samples simulated at once.

    Returns:
      ``params`` with a new readout.

    References:
      Perin, Bidini, Mazzieri, Rossi, "ADMM-based training for spiking neural networks",
      arXiv 2505.05527.

    Example:
      >>> import numpy as np
      >>> from jsnn.optim import init_params
      >>> x = np.random.default_rng(0).random((8, 3, 5)).astype(np.float32)
      >>> new = refit_readout(init_params([5, 4, 2]), x, np.eye(2, dtype=np.float32)[np.arange(8) % 2],
      ...                     decay=0.9, threshold=0.5)
      >>> new[-1]["weight"].shape
      (2, 4)
    """
    from jsnn.optim.admm_blocks import solve_weights

    dtype = params[-1]["weight"].dtype
    decay_, threshold_ = jnp.asarray(decay, dtype), jnp.asarray(threshold, dtype)
    use_bias = "bias" in params[-1]
    gram = num = None
    for s in range(0, len(x), chunk):
        phi, scale = _readout_features(params, jnp.asarray(x[s:s + chunk], dtype), decay_, threshold_)
        if use_bias:
            phi = jnp.concatenate([phi, jnp.full((phi.shape[0], 1), scale, dtype)], axis=1)
        g, n = phi.T @ phi, jnp.asarray(targets[s:s + chunk], dtype).T @ phi
        gram, num = (g, n) if gram is None else (gram + g, num + n)
    weight, _ = solve_weights(num, gram, ridge=ridge)
    readout = {"weight": weight[:, :-1], "bias": weight[:, -1]} if use_bias else {"weight": weight}
    return (*params[:-1], readout)


@jax.jit
def _predict(params, x, decay, threshold):
    from jsnn.simulate import simulate

    net = to_sequential(params, decay=decay, threshold=threshold)
    return jnp.argmax(jax.vmap(lambda xi: simulate(net, xi)[-1])(x), axis=-1)


def accuracy(params, x: np.ndarray, y: np.ndarray, *, decay: float, threshold: float, chunk: int = 1000) -> float:
    """Accuracy of the ADMM network on ``x`` ``(N, T, d_0)``: argmax of the readout potential at the last step.

    Example:
      >>> import numpy as np
      >>> from jsnn.optim import init_params
      >>> accuracy(init_params([5, 3, 2]), np.ones((4, 2, 5), np.float32), np.zeros(4, int), decay=0.9, threshold=1.0)
      1.0
    """
    dtype = params[0]["weight"].dtype
    decay, threshold = jnp.asarray(decay, dtype), jnp.asarray(threshold, dtype)
    correct = 0
    for s in range(0, len(y), chunk):
        xb = jnp.asarray(x[s:s + chunk], dtype)
        correct += int((np.asarray(_predict(params, xb, decay, threshold)) == y[s:s + chunk]).sum())
    return correct / len(y)


class _ResidualMonitor:
    """Stops a run whose Lagrangian or residuals are non-finite, explode, or grow for many checks in a row."""

    #: residual growth over its smallest value that counts as exploding
    EXPLODE = 1e4
    #: logged checks in a row with a growing residual, ending at 10x its smallest value, that count as diverging
    GROWTH_CHECKS = 5

    def __init__(self):
        self.first: float | None = None
        self.smallest = math.inf
        self.previous = math.inf
        self.growing = 0

    def check(self, m: dict[str, Any]) -> str | None:
        residual = max(m["rms_cz"] + [m["primal_residual"]])
        if not all(math.isfinite(v) for v in [m["lagrangian"], m["loss"], residual]):
            return "the Lagrangian or the residuals became NaN or infinite"
        self.first = residual if self.first is None else self.first
        self.smallest = min(self.smallest, residual)
        self.growing = self.growing + 1 if residual > self.previous else 0
        self.previous = residual
        if residual > self.EXPLODE * max(self.first, 1e-3):
            return f"residuals exploded (max RMS {residual:.3g})"
        if self.growing >= self.GROWTH_CHECKS and residual > 10 * max(self.smallest, 1e-3):
            return f"the residuals grew for {self.growing} checks in a row (max RMS {residual:.3g})"
        return None


def _diverged_message(it: int, what: str, last_good: str | None) -> str:
    where = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written yet"
    return (f"ADMM diverged at iteration {it}: {what}; {where}. "
            "Raise --ridge or --beta, lower --rho, or lengthen --warmup.")


def _keep_metrics_until(path: Path | None, it: int) -> None:
    from jsnn.checkpoint import atomic_write_bytes

    if path is None or not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["iter"] <= it]
    atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())


def plot_metrics(metrics_path: str | Path, out_png: str | Path) -> None:
    """Plot loss, residuals, Lagrangian and accuracies of a ``metrics.jsonl`` (written atomically).

    Raises:
      ImportError: without matplotlib (``pip install jsnn[plot]``).
    """
    import os
    import tempfile

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("--plot needs matplotlib: pip install 'jsnn[plot]'.") from err
    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line]
    it = [r["iter"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    axes[0].semilogy(it, [r["primal_residual"] for r in rows], label="primal (readout, t=T)")
    for l in range(len(rows[0]["rms_cz"])):
        axes[0].semilogy(it, [r["rms_cz"][l] for r in rows], label=f"RMS C^z layer {l + 1}")
    for l in range(len(rows[0]["rms_ca"])):
        axes[0].semilogy(it, [r["rms_ca"][l] for r in rows], "--", label=f"RMS C^a layer {l + 1}")
    axes[0].set_title("residuals")
    axes[0].legend(fontsize=7)
    axes[1].semilogy(it, [r["loss"] for r in rows], label="loss")
    axes[1].plot(it, [abs(r["lagrangian"]) for r in rows], label="|L_rho|")
    axes[1].set_title("loss and augmented Lagrangian")
    axes[1].legend(fontsize=7)
    axes[2].plot(it, [r["train_accuracy"] for r in rows], label="train (forward)")
    axes[2].plot(it, [r["test_accuracy"] for r in rows], label="test")
    for l in range(len(rows[0]["spike_disagreement"])):
        axes[2].plot(it, [r["spike_disagreement"][l] for r in rows], ":", label=f"spike disagreement {l + 1}")
    axes[2].set_title("accuracy")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("iteration")
    fig.tight_layout()
    out_png = Path(out_png)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=out_png.parent)
    os.close(fd)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out_png)


def admm_run(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None,
             config: dict[str, Any], num_classes: int | None = None) -> AdmmRun:
    """An ADMM run on arrays with the tuned settings (:data:`ADMM_COMMON`, :data:`ADMM_DEFAULTS`).

    Static samples ``(N, F)`` are direct-coded over ``T`` steps; a time series ``(N, T_s, F)`` is read as
    ``T_s F`` static features (the whole window at once; see the module docstring). Features outside
    [0, 1] are standardised (``input_scaling``). The initial weights are calibrated on the first 256
    training samples.

    Args:
      train: ``(x, y)`` training arrays (ADMM is full-batch: one iteration sweeps all of them).
      test: ``(x, y)`` test arrays (or None).
      config: overrides: ``hidden``, ``T``, ``iters``, ``warmup``, ``rho``, ``beta``, ``ridge``, ``decay``,
        ``threshold``, ``sweep``, ``init``, ``target_rate``, ``train_samples``, ``chunk_size``, ``seed``,
        ``log_every``, ``checkpoint_every``, ``plot``, ``refit_readout`` (after the last iteration, re-solve
        the readout on the forward spikes: :func:`refit_readout`), ``input_scaling``; ``data`` picks the
        defaults (default: own data).
      num_classes: number of classes (default: from the labels).

    Returns:
      An :class:`AdmmRun`; call it to train.
    """
    from jsnn.methods import OWN, method_defaults, num_classes_of, resolve_scaling

    full = {"method": "admm", "data": OWN}
    full.update({k: v for k, v in config.items() if v is not None})
    full = {**ADMM_COMMON, **method_defaults(ADMM_DEFAULTS, full["data"]), **full}
    full["hidden"] = list(full["hidden"])
    for key in ("rho", "beta"):
        check_hyperparameter(f"--{key}", full[key])
        if full[key] > MAX_PENALTY:
            raise ValueError(f"--{key} must be at most {MAX_PENALTY:g}; got {full[key]}. A larger penalty swamps the "
                             "loss in float32, so ADMM stops learning while its residuals look converged.")
    train, test = (_static(train[0]), train[1]), None if test is None else (_static(test[0]), test[1])
    resolve_scaling(full, train[0], preferred="standardize")
    num_classes = num_classes or num_classes_of(train, test)
    n = full.get("train_samples")
    if n is not None:
        train = (train[0][:n], train[1][:n])
    return AdmmRun(train, test, num_classes, full)


def build_admm(config: dict[str, Any], *, data_dir: str | None = None) -> AdmmRun:
    """An ADMM run for ``config`` (``jsnn train --method admm``): ``load_run_data`` + :func:`admm_run`."""
    from jsnn.methods import load_run_data

    full = {"data": "digits", **{k: v for k, v in config.items() if v is not None}}
    train, test, num_classes = load_run_data(full, data_dir)
    return admm_run(train, test, full, num_classes)
