"""Workload B3-vs-jaxsnn, peer side: jaxsnn 0.3 EventProp training steps on Yin-Yang.

Builds the network of jaxsnn's own example ``jaxsnn/examples/event/yinyang_layered_event_prop.py``
(5 inputs incl. a bias spike at t = 0 -> 100 LIF -> 3 LIF, ``Topology(backprop_method="eventprop")``,
``v_reset = -1000`` so each neuron fires at most once, ``mse_loss`` on the first output spike times,
``optax.chain(scale(1 / tau_syn), clip(0.01), adam(exponential_decay(lr, steps per epoch, lr_decay)))``)
and times jaxsnn's own jitted ``jaxsnn.event.training.update`` step (forward, EventProp gradient, update)
on mini-batches of the Yin-Yang training set that the driver ``bench/b3_jaxsnn.py`` wrote to ``--data``.
Times are in seconds as in the example (tau_syn = 6e-6 s); the driver's configuration is in
microseconds.

``--duplication 5`` is the example's encoding (each input spikes 5 times at the same time, 25 input
events; first-layer weights drawn with mean 3.0 / 5 and std 1.6 / 5 per copy, as the example writes
them). ``--duplication 1`` sends one event per input with the weights of the 5 copies summed (mean 3.0,
std 1.6): the same network dynamics with 20 fewer events in the hidden layer's event scan.

Runs in the peer environment and prints one JSON line::

    .venv-peers/bin/python bench/b3_jaxsnn_peer.py --data DATA.npz --config '{...}' --duplication 5

References:
    Wunderlich and Pehle, Event-based backpropagation can compute exact gradients for spiking neural
    networks, arXiv 2009.08378.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from b3_jaxsnn import b3_worker_arguments, emit_b3_record, time_training
from jaxsnn.event.encode import spatio_temporal_encode, target_temporal_encode
from jaxsnn.event.loss import mse_loss
from jaxsnn.event.modules import LIF, Linear, Source
from jaxsnn.event.modules.lif.lif import LIFParameters
from jaxsnn.event.topology import Topology
from jaxsnn.event.training import update
from jaxsnn.event.types import OptState
from jaxsnn.examples.event.utils import loss_wrapper

US = 1e-6  # the driver's times are in microseconds; jaxsnn's example works in seconds


def main() -> None:
    args = b3_worker_arguments("jaxsnn EventProp", variant_flag="--duplication", variant_type=int,
                               variant_choices=(1, 5))
    cfg, dup = args.config, args.variant
    n_in = cfg["n_features"] + 1  # the bias spike at t = 0, as yinyang_dataset(bias_spike=0.0)
    tau_syn, tau_mem = cfg["tau_syn"] * US, cfg["tau_mem"] * US
    params = LIFParameters(v_reset=-1000.0, v_th=cfg["threshold"], tau_syn=tau_syn, tau_mem=tau_mem)

    data = np.load(args.data)
    coords = np.hstack([data["x"], np.full((len(data["x"]), 1), cfg["t_bias"] / cfg["t_late"], np.float32)])
    # spike time = t_late * value; the bias column is the bias spike's time over t_late (0: at t = 0)
    encode_inputs = jax.jit(jax.vmap(partial(spatio_temporal_encode, t_late=cfg["t_late"] * US,
                                             duplication=dup, duplicate_neurons=False)))
    encode_targets = jax.jit(jax.vmap(partial(target_temporal_encode, n_classes=cfg["n_classes"],
                                              correct_target_time=cfg["correct_target_time"] * US,
                                              wrong_target_time=cfg["wrong_target_time"] * US)))
    inputs = encode_inputs(jnp.asarray(coords))
    targets = encode_targets(jnp.asarray(data["y"]))

    (m1, s1), (m2, s2) = cfg["init"]
    builder = Topology(t_max=cfg["t_end"] * US, backprop_method="eventprop")
    builder.add({
        "inp": Source(n_in),
        "lif1": LIF(cfg["hidden"], cfg["hidden"] + n_in * dup, params),  # example: 100 + 25 event steps
        "lif2": LIF(cfg["n_classes"], cfg["hidden"] + cfg["n_classes"], params),  # example: 103
        "syn1": Linear(mean=m1 / dup, std=s1 / dup, min_delay=0.0),  # example: 3.0 / 5 and 1.6 / 5 per copy
        "syn2": Linear(mean=m2, std=s2, min_delay=0.0),
    })
    builder.connect([("inp", "syn1"), ("syn1", "lif1"), ("lif1", "syn2"), ("syn2", "lif2")])
    init_fn, apply_fn = builder.done()
    weights = init_fn(jax.random.PRNGKey(args.seed))

    steps_per_epoch = cfg["n_train"] // cfg["batch"]
    optimizer = optax.chain(optax.scale(1.0 / tau_syn), optax.clip(cfg["clip"]),
                            optax.adam(optax.exponential_decay(cfg["lr"], steps_per_epoch, cfg["lr_decay"])))
    loss_fn = partial(loss_wrapper, apply_fn, mse_loss, tau_mem, "lif2", cfg["n_classes"])
    update_fn = jax.jit(partial(update, optimizer, loss_fn))
    state = OptState(optimizer.init(weights), weights, jax.random.PRNGKey(args.seed))

    def make_batch(idx: np.ndarray):
        return ({"inp": jax.tree.map(lambda a: a[idx], inputs)}, targets[idx])

    @jax.jit
    def train_step(state, batch):
        state, ((loss, (t_first, _)), _) = update_fn(state, batch)
        correct = jnp.sum(jnp.argmin(t_first, axis=-1) == jnp.argmin(batch[1], axis=-1))
        return state, loss, correct

    timing = time_training(train_step, state, make_batch, args)
    emit_b3_record("jaxsnn", f"eventprop_dup{dup}", args, timing,
                   versions=["jaxsnn", "jax", "jaxlib", "optax"],
                   model={"neuron": "CuBa LIF, v_reset=-1000 (one spike per neuron)",
                          "event_steps": [cfg["hidden"] + n_in * dup, cfg["hidden"] + cfg["n_classes"]],
                          "input_events": n_in * dup, "loss": "jaxsnn.event.loss.mse_loss on first spike times",
                          "gradient": "EventProp (jaxsnn custom_vjp adjoint trajectory)",
                          "optimizer": "chain(scale(1/tau_syn), clip(0.01), adam(exponential_decay))",
                          "time_unit": "s"})


if __name__ == "__main__":
    main()
