"""B5, quantisation-aware fine-tuning: float vs integer spike agreement before and after ``fit_to_tables``.

For each ``--pair CKPT:TARGET`` (a BPTT checkpoint and the target whose reset it holds), this
lowers the network with ``lower_calibrated`` (8-bit weights unless ``--weight-bits``), then
fine-tunes it on the tables' grid for ``--epochs`` epochs (``jsnn.lower.fit_to_tables``: weights
and biases fake-quantised with the straight-through estimator, the tables' thresholds, decays and
reset, chip-quantised inputs, Adam at ``--lr``), and re-lowers it at the same scales. On the whole
test set it reports, before and after:

- float and integer accuracy (the float network runs on the inputs the chip receives,
  ``grid_inputs``; the raw-input float accuracy is reported too);
- the agreement of the hidden-layer spikes (the last spiking layer; the readout is a
  non-spiking LI) between the float and the integer simulation on the same input counts.

Usage:
    .venv/bin/python bench/b5_finetune.py --pair runs/mnist_s0/checkpoint.eqx:xylo \
        --pair runs/mnist_zero_s0/checkpoint.eqx:loihi --data-dir /work/shared/data/mnist \
        [--epochs 1] [--lr 1e-4] [--out bench/results/b5_finetune.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from b5_lowering import _batched

from jsnn import losses
from jsnn.bptt import BPTTConfig, encode_batch
from jsnn.checkpoint import atomic_write_bytes
from jsnn.lower import PROFILES, grid_inputs, lower_calibrated, quantize_inputs, simulate_int
from jsnn.lower.cli import finetune_bptt, load_network
from jsnn.simulate import simulate


def _compare(net, tables, inputs, labels, logits) -> dict:
    """Accuracies and hidden-spike agreement of ``net`` (float, chip inputs) against ``tables`` (integer)."""
    counts = jnp.asarray(quantize_inputs(tables, inputs))
    on_chip = grid_inputs(tables, jnp.asarray(inputs))
    out, traces = _batched(jax.jit(jax.vmap(lambda x: simulate(net, x, record=True))), on_chip)
    raw_out = _batched(jax.jit(jax.vmap(lambda x: simulate(net, x))), jnp.asarray(inputs))
    res = _batched(jax.jit(jax.vmap(lambda c: simulate_int(tables, c))), counts)
    last = len(tables.manifest["layers"]) - 1
    decoded = jnp.asarray(np.asarray(res.output, np.float64) / tables.arrays[f"layer{last}.scale"], jnp.float32)
    spiking = sorted(i for i, t in traces.items() if t.spikes is not None)
    hidden_float = np.asarray(traces[spiking[-1]].spikes)
    hidden_int = np.asarray(res.spikes[len(spiking) - 1])
    acc = lambda o: float((np.argmax(np.asarray(jax.vmap(logits)(o)), -1) == labels).mean())  # noqa: E731
    return {"float_accuracy": acc(out), "float_accuracy_raw_inputs": acc(raw_out), "integer_accuracy": acc(decoded),
            "hidden_spike_agreement": float((hidden_float == hidden_int).mean())}


def bench_pair(path: str, target: str, args) -> dict:
    net, run = load_network(path, data_dir=args.data_dir)
    config = BPTTConfig.from_dict(run.config)
    logits = losses.LOSSES[config.loss][1]
    encode = lambda x: encode_batch(config, jnp.asarray(x, jnp.float32), key=jax.random.key(0))  # noqa: E731
    x_test, y_test = run.test
    inputs = np.asarray(encode(x_test))
    calibration = np.asarray(encode(run.train[0][:256]))
    profile = dataclasses.replace(PROFILES[target], weight_bits=args.weight_bits or PROFILES[target].weight_bits)
    tables, _, _ = lower_calibrated(net, profile, calibration)
    before = _compare(net, tables, inputs, y_test, logits)
    print(json.dumps({"checkpoint": path, "target": target, "before": before}), flush=True)

    start = time.perf_counter()
    grid_net, new_tables, report, epoch_losses = finetune_bptt(net, tables, run, calibration, epochs=args.epochs,
                                                               lr=args.lr, seed=args.seed)
    seconds = time.perf_counter() - start
    after = _compare(grid_net, new_tables, inputs, y_test, logits)
    record = {"checkpoint": path, "target": target, "weight_bits": profile.weight_bits, "epochs": args.epochs,
              "lr": args.lr, "finetune_s": seconds, "epoch_losses": epoch_losses, "test_samples": int(len(y_test)),
              "before": before, "after": after, "report": report}
    print(json.dumps({k: v for k, v in record.items() if k != "report"}), flush=True)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", action="append", required=True, help="CKPT:TARGET (repeatable)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-bits", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (or set JSNN_DATA)")
    parser.add_argument("--out", default="bench/results/b5_finetune.json")
    args = parser.parse_args(argv)
    pairs = []
    for pair in args.pair:
        path, sep, target = pair.rpartition(":")
        if not sep or target not in PROFILES:
            parser.error(f"--pair must be CKPT:TARGET with TARGET one of {sorted(PROFILES)}; got {pair!r}.")
        pairs.append((path, target))
    results = {"bench": "b5_finetune", "device": jax.devices()[0].platform, "runs": []}
    for path, target in pairs:
        results["runs"].append(bench_pair(path, target, args))
        atomic_write_bytes(args.out, json.dumps(results, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
