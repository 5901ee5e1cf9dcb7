"""Workload B3: Yin-Yang with exact spike-time gradients; accuracy over seeds and time per epoch.

Trains ``--seeds`` networks (5 + bias inputs -> hidden CuBa-LIF -> 3 outputs, first-spike decision) in one
compiled program (``jax.vmap`` over seeds, each with its own data draw, initialisation and shuffle), and
writes ``bench/results/b3_yinyang.json`` atomically: per-seed test accuracy, mean, spread, time per epoch.

Run in the background (CPU is shared):

    nice -n 5 .venv/bin/python bench/b3_yinyang.py --seeds 5 --epochs 40 --hidden 200 --grad autodiff \
        --max-spikes 4 2 --init 1.2 0.8 0.1 0.3 --lr 2e-3 --lr-decay 0.93 --silent-weight 1.0 \
        --eval-every 5 > bench/results/b3_yinyang.log 2>&1 &

(about 30-60 s per epoch for the 5 seeds together on the shared 2-core machine, 40 epochs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jsnn.checkpoint import atomic_write_bytes
from jsnn.data import load_yinyang
from jsnn.exact.method import EXACT_DEFAULTS, ExactConfig, exact_method


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--hidden", type=int, default=120)
    p.add_argument("--grad", choices=("fp", "autodiff", "adjoint"), default="adjoint")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--lr-decay", type=float, default=0.95)
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--max-spikes", type=int, nargs=2, default=None, metavar=("HIDDEN", "OUT"))
    p.add_argument("--max-events", type=int, default=None, help="cap on hidden spikes the output layer sees")
    p.add_argument("--init", type=float, nargs=4, default=None, metavar=("HID_MEAN", "HID_STD", "OUT_MEAN", "OUT_STD"))
    p.add_argument("--tau-mem", type=float, default=None)
    p.add_argument("--t-max", type=float, default=None, help="latency window: value x spikes at t_max * x")
    p.add_argument("--t-bias", type=float, default=None)
    p.add_argument("--t-end", type=float, default=None)
    p.add_argument("--silent-weight", type=float, default=None)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--clip", type=float, default=None)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "b3_yinyang.json")
    args = p.parse_args(argv)

    defaults = dict(EXACT_DEFAULTS["yinyang"])
    defaults.update(hidden=[args.hidden], batch_size=args.batch_size, grad=args.grad, lr_decay=args.lr_decay,
                    steps_per_epoch=args.n_train // args.batch_size)
    if args.max_spikes is not None:
        defaults["max_spikes"] = args.max_spikes
    if args.max_events is not None:
        defaults["max_events"] = [None, args.max_events]
    if args.init is not None:
        defaults["init"] = [args.init[:2], args.init[2:]]
    for flag, name in (("lr", "lr"), ("tau_mem", "tau_mem"), ("t_max", "t_max"), ("t_bias", "t_bias"),
                       ("t_end", "t_end"), ("silent_weight", "silent_weight"), ("alpha", "alpha"), ("clip", "clip")):
        if getattr(args, flag) is not None:
            defaults[name] = getattr(args, flag)
    config = ExactConfig.from_dict(defaults)
    method = exact_method(config, 4, 3)

    seeds = list(range(args.seeds))
    train = [load_yinyang("train", n=args.n_train, seed=s) for s in seeds]
    test = [load_yinyang("test", n=args.n_test, seed=s) for s in seeds]
    xtr = np.stack([d.x for d in train]); ytr = np.stack([d.y for d in train])
    xte = jnp.asarray(np.stack([d.x for d in test])); yte = jnp.asarray(np.stack([d.y for d in test]))

    state = jax.vmap(method.init)(jax.vmap(jax.random.key)(jnp.arange(args.seeds)))
    step = jax.jit(jax.vmap(method.step))
    predict = jax.jit(jax.vmap(method.predict))
    rng = np.random.default_rng(1234)
    nb = args.n_train // args.batch_size
    history, epoch_times = [], []
    key = jax.random.key(0)
    for epoch in range(args.epochs):
        perms = np.stack([rng.permutation(args.n_train) for _ in seeds])
        t0 = time.perf_counter()
        tot = {"loss": 0.0, "correct": 0, "overflow": 0, "overflow_out": 0, "silent": 0}
        for b in range(nb):
            idx = perms[:, b * args.batch_size:(b + 1) * args.batch_size]
            xb = jnp.asarray(np.take_along_axis(xtr, idx[..., None], 1))
            yb = jnp.asarray(np.take_along_axis(ytr, idx, 1))
            state, m = step(state, xb, yb, jax.random.split(key, args.seeds))
            for k in tot:
                tot[k] = tot[k] + m[k]
        jax.block_until_ready(state)
        dt = time.perf_counter() - t0
        epoch_times.append(dt)
        rec = {"epoch": epoch + 1, "epoch_s": dt,
               "train_loss": (np.asarray(tot["loss"]) / nb).round(4).tolist(),
               "train_acc": (np.asarray(tot["correct"]) / (nb * args.batch_size)).round(4).tolist(),
               "hidden_overflow_samples": np.asarray(tot["overflow"]).tolist(),
               "output_overflow_samples": np.asarray(tot["overflow_out"]).tolist(),
               "silent_samples": np.asarray(tot["silent"]).tolist()}
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            acc = np.asarray(jnp.mean((predict(state, xte) == yte).astype(jnp.float32), axis=1))
            rec["test_acc"] = acc.round(4).tolist()
        history.append(rec)
        print(json.dumps(rec), flush=True)
        if "test_acc" in rec:
            atomic_write_bytes(args.out, json.dumps(summarise(args, config, seeds, history, epoch_times),
                                                    indent=2).encode())
    result = summarise(args, config, seeds, history, epoch_times)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}), flush=True)
    return 0


def summarise(args, config, seeds, history, epoch_times) -> dict:
    """The result record: accuracy at the last evaluation, its spread over seeds, seconds per epoch."""
    last = [r for r in history if "test_acc" in r][-1]
    acc = np.asarray(last["test_acc"])
    return {
        "workload": "B3", "data": "yinyang", "n_train": args.n_train, "n_test": args.n_test,
        "config": config.to_dict(), "epochs_done": last["epoch"], "epochs": args.epochs, "seeds": seeds,
        "test_acc": acc.tolist(), "test_acc_mean": float(acc.mean()), "test_acc_std": float(acc.std(ddof=1))
        if len(acc) > 1 else 0.0, "test_acc_min": float(acc.min()), "test_acc_max": float(acc.max()),
        "epoch_s_median": float(np.median(epoch_times[1:] if len(epoch_times) > 1 else epoch_times)),
        "epoch_s_first": epoch_times[0], "note": "seconds per epoch train all seeds at once (vmap)",
        "device": jax.devices()[0].device_kind, "history": history,
    }


if __name__ == "__main__":
    sys.exit(main())
