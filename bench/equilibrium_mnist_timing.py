"""Time per MNIST epoch of IDE next to BPTT through the same 64C5 feedback conv net at the same T.

Both time ``value_and_grad`` + SGD update of the MNIST default net (:data:`IDE_DEFAULTS` "mnist":
conv 1->64 5x5 stride 2, feedback conv 64->64 5x5, IF, spectral norm, T = 30) on a batch of real
MNIST images; BPTT differentiates :func:`simulate_rates` through the core neurons' surrogate. The
epoch time is **extrapolated** from a few timed steps: ``60000 / batch`` steps. Writes
``bench/results/equilibrium_mnist_timing.json``. The full accuracy run is
``python bench/accuracy.py --method ide --data mnist --data-dir ../shared/data/mnist --seeds 0``
(100 epochs: hours on a CPU, a GPU run).

    .venv/bin/python bench/equilibrium_mnist_timing.py --data-dir ../shared/data/mnist [--batch 128] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from common import atomic_write_text
from jsnn.data import load_dataset
from jsnn.equilibrium import EquilibriumConfig, equilibrium, simulate_rates
from jsnn.equilibrium.method import EquilibriumRunConfig, make_network

ROOT = Path(__file__).resolve().parents[1]


def timed(method: str, x, y, T: int, steps: int) -> dict:
    net = make_network(EquilibriumRunConfig(arch="conv", T=T), 784, 10, key=jax.random.key(0))
    cfg = EquilibriumConfig(T=T, on_fail="ignore")

    def loss(n):
        eff = n.materialize()
        if method == "ide":
            a, _ = equilibrium(eff, x, cfg)
        else:
            a = jax.vmap(lambda xi: simulate_rates(eff, xi, T).rates[-1])(x)
        return optax.softmax_cross_entropy_with_integer_labels(jax.vmap(n.logits)(a), y).mean()

    @eqx.filter_jit
    def step(n):
        value, grads = eqx.filter_value_and_grad(loss)(n)
        return eqx.apply_updates(n, jax.tree.map(lambda g: -0.05 * g, grads)), value

    start = time.perf_counter()
    net, value = step(net)
    jax.block_until_ready(value)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        net, value = step(net)
    jax.block_until_ready(value)
    per_step = (time.perf_counter() - start) / steps
    return {"method": method, "compile_s": round(compile_s, 2), "step_s": round(per_step, 3),
            "epoch_s_extrapolated": round(per_step * 60000 / x.shape[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--T", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "equilibrium_mnist_timing.json"))
    args = parser.parse_args()
    train = load_dataset("mnist", "train", data_dir=args.data_dir)
    x = jnp.asarray(train.x[: args.batch].reshape(args.batch, 1, 28, 28))
    y = jnp.asarray(train.y[: args.batch])
    rows = [timed(m, x, y, args.T, args.steps) for m in ("ide", "bptt")]
    for r in rows:
        print(r)
    result = {"benchmark": "equilibrium_mnist_timing", "T": args.T, "batch": args.batch, "rows": rows,
              "note": "epoch time extrapolated from timed steps (60000 / batch steps); not a full epoch",
              "machine": platform.platform(), "device": str(jax.devices()[0])}
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
