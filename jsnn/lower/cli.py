"""``jsnn lower CKPT --target NAME --out DIR``: checkpoint -> integer tables, C, NIR.

The lead's ``jsnn/cli.py`` registers it with ``add_parser(subparsers)`` and calls
``run(args)``; every user error is a ``ValueError`` subclass with a one-line message,
raised before any output file is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

__all__ = ["LowerUsageError", "add_parser", "check_arguments", "finetune_bptt", "load_network", "run"]


class LowerUsageError(ValueError):
    """A bad ``jsnn lower`` argument or input."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``lower`` sub-command to an ``argparse`` sub-parser collection."""
    from jsnn.lower.profiles import PROFILES

    p = subparsers.add_parser("lower", help="lower a checkpoint to integer tables for a target",
                              description="Quantise a trained network for a neuromorphic target and write "
                                          "tables.npz, manifest.json, jsnn_net.h, jsnn_net.c (and network.nir).")
    p.add_argument("checkpoint", help="a checkpoint.eqx written by jsnn train, or its run folder")
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
    from jsnn.checkpoint import find_checkpoint, read_header
    from jsnn.cli import builder_for

    checkpoint = find_checkpoint(checkpoint)
    config = read_header(checkpoint).get("config")
    run = builder_for(config, f"checkpoint {checkpoint}")(config, data_dir=data_dir)
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
    from jsnn.data import scale_inputs
    from jsnn.data.batching import iterate_batches
    from jsnn.lower.finetune import fit_to_tables

    config = BPTTConfig.from_dict(training.config)
    seed = training.config.get("seed", 0) if seed is None else seed

    def batches(epoch):
        key = jax.random.fold_in(jax.random.key(seed), epoch)
        for x, y in iterate_batches(training.train, training.config["batch_size"], key=key):
            x = scale_inputs(training.config, jnp.asarray(x, jnp.float32))  # the run's own-data input scaling
            yield encode_batch(config, x, key=jax.random.fold_in(key, 1)), y

    return fit_to_tables(net, tables, lambda n, x, y: bptt_loss(n, config, x, y)[0], batches, calibration,
                         optimizer=optax.adam(lr), epochs=epochs)


def check_arguments(args) -> Path:
    """Check every ``jsnn lower`` option before any work starts; returns the output folder.

    The output folder may be new, empty, or an earlier ``jsnn lower`` output (which is then
    replaced whole); any other non-empty folder is refused, so unrelated files are never mixed in.
    """
    from jsnn.checkpoint import check_output_folder
    from jsnn.lower.profiles import get_profile

    try:
        out = check_output_folder(args.out, flag="--out")
    except ValueError as err:
        raise LowerUsageError(str(err)) from None
    get_profile(args.target)
    checks = [
        (args.weight_bits is None or 2 <= args.weight_bits <= 16, f"--weight-bits must be in 2..16; got {args.weight_bits}"),
        (args.calibration_samples >= 1, f"--calibration-samples must be positive; got {args.calibration_samples}"),
        (math.isfinite(args.headroom) and 0 < args.headroom <= 1, f"--headroom must be in (0, 1]; got {args.headroom}"),
        (args.dt is None or (math.isfinite(args.dt) and args.dt > 0),
         f"--dt must be a positive number of seconds; got {args.dt}"),
        (args.finetune_epochs >= 0, f"--finetune-epochs must be >= 0; got {args.finetune_epochs}"),
        (math.isfinite(args.finetune_lr) and args.finetune_lr > 0,
         f"--finetune-lr must be positive; got {args.finetune_lr}"),
    ]
    for ok, message in checks:
        if not ok:
            raise LowerUsageError(message + ".")
    if out.is_dir() and any(out.iterdir()) and not _is_lower_output(out):
        raise LowerUsageError(f"--out {out} is a non-empty folder that `jsnn lower` did not write; choose a new or "
                              "empty folder (an earlier jsnn lower output there is replaced whole).")
    return out


def _is_lower_output(folder: Path) -> bool:
    import json

    from jsnn.lower.tables import FORMAT

    allowed = {"tables.npz", "manifest.json", "jsnn_net.h", "jsnn_net.c", "network.nir"}
    if not {p.name for p in folder.iterdir()} <= allowed:
        return False
    try:
        return json.loads((folder / "manifest.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def run(args) -> dict[str, Any]:
    """Lower ``args.checkpoint`` for ``args.target`` into ``args.out``; returns a JSON-able summary."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jsnn.bptt import BPTTConfig, encode_batch
    from jsnn.checkpoint import staged_folder
    from jsnn.data import scale_inputs
    from jsnn.lower.calibrate import lower_calibrated
    from jsnn.lower.profiles import get_profile
    from jsnn.lower.tables import save_tables
    from jsnn.nn import Sequential

    out = check_arguments(args)
    profile = get_profile(args.target)
    if args.weight_bits is not None:
        profile = dataclasses.replace(profile, weight_bits=args.weight_bits)
    net, training = load_network(args.checkpoint, data_dir=args.data_dir)
    if training.config.get("method") == "exact":  # continuous time: discretise onto the --dt grid first
        from jsnn.lower.exact import run_exact

        with staged_folder(out) as staging:  # as below: the output set replaces the folder whole
            result = run_exact(argparse.Namespace(**{**vars(args), "out": str(staging)}), profile, net, training)
        result["files"] = {kind: str(out / Path(path).name) for kind, path in result["files"].items()}
        return result
    if not isinstance(net, Sequential):
        raise LowerUsageError(f"{args.checkpoint} holds a {type(net).__name__} (--method "
                              f"{training.config.get('method')}); jsnn lower takes the discrete-time Sequential "
                              "networks that --method bptt and admm train.")
    if args.finetune_epochs and training.config.get("method") != "bptt":
        raise LowerUsageError(f"--finetune-epochs needs a BPTT checkpoint (its loss and encoding); "
                              f"{args.checkpoint} was trained with --method {training.config.get('method')}.")
    dt = 1e-3 if args.dt is None else args.dt
    # the tables take the inputs the network was trained on: after the run's own-data scaling, if any
    x = np.asarray(scale_inputs(training.config, np.asarray(training.train[0][: args.calibration_samples], np.float32)))
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
    with staged_folder(out) as staging:  # the folder is replaced whole: never a mix of two runs' files
        staged = save_tables(tables, staging)
        if args.nir:
            from jsnn.lower.nir_io import write_nir

            staged["nir"] = str(staging / "network.nir")
            write_nir(staged["nir"], net, dt=dt)
    files = {kind: str(out / Path(path).name) for kind, path in staged.items()}
    return {"target": profile.name, "weight_bits": profile.weight_bits, "files": files, "report": report}
