"""Workload B6 (shared/BENCHMARKS.md): a sweep as one vmapped program against the same runs one after another.

BPTT: 32 configurations on digits (lr x decay x seed, the digits defaults otherwise, a few epochs):
  * ``sweep``       one :func:`jsnn.sweep.sweep` call, all 32 lanes at once (one compiled program);
  * ``sequential``  the same code one configuration at a time (``chunk=1``: 32 chunks, one compiled program);
  * ``train``       32 separate :func:`jsnn.train.fit` runs (what ``jsnn train`` does, one compilation each),
    which also give the max parameter difference between each lane and its separate run.
ADMM: 16 (rho, beta) configurations on digits, the same three ways (``AdmmRun`` for ``train``).

All timings are wall-clock seconds in one process, side by side; the machine load is recorded.

Usage::

    python bench/b6_sweep.py [--epochs 2] [--iters 30] [--out bench/results/b6_sweep.json] [--skip-train]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from jsnn.bptt import trainable
from jsnn.methods import bptt_run, load_run_data
from jsnn.optim.admm_method import admm_run
from jsnn.sweep import expand_space, sweep
from jsnn.train import fit

BPTT_SPACE = {"lr": [1e-3, 3e-3, 1e-2, 3e-2], "decay": [0.8, 0.9], "seed": [0, 1, 2, 3]}
ADMM_SPACE = {"rho": [0.5, 1.0, 2.0, 4.0], "beta": [0.05, 0.1, 0.2, 0.4]}


def max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_bptt(epochs: int, skip_train: bool) -> dict:
    base = {"data": "digits", "epochs": epochs}
    configs = expand_space(BPTT_SPACE)
    # cold: the first call compiles; warm: the same call again reuses the compiled programs (pure training time)
    together, t_sweep = timed(lambda: sweep("bptt", base, configs, chunk=len(configs), progress=False,
                                            keep_states=True))
    alone, t_seq = timed(lambda: sweep("bptt", base, configs, chunk=1, progress=False))
    _, t_sweep_warm = timed(lambda: sweep("bptt", base, configs, chunk=len(configs), progress=False))
    _, t_seq_warm = timed(lambda: sweep("bptt", base, configs, chunk=1, progress=False))
    record = {"configurations": len(configs), "epochs": epochs, "sweep_s": round(t_sweep, 2),
              "sequential_s": round(t_seq, 2), "ratio": round(t_seq / t_sweep, 2),
              "sweep_warm_s": round(t_sweep_warm, 2), "sequential_warm_s": round(t_seq_warm, 2),
              "ratio_warm": round(t_seq_warm / t_sweep_warm, 2),
              "same_rows": [r["final_test_accuracy"] for r in together.rows] == [
                  r["final_test_accuracy"] for r in alone.rows],
              "best": together.rows[together.best], "groups": together.groups}
    if not skip_train:
        train, test, num_classes = load_run_data({"data": "digits"}, None, keep_time=True)
        diffs, agree = [], 0

        def separate():
            nonlocal agree
            for config, row, state in zip(configs, together.rows, together.states):
                run = bptt_run(train, test, {**base, **config}, num_classes)
                result = fit(run.method, train, test, epochs=epochs, batch_size=run.config["batch_size"],
                             seed=config["seed"], progress=False)
                diffs.append(max_diff(trainable(state.net), trainable(result.state.net)))
                agree += row["final_test_accuracy"] == result.test_accuracy

        _, t_train = timed(separate)
        record |= {"train_s": round(t_train, 2), "ratio_vs_train": round(t_train / t_sweep, 2),
                   "max_param_diff": max(diffs), "median_param_diff": float(np.median(diffs)),
                   "same_test_accuracy": f"{agree}/{len(configs)}", "param_diffs": diffs}
        # how far round-off alone carries a run: a configuration again, its initial weights moved by one ulp
        nudge = lambda a: np.nextafter(np.asarray(a), np.float32(np.inf)) if np.asarray(a).dtype == np.float32 else a  # noqa: E731
        record["one_ulp_init_param_diff"] = {}
        for i in sorted({0, int(np.argmax(diffs))}):
            run = bptt_run(train, test, {**base, **configs[i]}, num_classes)
            moved = run.method._replace(init=lambda k, m=run.method: jax.tree.map(nudge, m.init(k)))
            kw = dict(epochs=epochs, batch_size=run.config["batch_size"], seed=configs[i]["seed"], progress=False)
            reference, nudged = fit(run.method, train, test, **kw), fit(moved, train, test, **kw)
            record["one_ulp_init_param_diff"][str(configs[i])] = max_diff(trainable(reference.state.net),
                                                                          trainable(nudged.state.net))
    return record


def bench_admm(iters: int, skip_train: bool) -> dict:
    base = {"data": "digits", "iters": iters, "warmup": iters // 3, "log_every": 10}
    configs = expand_space(ADMM_SPACE)
    together, t_sweep = timed(lambda: sweep("admm", base, configs, chunk=len(configs), progress=False,
                                            keep_states=True))
    _, t_seq = timed(lambda: sweep("admm", base, configs, chunk=1, progress=False))
    record = {"configurations": len(configs), "iters": iters, "sweep_s": round(t_sweep, 2),
              "sequential_s": round(t_seq, 2), "ratio": round(t_seq / t_sweep, 2),
              "best": together.rows[together.best] if together.best is not None else None,
              "failed": sum(r["status"] != "ok" for r in together.rows), "groups": together.groups}
    if not skip_train:
        train, test, num_classes = load_run_data({"data": "digits"}, None, keep_time=True)
        diffs, agree = [], 0

        def separate():
            nonlocal agree
            for config, row, state in zip(configs, together.rows, together.states):
                run = admm_run(train, test, {**base, **config}, num_classes)
                summary = run(out_dir=None, progress=False)
                if state is not None:
                    diffs.append(max_diff(state[1], run.model))
                    agree += row["final_test_accuracy"] == summary["test_accuracy"]

        _, t_train = timed(separate)
        record |= {"train_s": round(t_train, 2), "ratio_vs_train": round(t_train / t_sweep, 2),
                   "max_param_diff": max(diffs) if diffs else None,
                   "median_param_diff": float(np.median(diffs)) if diffs else None,
                   "same_test_accuracy": f"{agree}/{len(diffs)}"}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--skip-train", action="store_true", help="skip the separate fit/AdmmRun runs")
    parser.add_argument("--only", choices=["bptt", "admm"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "b6_sweep.json"))
    args = parser.parse_args()
    record = {"device": str(jax.devices()[0]), "device_count": jax.device_count(), "cpus": os.cpu_count(),
              "load_before": os.getloadavg()}
    if args.only in (None, "bptt"):
        record["bptt"] = bench_bptt(args.epochs, args.skip_train)
        print(json.dumps({"bptt": record["bptt"]}, default=str), flush=True)
    if args.only in (None, "admm"):
        record["admm"] = bench_admm(args.iters, args.skip_train)
        print(json.dumps({"admm": record["admm"]}, default=str), flush=True)
    record["load_after"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
