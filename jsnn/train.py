"""The training loop shared by every jsnn method.

A method is a :class:`Method`: four pure functions (``init``, ``step``, ``predict``,
``network``). :func:`fit` runs it: jitted steps over shuffled mini-batches, a tqdm bar
with loss and accuracy, metrics as JSON lines, atomic checkpoints at every epoch end,
exact resume (``resume=True`` continues bit for bit as if never stopped) and a clean
checkpoint when the user presses Ctrl-C.

Determinism: every random draw comes from the run's root key by ``fold_in``: the
shuffle of epoch ``e`` from ``fold_in(data_key, e)``, the key of global step ``k`` from
``fold_in(step_key, k)``. A checkpoint therefore needs only the state and the position
(epoch, batch, step) to resume exactly.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray, PyTree
from tqdm.auto import tqdm

from jsnn.checkpoint import NonFiniteStateError, atomic_write_bytes, is_finite_tree, load_checkpoint, save_checkpoint
from jsnn.data import iterate_batches, num_batches

__all__ = ["DivergenceGuard", "FitResult", "Method", "StopRequest", "TrainingDiverged", "TrainingRun", "evaluate",
           "fit", "predict"]

CHECKPOINT_NAME = "checkpoint.eqx"
METRICS_NAME = "metrics.jsonl"


class Method(NamedTuple):
    """A training method, as pure functions the loop can jit.

    Attributes:
      init: ``init(key) -> state``: the full training state (model, optimiser state, ...).
      step: ``step(state, x, y, key) -> (state, metrics)`` for one mini-batch; metrics is a
        dict of scalar arrays and must contain ``"loss"``; ``"correct"`` (count of correct
        predictions in the batch) is shown as accuracy when present.
      predict: ``predict(state, x) -> labels`` for a batch ``x`` of raw (unencoded) samples.
      network: ``network(state) -> eqx.Module``: the trained network.
    """

    init: Callable[[PRNGKeyArray], PyTree]
    step: Callable[..., tuple[PyTree, dict[str, Array]]]
    predict: Callable[[PyTree, Array], Array]
    network: Callable[[PyTree], eqx.Module]


class TrainingDiverged(RuntimeError):
    """The loss became NaN, infinite or exploded, the outputs saturated, or the state became non-finite."""


@dataclass(frozen=True)
class DivergenceGuard:
    """When :func:`fit` stops a run as diverged (checked after every step).

    A run diverges when its loss is NaN or infinite (at once); when, for ``patience`` steps in a
    row, the loss exceeds ``loss_factor * max(reference, 1)`` (the reference is the run's first
    loss, before any update; it is stored in the checkpoint so a resumed run keeps it); or when,
    for ``saturated_patience`` steps in a row, the method's ``"saturated"`` metric (the fraction of
    samples whose outputs are saturated, for example every output spike buffer overflowing at one
    time) is at least ``saturated``. Saturation gets a longer patience: an exact-gradient net may
    start saturated and leave it in its first steps.

    Attributes:
      loss_factor: how far above its first value the loss may rise.
      saturated: the fraction of saturated samples that counts as diverged.
      patience: consecutive steps with an exploded loss before stopping (one outlier batch does not
        stop a run).
      saturated_patience: consecutive saturated steps before stopping.
    """

    loss_factor: float = 1e3
    saturated: float = 0.99
    patience: int = 10
    saturated_patience: int = 50

    def __post_init__(self):
        if not self.loss_factor > 1 or not 0 < self.saturated <= 1 or min(self.patience,
                                                                           self.saturated_patience) < 1:
            raise ValueError(f"DivergenceGuard needs loss_factor > 1, 0 < saturated <= 1 and patiences >= 1; "
                             f"got {self}.")


class _DivergenceMonitor:
    """Applies a :class:`DivergenceGuard` to the metrics of successive steps."""

    def __init__(self, guard: DivergenceGuard):
        self.guard = guard
        self.reference: float | None = None
        self.exploded = 0  # consecutive steps with the loss above its bound
        self.saturated = 0  # consecutive saturated steps

    def check(self, metrics: dict[str, Array]) -> str | None:
        """The reason the run diverged at this step, or ``None``."""
        loss = float(metrics["loss"])
        if not math.isfinite(loss):
            return f"the loss became {loss}"
        if self.reference is None:
            self.reference = loss
        bound = self.guard.loss_factor * max(abs(self.reference), 1.0)
        saturated = float(metrics["saturated"]) if "saturated" in metrics else 0.0
        self.exploded = self.exploded + 1 if loss > bound else 0
        self.saturated = self.saturated + 1 if saturated >= self.guard.saturated else 0
        if self.exploded >= self.guard.patience:
            return (f"the loss exploded to {loss:.3g} (first loss {self.reference:.3g}) for {self.exploded} steps "
                    "in a row")
        if self.saturated >= self.guard.saturated_patience:
            return f"the outputs saturated on {saturated:.0%} of the samples for {self.saturated} steps in a row"
        return None


@dataclass
class FitResult:
    """What :func:`fit` returns: the final state, the last test accuracy and the metric history."""

    state: PyTree
    test_accuracy: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False


def predict(method: Method, state: PyTree, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """``method.predict`` over ``x`` in fixed-size batches (the last one padded), as a numpy label array.

    Args:
      method: the method whose ``predict`` to use.
      state: training state.
      x: raw samples, shape ``(N, ...)``.
      batch_size: evaluation batch size; every batch has this shape, so it compiles once.

    Returns:
      The predicted labels ``(N,)``.
    """
    n = len(x)
    if n == 0:
        raise ValueError("predict got an empty data set.")
    jit_predict = eqx.filter_jit(method.predict)
    batch_size = min(batch_size, n)
    out = []
    for start in range(0, n, batch_size):
        xb = np.asarray(x[start : start + batch_size])
        valid = len(xb)
        if valid < batch_size:
            xb = np.concatenate([xb, np.repeat(xb[-1:], batch_size - valid, axis=0)])
        out.append(np.asarray(jit_predict(state, jnp.asarray(xb)))[:valid])
    return np.concatenate(out)


def evaluate(method: Method, state: PyTree, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> float:
    """Accuracy of ``method.predict`` on ``(x, y)`` (batched as in :func:`predict`).

    Args:
      method: the method whose ``predict`` to use.
      state: training state.
      x: raw samples, shape ``(N, ...)``.
      y: integer labels ``(N,)``.
      batch_size: evaluation batch size.

    Returns:
      The fraction of correct predictions.
    """
    if len(y) == 0:
        raise ValueError("evaluate got an empty data set.")
    return int((predict(method, state, x, batch_size=batch_size) == y).sum()) / len(y)


class StopRequest:
    """Turns SIGINT (Ctrl-C) into a flag the loop checks between steps, so a step is never torn."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _trim_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint we resume from (they will be redone)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())


