"""ADMM training of spiking networks: the full iteration, its state, and the optax face.

The network trained here is an ordinary :class:`jsnn.nn.Sequential`: hidden layers are
``Linear`` + ``LIF(decay, threshold, reset="subtract", order="leak_first", cmp=">")`` and the
readout is ``Linear`` + ``LI(decay)``, predicting the argmax of the readout potential at the last
step. ADMM optimises the weights jointly with per-sample membrane potentials ``z``, relaxed spikes
``a`` and a multiplier on the readout constraint (ALGORITHMS §1), with the closed-form blocks of
:mod:`jsnn.optim.admm_blocks`.

Parameters (``params``) are a tuple with one dict per layer, ``{"weight": (out, in)}`` plus
``"bias": (out,)`` when biases are used: plain arrays that ``optax.apply_updates``, ``optax.chain``
and ``jax.vmap`` handle directly, and that :func:`to_sequential` turns into the network.

Per-sample state is held in chunks: every per-sample array has shape ``(C, B, T, d)`` (chunks,
samples per chunk, time, units), and every pass over the samples is a loop over chunks, so the
working memory of a pass is one chunk. Chunks are sharded across devices (``jax.shard_map`` over
the first axis of a mesh) and the Gram matrices and numerators of the weight solves are summed
with ``psum``: the consensus form that sample separability allows.

References:
  Perin, Bidini, Mazzieri, Rossi, "ADMM-based training for spiking neural networks",
  arXiv 2505.05527.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, ArrayLike

from jsnn.optim import admm_blocks as blk

__all__ = [
    "AdmmBatch",
    "AdmmOptions",
    "AdmmState",
    "StateLayout",
    "admm",
    "admm_metrics",
    "admm_step",
    "forward_state",
    "from_sequential",
    "init_params",
    "init_state",
    "make_batch",
    "to_sequential",
]

Params = tuple[dict[str, Array], ...]


# ----------------------------------------------------------------------------- containers


@dataclass(frozen=True)
class AdmmOptions:
    """Static choices of the iteration (hashable; pass as a static argument under ``jax.jit``).

    Attributes:
      sweep: how the hidden spikes and potentials are updated within a layer.
        ``"red_black"`` (default): spikes of all steps at once (exact), then potentials of even
        steps, then of odd steps (an exact block minimisation, vectorised).
        ``"jacobi"``: spikes and then potentials of all steps at once from the old neighbours
        (vectorised; the potential update is not a block minimiser).
        ``"gauss_seidel"``: the reference order, time-unrolled: for each step in ``time_order``,
        the spike update then the Heaviside update at that step.
      time_order: ``"sequential"`` (1..T) or ``"random"`` (a fresh permutation of 1..T-1 each
        iteration, then T), for the Gauss-Seidel sweeps.
      layer_order: ``"sequential"`` or ``"random"`` order of the hidden layers each iteration.
      readout: ``"exact"`` (default): one tridiagonal solve per unit minimises the whole readout
        block; ``"sweep"``: the per-step closed form with the hidden layers' ``sweep``.
      start: ``"state"`` (default) starts from the state as initialised; ``"forward"`` replaces the
        potentials and spikes by the forward simulation of the incoming weights at the first
        iteration (count 0), a consistent start from random weights (our addition; it improves the
        forward accuracy markedly, see bench/admm_accuracy.py).
    """

    sweep: Literal["red_black", "jacobi", "gauss_seidel"] = "red_black"
    time_order: Literal["sequential", "random"] = "sequential"
    layer_order: Literal["sequential", "random"] = "sequential"
    readout: Literal["exact", "sweep"] = "exact"
    start: Literal["state", "forward"] = "state"

    def __post_init__(self):
        for name, allowed in (("sweep", ("red_black", "jacobi", "gauss_seidel")),
                              ("time_order", ("sequential", "random")),
                              ("layer_order", ("sequential", "random")),
                              ("readout", ("exact", "sweep")),
                              ("start", ("state", "forward"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"AdmmOptions.{name} must be one of {allowed}; got {getattr(self, name)!r}.")


@dataclass(frozen=True)
class StateLayout:
    """How the per-sample state is laid out: sample count, steps, chunking and devices.

    Attributes:
      num_samples: N, the number of training samples (ADMM is full-batch).
      num_steps: T, time steps per sample.
      chunk_size: samples per chunk B (default: all in one chunk). Memory of a pass is one chunk.
      mesh: optional ``jax.sharding.Mesh``; chunks are sharded over its first axis. The number of
        chunks is padded up to a multiple of that axis' size with masked, all-zero samples.

    Example:
      >>> StateLayout(num_samples=10, num_steps=4, chunk_size=4).num_chunks
      3
    """

    num_samples: int
    num_steps: int
    chunk_size: int | None = None
    mesh: Mesh | None = None

    def __post_init__(self):
        if self.num_samples < 1 or self.num_steps < 1:
            raise ValueError(f"StateLayout needs num_samples >= 1 and num_steps >= 1; got "
                             f"{self.num_samples}, {self.num_steps}.")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of samples; got {self.chunk_size}.")

    @property
    def batch_size(self) -> int:
        """Samples per chunk."""
        return self.num_samples if self.chunk_size is None else min(self.chunk_size, self.num_samples)

    @property
    def num_shards(self) -> int:
        """Devices along the sharded axis (1 without a mesh)."""
        return 1 if self.mesh is None else int(self.mesh.shape[self.mesh.axis_names[0]])

    @property
    def num_chunks(self) -> int:
        """Chunks, padded to a multiple of the number of shards."""
        c = math.ceil(self.num_samples / self.batch_size)
        return math.ceil(c / self.num_shards) * self.num_shards


class AdmmBatch(NamedTuple):
    """The training data laid out in chunks (make it with :func:`make_batch`).

    Attributes:
      x: inputs ``(C, B, T, d_0)``, any real dtype (cast to the state dtype chunk by chunk).
      y: targets ``(C, B, d_L)`` in the state dtype (one-hot labels, or any real targets).
      mask: ``(C, B)``, 1 for real samples and 0 for padding.
      labels: integer labels ``(C, B)`` for the accuracy of the forward simulation (-1 for padding).
    """

    x: Array
    y: Array
    mask: Array
    labels: Array


class AdmmState(NamedTuple):
    """Per-sample ADMM variables (chunked) and iteration bookkeeping.

    Attributes:
      z: membrane potentials per layer (readout last), each ``(C, B, T, d_l)``.
      a: relaxed spikes per hidden layer, each ``(C, B, T, d_l)``.
      dual: multiplier on the readout constraint at t = T, ``(C, B, d_L)``.
      gram0: cached Gram matrix of the inputs (valid once ``gram0_ready``).
      gram0_ready: bool scalar.
      count: iterations done (int32 scalar).
      key: raw PRNG key data (uint32) for the random orders.
    """

    z: tuple[Array, ...]
    a: tuple[Array, ...]
    dual: Array
    gram0: Array
    gram0_ready: Array
    count: Array
    key: Array


class _Hyper(NamedTuple):
    rho: Array
    beta: Array
    decay: Array
    threshold: Array
    ridge: Array
    warmup: Array


# ----------------------------------------------------------------------------- params <-> network


def _all_zero(weight) -> bool:
    """Whether a concrete weight array is all zeros (False for traced values, which cannot be checked)."""
    return not isinstance(weight, jax.core.Tracer) and not bool(np.any(np.asarray(weight)))


def init_params(sizes: list[int], *, use_bias: bool = False, dtype=jnp.float32) -> Params:
    """Zero weights for layer widths ``[d_0, d_1, ..., d_L]`` (ADMM overwrites them in its first iteration).

    For ``admm(..., init="uniform" or "zeros")``; ``init="forward"`` needs random weights
    (:func:`jsnn.optim.calibrated_params`).

    Example:
      >>> p = init_params([5, 4, 2])
      >>> [layer["weight"].shape for layer in p]
      [(4, 5), (2, 4)]
    """
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list at least an input and an output width, all positive; got {sizes}.")
    params = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        layer = {"weight": jnp.zeros((d_out, d_in), dtype)}
        if use_bias:
            layer["bias"] = jnp.zeros((d_out,), dtype)
        params.append(layer)
    return tuple(params)


def to_sequential(params: Params, *, decay: ArrayLike = 0.95, threshold: ArrayLike = 1.0):
    """The jsnn network that ADMM's parameters define (ALGORITHMS §1.2).

    Hidden layers: ``Linear`` + ``LIF(decay, threshold, reset="subtract", order="leak_first", cmp=">")``;
    readout: ``Linear`` + ``LI(decay)``. Predict with ``jsnn.simulate.simulate(net, x)[-1].argmax()``.

    Example:
      >>> net = to_sequential(init_params([5, 4, 2]))
      >>> len(net.layers)
      4
    """
    from jsnn.neurons import LI, LIF
    from jsnn.nn import Linear, Sequential

    layers = []
    for l, p in enumerate(params):
        w = p["weight"]
        lin = Linear(w.shape[1], w.shape[0], use_bias="bias" in p, dtype=w.dtype, key=jax.random.key(0))
        lin = _replace_linear(lin, w, p.get("bias"))
        layers.append(lin)
        if l < len(params) - 1:
            layers.append(LIF(decay=decay, threshold=threshold, reset="subtract", order="leak_first", cmp=">"))
        else:
            layers.append(LI(decay=decay))
    return Sequential(layers)


def _replace_linear(lin, weight, bias):
    import equinox as eqx

    lin = eqx.tree_at(lambda m: m.weight, lin, weight)
    if bias is not None:
        lin = eqx.tree_at(lambda m: m.bias, lin, bias)
    return lin


def from_sequential(net) -> Params:
    """ADMM parameters from a network of :func:`to_sequential`'s form (its ``Linear`` layers).

    Example:
      >>> p = from_sequential(to_sequential(init_params([5, 4, 2])))
      >>> [layer["weight"].shape for layer in p]
      [(4, 5), (2, 4)]
    """
    from jsnn.nn import Linear

    params = []
    for layer in net.layers:
        if isinstance(layer, Linear):
            entry = {"weight": layer.weight}
            if layer.bias is not None:
                entry["bias"] = layer.bias
            params.append(entry)
    if not params:
        raise ValueError("the network has no Linear layers; ADMM trains Linear + LIF ... Linear + LI nets.")
    return tuple(params)


# ----------------------------------------------------------------------------- data and state


def make_batch(x, labels, layout: StateLayout, *, targets=None, dtype=jnp.float32) -> AdmmBatch:
    """Lay out training data in chunks (host-side numpy; pads with masked zero samples).

    Args:
      x: inputs ``(N, T, d_0)`` of any real dtype (keep spikes as bool/uint8 to save memory).
      labels: integer class labels ``(N,)``.
      layout: the state layout (N and T must match).
      targets: optional real targets ``(N, d_L)``; default one-hot labels with
        ``d_L = labels.max() + 1`` (pass them explicitly when the highest class may be absent).
      dtype: the state dtype (targets are cast to it).

    Returns:
      An :class:`AdmmBatch`.

    Raises:
      ValueError: for shapes that disagree with each other or with the layout, or NaNs.

    Example:
      >>> import numpy as np
      >>> b = make_batch(np.zeros((5, 3, 2)), np.array([0, 1, 0, 1, 1]),
      ...                StateLayout(num_samples=5, num_steps=3, chunk_size=2))
      >>> b.x.shape, b.y.shape, b.mask.sum().item()
      ((3, 2, 3, 2), (3, 2, 2), 5.0)
    """
    x = np.asarray(x)
    labels = np.asarray(labels)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (samples, time, features); got {x.shape}. "
                         "Encode static data over time first (e.g. jsnn.encode.direct).")
    n, t = x.shape[:2]
    if (n, t) != (layout.num_samples, layout.num_steps):
        raise ValueError(f"x has {n} samples of {t} steps but the layout says {layout.num_samples} samples "
                         f"of {layout.num_steps} steps; build the layout from the data.")
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({n},); got {labels.dtype} {labels.shape}.")
    if n and labels.min() < 0:
        raise ValueError(f"labels must be class indices >= 0; got {labels.min()}.")
    if targets is not None and n and labels.max() >= np.shape(targets)[-1]:
        raise ValueError(f"label {labels.max()} is outside the {np.shape(targets)[-1]} classes of the targets.")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise ValueError("x contains NaN or infinity; clean the inputs first.")
    if targets is None:
        targets = np.eye(int(labels.max()) + 1)[labels]
    targets = np.asarray(targets)
    if targets.ndim != 2 or targets.shape[0] != n:
        raise ValueError(f"targets must have shape ({n}, outputs); got {targets.shape}.")
    c, b = layout.num_chunks, layout.batch_size
    pad = c * b - n

    def chunked(v, fill=0):
        v = np.concatenate([v, np.full((pad,) + v.shape[1:], fill, v.dtype)]) if pad else v
        return jnp.asarray(v.reshape((c, b) + v.shape[1:]))

    mask = np.ones(n, jnp.dtype(dtype))
    return AdmmBatch(x=chunked(x), y=chunked(targets.astype(jnp.dtype(dtype))), mask=chunked(mask),
                     labels=chunked(labels.astype(np.int32), fill=-1))


def init_state(params: Params, layout: StateLayout, *, seed: ArrayLike = 0,
               init: Literal["uniform", "zeros"] = "uniform") -> AdmmState:
    """Initial state: z and a i.i.d. U[0, 1) (or zeros), multiplier 0 (ALGORITHMS §1.5).

    Example:
      >>> s = init_state(init_params([5, 4, 2]), StateLayout(num_samples=3, num_steps=4))
      >>> [z.shape for z in s.z], s.dual.shape
      ([(1, 3, 4, 4), (1, 3, 4, 2)], (1, 3, 2))
    """
    if init not in ("uniform", "zeros"):
        raise ValueError(f"init must be 'uniform' or 'zeros'; got {init!r}.")
    dtype = params[0]["weight"].dtype
    widths = [p["weight"].shape[0] for p in params]
    k0 = params[0]["weight"].shape[1] + ("bias" in params[0])
    c, b, t = layout.num_chunks, layout.batch_size, layout.num_steps
    key = jax.random.PRNGKey(seed)
    keys = jax.random.split(key, 2 * len(widths) + 1)

    def draw(k, d):
        if init == "zeros":
            return jnp.zeros((c, b, t, d), dtype)
        return jax.random.uniform(k, (c, b, t, d), dtype)

    z = tuple(draw(keys[i], d) for i, d in enumerate(widths))
    a = tuple(draw(keys[len(widths) + i], d) for i, d in enumerate(widths[:-1]))
    return AdmmState(z=z, a=a, dual=jnp.zeros((c, b, widths[-1]), dtype), gram0=jnp.zeros((k0, k0), dtype),
                     gram0_ready=jnp.zeros((), bool), count=jnp.zeros((), jnp.int32), key=keys[-1])


def forward_state(params: Params, state: AdmmState, batch: AdmmBatch, *, decay: ArrayLike = 0.95,
                  threshold: ArrayLike = 1.0) -> AdmmState:
    """Replace the potentials and spikes of ``state`` by the forward simulation of ``params``.

    A consistent start (zero membrane and activation residuals, binary spikes): with random
    initial weights this is the ``init="forward"`` start of :func:`admm`. The multiplier is kept.

    Example:
      >>> import numpy as np, jax
      >>> layout = StateLayout(num_samples=2, num_steps=3)
      >>> batch = make_batch(np.ones((2, 3, 5), np.float32), np.array([0, 1]), layout)
      >>> params = init_params([5, 4, 2])
      >>> s = forward_state(params, init_state(params, layout), batch)
      >>> float(s.a[0].sum())
      0.0
    """
    from jsnn.simulate import simulate

    dtype = state.dual.dtype
    net = to_sequential(params, decay=decay, threshold=threshold)
    n_hidden = len(params) - 1

    def chunk(x):
        _, traces = jax.vmap(lambda xi: simulate(net, xi, record=True))(x.astype(dtype))
        ordered = [traces[i] for i in net.neuron_layers]
        return tuple(tr.v for tr in ordered), tuple(tr.spikes for tr in ordered[:n_hidden])

    z, a = jax.lax.map(chunk, batch.x)
    return state._replace(z=z, a=a)


# ----------------------------------------------------------------------------- the iteration


def _weights(params: Params):
    return [(p["weight"], p.get("bias")) for p in params]


def _psum(x, axis_name):
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def _chunk_sum(fn, num_chunks: int, init):
    """sum_c fn(c) over chunks, as a loop (one chunk in memory at a time)."""
    if num_chunks == 1:
        return jax.tree.map(jnp.add, init, fn(0))
    return jax.lax.fori_loop(0, num_chunks, lambda c, acc: jax.tree.map(jnp.add, acc, fn(c)), init)


def _chunk_map(fn, num_chunks: int, arrays):
    """arrays[c] <- fn(c, arrays[c]) for every chunk, updating in place inside the loop."""

    def body(c, arrs):
        new = fn(c, tuple(a[c] for a in arrs))
        return tuple(jax.lax.dynamic_update_index_in_dim(a, v, c, 0) for a, v in zip(arrs, new))

    if num_chunks == 1:
        return body(0, tuple(arrays))

    return jax.lax.fori_loop(0, num_chunks, body, tuple(arrays))


def _time_order(key, num_steps: int, options: AdmmOptions):
    if options.time_order == "random" and num_steps > 1:
        return jnp.concatenate([jax.random.permutation(key, num_steps - 1), jnp.array([num_steps - 1])])
    return jnp.arange(num_steps)


def _pad_time(x):
    return jnp.pad(x, [(0, 0), (1, 1), (0, 0)])


def _hidden_gauss_seidel(z, a, cur, fixed, inv_inner, inv_last, order, hyper: _Hyper):
    """Time-unrolled sweep of one hidden layer (one chunk): for t in order, U2 then U3 at t."""
    num_steps = z.shape[1]
    kw = dict(rho=hyper.rho, beta=hyper.beta, decay=hyper.decay, threshold=hyper.threshold)
    cp = _pad_time(cur)

    def body(k, carry):
        zp, ap = carry
        t = order[k]
        last = t == num_steps - 1
        z_t, z_next, c_next = zp[:, t + 1], zp[:, t + 2], cp[:, t + 2]
        rhs = blk.spike_rhs(fixed[:, t], z_t, z_next, c_next, last, **kw)
        a_t = jnp.clip(jax.lax.cond(last, lambda r: r @ inv_last, lambda r: r @ inv_inner, rhs), 0, 1)
        z_new = blk.hidden_membrane_step(cp[:, t + 1], c_next, zp[:, t], z_next, a_t, ap[:, t], last, **kw)
        return zp.at[:, t + 1].set(z_new), ap.at[:, t + 1].set(a_t)

    zp, ap = jax.lax.fori_loop(0, num_steps, body, (_pad_time(z), _pad_time(a)))
    return zp[:, 1:-1], ap[:, 1:-1]


def _readout_gauss_seidel(z, cur, y, dual, order, hyper: _Hyper):
    num_steps = z.shape[1]
    cp = _pad_time(cur)

    def body(k, zp):
        t = order[k]
        z_new = blk.readout_membrane_step(cp[:, t + 1], zp[:, t], zp[:, t + 2], cp[:, t + 2], y, dual,
                                          t == num_steps - 1, t == num_steps - 2, rho=hyper.rho, decay=hyper.decay)
        return zp.at[:, t + 1].set(z_new)

    return jax.lax.fori_loop(0, num_steps, body, _pad_time(z))[:, 1:-1]


def _step_local(params: Params, state: AdmmState, batch: AdmmBatch, hyper: _Hyper, *, options: AdmmOptions,
                axis_name):
    """One ADMM iteration on this device's chunks; weight statistics are psum-ed over ``axis_name``."""
    dtype = state.dual.dtype
    if options.start == "forward":
        state = jax.lax.cond(state.count == 0,
                             lambda s: forward_state(params, s, batch, decay=hyper.decay, threshold=hyper.threshold),
                             lambda s: s, state)
    weights = _weights(params)
    n_layers = len(weights)
    n_hidden = n_layers - 1
    use_bias = "bias" in params[0]
    num_chunks = batch.x.shape[0]
    key = state.key
    key, k_layers, k_time = jax.random.split(key, 3)
    order = _time_order(k_time, batch.x.shape[2], options)
    kw = dict(decay=hyper.decay, threshold=hyper.threshold)
    z, a = list(state.z), list(state.a)

    def x_at(c):
        return batch.x[c].astype(dtype)

    def inputs_at(l, c, a):
        return x_at(c) if l == 0 else a[l - 1][c]

    # U1: hidden weights from sums over samples and time of numerators and Grams.
    gram0 = jax.lax.cond(
        state.gram0_ready, lambda: state.gram0,
        lambda: _psum(_chunk_sum(lambda c: blk.input_gram(x_at(c), use_bias=use_bias, mask=batch.mask[c]),
                                 num_chunks, jnp.zeros_like(state.gram0)), axis_name))

    def hidden_stats(c):
        out = []
        for l in range(n_hidden):
            targets = blk.membrane_targets(z[l][c], a[l][c], **kw)
            num, gram = blk.weight_statistics(targets, inputs_at(l, c, a), use_bias=use_bias, mask=batch.mask[c])
            out.append((num, gram) if l > 0 else (num, jnp.zeros((0,), dtype)))
        return out

    init = [(jnp.zeros((w.shape[0], w.shape[1] + use_bias), dtype),
             jnp.zeros((w.shape[1] + use_bias,) * 2, dtype) if l > 0 else jnp.zeros((0,), dtype))
            for l, (w, _) in enumerate(weights[:n_hidden])]
    stats = _psum(_chunk_sum(hidden_stats, num_chunks, init), axis_name)
    for l in range(n_hidden):
        num, gram = stats[l]
        weights[l] = blk.solve_weights(num, gram0 if l == 0 else gram, ridge=hyper.ridge, use_bias=use_bias)

    # U2 + U3 per hidden layer.
    s_inner, s_last = blk.spike_shifts(rho=hyper.rho, beta=hyper.beta, threshold=hyper.threshold, dtype=dtype)
    hyper_kw = dict(rho=hyper.rho, beta=hyper.beta, **kw)

    def sweep_layer(l, z, a):
        w, b = weights[l]
        w_up, b_up = weights[l + 1]
        inv_inner, inv_last = blk.spike_system(w_up, s_inner), blk.spike_system(w_up, s_last)
        up_is_readout = l + 1 == n_hidden

        def chunk(c, arrs):
            z_c, a_c = arrs
            cur = blk.currents(inputs_at(l, c, a), w, b)
            fixed = blk.spike_rhs_fixed(z[l + 1][c], None if up_is_readout else a[l + 1][c], w_up, b_up,
                                        state.dual[c] if up_is_readout else None, rho=hyper.rho, **kw)
            if options.sweep == "gauss_seidel":
                return _hidden_gauss_seidel(z_c, a_c, cur, fixed, inv_inner, inv_last, order, hyper)
            rhs = blk.spike_rhs(fixed, z_c, blk.shift_next(z_c), blk.shift_next(cur), blk.last_step_mask(z_c.shape[1]),
                                **hyper_kw)
            a_c = jnp.clip(jnp.concatenate([rhs[:, :-1] @ inv_inner, rhs[:, -1:] @ inv_last], axis=1), 0, 1)
            z_c = blk.hidden_membrane_update(z_c, a_c, cur, sweep=options.sweep, **hyper_kw)
            return z_c, a_c

        z_l, a_l = _chunk_map(chunk, num_chunks, (z[l], a[l]))
        z, a = list(z), list(a)
        z[l], a[l] = z_l, a_l
        return tuple(z), tuple(a)

    za = (tuple(z), tuple(a))
    if options.layer_order == "random" and n_hidden > 1:
        perm = jax.random.permutation(k_layers, n_hidden)
        branches = [partial(lambda l, za: sweep_layer(l, *za), l) for l in range(n_hidden)]
        for k in range(n_hidden):
            za = jax.lax.switch(perm[k], branches, za)
    else:
        for l in range(n_hidden):
            za = sweep_layer(l, *za)
    z, a = list(za[0]), list(za[1])

    # U4: readout weights, with the multiplier term.
    decay = hyper.decay

    def readout_stats(c):
        a_prev = a[-1][c]
        targets = blk.membrane_targets(z[-1][c], None, decay=decay, threshold=0.0)
        num, gram = blk.weight_statistics(targets, a_prev, use_bias=use_bias, mask=batch.mask[c])
        dual_c = state.dual[c] * batch.mask[c][:, None]
        return num + blk.readout_dual_numerator(dual_c, a_prev[:, -1], rho=hyper.rho, use_bias=use_bias), gram

    k_l = weights[-1][0].shape[1] + use_bias
    init = (jnp.zeros((weights[-1][0].shape[0], k_l), dtype), jnp.zeros((k_l, k_l), dtype))
    num, gram = _psum(_chunk_sum(readout_stats, num_chunks, init), axis_name)
    weights[-1] = blk.solve_weights(num, gram, ridge=hyper.ridge, use_bias=use_bias)

    # U5 + U6: readout potentials, then the multiplier (after the warm-up).
    w_l, b_l = weights[-1]
    dual_on = (state.count >= hyper.warmup).astype(dtype)

    def readout_chunk(c, arrs):
        z_c, dual_c = arrs
        cur = blk.currents(a[-1][c], w_l, b_l)
        if options.readout == "sweep" and options.sweep == "gauss_seidel":
            z_c = _readout_gauss_seidel(z_c, cur, batch.y[c], dual_c, order, hyper)
        else:
            sweep = "exact" if options.readout == "exact" else options.sweep
            z_c = blk.readout_membrane_update(z_c, cur, batch.y[c], dual_c, rho=hyper.rho, decay=decay, sweep=sweep)
        new_dual = blk.dual_update(dual_c, z_c, cur, rho=hyper.rho, decay=decay)
        return z_c, dual_c + dual_on * (new_dual - dual_c)

    z[-1], dual = _chunk_map(readout_chunk, num_chunks, (z[-1], state.dual))

    new_params = tuple({"weight": w} if b is None else {"weight": w, "bias": b} for w, b in weights)
    new_state = AdmmState(z=tuple(z), a=tuple(a), dual=dual, gram0=gram0, gram0_ready=jnp.ones((), bool),
                          count=state.count + 1, key=key)
    return new_params, new_state


