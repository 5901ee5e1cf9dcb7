"""Benchmark B5: lowering to integer tables (accuracy gap, spike agreement, C agreement, speed).

For each checkpoint and each target profile (at 8-bit and 4-bit weights, and the target's
native width) the script lowers the network (``jsnn.lower.lower_calibrated`` on 256 training
samples, as ``jsnn lower`` does), runs the test set through the float simulation and the
bit-exact integer simulator, and records:

* float and integer test accuracy and their gap (points);
* agreement of the last hidden layer's spikes with the trained float model on the analog
  inputs, with the trained float model on the target's input counts (dequantised: the same
  input the chip sees, so only the network's arithmetic differs), and with the float
  *shadow* (``jsnn.lower.shadow_network``: dequantised parameters, effective decays, the
  target's reset, dequantised inputs), and agreement of the predicted class with each.
  The foundation nets end in an ``LI`` readout, which emits no spikes: "output spikes" of
  the issue are measured as the last hidden layer's spikes (the last spikes the network
  emits), and the readout's decision agreement is reported beside them;
* overflow events on the test set;
* the C program's agreement with the integer simulator on a few test samples;
* throughput (samples/s) of the jitted float and integer simulations, each returning only the
  output, and their ratio (integer / float: >= 0.5 means within 2x); ``bench/b5_throughput.py``
  measures only this, for more checkpoints and repeats.

Usage:
    .venv/bin/python bench/b5_lowering.py --ckpt runs/digits_s0/checkpoint.eqx \
        --ckpt runs/digits_zero_s0/checkpoint.eqx --ckpt runs/digits_if/checkpoint.eqx \
        --ckpt runs/mnist_s0/checkpoint.eqx --data-dir /work/shared/data/mnist \
        [--c-samples 20] [--out bench/results/b5_lowering.json]

The checkpoints come from ``jsnn train --method bptt``: the defaults (LIF, decay 0.9,
subtractive reset), ``--reset zero`` (the reset of the Loihi-like and SpiNNaker-like
targets) and ``--decay 1.0`` (IF neurons, for the leakless Speck-like target).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jsnn import losses
from jsnn.bptt import BPTTConfig, encode_batch
from jsnn.checkpoint import atomic_write_bytes
from jsnn.lower import (PROFILES, LoweringError, lower_calibrated, quantize_inputs, save_tables, shadow_network,
                        simulate_int)
from jsnn.lower.cli import load_network
from jsnn.simulate import simulate


def paired_throughput(float_run, tables, inputs, counts) -> tuple[float, float]:
    """Samples/s of the float and the integer simulation, timed one after the other.

    Both jitted functions return only the network's output (as ``float_run`` does), so XLA
    keeps the same work: the integer simulator's traces and counters are not materialised.
    """
    int_run = jax.jit(jax.vmap(lambda c: simulate_int(tables, c).output))
    return _throughput(float_run, inputs), _throughput(int_run, counts)


def _throughput(fn, x, repeats=7):
    """Samples/s of the jitted ``fn`` on ``x``: the best of ``repeats`` timed calls (the machine is shared)."""
    jax.block_until_ready(fn(x))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        best = min(best, time.perf_counter() - start)
    return x.shape[0] / best


def _batched(fn, x, batch=1000):
    return jax.tree.map(lambda *a: np.concatenate(a), *[jax.device_get(fn(x[i:i + batch]))
                                                        for i in range(0, len(x), batch)])


def _c_agreement(tables, counts, n):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        files = save_tables(tables, tmp)
        exe = Path(tmp) / "net"
        subprocess.run([cc, "-O2", "-std=c99", "-o", str(exe), files["program"]], check=True)
        same = total = 0
        for c in counts[:n]:
            inp = Path(tmp) / "in.txt"
            inp.write_text(f"{c.shape[0]} {c.shape[1]}\n" + "\n".join(" ".join(map(str, r)) for r in c) + "\n")
            lines = subprocess.run([str(exe), str(inp)], check=True, capture_output=True, text=True).stdout.split("\n")
            got = simulate_int(tables, jnp.asarray(c))
            for i, s in enumerate(got.spikes):
                if s is None:
                    continue
                rows = np.array([[int(v) for v in ln.split()[2:]] for ln in lines if ln.startswith(f"L{i} ")])
                same += int((rows == np.asarray(s)).sum())
                total += rows.size
    return same / total


def bench_checkpoint(path: str, c_samples: int, data_dir: str | None = None) -> dict:
    net, run = load_network(path, data_dir=data_dir)
    config = BPTTConfig.from_dict(run.config)
    logits = losses.LOSSES[config.loss][1]
    encode = lambda x: np.asarray(encode_batch(config, jnp.asarray(x, jnp.float32), key=jax.random.key(0)))  # noqa
    x_test, y_test = run.test
    inputs = encode(x_test)
    calibration = encode(run.train[0][:256])
    float_fn = jax.jit(jax.vmap(lambda x: simulate(net, x, record=True)))
    out, traces = _batched(float_fn, jnp.asarray(inputs))
    last_hidden = max(i for i, t in traces.items() if t.spikes is not None)
    float_pred = np.argmax(jax.vmap(logits)(out), -1)
    float_acc = float((float_pred == y_test).mean())
    float_run = jax.jit(jax.vmap(lambda x: simulate(net, x)))
    record = {"checkpoint": path, "data": run.config["data"], "seed": run.config["seed"], "T": config.T,
              "decay": config.decay,
              "reset": getattr(net.layers[1], "reset", None),
              "test_samples": int(len(y_test)), "float_accuracy": float_acc,
              "profiles": []}
    hidden_index = sorted(i for i, t in traces.items() if t.spikes is not None).index(last_hidden)
    for name, base in PROFILES.items():
        for bits in sorted({8, 4, base.weight_bits}, reverse=True):
            profile = dataclasses.replace(base, weight_bits=bits)
            entry = {"target": name, "weight_bits": bits}
            try:
                tables, report, trials = lower_calibrated(net, profile, calibration)
            except LoweringError as err:
                entry["skipped"] = str(err)
                record["profiles"].append(entry)
                print(json.dumps(entry), flush=True)
                continue
            counts = jnp.asarray(quantize_inputs(tables, inputs))
            int_fn = jax.jit(jax.vmap(lambda c, t=tables: simulate_int(t, c)))
            res = _batched(int_fn, counts)
            scale = tables.arrays[f"layer{len(tables.manifest['layers']) - 1}.scale"]
            decoded = np.asarray(res.output, np.float64) / scale
            int_pred = np.argmax(np.asarray(jax.vmap(logits)(jnp.asarray(decoded, jnp.float32))), -1)
            int_acc = float((int_pred == y_test).mean())
            hidden = np.asarray(res.spikes[hidden_index])
            float_tput, int_tput = paired_throughput(float_run, tables, jnp.asarray(inputs[:512]), counts[:512])
            shadow = shadow_network(net, tables)
            dequantised = jnp.asarray(np.asarray(counts) / tables.manifest["input"]["scale"], jnp.float32)
            s_out, s_traces = _batched(jax.jit(jax.vmap(lambda x, n=shadow: simulate(n, x, record=True))),
                                       dequantised)
            shadow_pred = np.argmax(jax.vmap(logits)(s_out), -1)
            q_out, q_traces = _batched(float_fn, dequantised)
            q_pred = np.argmax(jax.vmap(logits)(q_out), -1)
            entry.update(
                integer_accuracy=int_acc, gap_points=100 * (float_acc - int_acc),
                hidden_spike_agreement=float((hidden == np.asarray(traces[last_hidden].spikes)).mean()),
                prediction_agreement=float((int_pred == float_pred).mean()),
                counts_hidden_spike_agreement=float((hidden == np.asarray(q_traces[last_hidden].spikes)).mean()),
                counts_prediction_agreement=float((int_pred == q_pred).mean()),
                shadow_hidden_spike_agreement=float((hidden == np.asarray(s_traces[last_hidden].spikes)).mean()),
                shadow_prediction_agreement=float((int_pred == shadow_pred).mean()),
                reset_mismatch=any(r.get("reset_mismatch", False) for r in report),
                overflow_events=int(sum(int(np.sum(u)) + int(np.sum(v)) for u, v in res.overflow)),
                float_samples_per_s=float_tput, integer_samples_per_s=int_tput,
                integer_over_float_throughput=int_tput / float_tput,
                c_spike_agreement=_c_agreement(tables, np.asarray(counts), c_samples) if bits == 8 else None,
                calibration_trials=trials, report=report)
            record["profiles"].append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k != "report"}), flush=True)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", default=[], help="checkpoint.eqx (repeatable)")
    parser.add_argument("--c-samples", type=int, default=20)
    parser.add_argument("--out", default="bench/results/b5_lowering.json")
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (or set JSNN_DATA)")
    args = parser.parse_args(argv)
    results = {"bench": "b5_lowering", "device": jax.devices()[0].platform, "runs": []}
    for path in args.ckpt:
        results["runs"].append(bench_checkpoint(path, args.c_samples, args.data_dir))
        atomic_write_bytes(args.out, json.dumps(results, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
