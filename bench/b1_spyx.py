"""Workload B1 in spyx 1.x (flax.nnx API): a peer for the speed comparison.

Written the way spyx's own documentation trains a network: a
``spyx.nn.Sequential`` of ``nnx.Linear`` and ``spyx.nn.LIF`` layers run over
time by ``spyx.nn.run`` (one ``lax.scan``), the SuperSpike surrogate
``spyx.axn.superspike(k=25)`` (its derivative 1/(1 + 25|x|)^2 is the fast
sigmoid's), ``spyx.fn.integral_crossentropy`` on the output spike counts with
label smoothing switched off, ``nnx.Optimizer`` with ``optax.adam`` and spyx's
own ``spyx.optimize.make_train_step`` (an ``nnx.jit`` step).

Differences from the reference that do not change the work per step:
spyx's LIF emits the spike of the potential *before* integrating the new
input (``s_t = H(v_{t-1} - 1)``, ``v_t = 0.9 v_{t-1} + x_t - s_t``), i.e. the
same recurrence read out one step later; ``beta=0.9`` is stored as a
(trainable, scalar) ``nnx.Param`` as spyx does; ``nnx.Linear`` uses LeCun-normal
weights and zero biases.

Run in the peer environment::

    .venv-peers/bin/python bench/b1_spyx.py --T 25 --hidden 256 --batch 128

It prints one JSON line (see ``bench/common.py``).

References:
    Heckel & Nowotny, Spyx: A library for just-in-time compiled optimization of
    spiking neural networks, arXiv 2402.18994.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import spyx
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
from flax import nnx


def build_model(hidden: int, seed: int) -> spyx.nn.Sequential:
    """784-hidden-10 MLP of spyx LIF neurons with the SuperSpike (fast-sigmoid) surrogate."""
    rngs = nnx.Rngs(seed)
    surrogate = spyx.axn.superspike(k=SLOPE)

    def lif(n: int) -> spyx.nn.LIF:
        return spyx.nn.LIF((n,), beta=DECAY, threshold=THRESHOLD, activation=surrogate, rngs=rngs)

    return spyx.nn.Sequential(
        nnx.Linear(N_IN, hidden, rngs=rngs),
        lif(hidden),
        nnx.Linear(hidden, N_OUT, rngs=rngs),
        lif(N_OUT),
    )


def main() -> None:
    args = b1_arguments("spyx")
    spikes_np, labels_np = b1_batch(args.T, args.batch, args.seed)
    spikes, labels = jnp.asarray(spikes_np), jnp.asarray(labels_np)

    model = build_model(args.hidden, args.seed)
    optimizer = nnx.Optimizer(model, optax.adam(LEARNING_RATE), wrt=nnx.Param)
    crossentropy = spyx.fn.integral_crossentropy(smoothing=0.0, time_axis=0)

    def loss_fn(model: spyx.nn.Sequential, x: jax.Array, y: jax.Array) -> jax.Array:
        out_spikes, _ = spyx.nn.run(model, x)  # time-major (T, batch, 10)
        return crossentropy(out_spikes, y)

    train_step = spyx.optimize.make_train_step(loss_fn)
    losses = []

    def step(_):
        return train_step(model, optimizer, spikes, labels)

    def block(loss):
        jax.block_until_ready((loss, nnx.state(model)))
        losses.append(loss)
        return loss

    _, compile_s, warmup_s, times, cpu = time_steps(step, None, warmup=args.warmup, steps=args.steps, block=block)
    emit_b1_record(
        "spyx",
        args,
        compile_s=compile_s,
        warmup_s=warmup_s,
        times_s=times, cpu_s=cpu,
        versions=package_versions(["spyx", "flax", "jax", "jaxlib", "optax", "numpy"]),
        device=jax.devices()[0].device_kind,
        loss_first=float(losses[0]),
        loss_last=float(losses[-1]),
    )


if __name__ == "__main__":
    main()