def _state_specs(state: AdmmState, axis):
    return AdmmState(z=tuple(P(axis) for _ in state.z), a=tuple(P(axis) for _ in state.a), dual=P(axis),
                     gram0=P(), gram0_ready=P(), count=P(), key=P())


def _spmd(fn, mesh: Mesh | None, params, state, batch, *rest):
    """Run ``fn(params, state, batch, *rest, axis_name=...)`` on one device or sharded over ``mesh``."""
    if mesh is None:
        return fn(params, state, batch, *rest, axis_name=None)
    axis = mesh.axis_names[0]
    batch_spec = AdmmBatch(P(axis), P(axis), P(axis), P(axis))
    rest_specs = tuple(jax.tree.map(lambda _: P(), r) for r in rest)
    in_specs = (jax.tree.map(lambda _: P(), params), _state_specs(state, axis), batch_spec, *rest_specs)
    out_specs = (jax.tree.map(lambda _: P(), params), _state_specs(state, axis))
    args = _placed(mesh, (params, state, batch, *rest), in_specs)
    return jax.shard_map(partial(fn, axis_name=axis), mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                         check_vma=False)(*args)


def _placed(mesh: Mesh, tree, specs):
    """Reshard every array of ``tree`` to its spec on ``mesh`` (a no-op where it already lives there)."""
    return jax.tree.map(lambda spec, v: jax.reshard(v, NamedSharding(mesh, spec)), specs, tree,
                        is_leaf=lambda v: isinstance(v, P))


