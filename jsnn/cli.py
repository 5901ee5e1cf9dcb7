"""The ``jsnn`` command line: ``jsnn train``, ``jsnn evaluate``, ``jsnn lower``, ``jsnn sweep``, ``jsnn data info``.

Every user error (a wrong flag, a missing data directory, a corrupt checkpoint) ends
with one line on stderr that says what to do, and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["DATASETS", "METHODS", "UsageError", "builder_for", "main"]

#: method name -> (module, builder); a builder maps (config, data) to (Method, fit options)
METHODS = {
    "bptt": "jsnn.methods:build_bptt",
    "admm": "jsnn.optim.admm_method:build_admm",
    "exact": "jsnn.exact.method:build_exact",
    "ide": "jsnn.equilibrium.method:build_ide",
    "spide": "jsnn.equilibrium.method:build_spide",
    "shortcut": "jsnn.shortcut:build_shortcut",
}


#: flags that only some methods read; passing one to another method is an error, not silently ignored
METHOD_FLAGS = {
    "grad": {"exact"},
    "sim": {"exact"},
    "readout": {"exact"},
    "encoding": {"bptt", "shortcut"},
    "decay": {"bptt", "admm", "shortcut"},
    "reset": {"bptt", "shortcut"},
    "surrogate": {"bptt", "shortcut"},
    "slope": {"bptt", "shortcut"},
    "lr": {"bptt", "exact", "ide", "spide", "shortcut"},
    "epochs": {"bptt", "exact", "ide", "spide", "shortcut"},
    "batch_size": {"bptt", "exact", "ide", "spide", "shortcut"},
    "T_backward": {"spide"},
    "solver": {"ide"},
    "solver_tol": {"ide"},
    "solver_iters": {"ide"},
    "loss": {"bptt", "exact", "shortcut"},
    "arch": {"bptt", "shortcut"},
    "depth": {"bptt", "shortcut"},
    "weight_scale": {"bptt", "shortcut"},
    "branches": {"shortcut"},
    "schedule": {"shortcut"},
    **{flag: {"admm"} for flag in ("rho", "beta", "iters", "warmup", "ridge", "sweep", "init", "train_samples",
                                   "chunk_size", "plot", "log_every", "checkpoint_every", "refit_readout")},
}


#: the data sets ``jsnn train --data`` knows
DATASETS = ["digits", "mnist", "yinyang"]

#: what ``jsnn train`` uses for a flag that is not given (and not read from a checkpoint)
TRAIN_DEFAULTS = {"method": "bptt", "data": "digits", "seed": 0}


class UsageError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    epilog_fn = None  # builds the epilog when help is shown (so parsing does not import the methods)

    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def format_help(self):
        if self.epilog_fn is not None:
            self.epilog = self.epilog_fn()
        return super().format_help()


def _data(text: str) -> str:
    """``--data``: a bundled data set's name, or an ``.npz`` file (recorded as an absolute path)."""
    from jsnn.data import is_npz_path

    if text in DATASETS:
        return text
    if is_npz_path(text):
        return str(Path(text).expanduser().resolve())
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(DATASETS)} or a file PATH.npz, got {text!r}")


def _defaults_table() -> str:
    """The per-data-set defaults that the builders fill in, one line per method and data set."""
    from jsnn.exact.method import EXACT_DEFAULTS
    from jsnn.methods import BPTT_DEFAULTS
    from jsnn.optim.admm_method import ADMM_COMMON, ADMM_DEFAULTS

    tables = [("bptt", BPTT_DEFAULTS), ("admm", {"(every)": ADMM_COMMON, **ADMM_DEFAULTS}),
              ("exact", EXACT_DEFAULTS)]
    lines = ["defaults filled in per method and data set (flags override them; 'own' = --data FILE.npz):"]
    for method, table in tables:
        for data, values in table.items():
            text = " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in values.items())
            lines.append(f"  {method:<6}{data:<9}{text}")
    lines.append("FILE.npz holds x_train, y_train, x_test, y_test: x (N, F) features or (N, T, F) time series, "
                 "y integer labels (see jsnn.data.npz).")
    return "\n".join(lines)