def _to_python(metrics: dict[str, Array]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def fit(
    method: Method,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray] | None,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    out_dir: str | Path | None = None,
    config: dict[str, Any] | None = None,
    resume: bool = False,
    log_every: int = 50,
    progress: bool = True,
    stop_after_steps: int | None = None,
    divergence: DivergenceGuard | None = None,
) -> FitResult:
    """Train ``method`` on ``train`` for ``epochs`` epochs.

    Args:
      method: the :class:`Method` to run.
      train: ``(x, y)`` numpy arrays of raw samples and integer labels.
      test: optional ``(x, y)`` evaluated at the end of every epoch.
      epochs: number of passes over ``train``.
      batch_size: mini-batch size (the last incomplete batch of an epoch is dropped).
      seed: root seed; all randomness derives from it.
      out_dir: where ``checkpoint.eqx`` and ``metrics.jsonl`` go; ``None`` writes nothing.
      config: JSON-serialisable run config stored in every checkpoint header.
      resume: continue from ``out_dir/checkpoint.eqx`` exactly where it stopped.
      log_every: write a step metrics line every this many steps.
      progress: show a tqdm progress bar.
      stop_after_steps: stop (with a checkpoint) after this global step, as Ctrl-C would.
      divergence: when a run counts as diverged (default :class:`DivergenceGuard`); checked after
        every step.

    Returns:
      A :class:`FitResult`.

    Raises:
      TrainingDiverged: the loss became non-finite or exploded, the outputs saturated, or the state
        became non-finite; nothing is saved then, and the message names the last good checkpoint,
        which stays as it was.
    """
    x_train, y_train = train
    steps_per_epoch = num_batches(len(y_train), batch_size, drop_last=True)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={batch_size} is larger than the training set ({len(y_train)} samples).")
    root = jax.random.key(seed)
    init_key, data_key, step_key = jax.random.split(root, 3)
    state = method.init(init_key)
    epoch, batch, step = 0, 0, 0
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / CHECKPOINT_NAME if out else None
    metrics_path = out / METRICS_NAME if out else None
    guard = divergence or DivergenceGuard()
    monitor = _DivergenceMonitor(guard)
    saved_step: int | None = None  # the step of the checkpoint on disk, if any
    if resume:
        if ckpt is None or not ckpt.exists():
            raise FileNotFoundError(f"--resume needs a checkpoint at {ckpt}; none found. Start without --resume.")
        state, header = load_checkpoint(ckpt, state)
        epoch, batch, step = header["epoch"], header["batch"], header["step"]
        monitor.reference = header.get("reference_loss")
        saved_step = step
        _trim_metrics(metrics_path, step)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        if not resume and metrics_path.exists():
            metrics_path.unlink()

    def last_good() -> str:
        if saved_step is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint {ckpt} (step {saved_step}) is kept"

    def diverged(what: str) -> TrainingDiverged:
        return TrainingDiverged(f"training diverged at step {step}: {what}; {last_good()}. "
                                "Lower the learning rate or check the data.")

    def checkpoint():
        nonlocal saved_step
        if ckpt is None:
            return
        try:
            save_checkpoint(ckpt, state, {"config": config or {}, "epoch": epoch, "batch": batch, "step": step,
                                          "reference_loss": monitor.reference})
        except NonFiniteStateError:
            raise diverged("the training state holds NaN or infinite values") from None
        saved_step = step

    jit_step = eqx.filter_jit(method.step)
    history: list[dict[str, Any]] = []
    test_acc = None
    interrupted = False
    with StopRequest() as stop:
        while epoch < epochs:
            batches: Iterator = iterate_batches(
                (x_train, y_train), batch_size, key=jax.random.fold_in(data_key, epoch), start_batch=batch
            )
            bar = tqdm(total=steps_per_epoch, initial=batch, desc=f"epoch {epoch + 1}/{epochs}",
                       disable=not progress, leave=False, dynamic_ncols=True)
            running: dict[str, float] = {}
            try:
                for xb, yb in batches:
                    state, metrics = jit_step(state, xb, yb, jax.random.fold_in(step_key, step))
                    step += 1
                    batch += 1
                    problem = monitor.check(metrics)
                    if problem:
                        raise diverged(problem)
                    if step % log_every == 0 or batch == steps_per_epoch:
                        running = _to_python(metrics)
                        if "correct" in running:
                            running["acc"] = running.pop("correct") / len(yb)
                        record = {"step": step, "epoch": epoch, **running}
                        if metrics_path:
                            _append_jsonl(metrics_path, record)
                        bar.set_postfix({k: f"{v:.4g}" for k, v in running.items()})
                    bar.update(1)
                    interrupted = stop.requested or (stop_after_steps is not None and step >= stop_after_steps)
                    if interrupted and batch < steps_per_epoch:
                        break
            finally:
                bar.close()
            if batch < steps_per_epoch:  # stopped mid-epoch: save the position, skip the epoch summary
                checkpoint()
                break
            epoch, batch = epoch + 1, 0
            if not is_finite_tree(state):
                raise diverged("the training state holds NaN or infinite values")
            record = {"step": step, "epoch": epoch, **{f"train_{k}": v for k, v in running.items()}}
            if test is not None:
                test_acc = evaluate(method, state, *test)
                record["test_acc"] = test_acc
            record["time"] = time.time()
            history.append(record)
            if metrics_path:
                _append_jsonl(metrics_path, record)
            if progress:
                tqdm.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))
            checkpoint()
            if interrupted:
                break
    if test is not None and test_acc is None and epoch >= epochs:  # resumed a finished run: nothing to train
        test_acc = evaluate(method, state, *test)
    return FitResult(state=state, test_accuracy=test_acc, history=history, interrupted=interrupted)