def _check_penalties(rho, beta) -> None:
    blk.check_hyperparameter("rho", rho)
    blk.check_hyperparameter("beta", beta)


def _check(params: Params, state: AdmmState, batch: AdmmBatch):
    """Shape and dtype checks at the boundary (shapes are static, so this runs at trace time)."""
    if not isinstance(params, tuple | list) or not params or not all(isinstance(p, dict) and "weight" in p
                                                                     for p in params):
        raise TypeError("params must be a tuple of dicts {'weight': (out, in)[, 'bias': (out,)]}, one per layer; "
                        "make them with jsnn.optim.init_params or from_sequential.")
    if len(params) < 2:
        raise ValueError("ADMM needs at least one hidden layer and a readout (two weight matrices).")
    dtype = state.dual.dtype
    for l, p in enumerate(params):
        if p["weight"].dtype != dtype:
            raise TypeError(f"layer {l} weights are {p['weight'].dtype} but the ADMM state is {dtype}; "
                            "initialise the state from these params (init_state) or cast them.")
    if len(state.z) != len(params) or len(state.a) != len(params) - 1:
        raise ValueError(f"the state holds {len(state.z)} layers but params have {len(params)}; "
                         "initialise the state from these params.")
    c, b, t = state.z[0].shape[:3]
    if batch.x.shape[:3] != (c, b, t):
        raise ValueError(f"batch.x has chunks/samples/steps {batch.x.shape[:3]} but the state has {(c, b, t)}; "
                         "build both from the same StateLayout (make_batch, init_state).")
    if batch.x.shape[3] != params[0]["weight"].shape[1]:
        raise ValueError(f"inputs have {batch.x.shape[3]} features but the first layer takes "
                         f"{params[0]['weight'].shape[1]}.")
    if batch.y.shape != state.dual.shape or batch.y.dtype != dtype:
        raise ValueError(f"batch.y must be {dtype} of shape {state.dual.shape}; got {batch.y.dtype} {batch.y.shape}.")


