"""Benchmark B5, speed only: integer-simulator throughput against the float simulation.

For each checkpoint and each target (8-bit weights) that holds it, lower it as ``jsnn lower``
does (``lower_calibrated`` on 256 training samples) and time the jitted, vmapped float and
integer simulations of the same 512 test samples, each returning only the network's output:
best of 7 calls, the two paired in each of ``--rounds`` rounds (medians kept); the ratio is
integer samples/s over float samples/s (>= 0.5: within 2x). Writes
``bench/results/b5_throughput.json`` atomically.

Usage:
    .venv/bin/python bench/b5_throughput.py --ckpt runs/mnist_s0/checkpoint.eqx \\
        --ckpt runs/digits_s0/checkpoint.eqx --data-dir /work/shared/data/mnist
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from b5_lowering import paired_throughput

from jsnn.bptt import BPTTConfig, encode_batch
from jsnn.checkpoint import atomic_write_bytes
from jsnn.lower import PROFILES, LoweringError, lower_calibrated, quantize_inputs
from jsnn.lower.cli import load_network
from jsnn.simulate import simulate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", required=True, help="checkpoint.eqx (repeatable)")
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (or set JSNN_DATA)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="bench/results/b5_throughput.json")
    args = parser.parse_args(argv)
    records = []
    for path in args.ckpt:
        net, run = load_network(path, data_dir=args.data_dir)
        config = BPTTConfig.from_dict(run.config)
        encode = lambda x: np.asarray(encode_batch(config, jnp.asarray(x, jnp.float32), key=jax.random.key(0)))  # noqa
        inputs, calibration = encode(run.test[0][:512]), encode(run.train[0][:256])
        float_run = jax.jit(jax.vmap(lambda x: simulate(net, x)))
        for name, base in PROFILES.items():
            try:
                tables, _, _ = lower_calibrated(net, dataclasses.replace(base, weight_bits=8), calibration)
            except LoweringError:
                continue
            counts = jnp.asarray(quantize_inputs(tables, inputs))
            rounds = [paired_throughput(float_run, tables, jnp.asarray(inputs), counts) for _ in range(args.rounds)]
            f, i = np.median([r[0] for r in rounds]), np.median([r[1] for r in rounds])
            record = {"checkpoint": path, "target": name, "weight_bits": 8, "float_samples_per_s": float(f),
                      "integer_samples_per_s": float(i), "integer_over_float_throughput": float(i / f),
                      "load_average": list(os.getloadavg())}
            records.append(record)
            print(json.dumps(record), flush=True)
    atomic_write_bytes(args.out, json.dumps({"bench": "b5_throughput", "device": jax.devices()[0].platform,
                                             "rounds": args.rounds, "records": records}, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
