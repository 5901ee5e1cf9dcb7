"""Runs from a config: ``jsnn train`` (data by name or ``.npz`` path) and :func:`fit` (your arrays) share them.

Each method has an array-level entry, ``<method>_run(train, test, config, num_classes=None)``, that fills
in the method's tuned defaults, fits the input scaling to the training data and returns the run (a
:class:`jsnn.train.TrainingRun` or, for ADMM, :class:`jsnn.optim.AdmmRun`). The builder the CLI calls,
``build_<method>(config, *, data_dir=None)``, is :func:`load_run_data` followed by that entry, so the
command line and Python give the same run for the same config and seed.

Defaults: each method's ``*_DEFAULTS`` table has one entry per bundled data set it was tuned on and an
``"own"`` entry for any other data (an ``.npz`` file or arrays).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jsnn.bptt import BPTTConfig, bptt_method
from jsnn.data import DataError, fit_scaling, is_npz_path, load_dataset, load_npz, npz_sha256, scale_inputs
from jsnn.train import Method, TrainingRun

__all__ = ["BPTT_DEFAULTS", "OWN", "RUNS", "Fitted", "bptt_method_for", "bptt_run", "build_bptt", "fit", "load_run_data",
           "load_split_arrays", "method_defaults", "num_classes_of", "resolve_scaling", "with_input_scaling"]

#: the defaults key of data that no default was tuned on (an ``.npz`` file, arrays)
OWN = "own"

#: per data set defaults of ``jsnn train --method bptt`` (flags override them)
BPTT_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"hidden": [128], "T": 8, "epochs": 40, "batch_size": 32, "lr": 3e-3},
    "mnist": {"hidden": [512], "T": 10, "epochs": 15, "batch_size": 128, "lr": 1e-3},
    "yinyang": {"hidden": [64], "T": 16, "epochs": 40, "batch_size": 32, "lr": 3e-3},
    OWN: {"hidden": [128], "T": 8, "epochs": 30, "batch_size": 32, "lr": 3e-3, "input_scaling": "auto"},
}

#: method name -> its array-level entry ``(train, test, config, num_classes=None) -> run``
RUNS = {
    "bptt": "jsnn.methods:bptt_run",
    "admm": "jsnn.optim.admm_method:admm_run",
    "exact": "jsnn.exact.method:exact_run",
}

Split = tuple[np.ndarray, np.ndarray]


def method_defaults(table: dict[str, dict[str, Any]], data: str) -> dict[str, Any]:
    """The defaults of ``data`` in a method's table: its own entry when tuned on it, else :data:`OWN`'s."""
    return dict(table.get(data, table[OWN]))


def load_split_arrays(name: str, data_dir: str | None, *, keep_time: bool = False
                      ) -> tuple[Split, Split, int]:
    """``((x_train, y_train), (x_test, y_test), num_classes)`` of a bundled data set or an ``.npz`` file.

    Args:
      name: ``"digits"``, ``"mnist"``, ``"yinyang"`` or the path of an ``.npz`` file (layout:
        :mod:`jsnn.data.npz`).
      data_dir: the MNIST folder (``--data-dir``).
      keep_time: keep the ``(N, T, F)`` shape of time-series samples; otherwise every sample is flattened.

    Returns:
      float32 samples and int32 labels of both splits, and the number of classes.

    Raises:
      DataError: for a missing or malformed file (one line that says what to fix).
    """
    if is_npz_path(name):
        train, test = load_npz(name)
    else:
        kwargs = {"data_dir": data_dir} if name == "mnist" else {}
        train, test = load_dataset(name, "train", **kwargs), load_dataset(name, "test", **kwargs)

    def arrays(d):
        x = d.x if keep_time and d.x.ndim == 3 else d.x.reshape(len(d), -1)
        return x, d.y

    return arrays(train), arrays(test), train.num_classes


def load_run_data(config: dict[str, Any], data_dir: str | None = None, *, keep_time: bool = False
                  ) -> tuple[Split, Split, int]:
    """:func:`load_split_arrays` of ``config["data"]``; for a file, records or checks ``config["data_sha256"]``.

    A new run records the file's sha256 in ``config``; a run rebuilt from a checkpoint (``jsnn evaluate``,
    ``--resume``) refuses a file whose sha256 differs from the recorded one.

    Raises:
      DataError: the file changed since the run was trained, or cannot be read.
    """
    name = config["data"]
    if is_npz_path(name):
        digest = npz_sha256(name) if Path(name).is_file() else None
        recorded = config.get("data_sha256")
        if digest and recorded and recorded != digest:
            raise DataError(f"{name} has changed since this run was trained (sha256 {digest[:12]}..., the "
                            f"checkpoint recorded {recorded[:12]}...); use the original file or train again.")
        if digest:
            config["data_sha256"] = digest
    return load_split_arrays(name, data_dir, keep_time=keep_time)


def num_classes_of(train: Split, test: Split | None) -> int:
    """``1 + the largest label`` of either split (at least 2)."""
    labels = [np.asarray(train[1])] + ([np.asarray(test[1])] if test is not None else [])
    return max(2, 1 + max(int(y.max()) for y in labels))


def with_input_scaling(method: Method, config: dict[str, Any]) -> Method:
    """``method`` reading raw samples: ``step`` and ``predict`` first apply the scaling in ``config``.

    The scaling (:func:`jsnn.data.fit_scaling`) lives in the run config, so a checkpoint rebuilds it.
    """
    if config.get("input_scaling", "none") == "none":
        return method
    scale = lambda x: scale_inputs(config, x)  # noqa: E731
    return method._replace(step=lambda state, x, y, key: method.step(state, scale(x), y, key),
                           predict=lambda state, x: method.predict(state, scale(x)))


def resolve_scaling(full: dict[str, Any], x: np.ndarray, *, preferred: str) -> None:
    """Fit ``full["input_scaling"]`` (``"auto"`` by default for own data) on ``x`` unless already fitted."""
    if "input_shift" in full or full.get("input_scaling", "none") == "none":
        full.setdefault("input_scaling", "none")
        return
    full.update(fit_scaling(x, full["input_scaling"], preferred=preferred))


def bptt_run(train: Split, test: Split | None, config: dict[str, Any], num_classes: int | None = None
             ) -> TrainingRun:
    """A surrogate-BPTT run on arrays, with the tuned defaults (:data:`BPTT_DEFAULTS`).

    Static samples ``(N, F)`` are encoded by ``config["encoding"]``; time series ``(N, T, F)`` are the
    input current of each step as they are (``T`` is the series length) and the hidden layers default to
    :class:`jsnn.nn.Recurrent` LIF layers. Features outside [0, 1] are standardised (``input_scaling``).

    Args:
      train: ``(x, y)`` training arrays.
      test: ``(x, y)`` test arrays, evaluated after every epoch (or None).
      config: overrides of the defaults (any :class:`jsnn.bptt.BPTTConfig` field, ``epochs``,
        ``batch_size``, ``seed``, ``input_scaling``); ``data`` picks the defaults (default: own data).
      num_classes: number of classes (default: from the labels).

    Returns:
      A :class:`jsnn.train.TrainingRun`; call it to train.

    Raises:
      ValueError: for a combination that cannot work (rate or latency coding of time series or of
        unscaled features outside [0, 1]).
    """
    full = {"method": "bptt", "data": OWN, "seed": 0, **config}
    full = {**method_defaults(BPTT_DEFAULTS, full["data"]), **full}
    x = np.asarray(train[0])
    sequence = x.ndim == 3
    if sequence:
        if "T" in config and config["T"] != x.shape[1]:
            raise ValueError(f"T is the series length for time-series inputs ({x.shape[1]}); got T={config['T']}.")
        full["T"] = x.shape[1]
        full.setdefault("recurrent", True)
    resolve_scaling(full, x, preferred="standardize")
    encoding = full.get("encoding", "direct")
    if encoding != "direct" and sequence:
        raise ValueError(f"time series are fed as they are; encoding={encoding!r} applies to static features only.")
    if encoding != "direct" and full["input_scaling"] == "none" and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"encoding={encoding!r} needs features in [0, 1]; these span {x.min():.3g}..{x.max():.3g}. "
                         "Use input_scaling='unit' (or 'auto'), or encoding='direct'.")
    full.update(BPTTConfig.from_dict(full).to_dict())
    full["hidden"] = list(full["hidden"])
    num_classes = num_classes or num_classes_of(train, test)
    return TrainingRun(bptt_method_for(full, x.shape[-1], num_classes, len(train[1])), train, test, full)


def bptt_method_for(full: dict[str, Any], in_features: int, num_classes: int, num_train: int) -> Method:
    """The BPTT method of a full run config (:func:`bptt_run`'s ``run.config``) on raw samples.

    Numeric hyperparameters (``lr``, ``decay``, ``threshold``, ``slope``, ...) may be traced values:
    :func:`jsnn.sweep.sweep` builds one method per lane inside ``jax.vmap``.

    Args:
      full: the full config (defaults and input scaling filled in).
      in_features: width of a flattened raw sample.
      num_classes: number of outputs.
      num_train: training samples (with ``epochs`` and ``batch_size``, the length of the cosine schedule).

    Returns:
      The :class:`jsnn.train.Method`, reading raw samples (the config's input scaling applied).
    """
    total = full["epochs"] * (num_train // full["batch_size"])
    method = bptt_method(BPTTConfig.from_dict(full), in_features, num_classes, total_steps=total)
    return with_input_scaling(method, full)


def build_bptt(config: dict[str, Any], *, data_dir: str | None = None) -> TrainingRun:
    """A surrogate-BPTT run for ``config`` (``jsnn train --method bptt``): :func:`load_run_data` + :func:`bptt_run`."""
    full = {"data": "digits", **config}
    train, test, num_classes = load_run_data(full, data_dir, keep_time=True)
    return bptt_run(train, test, full, num_classes)


@dataclass
class Fitted:
    """What :func:`fit` returns: the run (bound to its data and config) and its result.

    Attributes:
      run: the run; ``run.config`` is the full config (defaults and fitted input scaling included).
      result: the JSON-able summary (``test_accuracy``, ``config``, ``checkpoint`` when written, ...).
    """

    run: Any
    result: dict[str, Any]

    @property
    def test_accuracy(self) -> float | None:
        """Test accuracy at the end of training (None without a test set)."""
        return self.result.get("test_accuracy")

    def predict(self, x: np.ndarray, *, checkpoint: str | Path | None = None) -> np.ndarray:
        """Class labels ``(N,)`` for raw samples ``x`` (the trained model, or the one in ``checkpoint``)."""
        return self.run.predict(np.asarray(x, np.float32), checkpoint=checkpoint)


def fit(x_train: np.ndarray, y_train: np.ndarray, *, method: str = "bptt", test: Split | None = None,
        out_dir: str | Path | None = None, resume: bool = False, progress: bool = False,
        num_classes: int | None = None, **config: Any) -> Fitted:
    """Train a spiking network on your arrays with a method's tuned defaults: the Python face of ``jsnn train``.

    It runs the same code with the same defaults as ``jsnn train --data FILE.npz``: for the same arrays,
    config and seed both give the same network and accuracy.

    Args:
      x_train: ``(N, F)`` features (signed or in [0, 1]) or ``(N, T, F)`` time series.
      y_train: ``(N,)`` integer labels ``0..K-1``.
      method: ``"bptt"``, ``"admm"`` or ``"exact"`` (a key of :data:`RUNS`).
      test: ``(x_test, y_test)``, evaluated after training (and after every epoch for bptt/exact).
      out_dir: folder for ``checkpoint.eqx`` and ``metrics.jsonl`` (None writes nothing).
      resume: continue from ``out_dir``'s checkpoint.
      progress: show the progress bar.
      num_classes: number of classes (default: 1 + the largest label).
      **config: overrides of the method's defaults (``hidden``, ``epochs``, ``seed``, ...; see the
        ``jsnn train --help`` table and each method's ``*_run``).

    Returns:
      A :class:`Fitted`: ``.test_accuracy``, ``.result``, ``.predict(x)``, ``.run``.

    Raises:
      ValueError: for an unknown method, bad arrays or a config that cannot work.

    Example:
      >>> import numpy as np, jsnn
      >>> rng = np.random.default_rng(0)
      >>> x = rng.normal(size=(64, 5)).astype(np.float32); y = (x[:, 0] > 0).astype(np.int32)
      >>> model = jsnn.fit(x, y, method="bptt", test=(x, y), hidden=[8], epochs=2, batch_size=16)
      >>> model.predict(x[:3]).shape
      (3,)
    """
    if method not in RUNS:
        raise ValueError(f"method must be one of {sorted(RUNS)}; got {method!r}.")
    train = _checked_split(x_train, y_train, "train")
    test = None if test is None else _checked_split(*test, "test")
    module, name = RUNS[method].split(":")
    run = getattr(importlib.import_module(module), name)(train, test, {"data": OWN, **config}, num_classes)
    return Fitted(run, run(out_dir=out_dir, resume=resume, progress=progress))


def _checked_split(x, y, split: str) -> Split:
    """Arrays as the loaders give them (float32 x, int32 y), with the ``.npz`` loader's checks."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim not in (2, 3) or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise ValueError(f"{split}: need x (N, F) or (N, T, F) and y (N,) with N > 0; got x {x.shape}, y {y.shape}.")
    if y.dtype.kind not in "iu" or y.min() < 0:
        raise ValueError(f"{split}: labels must be integers 0..K-1; got dtype {y.dtype}, minimum {y.min()}.")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{split}: x holds NaN or infinite values.")
    return x, y.astype(np.int32)
