"""Builders that turn a run config (from ``jsnn train`` flags or a checkpoint header) into a run.

Each builder takes the config dict and ``data_dir`` and returns a
:class:`jsnn.train.TrainingRun`. The CLI looks builders up by method name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jsnn.bptt import BPTTConfig, bptt_method
from jsnn.data import load_dataset
from jsnn.train import TrainingRun

__all__ = ["BPTT_DEFAULTS", "build_bptt", "load_split_arrays"]

#: per data set defaults of ``jsnn train --method bptt`` (flags override them)
BPTT_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"hidden": [128], "T": 8, "epochs": 40, "batch_size": 32, "lr": 3e-3},
    "mnist": {"hidden": [512], "T": 10, "epochs": 15, "batch_size": 128, "lr": 1e-3},
    "yinyang": {"hidden": [64], "T": 16, "epochs": 40, "batch_size": 32, "lr": 3e-3},
}


def load_split_arrays(name: str, data_dir: str | None) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """``((x_train, y_train), (x_test, y_test), num_classes)`` with flattened float32 samples."""
    kwargs = {"data_dir": data_dir} if name == "mnist" else {}
    train = load_dataset(name, "train", **kwargs)
    test = load_dataset(name, "test", **kwargs)
    flat = lambda d: (d.x.reshape(len(d), -1), d.y)  # noqa: E731
    return flat(train), flat(test), train.num_classes


def build_bptt(config: dict[str, Any], *, data_dir: str | None = None) -> TrainingRun:
    """A surrogate-BPTT run for ``config`` (defaults filled in from :data:`BPTT_DEFAULTS`)."""
    full = {"method": "bptt", "data": "digits", "seed": 0}
    full.update(config)
    full = {**BPTT_DEFAULTS[full["data"]], **full}
    bptt_config = BPTTConfig.from_dict(full)
    full.update(bptt_config.to_dict())
    full["hidden"] = list(full["hidden"])
    train, test, num_classes = load_split_arrays(full["data"], data_dir)
    total = full["epochs"] * (len(train[1]) // full["batch_size"])
    method = bptt_method(bptt_config, train[0].shape[1], num_classes, total_steps=total)
    return TrainingRun(method, train, test, full)
