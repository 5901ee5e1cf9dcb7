"""Workload B4: memory of an IDE training step against BPTT through the same feedback net, over T.

Both steps are ``value_and_grad`` of the cross-entropy of the readout on the equilibrium rate plus an
SGD update, on the same single-layer feedback net (784 -> 400 -> 10, IF, spectral norm, batch 32).
IDE differentiates with :func:`jsnn.equilibrium.equilibrium` (the implicit backward); BPTT with
``jax.grad`` through :func:`jsnn.equilibrium.simulate_rates` (the core neurons' surrogate gradient,
so every step's state is stored). Memory is XLA's compiled ``memory_analysis()`` (temp + argument
bytes): deterministic and needs no run. Writes ``bench/results/b4_equilibrium.json``.

    .venv/bin/python bench/b4_equilibrium.py [--Ts 30 100 300] [--hidden 400] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from common import atomic_write_text
from jsnn.equilibrium import EquilibriumConfig, equilibrium, feedback_fc, simulate_rates

ROOT = Path(__file__).resolve().parents[1]


def step_bytes(method: str, T: int, hidden: int, batch: int) -> dict:
    net = feedback_fc(784, [hidden], 10, norm="spectral", key=jax.random.key(0))
    x = jnp.zeros((batch, 784), jnp.float32)
    y = jnp.zeros((batch,), jnp.int32)
    cfg = EquilibriumConfig(T=T, on_fail="ignore")

    def loss(n, x, y):
        eff = n.materialize()
        if method == "ide":
            a, _ = equilibrium(eff, x, cfg)
        else:
            a = jax.vmap(lambda xi: simulate_rates(eff, xi, T).rates[-1])(x)
        return optax.softmax_cross_entropy_with_integer_labels(jax.vmap(n.logits)(a), y).mean()

    def step(n, x, y):
        value, grads = eqx.filter_value_and_grad(loss)(n, x, y)
        return eqx.apply_updates(n, jax.tree.map(lambda g: -0.1 * g, grads)), value

    params, static = eqx.partition(net, eqx.is_array)
    compiled = jax.jit(lambda p, x, y: step(eqx.combine(p, static), x, y)).lower(params, x, y).compile()
    mem = compiled.memory_analysis()
    return {"method": method, "T": T, "temp_bytes": int(mem.temp_size_in_bytes),
            "argument_bytes": int(mem.argument_size_in_bytes),
            "total_bytes": int(mem.temp_size_in_bytes + mem.argument_size_in_bytes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--Ts", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "b4_equilibrium.json"))
    args = parser.parse_args()
    rows = [step_bytes(m, T, args.hidden, args.batch) for m in ("ide", "bptt") for T in args.Ts]
    growth = {}
    for m in ("ide", "bptt"):
        by_T = {r["T"]: r["total_bytes"] for r in rows if r["method"] == m}
        growth[m] = by_T[max(args.Ts)] / by_T[min(args.Ts)] - 1
    print(f"{'method':6} " + " ".join(f"T={T:>4} MiB" for T in args.Ts) + "   growth")
    for m in ("ide", "bptt"):
        mib = [r["total_bytes"] / 2**20 for r in rows if r["method"] == m]
        print(f"{m:6} " + " ".join(f"{v:10.2f}" for v in mib) + f"   {100 * growth[m]:+.1f} %")
    result = {"benchmark": "b4_equilibrium", "net": f"784-{args.hidden}(feedback)-10, IF, batch {args.batch}",
              "metric": "XLA compiled memory_analysis temp + argument bytes of one training step",
              "rows": rows, "growth_first_to_last_T": growth, "machine": platform.platform(),
              "jax": jax.__version__}
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
