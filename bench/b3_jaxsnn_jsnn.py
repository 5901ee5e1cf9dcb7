"""Workload B3-vs-jaxsnn, jsnn side: exact-gradient training steps on Yin-Yang in jaxsnn's configuration.

``jsnn.exact.exact_method`` with the driver's reference configuration (``bench/b3_jaxsnn.py``, jaxsnn's
EventProp Yin-Yang example): 4 features + a bias spike at t = 0, spike time ``t_late * value``
(``t_min = 0``, ``t_max = t_late = 12``), 100 hidden and 3 output CuBa-LIF neurons with ``tau_syn = 6``,
``tau_mem = 12`` (closed-form spike times), threshold 1, window ``t_end = 24``, one transmitted spike per
neuron (``max_spikes = (1, 1)``, reset to 0), weights N(3.0, 1.6^2) and N(0.5, 0.8^2), batch 64, the
example's optimizer ``chain(scale(1 / tau_syn), clip(0.01), adam(exponential_decay(5e-3, 78, 0.99)))``
passed as ``optimizer=``, and jsnn's first-spike cross-entropy ``ttfs_loss`` (jaxsnn's example uses an MSE
on the first spike times). ``--grad autodiff`` differentiates through the event scan with the IFT
``custom_jvp``; ``--grad adjoint`` uses jsnn's hand EventProp ``custom_vjp``. The timed step is the jitted
``method.step`` (forward, gradient, update).

    .venv/bin/python bench/b3_jaxsnn_jsnn.py --data DATA.npz --config '{...}' --grad autodiff

It prints one JSON line; the driver runs it.

References:
    Wunderlich and Pehle, Event-based backpropagation can compute exact gradients for spiking neural
    networks, arXiv 2009.08378.
    Lee, Haghighatshoar and Karbasi, Exact gradient computation for spiking neural networks via forward
    propagation, arXiv 2210.15415.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from b3_jaxsnn import b3_worker_arguments, emit_b3_record, time_training

from jsnn.exact.method import ExactConfig, exact_method


def exact_config(cfg: dict, grad: str) -> ExactConfig:
    """The jsnn configuration that matches the driver's reference ``cfg`` (times in µs)."""
    return ExactConfig(
        hidden=(cfg["hidden"],), grad=grad, loss="ttfs", tau_syn=cfg["tau_syn"], tau_mem=cfg["tau_mem"],
        threshold=cfg["threshold"], t_end=cfg["t_end"], reset="zero", t_min=0.0, t_max=cfg["t_late"],
        t_bias=cfg["t_bias"], invert=False, max_spikes=(1, 1), max_events=None,
        init=tuple(tuple(p) for p in cfg["init"]), lr=cfg["lr"], lr_decay=cfg["lr_decay"], clip=None,
        steps_per_epoch=cfg["n_train"] // cfg["batch"])


def main() -> None:
    args = b3_worker_arguments("jsnn exact gradients", variant_flag="--grad", variant_type=str,
                               variant_choices=("autodiff", "adjoint"))
    cfg = args.config
    config = exact_config(cfg, args.variant)
    schedule = optax.exponential_decay(cfg["lr"], config.steps_per_epoch, cfg["lr_decay"])
    optimizer = optax.chain(optax.scale(1.0 / cfg["tau_syn"]), optax.clip(cfg["clip"]), optax.adam(schedule))
    method = exact_method(config, cfg["n_features"], cfg["n_classes"], optimizer=optimizer)
    state = method.init(jax.random.key(args.seed))
    step = jax.jit(method.step)
    key = jax.random.key(args.seed)
    data = np.load(args.data)
    x_all, y_all = data["x"], data["y"]

    def make_batch(idx: np.ndarray):
        return jnp.asarray(x_all[idx]), jnp.asarray(y_all[idx])

    def train_step(state, batch):
        state, metrics = step(state, *batch, key)
        return state, metrics["loss"], metrics["correct"]

    timing = time_training(train_step, state, make_batch, args)
    emit_b3_record("jsnn", args.variant, args, timing,
                   versions=["jsnn", "jax", "jaxlib", "equinox", "optax"],
                   model={"neuron": "CuBa LIF, reset to 0, max_spikes=(1, 1) (first spike transmitted)",
                          "event_slots_per_neuron": [cfg["n_features"] + 1 + 2, cfg["hidden"] + 2],
                          "input_events": cfg["n_features"] + 1, "loss": "jsnn.exact.losses.ttfs_loss",
                          "gradient": {"autodiff": "reverse autodiff through the IFT custom_jvp",
                                       "adjoint": "jsnn hand EventProp custom_vjp"}[args.variant],
                          "optimizer": "chain(scale(1/tau_syn), clip(0.01), adam(exponential_decay))",
                          "exact_config": config.to_dict(), "time_unit": "us"})


if __name__ == "__main__":
    main()
