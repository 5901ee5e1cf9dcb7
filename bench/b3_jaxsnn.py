"""Yin-Yang with exact gradients: time per training epoch of jsnn against jaxsnn's EventProp, same run.

The reference configuration is jaxsnn 0.3's own event-based EventProp example
(``jaxsnn/examples/event/yinyang_layered_event_prop.py``, its defaults): 4 features (x, y, 1 - x, 1 - y)
plus a bias spike at t = 0, latency-coded as spike time ``t_late * value`` with ``t_late = 2 tau_syn``,
100 hidden and 3 output current-based LIF neurons, ``tau_syn = 6``, ``tau_mem = 12`` (jaxsnn: µs written
in seconds; tau_mem = 2 tau_syn, so both libraries find spike times in closed form), threshold 1,
simulated window ``4 tau_syn = 24``, at most one spike per neuron, first-layer weights N(3.0, 1.6^2) summed
over the 5 copies of each input event, output weights N(0.5, 0.8^2), batch 64, 4992 training samples
(78 steps per epoch), ``optax.chain(scale(1 / tau_syn), clip(0.01), adam(exponential_decay(5e-3, 78,
0.99)))``. Both libraries run on the same Yin-Yang training set (``jsnn.data.load_yinyang``, written to a
temporary ``.npz`` that every worker reads) in the same mini-batch order.

Implementations, each its own subprocess, interleaved over ``--rounds`` rounds in rotating order:

- ``jaxsnn``: ``bench/b3_jaxsnn_peer.py --duplication 5`` in ``.venv-peers``: the example as written,
  every input event sent 5 times (25 input events; hidden event scan of 125 steps, output 103).
- ``jaxsnn_dup1``: the same network with one event per input (weights of the 5 copies summed; hidden scan
  of 105 steps): the same dynamics with the input events jsnn sees.
- ``jsnn_autodiff`` and ``jsnn_adjoint``: ``bench/b3_jaxsnn_jsnn.py --grad autodiff|adjoint`` in ``.venv``:
  ``jsnn.exact.exact_method`` with the reference constants (reverse autodiff through the IFT ``custom_jvp``,
  or jsnn's hand EventProp ``custom_vjp``).

Differences between the two models (also in the JSON under ``config.differences``):

- Reset: jaxsnn resets to -1000 so a neuron fires once; jsnn resets to 0 and transmits only the first
  spike of each neuron (``max_spikes = (1, 1)``; a second crossing is counted as overflow, not sent). The
  spikes that reach the next layer and the loss are the same.
- Loss: jaxsnn's example uses ``mse_loss`` of the first output spike times against target times (4.8 for
  the right class, 7.2 for the others); jsnn uses its first-spike cross-entropy ``ttfs_loss`` (no MSE
  time loss exists in jsnn.exact). Both are a few operations on 3 spike times per sample.
- Event scans: jaxsnn scans the events of a whole layer (per step: next crossing of every neuron, the
  earliest event wins); jsnn scans each neuron over its input events (``K_in + max_spikes + 1`` slots,
  vmapped over neurons). Both are static-length, so the work does not depend on spiking activity.

Timing (``bench/common.time_steps``): the first step (tracing, compilation and one step) is ``compile_s``,
then ``--warmup`` steps, then ``--steps`` timed steps (default 78, one epoch of batches), each waited for
with ``jax.block_until_ready``. ``epoch_s`` is the median step time x 78 steps (one epoch of 4992 samples,
the example's training set); ``ratio_jaxsnn_over_<impl>`` = jaxsnn's epoch_s / the implementation's (> 1:
faster than jaxsnn), from the medians over rounds. The machine is shared: the load average is recorded
after every subprocess.

Usage (in the background; about 6-10 minutes with the defaults on the shared 2-core machine)::

    nice -n 5 .venv/bin/python bench/b3_jaxsnn.py --rounds 3 > bench/results/b3_jaxsnn.log 2>&1 &

References:
    Wunderlich and Pehle, Event-based backpropagation can compute exact gradients for spiking neural
    networks, arXiv 2009.08378.
    Kriener, Goeltz and Petrovici, The Yin-Yang dataset, arXiv 2102.08211.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import non_negative_int, package_versions, positive_int, run_worker_process, summarise, time_steps

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"

#: the reference configuration: defaults of jaxsnn's yinyang_layered_event_prop.py, times in µs
CONFIG: dict[str, Any] = {
    "n_features": 4, "n_classes": 3, "n_train": 4992, "batch": 64, "hidden": 100,
    "tau_syn": 6.0, "tau_mem": 12.0, "threshold": 1.0, "t_end": 24.0, "t_late": 12.0, "t_bias": 0.0,
    "duplication": 5, "init": [[3.0, 1.6], [0.5, 0.8]], "lr": 5e-3, "lr_decay": 0.99, "clip": 0.01,
    "correct_target_time": 4.8, "wrong_target_time": 7.2,
}
DIFFERENCES = [
    "reset: jaxsnn v_reset=-1000 (one spike per neuron); jsnn reset to 0 with max_spikes=(1, 1) (only the "
    "first spike of a neuron is transmitted; later crossings counted as overflow)",
    "loss: jaxsnn mse_loss on first output spike times (targets 4.8 / 7.2); jsnn ttfs_loss (first-spike "
    "cross-entropy, tau0=0.5, alpha=3e-3, silent_weight=0.1)",
    "input events: jaxsnn example sends each input event 5 times (25 events, weights per copy N(0.6, 0.32^2)); "
    "jsnn sends one event per input with the summed weight N(3.0, 1.6^2); jaxsnn_dup1 does the same as jsnn",
    "event scan: jaxsnn one scan per layer over (input + hidden) events, all neurons per step; jsnn one scan "
    "per neuron over its K_in + max_spikes + 1 slots, vmapped over neurons",
    "time unit: jaxsnn in seconds (tau_syn=6e-6), jsnn in microseconds (tau_syn=6); the optimizer's "
    "scale(1/tau_syn) makes the updates comparable",
]
#: implementation -> (environment, worker script, worker flags)
IMPLS: dict[str, tuple[str, str, list[str]]] = {
    "jaxsnn": ("peers", "b3_jaxsnn_peer.py", ["--duplication", "5"]),
    "jaxsnn_dup1": ("peers", "b3_jaxsnn_peer.py", ["--duplication", "1"]),
    "jsnn_autodiff": ("main", "b3_jaxsnn_jsnn.py", ["--grad", "autodiff"]),
    "jsnn_adjoint": ("main", "b3_jaxsnn_jsnn.py", ["--grad", "adjoint"]),
}
BASELINE = "jaxsnn"


# ----------------------------------------------------------------------------- shared by the workers


def b3_worker_arguments(
    name: str, *, variant_flag: str, variant_type: type, variant_choices: Sequence
) -> argparse.Namespace:
    """Parse the flags every worker takes; ``args.config`` is the decoded ``--config`` JSON.

    Args:
        name: Implementation shown in ``--help``.
        variant_flag: The worker's own flag (``--grad`` or ``--duplication``), stored as ``args.variant``.
        variant_type: Its type.
        variant_choices: Its accepted values.

    Returns:
        Namespace with ``data``, ``config``, ``variant``, ``steps``, ``warmup``, ``seed``.
    """
    parser = argparse.ArgumentParser(description=f"Yin-Yang training steps with {name}; prints one JSON line.")
    parser.add_argument("--data", type=Path, required=True, help=".npz with x (n, 4) float32 and y (n,) int32")
    parser.add_argument("--config", type=json.loads, default=CONFIG, help="configuration as JSON (default CONFIG)")
    parser.add_argument(variant_flag, dest="variant", type=variant_type, choices=variant_choices, required=True)
    parser.add_argument("--steps", type=positive_int, default=78, help="timed steps (default 78: one epoch)")
    parser.add_argument("--warmup", type=non_negative_int, default=3, help="untimed steps after the first")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of weights and batch order")
    args = parser.parse_args()
    if not args.data.is_file():
        parser.error(f"--data {args.data} does not exist; run the driver bench/b3_jaxsnn.py, which writes it.")
    missing = set(CONFIG) - set(args.config)
    if missing:
        parser.error(f"--config lacks {sorted(missing)}; pass the driver's CONFIG.")
    return args


def time_training(
    train_step: Callable[[Any, Any], tuple[Any, Any, Any]],
    state: Any,
    make_batch: Callable[[np.ndarray], Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Time ``1 + warmup + steps`` training steps on shuffled mini-batches of the training set.

    The batch order is a numpy permutation per epoch seeded by ``args.seed`` (identical for every worker);
    the batches are built and moved to the device before the clock starts, so only the step is timed.

    Args:
        train_step: ``(state, batch) -> (state, loss, correct)``, jitted.
        state: Initial training state.
        make_batch: Builds a device batch from an index array of ``batch`` training samples.
        args: Parsed worker flags.

    Returns:
        ``compile_s``, ``warmup_s``, ``times_s``, ``cpu_s``, ``losses``, ``train_acc`` (over the timed
        steps) and ``train_acc_last_epoch`` (over the last ``min(steps, steps per epoch)`` steps).
    """
    import jax

    cfg = args.config
    n_steps = 1 + args.warmup + args.steps
    per_epoch = cfg["n_train"] // cfg["batch"]
    rng = np.random.default_rng(args.seed)
    order = np.concatenate([rng.permutation(cfg["n_train"])[: per_epoch * cfg["batch"]]
                            for _ in range(-(-n_steps // per_epoch))])
    batches = [jax.block_until_ready(make_batch(order[i * cfg["batch"]:(i + 1) * cfg["batch"]]))
               for i in range(n_steps)]
    losses: list[Any] = []
    correct: list[Any] = []

    def step(carry):
        state, i = carry
        state, loss, n_correct = train_step(state, batches[i])
        losses.append(loss)
        correct.append(n_correct)
        return state, i + 1

    def block(carry):
        return jax.block_until_ready(carry[0]), carry[1]

    _, compile_s, warmup_s, times_s, cpu_s = time_steps(step, (state, 0), warmup=args.warmup, steps=args.steps,
                                                        block=block)
    last = min(args.steps, per_epoch)
    return {"compile_s": compile_s, "warmup_s": warmup_s, "times_s": times_s, "cpu_s": cpu_s,
            "losses": [float(v) for v in losses],
            "train_acc": sum(int(c) for c in correct[-args.steps:]) / (args.steps * cfg["batch"]),
            "train_acc_last_epoch": sum(int(c) for c in correct[-last:]) / (last * cfg["batch"])}


def emit_b3_record(impl: str, variant: str, args: argparse.Namespace, timing: dict[str, Any], *,
                   versions: Sequence[str], model: dict[str, Any]) -> dict[str, Any]:
    """Print the one JSON line a worker writes on stdout, and return it.

    Raises:
        ValueError: If a loss is not finite (the step is broken, so its timing means nothing).
    """
    import jax

    losses = timing["losses"]
    if not np.all(np.isfinite(losses)):
        raise ValueError(f"{impl} {variant}: a loss is not finite ({losses[:3]} ... {losses[-3:]}); "
                         "no timing is reported.")
    per_epoch = args.config["n_train"] // args.config["batch"]
    stats = summarise(timing["times_s"])
    record = {
        "impl": impl, "variant": variant, "compile_s": timing["compile_s"],
        "warmup_s": [float(s) for s in timing["warmup_s"]], **stats,
        "cpu_median_ms": float(np.median(timing["cpu_s"])) * 1e3,
        "epoch_s": stats["median_ms"] * 1e-3 * per_epoch, "steps_per_epoch": per_epoch,
        "timed_total_s": float(np.sum(timing["times_s"])), "steps": args.steps, "warmup": args.warmup,
        "seed": args.seed, "loss_first": losses[0], "loss_last": losses[-1],
        "loss_first_epoch_mean": float(np.mean(losses[:per_epoch])),
        "loss_last_epoch_mean": float(np.mean(losses[-per_epoch:])),
        "train_acc_timed_steps": timing["train_acc"], "train_acc_last_epoch": timing["train_acc_last_epoch"],
        "model": model,
        "versions": package_versions(versions), "device": jax.devices()[0].device_kind,
    }
    print(json.dumps(record), flush=True)
    return record


# ----------------------------------------------------------------------------- the driver


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive_int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--steps", type=positive_int, default=78, help="timed steps per run (default 78: an epoch)")
    parser.add_argument("--warmup", type=non_negative_int, default=3, help="untimed steps after the first (default 3)")
    parser.add_argument("--impls", nargs="+", choices=list(IMPLS), default=list(IMPLS),
                        help="implementations (default: all of %(choices)s)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of data, weights, batch order")
    parser.add_argument("--timeout", type=positive_int, default=600, help="seconds per subprocess (default 600)")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "b3_jaxsnn.json")
    args = parser.parse_args(argv)
    args.impls = list(dict.fromkeys(args.impls))
    return args


def run_worker(impl: str, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one worker once; its JSON record, or a skipped/failed note."""
    env, script, flags = IMPLS[impl]
    if env == "peers" and not PEERS_PYTHON.exists():
        return {"status": "skipped", "note": ".venv-peers not found (jaxsnn lives there): build it with the "
                "recipe in bench/README.md"}
    python = str(PEERS_PYTHON) if env == "peers" else sys.executable
    cmd = [python, str(BENCH / script), *flags, "--data", str(data), "--config", json.dumps(CONFIG),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--seed", str(args.seed)]
    start = time.perf_counter()
    record = run_worker_process(cmd, cwd=REPO, timeout=args.timeout)
    if record["status"] != "ok":
        return record
    return {**record, "process_wall_s": time.perf_counter() - start, "load_average_after": list(os.getloadavg())}


def aggregate(impl: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of one implementation; notes for skipped or failed rounds."""
    ok = [r for r in runs if r["status"] == "ok"]
    notes = sorted({r["note"] for r in runs if r["status"] != "ok"})
    if not ok:
        return {"impl": impl, "status": runs[0]["status"] if runs else "failed", "note": "; ".join(notes)}
    med = lambda key: statistics.median(r[key] for r in ok)  # noqa: E731
    record = {
        "impl": impl, "status": "ok", "variant": ok[0]["variant"],
        "epoch_s": med("epoch_s"), "median_ms": med("median_ms"), "p10_ms": med("p10_ms"), "p90_ms": med("p90_ms"),
        "cpu_median_ms": med("cpu_median_ms"), "compile_s": med("compile_s"),
        "rounds_epoch_s": [r["epoch_s"] for r in ok], "rounds_compile_s": [r["compile_s"] for r in ok],
        "rounds_timed_total_s": [r["timed_total_s"] for r in ok],
        "train_acc_timed_steps": [r["train_acc_timed_steps"] for r in ok],
        "train_acc_last_epoch": [r["train_acc_last_epoch"] for r in ok],
        "loss_first_epoch_mean": ok[0]["loss_first_epoch_mean"], "loss_last_epoch_mean": ok[0]["loss_last_epoch_mean"],
        "model": ok[0]["model"], "versions": ok[0]["versions"], "device": ok[0]["device"],
    }
    if notes:
        record["note"] = f"{len(runs) - len(ok)} of {len(runs)} rounds failed: " + "; ".join(notes)
    return record


def add_ratios(records: list[dict[str, Any]]) -> dict[str, float | None]:
    """``ratio_jaxsnn_over_<impl>`` (wall and CPU time) for every jsnn record; the wall ratios returned."""
    by_impl = {r["impl"]: r for r in records if r["status"] == "ok"}
    ratios: dict[str, float | None] = {}
    for base in ("jaxsnn", "jaxsnn_dup1"):
        for impl in ("jsnn_autodiff", "jsnn_adjoint"):
            if impl not in by_impl:
                continue
            ok = base in by_impl
            key = f"{base}_over_{impl}"
            ratios[key] = by_impl[base]["epoch_s"] / by_impl[impl]["epoch_s"] if ok else None
            by_impl[impl][f"ratio_{key}"] = ratios[key]
            by_impl[impl][f"cpu_ratio_{key}"] = (by_impl[base]["cpu_median_ms"] / by_impl[impl]["cpu_median_ms"]
                                                 if ok else None)
    return ratios


def main(argv: list[str] | None = None) -> None:
    from jsnn.checkpoint import atomic_write_bytes  # .venv only: the workers import this module too
    from jsnn.data import load_yinyang
    from run_b1 import machine_info

    args = parse_args(argv)
    machine = machine_info()
    runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in args.impls}
    train = load_yinyang("train", n=CONFIG["n_train"], seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="b3_jaxsnn_") as tmp:
        data = Path(tmp) / "yinyang_train.npz"
        np.savez(data, x=train.x, y=train.y)
        for round_index in range(args.rounds):
            shift = round_index % len(args.impls)
            for impl in args.impls[shift:] + args.impls[:shift]:
                result = run_worker(impl, data, args)
                runs[impl].append(result)
                shown = (f"{result['epoch_s']:.2f} s/epoch ({result['median_ms']:.1f} ms/step, compile "
                         f"{result['compile_s']:.1f} s, load {result['load_average_after'][0]:.2f})"
                         if result["status"] == "ok" else result["note"])
                print(f"[round {round_index + 1}/{args.rounds}] {impl}: {result['status']}: {shown}",
                      file=sys.stderr, flush=True)
    machine["load_average_end"] = list(os.getloadavg())
    machine["load_average_1min_after_each_run"] = [r["load_average_after"][0] for rs in runs.values() for r in rs
                                                   if r["status"] == "ok"]
    records = [aggregate(impl, rs) for impl, rs in runs.items()]
    ratios = add_ratios(records)
    results = {
        "workload": "B3_vs_jaxsnn", "data": "yinyang",
        "settings": {"rounds": args.rounds, "steps": args.steps, "warmup": args.warmup, "seed": args.seed,
                     "epoch_definition": f"median step time x {CONFIG['n_train'] // CONFIG['batch']} steps "
                     f"({CONFIG['n_train']} samples, batch {CONFIG['batch']}), median over rounds"},
        "config": {**CONFIG, "time_unit": "us", "reference": "jaxsnn/examples/event/yinyang_layered_event_prop.py "
                   "defaults", "differences": DIFFERENCES},
        "ratios_epoch_s": ratios,
        "ratio_note": "jaxsnn epoch_s / jsnn epoch_s; > 1 means jsnn is faster",
        "machine": machine, "records": records,
        "runs": {impl: rs for impl, rs in runs.items()},
    }
    atomic_write_bytes(args.out, (json.dumps(results, indent=2) + "\n").encode())
    for r in records:
        if r["status"] == "ok":
            print(f"{r['impl']:14s} {r['epoch_s']:8.2f} s/epoch  {r['median_ms']:8.1f} ms/step  "
                  f"compile {r['compile_s']:6.1f} s  rounds {[round(x, 2) for x in r['rounds_epoch_s']]}")
        else:
            print(f"{r['impl']:14s} {r['status']}: {r['note']}")
    for key, value in ratios.items():
        print(f"ratio {key}: {'—' if value is None else f'{value:.2f}x'}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
