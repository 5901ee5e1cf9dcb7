"""Evidence for the B1 T-scaling finding: XLA:CPU's temporary block and the page faults of one step.

For each T, compiles the jsnn B1 gradient step (784-256-10 LIF, batch 128, time-major input
vmapped as in ``b1_jsnn.py``), reads XLA's temporary-buffer size (``memory_analysis``) and
counts the minor page faults (``getrusage``) and CPU time of a step, with glibc's default
``malloc`` (``JSNN_HOST_MALLOC=system``) and with ``jsnn.hostmem`` (the default), each in its
own process. Page-fault counts do not depend on the load of the machine, timings do.

    .venv/bin/python bench/b1_page_faults.py --T 25 50 100 200 400   # -> results/b1_page_faults.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import (
    DECAY,
    N_IN,
    N_OUT,
    SLOPE,
    THRESHOLD,
    atomic_write_text,
    b1_batch,
    positive_int,
)

BENCH = Path(__file__).resolve().parent
MODES = {"system_malloc": "system", "jsnn_hostmem": ""}


def measure(T: int, hidden: int, batch: int, steps: int) -> dict:
    """Temporary bytes, page faults and CPU time per step of the jsnn B1 gradient, in this process."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import jsnn

    neuron = jsnn.LIF(decay=DECAY, threshold=THRESHOLD, surrogate=jsnn.surrogate.FastSigmoid(SLOPE),
                      detach_reset=False)
    params, static = eqx.partition(jsnn.mlp(N_IN, [hidden], N_OUT, neuron=neuron, readout=neuron,
                                            key=jax.random.key(0)), eqx.is_array)

    def loss(params, spikes, labels):
        net = eqx.combine(params, static)
        out = jax.vmap(lambda x: jsnn.simulate(net, x), in_axes=1)(spikes)
        return jnp.mean(jax.vmap(jsnn.losses.ce_count)(out, labels))

    spikes, labels = map(jnp.asarray, b1_batch(T, batch, 0))
    step = jax.jit(jax.value_and_grad(loss)).lower(params, spikes, labels).compile()
    jax.block_until_ready(step(params, spikes, labels))
    faults, cpu = [], []
    for _ in range(steps):
        before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
        jax.block_until_ready(step(params, spikes, labels))
        cpu.append(time.process_time() - start)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return {"T": T, "temp_mib": step.memory_analysis().temp_size_in_bytes / 2**20,
            "page_faults_per_step": statistics.median(faults), "cpu_ms_per_step": 1e3 * statistics.median(cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=positive_int, nargs="+", default=[25, 50, 100, 200, 400])
    parser.add_argument("--hidden", type=positive_int, default=256)
    parser.add_argument("--batch", type=positive_int, default=128)
    parser.add_argument("--steps", type=positive_int, default=8)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "b1_page_faults.json")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps([measure(T, args.hidden, args.batch, args.steps) for T in args.T]))
        return
    results = {"settings": {"hidden": args.hidden, "batch": args.batch, "steps": args.steps},
               "load_average_start": list(os.getloadavg())}
    for mode, env in MODES.items():
        cmd = [sys.executable, __file__, "--worker", "--T", *map(str, args.T), "--hidden", str(args.hidden),
               "--batch", str(args.batch), "--steps", str(args.steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "JSNN_HOST_MALLOC": env})
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        for row in results[mode]:
            print(f"{mode:14s} T={row['T']:4d} temp {row['temp_mib']:7.1f} MiB  page faults/step "
                  f"{row['page_faults_per_step']:8.0f}  CPU {row['cpu_ms_per_step'] / row['T']:.3f} ms per time step")
    results["load_average_end"] = list(os.getloadavg())
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
