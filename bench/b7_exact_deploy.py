"""Benchmark B7: deploying an exact-gradient (event-driven CuBa-LIF) network.

For one checkpoint of ``jsnn train --method exact`` the script measures, on the test set:

* the EventNet's accuracy (event-driven, continuous time);
* for each dt: the accuracy of the discretised float network (``jsnn.exact.to_sequential``, inputs binned
  onto the grid) and of its Loihi-like integer tables (``jsnn.lower.lower_exact`` calibrated on 256
  training samples, as ``jsnn lower`` does; bit-exact integer simulator), with the spike-time and
  float-vs-integer agreement of ``jsnn.lower.agreement_report``;
* NIR: the continuous-time graph (``jsnn.exact.exact_to_nir``), written to HDF5 and read back with ``nir``,
  simulated by an independent numpy forward-Euler integration of NIR's ODEs (below; it reads only the
  graph's fields) at a fine step, and the fraction of test samples it classifies as the EventNet does.

Usage:
    nice -n 10 .venv/bin/python -m jsnn.cli train --method exact --data yinyang --out runs/exact_yy
    nice -n 10 .venv/bin/python bench/b7_exact_deploy.py --ckpt runs/exact_yy/checkpoint.eqx \
        [--dts 1.0 0.5 0.25 0.1 0.05] [--target loihi] [--euler-dt 0.01] \
        [--out bench/results/exact_deploy_yinyang.json]

MNIST (not run here; the exact MNIST recipe trains for ~50 min on the 2-core CPU):
    jsnn train --method exact --data mnist --data-dir DIR --out runs/exact_mnist
    python bench/b7_exact_deploy.py --ckpt runs/exact_mnist/checkpoint.eqx --data-dir DIR \
        --out bench/results/exact_deploy_mnist.json
(its integrator readout has no table form yet: the script then reports the float rows and NIR only).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jsnn.checkpoint import atomic_write_bytes
from jsnn.exact import exact_to_nir
from jsnn.exact.method import ExactConfig, encode_latency
from jsnn.lower import LoweringError, agreement_report, lower_exact
from jsnn.lower.cli import load_network


def euler_nir(graph, in_times: np.ndarray, dt: float, t_end: float) -> np.ndarray:
    """Forward-Euler simulation of a NIR chain of ``Linear`` + ``CubaLIF``/``CubaLI`` nodes (NIR's ODEs).

    Spikes are Dirac impulses: an input spike at t is an impulse of area 1 at step ``round(t / dt)``, so
    ``tau_syn I' = -I + w_in S`` adds ``w_in (W s) / tau_syn`` to I. Per step: ``I += dt/tau_syn (-I) +
    impulse``, ``v += dt/tau_mem ((v_leak - v) + r I)``, spike where ``v > v_threshold``, then
    ``v <- v_reset``; a spike is an impulse into the next node in the same step. Times are in the graph's
    seconds (``time_unit`` of the metadata converts ``in_times``, ``dt`` and ``t_end``).

    Returns:
      (B, n_out) first spike times (``t_end`` where silent) for a spiking readout, or the integral of v
      for a ``CubaLI`` readout.
    """
    unit = float(graph.metadata["time_unit"])
    h = dt * unit
    steps = int(round(t_end / dt))
    order, node = [], dict(graph.edges)["input"]
    while node != "output":
        order.append(graph.nodes[node])
        node = dict(graph.edges)[node]
    batch = in_times.shape[0]
    idx = np.round(np.where(np.isfinite(in_times), in_times, np.inf) / dt)
    layers = [(order[i].weight, order[i + 1]) for i in range(0, len(order), 2)]
    state = [(np.zeros((batch, w.shape[0])), np.zeros((batch, w.shape[0]))) for w, _ in layers]
    first = np.full((batch, layers[-1][0].shape[0]), t_end)
    integral = np.zeros_like(first)
    for n in range(steps):
        s = (idx == n).sum(axis=2).astype(np.float64)  # impulses per input this step
        for k, (w, nd) in enumerate(layers):
            i, v = state[k]
            i = i + h / nd.tau_syn * (-i) + nd.w_in * (s @ w.T) / nd.tau_syn
            v = v + h / nd.tau_mem * ((nd.v_leak - v) + nd.r * i)
            if type(nd).__name__ == "CubaLIF":
                s = (v > nd.v_threshold).astype(np.float64)
                v = np.where(s > 0, nd.v_reset, v)
            else:
                integral += v * dt
            state[k] = (i, v)
        if type(layers[-1][1]).__name__ == "CubaLIF":
            first = np.where((s > 0) & (first == t_end), (n + 1) * dt, first)
    return integral if type(layers[-1][1]).__name__ == "CubaLI" else first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--dts", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.1, 0.05])
    p.add_argument("--target", default="loihi")
    p.add_argument("--calibration-samples", type=int, default=256)
    p.add_argument("--euler-dt", type=float, default=0.01)
    p.add_argument("--out", default="bench/results/exact_deploy_yinyang.json")
    args = p.parse_args()

    net, training = load_network(args.ckpt, data_dir=args.data_dir)
    config = ExactConfig.from_dict(training.config)
    decision = {"ttfs": "first_spike", "count": "count"}.get(config.loss, "voltage")
    encode = jax.jit(jax.vmap(lambda x: encode_latency(config, x)))
    test_times = encode(jnp.asarray(training.test[0], jnp.float32))
    test_labels = jnp.asarray(training.test[1])
    calib_times = encode(jnp.asarray(training.train[0][: args.calibration_samples], jnp.float32))
    rows = []
    for dt in args.dts:
        start = time.perf_counter()
        try:
            _, tables, lower_report = lower_exact(net, args.target, calib_times, dt)
        except LoweringError as err:  # e.g. an integrator readout: float rows only
            tables, lower_report = None, str(err)
        row = agreement_report(net, test_times, dt, labels=test_labels, tables=tables, decision=decision)
        row["lowering"] = lower_report
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("layers", "lowering")}), flush=True)

    import nir

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.nir"
        nir.write(str(path), exact_to_nir(net))
        graph = nir.read(str(path))
    start = time.perf_counter()
    euler = euler_nir(graph, np.asarray(test_times, np.float64), args.euler_dt, config.t_end)
    pred_nir = euler.argmax(axis=1) if decision == "voltage" else euler.argmin(axis=1)
    from jsnn.exact.losses import first_spike_times

    out = jax.jit(jax.vmap(lambda t: net(t)[-1]))(test_times)
    pred_event = np.asarray(jnp.argmax(out.v_int, axis=1) if decision == "voltage" else
                            jnp.argmin(jax.vmap(lambda r: first_spike_times(r, config.t_end))(out), axis=1))
    nir_row = {"euler_dt": args.euler_dt, "same_class": float((pred_nir == pred_event).mean()),
               "accuracy_nir_euler": float((pred_nir == np.asarray(test_labels)).mean()),
               "seconds": time.perf_counter() - start}
    print(json.dumps(nir_row), flush=True)
    result = {
        "workload": "B7", "checkpoint": args.ckpt, "data": training.config["data"], "target": args.target,
        "n_test": int(test_labels.shape[0]), "calibration_samples": args.calibration_samples,
        "config": training.config, "accuracy_event": rows[0]["accuracy_event"], "dts": rows, "nir": nir_row,
        "machine": f"{platform.machine()} cpu, 2 cores shared with ~5 engineers",
        "command": "nice -n 10 python bench/b7_exact_deploy.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if v is not None),
    }
    atomic_write_bytes(Path(args.out), json.dumps(result, indent=2).encode() + b"\n")


if __name__ == "__main__":
    main()