def _integer(what: str, low: int, high: int | None = None):
    """An argparse type: an integer in ``[low, high)``, described as ``what`` in the message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_positive_int = _integer("a positive integer", 1)
_nonnegative_int = _integer("a non-negative integer", 0)
_seed = _integer("a non-negative integer seed below 2**32", 0, 2**32)


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _unit_float(text: str) -> float:
    value = _finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def _parser() -> _Parser:
    parser = _Parser(prog="jsnn", description="Spiking neural networks in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train a network", description="Train a spiking network.",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.epilog_fn = _defaults_table
    train.add_argument("--method", choices=sorted(METHODS), help="training method (default: bptt)")
    train.add_argument("--data", type=_data, metavar="{digits,mnist,yinyang,FILE.npz}",
                       help="a bundled data set or your own .npz file (default: digits)")
    train.add_argument("--data-dir", help="folder with the MNIST IDX files (else $JSNN_DATA, then the cache)")
    train.add_argument("--hidden", type=_positive_int, nargs="+", help="hidden layer widths")
    train.add_argument("--T", type=_positive_int, help="time steps")
    train.add_argument("--epochs", type=_positive_int, help="passes over the training set")
    train.add_argument("--batch-size", type=_positive_int, help="mini-batch size")
    train.add_argument("--lr", type=_positive_float, help="learning rate")
    train.add_argument("--seed", type=_seed, help="root seed of all randomness (default: 0)")
    train.add_argument("--encoding", choices=["direct", "rate", "latency"])
    train.add_argument("--loss", help="loss name (see jsnn.losses.LOSSES)")
    train.add_argument("--decay", type=_unit_float, help="LIF leak per step, in [0, 1]")
    train.add_argument("--threshold", type=_positive_float, help="LIF threshold")
    train.add_argument("--reset", choices=["subtract", "zero"], help="LIF reset after a spike")
    train.add_argument("--surrogate", choices=["fast_sigmoid", "arctan", "triangle", "straight_through"])
    train.add_argument("--slope", type=_positive_float, help="surrogate slope")
    train.add_argument("--arch", choices=["mlp", "conv"], help="--method bptt/shortcut: LIF MLP or VGG-style conv net")
    train.add_argument("--depth", type=_positive_int, help="--method bptt/shortcut: number of hidden layers "
                                                           "(all of width --hidden's first value)")
    train.add_argument("--weight-scale", type=_positive_float, help="--method bptt/shortcut: initial weight gain")
    shortcut = train.add_argument_group("shortcut BP (--method shortcut)")
    shortcut.add_argument("--branches", type=_positive_int, nargs="+",
                          help="stages (hidden layers, from 1) to branch from; default: all but the last")
    shortcut.add_argument("--schedule", choices=["linear", "cosine", "constant"],
                          help="balance coefficient: branch weight 1 -> 0 (linear, cosine) or plain shortcut BP")
    admm = train.add_argument_group("ADMM (--method admm)")
    admm.add_argument("--rho", type=_positive_float, help="penalty on the dynamics constraints")
    admm.add_argument("--beta", type=_positive_float, help="penalty on the spike constraints")
    admm.add_argument("--iters", type=_positive_int, help="ADMM iterations")
    admm.add_argument("--warmup", type=_nonnegative_int, help="iterations without dual updates")
    admm.add_argument("--ridge", type=_positive_float, help="ridge of the weight least squares")
    admm.add_argument("--sweep", choices=["red_black", "jacobi", "gauss_seidel"], help="membrane sweep")
    admm.add_argument("--init", choices=["forward", "uniform", "zeros"], help="initial state")
    admm.add_argument("--train-samples", type=_positive_int, help="use only the first N training samples")
    admm.add_argument("--chunk-size", type=_positive_int, help="samples per state chunk (memory)")
    admm.add_argument("--log-every", type=_positive_int, help="iterations between metric lines")
    admm.add_argument("--checkpoint-every", type=_positive_int, help="iterations between checkpoints")
    admm.add_argument("--plot", action="store_true", default=None, help="write metrics.png (needs matplotlib)")
    admm.add_argument("--no-refit-readout", dest="refit_readout", action="store_const", const=False,
                      help="keep ADMM's readout instead of re-solving it on the forward spikes at the end")
    train.add_argument("--grad", choices=["fp", "adjoint", "autodiff"],
                       help="--method exact: forward mode (FP), hand adjoint (EventProp) or reverse autodiff")
    train.add_argument("--sim", choices=["event", "parallel"],
                       help="--method exact: layer simulator of --grad fp/autodiff: event-slot scan or "
                            "vectorised over intervals (same results)")
    train.add_argument("--readout", choices=["spiking", "integrator"],
                       help="--method exact: spiking output layer or non-spiking integrator (needs --loss voltage)")
    equilibrium = train.add_argument_group("equilibrium (--method ide / spide)")
    equilibrium.add_argument("--T-backward", type=_positive_int, help="--method spide: backward time steps T_b")
    equilibrium.add_argument("--solver", choices=["broyden", "fixed_point", "gmres", "bicgstab"],
                             help="--method ide: solver of the implicit backward system")
    equilibrium.add_argument("--solver-tol", type=_positive_float, help="--method ide: relative residual tolerance")
    equilibrium.add_argument("--solver-iters", type=_positive_int, help="--method ide: solver iteration cap")
    train.add_argument("--out", required=True, help="output folder for checkpoint.eqx, metrics.jsonl, result.json")
    train.add_argument("--resume", action="store_true",
                       help="continue from OUT/checkpoint.eqx (its method, data and settings are read from it)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = sub.add_parser("evaluate", help="test accuracy of a checkpoint")
    evaluate.add_argument("checkpoint", help="a checkpoint.eqx written by jsnn train, or its run folder")
    evaluate.add_argument("--data-dir", help="folder with the MNIST IDX files")

    from jsnn.lower import cli as lower_cli

    lower_cli.add_parser(sub)
    from jsnn import sweep_cli

    sweep_cli.add_parser(sub)

    data = sub.add_parser("data", help="data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    info = data_sub.add_parser("info", help="what data is available and where")
    info.add_argument("--data-dir", help="folder with the MNIST IDX files")
    return parser


def builder_for(config: dict[str, Any], source: str):
    """The builder of ``config``'s method; ``source`` names where the config came from, for errors."""
    import importlib

    if not isinstance(config, dict) or config.get("method") not in METHODS:
        method = config.get("method") if isinstance(config, dict) else None
        raise UsageError(f"{source} names the training method {method!r}, which this jsnn does not know "
                         f"({', '.join(sorted(METHODS))}); it may come from a newer jsnn.")
    from jsnn.data import is_npz_path

    if config.get("data") not in DATASETS and not is_npz_path(str(config.get("data"))):
        raise UsageError(f"{source} names the data set {config.get('data')!r}, which this jsnn does not know "
                         f"({', '.join(DATASETS)}); it may come from a newer jsnn.")
    module, name = METHODS[config["method"]].split(":")
    return getattr(importlib.import_module(module), name)


