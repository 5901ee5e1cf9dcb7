"""Benchmark B5: lowering to integer tables (accuracy gap, spike agreement, C agreement, speed).

For each checkpoint and each target profile (at 8-bit and 4-bit weights, and the target's
native width) the script lowers the network (calibrated on 256 training samples), runs the
test set through the float simulation and the bit-exact integer simulator, and records:

* float and integer test accuracy and their gap (points);
* agreement of the last hidden layer's spikes with the trained float model and with the
  float *shadow* (``jsnn.lower.shadow_network``: dequantised parameters, effective decays,
  the target's reset, dequantised inputs), and agreement of the predicted class with both.
  The foundation nets end in an ``LI`` readout, which emits no spikes: "output spikes" of
  the issue are measured as the last hidden layer's spikes (the last spikes the network
  emits), and the readout's decision agreement is reported beside them;
* overflow events on the test set;
* the C program's agreement with the integer simulator on a few test samples;
* throughput (samples/s) of the jitted float and integer simulations, and their ratio.

Usage:
    .venv/bin/python bench/b5_lowering.py --ckpt runs/digits_s0/checkpoint.eqx \
        --ckpt runs/digits_if/checkpoint.eqx --train-reset-zero runs/digits_s0/checkpoint.eqx \
        --ckpt runs/mnist_s0/checkpoint.eqx --data-dir /work/shared/data/mnist \
        [--c-samples 20] [--out bench/results/b5_lowering.json]

``runs/digits_if`` is ``jsnn train --data digits --decay 1.0`` (IF neurons, for the leakless
Speck-like target); ``--train-reset-zero`` retrains a checkpoint's config with reset-to-zero
neurons (Loihi-like and SpiNNaker-like reset to zero), which ``jsnn train`` does not expose.
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

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jsnn import losses
from jsnn.bptt import BPTTConfig, bptt_loss, encode_batch, make_network
from jsnn.checkpoint import atomic_write_bytes, read_header
from jsnn.lower import PROFILES, LoweringError, lower, quantize_inputs, save_tables, shadow_network, simulate_int
from jsnn.lower.cli import load_network
from jsnn.methods import build_bptt
from jsnn.neurons import LIF
from jsnn.nn import Sequential
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


def train_for_target(config: dict, *, reset: str, data_dir: str | None = None) -> tuple:
    """Train the foundation BPTT net with a chosen reset (not exposed by ``jsnn train``).

    Same architecture, loss, encoding and Adam/cosine schedule as ``jsnn train --method bptt``
    with ``config``; only the hidden LIF neurons reset by ``reset``. Returns ``(net, run)``.
    """
    run = build_bptt(config, data_dir=data_dir)
    bc = BPTTConfig.from_dict(run.config)
    (x, y), n_cls = run.train, int(run.train[1].max()) + 1
    net = make_network(bc, x.shape[1], n_cls, key=jax.random.key(run.config["seed"]))
    layers = [dataclasses.replace(m, reset=reset) if isinstance(m, LIF) else m for m in net.layers]
    net = Sequential(layers)
    steps = run.config["epochs"] * (len(y) // run.config["batch_size"])
    lr = optax.cosine_decay_schedule(bc.lr, steps, 0.1) if bc.cosine else bc.lr
    opt = optax.adam(lr)
    state = opt.init(eqx.filter(net, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(net, state, xb, yb, key):
        grads, _ = eqx.filter_grad(lambda n: bptt_loss(n, bc, encode_batch(bc, xb, key=key), yb), has_aux=True)(net)
        updates, state = opt.update(grads, state, eqx.filter(net, eqx.is_inexact_array))
        return eqx.apply_updates(net, updates), state

    rng = np.random.default_rng(run.config["seed"])
    key = jax.random.key(run.config["seed"])
    b = run.config["batch_size"]
    for _ in range(run.config["epochs"]):
        order = rng.permutation(len(y))
        for i in range(len(y) // b):
            key, sub = jax.random.split(key)
            idx = order[i * b:(i + 1) * b]
            net, state = step(net, state, jnp.asarray(x[idx], jnp.float32), jnp.asarray(y[idx]), sub)
    return net, run


def bench_checkpoint(path: str, c_samples: int, data_dir: str | None = None) -> dict:
    net, run = load_network(path, data_dir=data_dir)
    return bench_network(net, run, path, c_samples)


def bench_network(net, run, label: str, c_samples: int) -> dict:
    path = label
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
              "reset": getattr(net.layers[1], "reset", None),
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
            shadow = shadow_network(net, tables)
            dequantised = jnp.asarray(np.asarray(counts) / tables.manifest["input"]["scale"], jnp.float32)
            s_out, s_traces = _batched(jax.jit(jax.vmap(lambda x, n=shadow: simulate(n, x, record=True))),
                                       dequantised)
            shadow_pred = np.argmax(jax.vmap(logits)(s_out), -1)
            entry.update(
                integer_accuracy=int_acc, gap_points=100 * (float_acc - int_acc),
                hidden_spike_agreement=float((hidden == np.asarray(traces[last_hidden].spikes)).mean()),
                prediction_agreement=float((int_pred == float_pred).mean()),
                shadow_hidden_spike_agreement=float((hidden == np.asarray(s_traces[last_hidden].spikes)).mean()),
                shadow_prediction_agreement=float((int_pred == shadow_pred).mean()),
                reset_mismatch=any(r.get("reset_mismatch", False) for r in report),
                overflow_events=int(sum(int(np.sum(u)) + int(np.sum(v)) for u, v in res.overflow)),
                integer_samples_per_s=int_tput, float_over_integer_time=float_tput / int_tput,
                c_spike_agreement=_c_agreement(tables, np.asarray(counts), c_samples) if bits == 8 else None,
                report=report)
            record["profiles"].append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k != "report"}), flush=True)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", default=[], help="checkpoint.eqx (repeatable)")
    parser.add_argument("--train-reset-zero", action="append", default=[], metavar="CKPT",
                        help="retrain CKPT's config with reset-to-zero LIF neurons, then bench it (repeatable)")
    parser.add_argument("--c-samples", type=int, default=20)
    parser.add_argument("--out", default="bench/results/b5_lowering.json")
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (or set JSNN_DATA)")
    args = parser.parse_args(argv)
    results = {"bench": "b5_lowering", "device": jax.devices()[0].platform, "runs": []}
    jobs = [lambda p=p: bench_checkpoint(p, args.c_samples, args.data_dir) for p in args.ckpt]
    jobs += [lambda p=p: bench_network(*train_for_target(read_header(p)["config"], reset="zero",
                                                         data_dir=args.data_dir),
                                       f"{p} retrained with reset='zero'", args.c_samples)
             for p in args.train_reset_zero]
    for job in jobs:
        results["runs"].append(job())
        atomic_write_bytes(args.out, json.dumps(results, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
