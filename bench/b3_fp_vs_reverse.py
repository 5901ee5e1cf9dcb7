"""Workload B3 (speed): cost of one exact gradient by FP (forward mode) against reverse mode as parameters grow.

For Yin-Yang networks 5 -> H -> 3 with growing H, times one jitted loss gradient on a batch by
``grad="fp"`` (``jax.jacfwd``: one tangent per parameter), ``"autodiff"`` (reverse through the event scan)
and ``"adjoint"`` (hand EventProp). Median of ``--repeats`` runs after a warm-up; writes
``bench/results/b3_fp_vs_reverse.json`` atomically.

    nice -n 5 .venv/bin/python bench/b3_fp_vs_reverse.py > bench/results/b3_fp_vs_reverse.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from b3_yinyang import write_json_atomic
from jsnn.data import load_yinyang
from jsnn.exact.method import EXACT_DEFAULTS, ExactConfig, exact_loss
from jsnn.exact.net import EventNet


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "b3_fp_vs_reverse.json")
    args = p.parse_args(argv)
    data = load_yinyang("train", n=args.batch, seed=0)
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)
    rows = []
    for h in args.hidden:
        cfg = ExactConfig.from_dict({**EXACT_DEFAULTS["yinyang"], "hidden": [h]})
        net = EventNet((5, h, 3), key=jax.random.key(0), cfg=cfg.lif, max_spikes=cfg.max_spikes, init=cfg.init)
        n_params = sum(w.size for w in net.weights)
        row = {"hidden": h, "params": int(n_params)}
        for mode in ("fp", "autodiff", "adjoint"):
            def loss(w, mode=mode):
                return exact_loss(eqx.tree_at(lambda n: n.weights, net, w), cfg, x, y, mode)[0]
            fn = jax.jit(jax.jacfwd(loss) if mode == "fp" else jax.grad(loss))
            t0 = time.perf_counter()
            jax.block_until_ready(fn(net.weights))
            compile_s = time.perf_counter() - t0
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(net.weights))
                times.append(time.perf_counter() - t0)
            row[f"{mode}_ms"] = 1e3 * float(np.median(times))
            row[f"{mode}_compile_s"] = compile_s
        row["fp_over_adjoint"] = row["fp_ms"] / row["adjoint_ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_json_atomic(args.out, {"workload": "B3-fp-vs-reverse", "batch": args.batch, "rows": rows,
                                 "device": jax.devices()[0].device_kind,
                                 "note": "median ms per gradient of a batch mean TTFS loss; shared 2-core CPU"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