def admm_step(
    params: Params, state: AdmmState, batch: AdmmBatch, *, rho: ArrayLike = 1.0, beta: ArrayLike = 0.1,
    decay: ArrayLike = 0.95, threshold: ArrayLike = 1.0, warmup: ArrayLike = 300, ridge: ArrayLike = 1e-6,
    options: AdmmOptions = AdmmOptions(), mesh: Mesh | None = None,
) -> tuple[Params, AdmmState]:
    """One full ADMM iteration in the documented order (ALGORITHMS §1.5).

    U1 (hidden weights, first-layer Gram cached) -> for each hidden layer: U2 (spikes) and U3
    (potentials, exact Heaviside subroutine) -> U4 (readout weights) -> U5 (readout potentials)
    -> U6 (multiplier, skipped while ``count < warmup``). Any number of hidden layers.

    Args:
      params: one dict per layer (see the module docstring).
      state: from :func:`init_state`.
      batch: from :func:`make_batch`; the same data at every call (ADMM is full-batch).
      rho: penalty of the membrane constraints.
      beta: penalty of the activation constraint (> 0).
      decay, threshold: the neurons' leak and threshold.
      warmup: iterations without multiplier updates.
      ridge: relative ridge of the weight solves.
      options: static sweep and order choices (:class:`AdmmOptions`).
      mesh: optional mesh; the per-sample state is sharded over its first axis and the weight
        statistics are summed with ``psum``. ``None`` runs on one device.

    Returns:
      ``(new_params, new_state)``.

    Raises:
      TypeError, ValueError: for params, state and batch that do not fit together, or a concrete
        ``rho`` or ``beta`` that is not positive and finite (traced values are the caller's contract:
        ``beta = 0`` makes the spike system singular and the weights NaN).

    References:
      Perin, Bidini, Mazzieri, Rossi, "ADMM-based training for spiking neural networks",
      arXiv 2505.05527.

    Example:
      >>> import numpy as np, jax
      >>> layout = StateLayout(num_samples=4, num_steps=3)
      >>> x = np.random.default_rng(0).random((4, 3, 5)).astype(np.float32)
      >>> batch = make_batch(x, np.array([0, 1, 0, 1]), layout)
      >>> params = init_params([5, 4, 2])
      >>> state = init_state(params, layout)
      >>> params, state = jax.jit(admm_step, static_argnames="options")(params, state, batch)
      >>> params[0]["weight"].shape, int(state.count)
      ((4, 5), 1)
    """
    _check(params, state, batch)
    _check_penalties(rho, beta)
    dtype = state.dual.dtype
    hyper = _Hyper(*(jnp.asarray(v, dtype) for v in (rho, beta, decay, threshold, ridge)),
                   warmup=jnp.asarray(warmup, jnp.int32))
    return _spmd(partial(_step_local, options=options), mesh, params, state, batch, hyper)