def _train(args) -> tuple[dict[str, Any], int]:
    from jsnn.checkpoint import atomic_write_bytes, check_output_folder, read_header
    from jsnn.train import CHECKPOINT_NAME

    out = check_output_folder(args.out, flag="--out")
    given = {k: v for k, v in vars(args).items()
             if v is not None and k not in ("command", "out", "resume", "no_progress", "data_dir")}
    if args.resume:
        ckpt = out / CHECKPOINT_NAME
        if not ckpt.exists():
            raise UsageError(f"--resume: no checkpoint at {ckpt}; run without --resume to start.")
        config = read_header(ckpt)["config"]
        changed = {k: (config.get(k), v) for k, v in given.items() if config.get(k, TRAIN_DEFAULTS.get(k)) != v}
        if changed:
            raise UsageError(f"--resume with a different config {changed}; drop those flags (the checkpoint "
                             "holds the settings) or choose a new --out.")
    else:
        if (out / CHECKPOINT_NAME).exists():
            raise UsageError(f"{out} already holds a checkpoint; pass --resume to continue it or choose another "
                             "--out.")
        config = {**TRAIN_DEFAULTS, **given}
    for flag, methods in METHOD_FLAGS.items():
        if flag in config and config["method"] not in methods:
            raise UsageError(f"--{flag} applies to --method {' or '.join(sorted(methods))}, "
                             f"not {config['method']}")
    if args.data_dir is not None and config.get("data") != "mnist":
        raise UsageError(f"--data-dir applies to --data mnist, not {config.get('data')}; the other data sets "
                         "ship with jsnn or are generated.")
    run = builder_for(config, f"--resume checkpoint {out / CHECKPOINT_NAME}" if args.resume else "the flags")(
        config, data_dir=args.data_dir)
    result = run(out_dir=out, resume=args.resume, progress=not args.no_progress)
    atomic_write_bytes(out / "result.json", json.dumps(result, indent=2).encode())
    if result.get("interrupted"):
        print(f"jsnn: interrupted; the checkpoint is {out / CHECKPOINT_NAME}. Continue with: "
              f"jsnn train --resume --out {out}", file=sys.stderr)
        return result, 130
    return result, 0


def _evaluate(args) -> dict[str, Any]:
    from jsnn.checkpoint import find_checkpoint, read_header

    checkpoint = find_checkpoint(args.checkpoint)
    config = read_header(checkpoint)["config"]
    return builder_for(config, f"checkpoint {checkpoint}")(config, data_dir=args.data_dir).evaluate(checkpoint)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jsnn`` console script; returns the exit status."""
    from jsnn.checkpoint import CheckpointError
    from jsnn.data import DataError
    from jsnn.train import TrainingDiverged

    status = 0
    try:
        args = _parser().parse_args(argv)
        if args.command == "train":
            result, status = _train(args)
        elif args.command == "evaluate":
            result = _evaluate(args)
        elif args.command == "lower":
            from jsnn.lower import cli as lower_cli

            result = lower_cli.run(args)
        elif args.command == "sweep":
            from jsnn import sweep_cli

            result = sweep_cli.run(args)
            if result["interrupted"]:
                print(f"jsnn: interrupted; continue with: jsnn sweep ... --out {args.out} --resume", file=sys.stderr)
                status = 130
        else:
            from jsnn.data import dataset_info

            result = dataset_info(data_dir=args.data_dir)
    except (UsageError, DataError, CheckpointError, TrainingDiverged, ValueError) as err:
        print(f"jsnn: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only folder, ...: what was on disk before is kept
        print(f"jsnn: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jsnn: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result))  # stdout holds JSON lines only: the epoch records, then this summary
    return status


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
