"""Workload B1, straightforward JAX: the baseline that jsnn must beat.

A plain, honest implementation of one surrogate-gradient training step of a
784-hidden-10 LIF MLP, written the way a JAX user would write it without a
library: one ``lax.scan`` over time with both matmuls inside the scan body, a
``jax.custom_vjp`` Heaviside whose backward pass is the fast-sigmoid derivative,
cross-entropy on the output spike counts, ``optax.adam`` and ``jax.jit``.

Dynamics per layer (shared/ALGORITHMS.md §0.2, leak_first, subtractive reset):

    v_t = 0.9 * v_{t-1} - 1.0 * s_{t-1} + W x_t + b
    s_t = H(v_t - 1.0),   dH/dx ~ 1 / (25 |x| + 1)^2

The gradient flows through the reset term as well (no stop_gradient).

Run in the main environment::

    .venv/bin/python bench/b1_reference.py --T 25 --hidden 256 --batch 128

It prints one JSON line (see ``bench/common.py``).

References:
    Zenke & Ganguli, SuperSpike: Supervised learning in multilayer spiking neural
    networks, arXiv 1705.11146 (the fast-sigmoid surrogate).
"""

from __future__ import annotations

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


@jax.custom_vjp
def spike(x: jax.Array) -> jax.Array:
    """Heaviside step ``1[x > 0]`` with the fast-sigmoid surrogate derivative."""
    return (x > 0).astype(x.dtype)


def _spike_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return spike(x), x


def _spike_bwd(x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return (g / (SLOPE * jnp.abs(x) + 1.0) ** 2,)


spike.defvjp(_spike_fwd, _spike_bwd)


def init_params(key: jax.Array, hidden: int) -> dict[str, jax.Array]:
    """PyTorch-style uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights and biases, float32."""
    keys = jax.random.split(key, 4)

    def uniform(k: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
        bound = fan_in**-0.5
        return jax.random.uniform(k, shape, jnp.float32, -bound, bound)

    return {
        "w1": uniform(keys[0], (hidden, N_IN), N_IN),
        "b1": uniform(keys[1], (hidden,), N_IN),
        "w2": uniform(keys[2], (N_OUT, hidden), hidden),
        "b2": uniform(keys[3], (N_OUT,), hidden),
    }


def spike_counts(params: dict[str, jax.Array], spikes: jax.Array) -> jax.Array:
    """Output spike counts ``(batch, 10)`` for time-major input spikes ``(T, batch, 784)``."""
    batch = spikes.shape[1]
    hidden = params["w1"].shape[0]

    def step(carry, x_t):
        v1, s1, v2, s2 = carry
        v1 = DECAY * v1 - THRESHOLD * s1 + x_t @ params["w1"].T + params["b1"]
        s1 = spike(v1 - THRESHOLD)
        v2 = DECAY * v2 - THRESHOLD * s2 + s1 @ params["w2"].T + params["b2"]
        s2 = spike(v2 - THRESHOLD)
        return (v1, s1, v2, s2), s2

    zeros_h = jnp.zeros((batch, hidden), jnp.float32)
    zeros_o = jnp.zeros((batch, N_OUT), jnp.float32)
    _, out = jax.lax.scan(step, (zeros_h, zeros_h, zeros_o, zeros_o), spikes)
    return out.sum(axis=0)


def loss_fn(params: dict[str, jax.Array], spikes: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of the output spike counts against integer labels."""
    counts = spike_counts(params, spikes)
    return optax.softmax_cross_entropy_with_integer_labels(counts, labels).mean()


optimizer = optax.adam(LEARNING_RATE)


@jax.jit
def train_step(params, opt_state, spikes, labels):
    """One step: forward over T, backward, Adam update. Returns (params, opt_state, loss)."""
    loss, grads = jax.value_and_grad(loss_fn)(params, spikes, labels)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def main() -> None:
    args = b1_arguments("reference")
    spikes_np, labels_np = b1_batch(args.T, args.batch, args.seed)
    spikes, labels = jnp.asarray(spikes_np), jnp.asarray(labels_np)
    params = init_params(jax.random.key(args.seed), args.hidden)
    opt_state = optimizer.init(params)

    losses = []

    def step(state):
        params, opt_state, _ = state
        return train_step(params, opt_state, spikes, labels)

    def block(state):
        state = jax.block_until_ready(state)
        losses.append(state[2])
        return state

    _, compile_s, warmup_s, times, cpu = time_steps(
        step, (params, opt_state, None), warmup=args.warmup, steps=args.steps, block=block
    )
    emit_b1_record(
        "reference",
        args,
        compile_s=compile_s,
        warmup_s=warmup_s,
        times_s=times, cpu_s=cpu,
        versions=package_versions(["jax", "jaxlib", "optax", "numpy"]),
        device=jax.devices()[0].device_kind,
        loss_first=float(losses[0]),
        loss_last=float(losses[-1]),
    )


if __name__ == "__main__":
    main()