# ----------------------------------------------------------------------------- monitoring


def _metrics_local(params: Params, state: AdmmState, batch: AdmmBatch, hyper: _Hyper, *, axis_name):
    from jsnn.simulate import simulate

    dtype = state.dual.dtype
    weights = _weights(params)
    net = to_sequential(params, decay=hyper.decay, threshold=hyper.threshold)
    n_hidden = len(weights) - 1
    hidden_idx = net.neuron_layers[:-1]

    def chunk(c):
        x = batch.x[c].astype(dtype)
        m = batch.mask[c]
        z_c = [zz[c] for zz in state.z]
        a_c = [aa[c] for aa in state.a]
        parts = blk.augmented_lagrangian(weights, z_c, a_c, state.dual[c], x, batch.y[c], rho=hyper.rho,
                                         beta=hyper.beta, decay=hyper.decay, threshold=hyper.threshold, mask=m)
        out, traces = jax.vmap(lambda xi: simulate(net, xi, record=True))(x)
        pred = jnp.argmax(out[:, -1], axis=-1).astype(batch.labels.dtype)
        correct = jnp.sum((pred == batch.labels[c]).astype(dtype) * m)
        disagree = [jnp.sum(jnp.abs((a_c[l] > 0.5).astype(dtype) - traces[hidden_idx[l]].spikes)
                            * m[:, None, None]) for l in range(n_hidden)]
        return dict(lagrangian=parts["lagrangian"], loss=parts["loss"], primal=parts["primal"], cz=parts["cz"],
                    ca=parts["ca"], correct=correct, disagree=disagree, count=jnp.sum(m))

    zero = jnp.zeros((), dtype)
    init = dict(lagrangian=zero, loss=zero, primal=zero, cz=[zero] * len(weights), ca=[zero] * n_hidden,
                correct=zero, disagree=[zero] * n_hidden, count=zero)
    return _psum(_chunk_sum(chunk, batch.x.shape[0], init), axis_name)


