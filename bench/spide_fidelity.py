"""Gradient fidelity of SPIDE on MNIST-sized layers: cosine with the exact gradients, against T_b.

A single-layer feedback net 784 -> 300 -> 10 (IF, modified reset, Frobenius norm c = 2), forward
T = 30 on a batch of real MNIST test images, cross-entropy of the readout. Three gradients of the
feedback and input weights are compared:

* SPIDE: the custom_vjp with ``backward="spide"`` at ``T_b``;
* exact at the same state: the cyclic adjoint with SPIDE's own rate masks (what SPIDE converges to);
* the true implicit gradient at the exact equilibrium ``a*`` (IDE's formula at a fixed point).

The loss scale is chosen so that the largest exact adjoint entry is 0.8 A (no saturation).
Writes ``bench/results/spide_fidelity.json``.

    .venv/bin/python bench/spide_fidelity.py --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from common import atomic_write_text
from jsnn.data import load_dataset
from jsnn.equilibrium import (EquilibriumConfig, cyclic_adjoint, equilibrium, feedback_fc, implicit_vjp,
                              local_gradients)

ROOT = Path(__file__).resolve().parents[1]



def _flat_plain(grads) -> jnp.ndarray:
    return jnp.concatenate([grads.connections[0].weight.ravel(), grads.encoder.weight.ravel()])


def cosine(a, b) -> float:
    return float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--hidden", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--T", type=int, default=30)
    parser.add_argument("--T-backward", type=int, nargs="+", default=[30, 100, 250, 1000])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "spide_fidelity.json"))
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    test = load_dataset("mnist", "test", data_dir=args.data_dir)
    x = jnp.asarray(test.x[: args.batch].reshape(args.batch, -1), jnp.float64)
    y = jnp.asarray(test.y[: args.batch])
    net = feedback_fc(784, [args.hidden], 10, norm="frobenius", norm_bound=2.0, reset="modified",
                      feedback_scale=2.0, dtype=jnp.float64, key=jax.random.key(0))
    eff = net.materialize(key=jax.random.key(1))

    def ce(a):
        return optax.softmax_cross_entropy_with_integer_labels(jax.vmap(eff.logits)(a), y).mean()

    a, info = equilibrium(eff, x, EquilibriumConfig(T=args.T, on_fail="ignore"))
    g_bar = jax.grad(ce)(a)
    rates = info.rates
    exact_g = jax.vmap(lambda r, g: cyclic_adjoint(eff, r, g))(rates, g_bar * args.batch)  # per-sample terms
    loss_scale = 0.8 / float(max(jnp.abs(g).max() for g in exact_g))
    exact_same_state, _ = local_gradients(eff, x, rates, tuple(g / args.batch for g in exact_g))
    # the true implicit gradient at the exact equilibrium a*
    fx = jax.vmap(eff.input_current)(x)
    a_star = jax.vmap(lambda f: jax.lax.fori_loop(0, 2000, lambda _, z: eff.fixed_point_map(z, f),
                                                  jnp.zeros(args.hidden, jnp.float64)))(fx)
    true_grad, _, _ = implicit_vjp(eff, x, a_star, jax.grad(ce)(a_star),
                                   EquilibriumConfig(T=args.T, tol=1e-12, max_iter=200, on_fail="ignore"))
    rows = []
    for T_b in args.T_backward:
        cfg = EquilibriumConfig(T=args.T, backward="spide", T_backward=T_b, loss_scale=loss_scale)
        spide = eqx.filter_grad(lambda n: ce(equilibrium(n, x, cfg)[0]))(eff)
        rows.append({"T_backward": T_b,
                     "cosine_vs_exact_same_state": cosine(_flat_plain(spide), _flat_plain(exact_same_state)),
                     "cosine_vs_true_implicit": cosine(_flat_plain(spide), _flat_plain(true_grad))})
        print(rows[-1])
    result = {"benchmark": "spide_fidelity", "net": f"784-{args.hidden}(feedback)-10, IF, modified reset, "
              f"Frobenius c=2, T={args.T}, batch {args.batch} MNIST test images, float64",
              "loss_scale": loss_scale, "forward_firing_rate": float(info.firing_rate),
              "cosine_same_state_vs_true_implicit": cosine(_flat_plain(exact_same_state), _flat_plain(true_grad)),
              "rows": rows, "machine": platform.platform()}
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
