"""The ``jsnn`` command line: ``jsnn train``, ``jsnn evaluate``, ``jsnn lower``, ``jsnn data info``.

Every user error (a wrong flag, a missing data directory, a corrupt checkpoint) ends
with one line on stderr that says what to do, and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

#: method name -> (module, builder); a builder maps (config, data) to (Method, fit options)
METHODS = {
    "bptt": "jsnn.methods:build_bptt",
    "admm": "jsnn.optim.admm_method:build_admm",
    "exact": "jsnn.exact.method:build_exact",
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
    "lr": {"bptt", "exact", "shortcut"},
    "epochs": {"bptt", "exact", "shortcut"},
    "batch_size": {"bptt", "exact", "shortcut"},
    "loss": {"bptt", "exact", "shortcut"},
    "arch": {"bptt", "shortcut"},
    "depth": {"bptt", "shortcut"},
    "weight_scale": {"bptt", "shortcut"},
    "branches": {"shortcut"},
    "schedule": {"shortcut"},
    **{flag: {"admm"} for flag in ("rho", "beta", "iters", "warmup", "ridge", "sweep", "init", "train_samples",
                                   "chunk_size", "plot", "log_every", "checkpoint_every", "refit_readout")},
}


class UsageError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _parser() -> _Parser:
    parser = _Parser(prog="jsnn", description="Spiking neural networks in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train a network", description="Train a spiking network.")
    train.add_argument("--method", choices=sorted(METHODS), default="bptt", help="training method")
    train.add_argument("--data", choices=["digits", "mnist", "yinyang"], default="digits")
    train.add_argument("--data-dir", help="folder with the MNIST IDX files (else $JSNN_DATA, then the cache)")
    train.add_argument("--hidden", type=_positive_int, nargs="+", help="hidden layer widths")
    train.add_argument("--T", type=_positive_int, help="time steps")
    train.add_argument("--epochs", type=_positive_int, help="passes over the training set")
    train.add_argument("--batch-size", type=_positive_int, help="mini-batch size")
    train.add_argument("--lr", type=_positive_float, help="learning rate")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--encoding", choices=["direct", "rate", "latency"])
    train.add_argument("--loss", help="loss name (see jsnn.losses.LOSSES)")
    train.add_argument("--decay", type=float, help="LIF leak per step")
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
    admm.add_argument("--warmup", type=int, help="iterations without dual updates")
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
    train.add_argument("--out", required=True, help="output folder for checkpoint.eqx, metrics.jsonl, result.json")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.eqx")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = sub.add_parser("evaluate", help="test accuracy of a checkpoint")
    evaluate.add_argument("checkpoint", help="a checkpoint.eqx written by jsnn train")
    evaluate.add_argument("--data-dir", help="folder with the MNIST IDX files")

    from jsnn.lower import cli as lower_cli

    lower_cli.add_parser(sub)

    data = sub.add_parser("data", help="data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    info = data_sub.add_parser("info", help="what data is available and where")
    info.add_argument("--data-dir", help="folder with the MNIST IDX files")
    return parser


def _builder(method: str):
    import importlib

    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(module), name)


def _train(args) -> dict[str, Any]:
    from jsnn.checkpoint import atomic_write_bytes, read_header
    from jsnn.train import CHECKPOINT_NAME

    out = Path(args.out)
    config = {k: v for k, v in vars(args).items()
              if v is not None and k not in ("command", "out", "resume", "no_progress", "data_dir")}
    for flag, methods in METHOD_FLAGS.items():
        if flag in config and config["method"] not in methods:
            raise UsageError(f"--{flag} applies to --method {' or '.join(sorted(methods))}, "
                             f"not {config['method']}")
    if args.resume:
        ckpt = out / CHECKPOINT_NAME
        if not ckpt.exists():
            raise UsageError(f"--resume: no checkpoint at {ckpt}; run without --resume to start.")
        saved = read_header(ckpt)["config"]
        changed = {k: (saved.get(k), v) for k, v in config.items() if k in saved and saved[k] != v}
        if changed:
            raise UsageError(f"--resume with a different config {changed}; use the same flags or a new --out.")
        config = saved
    elif (out / CHECKPOINT_NAME).exists():
        raise UsageError(f"{out} already holds a checkpoint; pass --resume to continue it or choose another --out.")
    run = _builder(config["method"])(config, data_dir=args.data_dir)
    result = run(out_dir=out, resume=args.resume, progress=not args.no_progress)
    atomic_write_bytes(out / "result.json", json.dumps(result, indent=2).encode())
    return result


def _evaluate(args) -> dict[str, Any]:
    from jsnn.checkpoint import read_header

    header = read_header(args.checkpoint)
    config = header["config"]
    return _builder(config["method"])(config, data_dir=args.data_dir).evaluate(args.checkpoint)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jsnn`` console script; returns the exit status."""
    from jsnn.checkpoint import CheckpointError
    from jsnn.data import DataError

    try:
        args = _parser().parse_args(argv)
        if args.command == "train":
            result = _train(args)
        elif args.command == "evaluate":
            result = _evaluate(args)
        elif args.command == "lower":
            from jsnn.lower import cli as lower_cli

            result = lower_cli.run(args)
        else:
            from jsnn.data import dataset_info

            result = dataset_info(data_dir=args.data_dir)
    except (UsageError, DataError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"jsnn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jsnn: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