@partial(jax.jit, static_argnames="mesh")
def _metric_sums(params, state, batch, hyper, *, mesh):
    if mesh is None:
        return _metrics_local(params, state, batch, hyper, axis_name=None)
    axis = mesh.axis_names[0]
    in_specs = (jax.tree.map(lambda _: P(), params), _state_specs(state, axis),
                AdmmBatch(P(axis), P(axis), P(axis), P(axis)), jax.tree.map(lambda _: P(), hyper))
    return jax.shard_map(partial(_metrics_local, axis_name=axis), mesh=mesh, in_specs=in_specs, out_specs=P(),
                         check_vma=False)(*_placed(mesh, (params, state, batch, hyper), in_specs))


def admm_metrics(
    params: Params, state: AdmmState, batch: AdmmBatch, *, rho: ArrayLike = 1.0, beta: ArrayLike = 0.1,
    decay: ArrayLike = 0.95, threshold: ArrayLike = 1.0, mesh: Mesh | None = None,
) -> dict[str, Any]:
    """Monitoring values of the current iterate (ALGORITHMS §1.5), as Python floats.

    Returns a dict with ``loss`` (mean over samples of ``||z_{L,T} - y||^2``), ``lagrangian``
    (L_rho, summed over samples), ``primal_residual`` (``||C^z_{L,T}|| / sqrt(N d_L)``),
    ``rms_cz`` and ``rms_ca`` (per layer), ``train_accuracy`` of the forward simulation with the
    current weights, and ``spike_disagreement`` per hidden layer (fraction of ``1[a > 1/2]`` that
    differs from the forward simulation's spikes).

    Example:
      >>> import numpy as np
      >>> layout = StateLayout(num_samples=2, num_steps=3)
      >>> batch = make_batch(np.ones((2, 3, 5), np.float32), np.array([0, 1]), layout)
      >>> params = init_params([5, 4, 2])
      >>> m = admm_metrics(params, init_state(params, layout), batch)
      >>> sorted(m)[:3]
      ['lagrangian', 'loss', 'primal_residual']
    """
    _check(params, state, batch)
    dtype = state.dual.dtype
    hyper = _Hyper(*(jnp.asarray(v, dtype) for v in (rho, beta, decay, threshold, 0.0)),
                   warmup=jnp.zeros((), jnp.int32))
    sums = jax.device_get(_metric_sums(params, state, batch, hyper, mesh=mesh))
    n = float(sums["count"])
    t = state.z[0].shape[2]
    widths = [p["weight"].shape[0] for p in params]
    return {
        "loss": float(sums["loss"]) / n,
        "lagrangian": float(sums["lagrangian"]),
        "primal_residual": math.sqrt(float(sums["primal"]) / (n * widths[-1])),
        "rms_cz": [math.sqrt(float(v) / (n * t * d)) for v, d in zip(sums["cz"], widths)],
        "rms_ca": [math.sqrt(float(v) / (n * t * d)) for v, d in zip(sums["ca"], widths[:-1])],
        "train_accuracy": float(sums["correct"]) / n,
        "spike_disagreement": [float(v) / (n * t * d) for v, d in zip(sums["disagree"], widths[:-1])],
    }


