"""First-layer gradient norm of a deep LIF MLP: shortcut BP against vanilla surrogate BPTT (issue #14).

Trains the same initial backbone (10 hidden LIF layers of 128, T = 6, weight gain 4, Adam 1e-3,
batch 128, direct-coded MNIST) for the first ``--steps`` steps of an epoch with three loss weightings:

* vanilla: ``(w_main, w_branch) = (1, 0)``, which is surrogate BPTT exactly (tests/test_shortcut.py);
* shortcut: ``(1, 1)`` (plain shortcut BP, the "constant" schedule);
* evolutionary: the default linear schedule over a 10-epoch run (so ``w_branch`` stays near 1 here);

and records every layer's gradient norm at every step (``jsnn.shortcut.layer_grad_norms``). The
ratio reported is the mean over the steps of ``gnorm_0`` under a variant divided by vanilla's.

    PYTHONPATH=. .venv/bin/python bench/shortcut_gradients.py --data-dir ../shared/data/mnist --steps 200

Writes ``bench/results/shortcut_gradients.json``.
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
import numpy as np

from jsnn.bptt import BPTTConfig, default_optimizer, encode_batch, make_network
from jsnn.data import iterate_batches
from jsnn.methods import load_split_arrays
from jsnn.shortcut import attach, balance_schedule, layer_grad_norms, shortcut_loss

ROOT = Path(__file__).resolve().parents[1]


def run_variant(name, config, weights, train, num_classes, steps, epoch_steps, seed):
    key = jax.random.key(seed)
    net = make_network(config, train[0].shape[1], num_classes, key=key)
    model = attach(net, list(range(1, len(config.layer_sizes))), key=jax.random.fold_in(key, 1))
    optimizer = default_optimizer(config, 10 * epoch_steps)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(model, opt_state, k, x, y, i):  # i is an array: one compilation for all steps
        inputs = encode_batch(config, x, key=k)
        (loss, aux), grads = eqx.filter_value_and_grad(shortcut_loss, has_aux=True)(model, inputs, y, weights(i))
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), opt_state, aux, layer_grad_norms(grads.backbone)

    norms, correct = [], 0
    start = time.perf_counter()
    batches = iterate_batches(train, 128, key=jax.random.key(seed + 100))
    for i, (x, y) in zip(range(steps), batches, strict=False):
        model, opt_state, aux, gn = step(model, opt_state, jax.random.key(i), jnp.asarray(x), jnp.asarray(y),
                                         jnp.asarray(i))
        norms.append([float(gn[f"gnorm_{k}"]) for k in range(len(gn))])
        correct += int(aux["correct"])
    norms = np.array(norms)
    return {"variant": name, "steps": steps, "wall_s": round(time.perf_counter() - start, 1),
            "train_acc": correct / (128 * steps), "mean_gnorm": norms.mean(axis=0).tolist(),
            "gnorm_0_first_step": float(norms[0, 0]), "gnorm_per_step_layer0": norms[:, 0].tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = BPTTConfig(hidden=(128,), depth=10, T=6, lr=1e-3, weight_scale=4.0)
    train, _, num_classes = load_split_arrays("mnist", args.data_dir)
    epoch_steps = len(train[1]) // 128
    variants = {"vanilla": lambda i: (jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32)),
                "shortcut": balance_schedule("constant"),
                "evolutionary": balance_schedule("linear", 10 * epoch_steps)}
    records = [run_variant(name, config, w, train, num_classes, args.steps, epoch_steps, args.seed)
               for name, w in variants.items()]
    base = records[0]["mean_gnorm"][0]
    ratios = {r["variant"]: r["mean_gnorm"][0] / base for r in records[1:]}
    summary = {"benchmark": "shortcut_gradients", "config": config.to_dict(), "batch_size": 128, "seed": args.seed,
               "first_layer_ratio_vs_vanilla": ratios, "records": records,
               "machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "date": time.strftime("%F"), "cpus": len(__import__("os").sched_getaffinity(0))}}
    path = ROOT / "bench" / "results" / "shortcut_gradients.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({"ratios": ratios, "mean_gnorm": {r["variant"]: r["mean_gnorm"] for r in records},
                      "train_acc": {r["variant"]: r["train_acc"] for r in records}}, indent=1))


if __name__ == "__main__":
    main()
