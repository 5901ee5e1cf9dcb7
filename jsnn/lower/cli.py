"""``jsnn lower CKPT --target NAME --out DIR``: checkpoint -> integer tables, C, NIR.

The lead's ``jsnn/cli.py`` registers it with ``add_parser(subparsers)`` and calls
``run(args)``; every user error is a ``ValueError`` subclass with a one-line message,
raised before any output file is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from typing import Any

__all__ = ["LowerUsageError", "add_parser", "finetune_bptt", "load_network", "run"]


class LowerUsageError(ValueError):
    """A bad ``jsnn lower`` argument or input."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``lower`` sub-command to an ``argparse`` sub-parser collection."""
    from jsnn.lower.profiles import PROFILES

    p = subparsers.add_parser("lower", help="lower a checkpoint to integer tables for a target",
                              description="Quantise a trained network for a neuromorphic target and write "
                                          "tables.npz, manifest.json, jsnn_net.h, jsnn_net.c (and network.nir).")
    p.add_argument("checkpoint", help="a checkpoint.eqx written by jsnn train")
    p.add_argument("--target", required=True, help=f"target profile: one of {', '.join(sorted(PROFILES))}")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--weight-bits", type=int, help="override the target's weight width")
    p.add_argument("--calibration-samples", type=int, default=256, help="training samples used to calibrate")
    p.add_argument("--headroom", type=float, default=0.5, help="fraction of a state range the peak may use")
    p.add_argument("--dt", type=float, help="time step: in seconds for discrete nets (default 1e-3; manifest and "
                                           "NIR); required for exact checkpoints, in the net's time units (their "
                                           "grid: jsnn.exact.to_sequential)")
    p.add_argument("--nir", action="store_true", help="also write network.nir")
    p.add_argument("--compensate-decay", action="store_true",
                   help="scale weights to restore the DC gain of a decay the target cannot hold exactly")
    p.add_argument("--finetune-epochs", type=int, default=0,
                   help="quantisation-aware fine-tuning on the tables' grid for this many epochs of the training "
                        "data (BPTT checkpoints; the tables and NIR then hold the fine-tuned network)")
    p.add_argument("--finetune-lr", type=float, default=1e-4, help="Adam learning rate of the fine-tuning")
    p.add_argument("--data-dir", help="folder with the MNIST IDX files")
    return p


def load_network(checkpoint: str, *, data_dir: str | None = None):
    """``(net, run)`` of a checkpoint: the network and the training run its header rebuilds."""
    from jsnn.checkpoint import read_header
    from jsnn.cli import METHODS

    config = read_header(checkpoint).get("config")
    if not isinstance(config, dict) or config.get("method") not in METHODS:
        raise LowerUsageError(f"{checkpoint} was not written by `jsnn train` with a known method "
                              f"({sorted(METHODS)}); it is not a spiking network checkpoint.")
    module, name = METHODS[config["method"]].split(":")
    run = getattr(importlib.import_module(module), name)(config, data_dir=data_dir)
    return run.load_network(checkpoint), run


def finetune_bptt(net, tables, training, calibration, *, epochs: int, lr: float, seed: int | None = None):
    """:func:`~jsnn.lower.finetune.fit_to_tables` with a BPTT run's loss, encoding and training data.

    Args:
      net: the network of ``training`` that was lowered into ``tables``.
      tables: its tables.
      training: the BPTT ``TrainingRun`` its checkpoint header rebuilds (:func:`load_network`).
      calibration: encoded calibration inputs for the re-lowering's report.
      epochs: passes over the training data.
      lr: Adam learning rate.
      seed: shuffling seed (default: the run's).

    Returns:
      ``fit_to_tables``'s ``(grid_net, tables, report, losses)``.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from jsnn.bptt import BPTTConfig, bptt_loss, encode_batch
    from jsnn.data.batching import iterate_batches
    from jsnn.lower.finetune import fit_to_tables

    config = BPTTConfig.from_dict(training.config)
    seed = training.config.get("seed", 0) if seed is None else seed

    def batches(epoch):
        key = jax.random.fold_in(jax.random.key(seed), epoch)
        for x, y in iterate_batches(training.train, training.config["batch_size"], key=key):
            yield encode_batch(config, jnp.asarray(x, jnp.float32), key=jax.random.fold_in(key, 1)), y

    return fit_to_tables(net, tables, lambda n, x, y: bptt_loss(n, config, x, y)[0], batches, calibration,
                         optimizer=optax.adam(lr), epochs=epochs)


def run(args) -> dict[str, Any]:
    """Lower ``args.checkpoint`` for ``args.target`` into ``args.out``; returns a JSON-able summary."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jsnn.bptt import BPTTConfig, encode_batch
    from jsnn.lower.calibrate import lower_calibrated
    from jsnn.lower.profiles import get_profile
    from jsnn.lower.tables import save_tables

    profile = get_profile(args.target)
    if args.weight_bits is not None:
        profile = dataclasses.replace(profile, weight_bits=args.weight_bits)
    if args.calibration_samples < 1:
        raise LowerUsageError(f"--calibration-samples must be positive; got {args.calibration_samples}.")
    if args.finetune_epochs < 0 or not args.finetune_lr > 0:
        raise LowerUsageError(f"--finetune-epochs must be >= 0 and --finetune-lr positive; got "
                              f"{args.finetune_epochs} and {args.finetune_lr}.")
    net, training = load_network(args.checkpoint, data_dir=args.data_dir)
    if args.finetune_epochs and training.config.get("method") != "bptt":
        raise LowerUsageError(f"--finetune-epochs needs a BPTT checkpoint (its loss and encoding); "
                              f"{args.checkpoint} was trained with --method {training.config.get('method')}.")
    if training.config.get("method") == "exact":  # continuous time: discretise onto the --dt grid first
        from jsnn.lower.exact import run_exact

        return run_exact(args, profile, net, training)
    dt = 1e-3 if args.dt is None else args.dt
    x = np.asarray(training.train[0][: args.calibration_samples], np.float32)
    config = BPTTConfig.from_dict(training.config)
    calibration = np.asarray(encode_batch(config, jnp.asarray(x), key=jax.random.key(0)))
    tables, report, _ = lower_calibrated(net, profile, calibration, headroom=args.headroom, dt=dt,
                                         compensate_decay=args.compensate_decay)
    if args.finetune_epochs:
        net, tables, report, _ = finetune_bptt(net, tables, training, calibration, epochs=args.finetune_epochs,
                                               lr=args.finetune_lr)
    if args.nir:
        from jsnn.lower.nir_io import to_nir

        to_nir(net, dt=dt)  # fails before any file is written if the net has no NIR form
    files = save_tables(tables, args.out)
    if args.nir:
        from pathlib import Path

        from jsnn.lower.nir_io import write_nir

        files["nir"] = str(Path(args.out) / "network.nir")
        write_nir(files["nir"], net, dt=dt)
    return {"target": profile.name, "weight_bits": profile.weight_bits, "files": files, "report": report}
