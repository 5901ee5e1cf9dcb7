"""Workload B2: one full-batch ADMM iteration of a 784-512-10 network, N samples x T steps.

Reports, for each (N, T):
  * seconds per iteration of ``admm_step`` (jit, warm-up, median of ``--repeats``);
  * the GFLOP/s of the Gram and numerator accumulation (the U1 statistics, chunk by chunk through
    :func:`jsnn.optim.admm_blocks.weight_statistics`) against a plain ``jnp.matmul`` of the same
    shapes in the same run (the roofline of this machine), as a ratio;
  * XLA's memory estimate of the compiled iteration (arguments + temporaries), which shows how
    memory grows with N and T (the per-sample state is linear in N*T; the temporaries are one chunk).

Results go to ``bench/results/b2_admm.jsonl`` (atomic write), one JSON line per (N, T).

Usage: .venv/bin/python bench/b2_admm.py --sizes 1000x8 2000x8 4000x8 2000x16 --chunk 1000
       .venv/bin/python bench/b2_admm.py --memory 60000x25x2500   # full MNIST, T = 25: compile only
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jsnn.optim import AdmmBatch, StateLayout, admm_step, init_params, init_state, make_batch
from jsnn.optim import admm_blocks as blk
from jsnn.optim.admm import _chunk_sum

RESULTS = Path(__file__).with_name("results") / "b2_admm.jsonl"
D0, D1, DL = 784, 512, 10


def _median_time(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(n: int, t: int, chunk: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    layout = StateLayout(num_samples=n, num_steps=t, chunk_size=chunk)
    x = (rng.random((n, t, D0)) < 0.2).astype(np.float32)
    batch = make_batch(x, rng.integers(0, DL, n), layout, targets=np.eye(DL)[rng.integers(0, DL, n)])
    params = init_params([D0, D1, DL])
    state = init_state(params, layout)
    step = jax.jit(admm_step)
    params1, state1 = step(params, state, batch)  # nonzero weights for the timed iteration
    sec_iter = _median_time(step, params1, state1, batch, repeats=repeats)
    mem = step.lower(params1, state1, batch).compile().memory_analysis()

    @jax.jit
    def accumulate(z, a, xs, mask):  # the U1 statistics of layer 1, chunk by chunk
        def one(c):
            targets = blk.membrane_targets(z[c], a[c], decay=0.95, threshold=1.0)
            return blk.weight_statistics(targets, xs[c], mask=mask[c])
        init = (jnp.zeros((D1, D0), jnp.float32), jnp.zeros((D0, D0), jnp.float32))
        return _chunk_sum(one, xs.shape[0], init)

    @jax.jit
    def plain(p_rows, a_rows):  # the same products as two plain matmuls, no chunking
        return jnp.matmul(p_rows.T, a_rows), jnp.matmul(a_rows.T, a_rows)

    z, a = state1.z[0], state1.a[0]
    xs = batch.x.astype(jnp.float32)
    sec_acc = _median_time(accumulate, z, a, xs, batch.mask, repeats=repeats)
    p_rows = blk.membrane_targets(z, a, decay=0.95, threshold=1.0).reshape(-1, D1)
    a_rows = xs.reshape(-1, D0)
    sec_mm = _median_time(plain, p_rows, a_rows, repeats=repeats)
    flops = 2.0 * layout.num_chunks * chunk * t * D0 * (D1 + D0)
    return {
        "bench": "B2", "N": n, "T": t, "chunk": chunk, "net": [D0, D1, DL], "device": str(jax.devices()[0]),
        "sec_per_iteration": round(sec_iter, 4),
        "accumulate_gflops": round(flops / sec_acc / 1e9, 2), "matmul_gflops": round(flops / sec_mm / 1e9, 2),
        "accumulate_vs_matmul": round(sec_mm / sec_acc, 3),
        "xla_argument_mb": round(mem.argument_size_in_bytes / 2**20, 1) if mem else None,
        "xla_temp_mb": round(mem.temp_size_in_bytes / 2**20, 1) if mem else None,
    }


def memory_estimate(n: int, t: int, chunk: int, hidden: int = D1) -> dict:
    """XLA's memory estimate of one compiled iteration at full scale, without allocating anything.

    The inputs are float32 direct-coded images (N, T, 784); the state and weights as in training.
    """
    layout = StateLayout(num_samples=n, num_steps=t, chunk_size=chunk)
    c, b = layout.num_chunks, layout.batch_size
    params = jax.eval_shape(lambda: init_params([D0, hidden, DL]))
    state = jax.eval_shape(lambda: init_state(init_params([D0, hidden, DL]), layout))
    f32 = jnp.float32
    batch = AdmmBatch(x=jax.ShapeDtypeStruct((c, b, t, D0), f32), y=jax.ShapeDtypeStruct((c, b, DL), f32),
                      mask=jax.ShapeDtypeStruct((c, b), f32), labels=jax.ShapeDtypeStruct((c, b), jnp.int32))
    compiled = jax.jit(admm_step, donate_argnums=1).lower(params, state, batch).compile()
    mem = compiled.memory_analysis()
    gib = lambda v: round(v / 2**30, 2)  # noqa: E731
    return {"bench": "B2-memory", "N": n, "T": t, "chunk": chunk, "net": [D0, hidden, DL],
            "argument_gib": gib(mem.argument_size_in_bytes), "output_gib": gib(mem.output_size_in_bytes),
            "temp_gib": gib(mem.temp_size_in_bytes), "alias_gib": gib(mem.alias_size_in_bytes),
            "peak_estimate_gib": gib(mem.argument_size_in_bytes + mem.output_size_in_bytes
                                     + mem.temp_size_in_bytes - mem.alias_size_in_bytes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["1000x8", "2000x8", "4000x8", "2000x16"], help="NxT")
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", nargs="*", default=[], help="NxT[xCHUNK] to estimate memory only, e.g. 60000x25x2500")
    args = parser.parse_args()
    lines = []
    for size in args.memory:
        n, t, *rest = (int(v) for v in size.split("x"))
        record = memory_estimate(n, t, rest[0] if rest else min(args.chunk, n))
        print(json.dumps(record), flush=True)
        lines.append(json.dumps(record))
    for size in args.sizes if not args.memory else []:
        n, t = (int(v) for v in size.split("x"))
        record = measure(n, t, min(args.chunk, n), args.repeats)
        print(json.dumps(record), flush=True)
        lines.append(json.dumps(record))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = RESULTS.read_text() if RESULTS.exists() else ""
    fd, tmp = tempfile.mkstemp(dir=RESULTS.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(old + "".join(line + "\n" for line in lines))
    os.replace(tmp, RESULTS)


if __name__ == "__main__":
    main()