@dataclass
class TrainingRun:
    """A method bound to its data and config: what ``jsnn train`` and ``jsnn evaluate`` run.

    Attributes:
      method: the :class:`Method`.
      train: ``(x, y)`` training arrays.
      test: ``(x, y)`` test arrays.
      config: the full run config (stored in checkpoints; must include ``epochs``,
        ``batch_size`` and ``seed``).
      state: the training state after the last call (``None`` before).
    """

    method: Method
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None
    config: dict[str, Any]
    state: PyTree = field(default=None, repr=False)

    def __call__(self, *, out_dir: str | Path | None, resume: bool = False, progress: bool = True) -> dict[str, Any]:
        """Train (or resume), then return a JSON-able summary."""
        start = time.perf_counter()
        result = fit(self.method, self.train, self.test, epochs=self.config["epochs"],
                     batch_size=self.config["batch_size"], seed=self.config["seed"], out_dir=out_dir,
                     config=self.config, resume=resume, progress=progress)
        self.state = result.state
        summary = {"config": self.config, "test_accuracy": result.test_accuracy,
                   "interrupted": result.interrupted, "wall_s": round(time.perf_counter() - start, 2)}
        if out_dir is not None:
            summary["checkpoint"] = str(Path(out_dir) / CHECKPOINT_NAME)
        return summary

    def load_network(self, checkpoint: str | Path) -> eqx.Module:
        """The trained network in a checkpoint written by this run's config."""
        state, _ = load_checkpoint(checkpoint, self.method.init(jax.random.key(0)))
        return self.method.network(state)

    def predict(self, x: np.ndarray, *, checkpoint: str | Path | None = None) -> np.ndarray:
        """Labels for raw samples ``x`` from the state of the last call, or from ``checkpoint``."""
        if checkpoint is not None:
            state, _ = load_checkpoint(checkpoint, self.method.init(jax.random.key(0)))
        elif self.state is None:
            raise ValueError("nothing trained yet: call the run first, or pass checkpoint=.")
        else:
            state = self.state
        return predict(self.method, state, x)

    def evaluate(self, checkpoint: str | Path) -> dict[str, Any]:
        """Test accuracy of a checkpoint written by this run's config."""
        like = self.method.init(jax.random.key(0))
        state, header = load_checkpoint(checkpoint, like)
        return {"checkpoint": str(checkpoint), "step": header["step"], "epoch": header["epoch"],
                "test_accuracy": evaluate(self.method, state, *self.test)}
