"""Workload B1 with jsnn: one surrogate-gradient training step of a 784-hidden-10 LIF MLP.

The network is ``jsnn.mlp`` with LIF neurons (decay 0.9, threshold 1, subtractive reset,
fast-sigmoid surrogate slope 25, gradient through the reset as in the reference), spike
outputs, ``jsnn.losses.ce_count``, ``optax.adam(1e-3)``. ``jsnn.simulate`` runs the net
layer by layer, so each projection of all T steps is one matmul outside the scans.

    .venv/bin/python bench/b1_jsnn.py --T 25 --hidden 256 --batch 128
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from common import (
    DECAY,
    LEARNING_RATE,
    N_IN,
    N_OUT,
    SLOPE,
    THRESHOLD,
    b1_arguments,
    b1_batch,
    emit_b1_record,
    package_versions,
    time_steps,
)

import jsnn


def main(impl: str = "jsnn", compute_dtype: str | None = None) -> None:
    """Time B1 with jsnn; ``compute_dtype="bfloat16"`` runs the matmuls in mixed precision."""
    args = b1_arguments(impl)
    spikes_np, labels_np = b1_batch(args.T, args.batch, args.seed)
    spikes, labels = jnp.asarray(spikes_np), jnp.asarray(labels_np)
    neuron = jsnn.LIF(decay=DECAY, threshold=THRESHOLD, surrogate=jsnn.surrogate.FastSigmoid(SLOPE),
                      detach_reset=False)
    net = jsnn.mlp(N_IN, [args.hidden], N_OUT, neuron=neuron, readout=neuron, compute_dtype=compute_dtype,
                   key=jax.random.key(args.seed))
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(eqx.filter(net, eqx.is_inexact_array))

    def loss_fn(net, spikes, labels):
        out = jax.vmap(lambda x: jsnn.simulate(net, x), in_axes=1)(spikes)  # time-major batch
        return jnp.mean(jax.vmap(jsnn.losses.ce_count)(out, labels))

    @eqx.filter_jit
    def train_step(net, opt_state, spikes, labels):
        loss, grads = eqx.filter_value_and_grad(loss_fn)(net, spikes, labels)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(net, eqx.is_inexact_array))
        return eqx.apply_updates(net, updates), opt_state, loss

    losses = []

    def step(state):
        net, opt_state, _ = state
        return train_step(net, opt_state, spikes, labels)

    def block(state):
        state = jax.block_until_ready(state)
        losses.append(state[2])
        return state

    _, compile_s, warmup_s, times, cpu = time_steps(step, (net, opt_state, None), warmup=args.warmup, steps=args.steps,
                                               block=block)
    emit_b1_record(impl, args, compile_s=compile_s, warmup_s=warmup_s, times_s=times, cpu_s=cpu,
                   versions=package_versions(["jsnn", "jax", "jaxlib", "equinox", "optax"]),
                   device=jax.devices()[0].device_kind, loss_first=float(losses[0]), loss_last=float(losses[-1]))


if __name__ == "__main__":
    main()
