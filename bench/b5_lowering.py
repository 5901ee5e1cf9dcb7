"""Benchmark B5: lowering to integer tables (accuracy gap, spike agreement, C agreement, speed).

For each checkpoint and each target profile (at 8-bit and 4-bit weights, and the target's
native width) the script lowers the network (calibrated on 256 training samples), runs the
test set through the float simulation and the bit-exact integer simulator, and records:

* float and integer test accuracy and their gap (points);
* agreement of the last hidden layer's spikes and of the predicted class;
* overflow events on the test set;
* the C program's agreement with the integer simulator on a few test samples;
* throughput (samples/s) of the jitted float and integer simulations, and their ratio.

Usage:
    .venv/bin/python bench/b5_lowering.py --ckpt /tmp/lower_digits/checkpoint.eqx [--ckpt ...] \
        [--c-samples 20] [--out bench/results/b5_lowering.json]
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
from jsnn.lower import PROFILES, LoweringError, lower, quantize_inputs, save_tables, simulate_int
from jsnn.lower.cli import load_network
from jsnn.simulate import simulate


def _throughput(fn, x, repeats=3):
    jax.block_until_ready(fn(x))
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(x))
    return repeats * x.shape[0] / (time.perf_counter() - start)


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


def bench_checkpoint(path: str, c_samples: int) -> dict:
    net, run = load_network(path)
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
    float_tput = _throughput(jax.jit(jax.vmap(lambda x: simulate(net, x))), jnp.asarray(inputs[:512]))
    record = {"checkpoint": path, "data": run.config["data"], "T": config.T, "decay": config.decay,
              "test_samples": int(len(y_test)), "float_accuracy": float_acc,
              "float_samples_per_s": float_tput, "profiles": []}
    hidden_index = sorted(i for i, t in traces.items() if t.spikes is not None).index(last_hidden)
    for name, base in PROFILES.items():
        for bits in sorted({8, 4, base.weight_bits}, reverse=True):
            profile = dataclasses.replace(base, weight_bits=bits)
            entry = {"target": name, "weight_bits": bits}
            try:
                tables, report = lower(net, profile, calibration)
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
            int_tput = _throughput(int_fn, counts[:512])
            entry.update(
                integer_accuracy=int_acc, gap_points=100 * (float_acc - int_acc),
                hidden_spike_agreement=float((hidden == np.asarray(traces[last_hidden].spikes)).mean()),
                prediction_agreement=float((int_pred == float_pred).mean()),
                overflow_events=int(sum(int(np.sum(u)) + int(np.sum(v)) for u, v in res.overflow)),
                integer_samples_per_s=int_tput, float_over_integer_time=float_tput / int_tput,
                c_spike_agreement=_c_agreement(tables, np.asarray(counts), c_samples) if bits == 8 else None,
                report=report)
            record["profiles"].append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k != "report"}), flush=True)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", required=True, help="checkpoint.eqx (repeatable)")
    parser.add_argument("--c-samples", type=int, default=20)
    parser.add_argument("--out", default="bench/results/b5_lowering.json")
    args = parser.parse_args(argv)
    results = {"bench": "b5_lowering", "device": jax.devices()[0].platform, "runs": []}
    for path in args.ckpt:
        results["runs"].append(bench_checkpoint(path, args.c_samples))
        atomic_write_bytes(args.out, json.dumps(results, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