# ----------------------------------------------------------------------------- the optax face


def admm(
    rho: float = 1.0,
    beta: float = 0.1,
    *,
    layout: StateLayout,
    decay: float = 0.95,
    threshold: float = 1.0,
    warmup: int = 300,
    ridge: float = 1e-6,
    seed: int = 0,
    options: AdmmOptions = AdmmOptions(),
    init: Literal["uniform", "zeros", "forward"] = "uniform",
) -> optax.GradientTransformationExtraArgs:
    """ADMM with closed-form block updates as an optax transformation.

    ``update(updates, state, params, *, batch)`` ignores the incoming ``updates`` (ADMM needs no
    gradients), runs one :func:`admm_step` and returns ``new_params - params`` as the updates, so
    ``optax.apply_updates(params, updates)`` gives the ADMM weights. It composes with
    ``optax.chain`` (e.g. ``optax.ema`` or a clip after it, which then damp the weight step) and
    with ``optax.inject_hyperparams``: ``rho``, ``beta``, ``decay``, ``threshold``, ``ridge``,
    ``warmup`` and ``seed`` are numeric and may be traced and vmapped, while ``layout``,
    ``options`` and ``init`` are static.

    Args:
      rho: penalty of the membrane constraints.
      beta: penalty of the activation constraint.
      layout: N, T, chunking and optional mesh of the per-sample state.
      decay, threshold: neuron constants.
      warmup: iterations without multiplier updates.
      ridge: relative ridge of the weight solves.
      seed: seed of the state initialisation and the random orders.
      options: sweep and order choices.
      init: ``"uniform"`` (U[0,1) potentials and spikes), ``"zeros"``, or ``"forward"`` (the forward
        simulation of the params at the first update; give random, not zero, initial weights, e.g.
        :func:`jsnn.optim.calibrated_params`: ``init`` refuses all-zero hidden weights).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Raises:
      ValueError: for a concrete ``rho`` or ``beta`` that is not positive and finite.

    References:
      Perin, Bidini, Mazzieri, Rossi, "ADMM-based training for spiking neural networks",
      arXiv 2505.05527.

    Example:
      >>> import numpy as np, jax, optax
      >>> layout = StateLayout(num_samples=4, num_steps=3)
      >>> x = np.random.default_rng(0).random((4, 3, 5)).astype(np.float32)
      >>> batch = make_batch(x, np.array([0, 1, 0, 1]), layout)
      >>> params = init_params([5, 4, 2])
      >>> opt = optax.chain(admm(1.0, 0.1, layout=layout, warmup=2), optax.ema(0.5))
      >>> opt_state = opt.init(params)
      >>> update = jax.jit(lambda p, s: opt.update(p, s, p, batch=batch))
      >>> updates, opt_state = update(params, opt_state)
      >>> params = optax.apply_updates(params, updates)
      >>> params[1]["weight"].shape
      (2, 4)
    """
    _check_penalties(rho, beta)
    mesh = layout.mesh
    if init == "forward":
        options = replace(options, start="forward")

    def init_fn(params):
        if init == "forward" and any(_all_zero(layer["weight"]) for layer in params[:-1]):
            raise ValueError("init='forward' starts from the forward simulation of params, and a hidden layer with "
                             "all-zero weights never spikes, so ADMM would stay at zero weights; start from random "
                             "weights (jsnn.optim.calibrated_params) or use init='uniform'.")
        return init_state(params, layout, seed=seed, init="zeros" if init == "forward" else init)

    def update_fn(updates, state, params=None, *, batch: AdmmBatch, **extra):
        del updates, extra
        if params is None:
            raise ValueError("jsnn.optim.admm needs params: call update(updates, state, params, batch=batch).")
        new_params, state = admm_step(params, state, batch, rho=rho, beta=beta, decay=decay, threshold=threshold,
                                      warmup=warmup, ridge=ridge, options=options, mesh=mesh)
        return jax.tree.map(jnp.subtract, new_params, params), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
