"""The bit-exact integer simulator of lowered tables (ALGORITHMS §5.4).

``simulate_int(tables, counts)`` runs one sample on int32 under ``lax.scan``, layer by
layer, with exactly the semantics in the manifest (``tables.manifest["semantics"]``),
including the wrap or saturation of every state. The input projection of all steps is
one exact integer matmul outside the scan (:func:`~jsnn.lower.intops.exact_matmul`; a single
float32 matmul where the rows' L1 norms keep every partial sum below 2**24).
Batch with ``jax.vmap``; ``jax.jit`` it with the tables closed over.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

from jsnn.lower.intops import apply_decay, exact_matmul, saturate, wrap
from jsnn.lower.tables import Tables

__all__ = ["IntResult", "simulate_int"]


class IntResult(NamedTuple):
    """What the integer simulator returns for one sample.

    Attributes:
      output: the last layer's output ``(T, n_out)``: spikes, or potentials of an ``li`` readout.
      spikes: per layer, spikes ``(T, n)`` int32 (``None`` for ``li``).
      v: per layer, membrane potentials ``(T, n)`` before the threshold test.
      overflow: per layer, ``(u_events, v_events)``: how many wraps or saturations
        changed a value of the synaptic current and of the membrane state.
    """

    output: Int[Array, "T n_out"]
    spikes: tuple
    v: tuple
    overflow: tuple


def _overflow(rule: str):
    return wrap if rule == "wrap" else saturate


def _layer(layer: dict, arrays: dict[str, np.ndarray], x: Int[Array, "T n_in"]):
    prefix = f"layer{layer['index']}."
    k = layer["threshold_shift"]
    weight = jnp.asarray(arrays[prefix + "weight"])
    row_l1 = int(np.abs(arrays[prefix + "weight"]).sum(axis=1).max())  # concrete: one matmul where it is exact
    w_max = layer["weight_max"] << layer.get("weight_exp", 0)  # tables before the weight exponent have none
    c = exact_matmul(x, weight, x_max=layer["input_max"], w_max=w_max, row_l1=row_l1)
    c = (c + jnp.asarray(arrays[prefix + "bias"])) << k
    kind = layer["kind"]
    n = weight.shape[0]
    dm, ds = layer["decay_mem"], layer["decay_syn"]
    ovf_v, ovf_u = _overflow(layer["overflow"]), _overflow(layer["current_overflow"])
    bits_v, bits_u = layer["state_bits"], layer["current_bits"]
    if kind != "li":
        theta = jnp.asarray(arrays[prefix + "threshold"]) << k
        amount = jnp.asarray(arrays[prefix + "reset"]) << k
        fire = (lambda v: v >= theta) if layer["cmp"] == ">=" else (lambda v: v > theta)

    def step(carry, c_t):
        u, v, s, n_u, n_v = carry
        if kind == "cuba":
            u, du = ovf_u(apply_decay(u, ds["encoding"], ds["code"]) + c_t, bits_u)
            n_u = n_u + du
        else:
            u = c_t
        if kind == "li":
            pre = apply_decay(v, dm["encoding"], dm["code"]) + u
        elif layer["reset"] == "zero":
            pre = apply_decay(jnp.where(s == 1, 0, v), dm["encoding"], dm["code"]) + u
        elif layer["order"] == "reset_first":
            pre = apply_decay(v - amount * s, dm["encoding"], dm["code"]) + u
        else:
            pre = apply_decay(v, dm["encoding"], dm["code"]) - amount * s + u
        v, dv = ovf_v(pre, bits_v)
        s = jnp.zeros_like(v) if kind == "li" else fire(v).astype(jnp.int32)
        return (u, v, s, n_u, n_v + dv), (v, s)

    zeros = jnp.zeros((n,), jnp.int32)
    init = (zeros, zeros, zeros, jnp.int32(0), jnp.int32(0))
    (_, _, _, n_u, n_v), (v, s) = jax.lax.scan(step, init, c)
    return v, (None if kind == "li" else s), (n_u, n_v)


def simulate_int(tables: Tables, counts: Int[Array, "T n_in"]) -> IntResult:
    """Run the integer network on one sample of input counts.

    Args:
      tables: tables from :func:`~jsnn.lower.tables.lower` or :func:`~jsnn.lower.tables.load_tables`.
      counts: integer (or bool) inputs ``(T, n_in)`` in ``[0, input.max]``, e.g. from
        :func:`~jsnn.lower.tables.quantize_inputs` or spikes.

    Returns:
      An :class:`IntResult`.

    Raises:
      ValueError / TypeError: wrong shape, a float dtype, or counts out of range.

    Example:
      >>> import jax, numpy as np
      >>> from jsnn.nn import mlp
      >>> from jsnn.lower.tables import lower, quantize_inputs
      >>> tables, _ = lower(mlp(4, [3], 2, key=jax.random.key(0)), "xylo", np.ones((1, 5, 4)))
      >>> simulate_int(tables, quantize_inputs(tables, np.ones((5, 4)))).output.shape
      (5, 2)
    """
    spec = tables.manifest["input"]
    counts = jnp.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] != spec["features"]:
        raise ValueError(f"counts must have shape (time, {spec['features']}); got {counts.shape}. "
                         "Batch with jax.vmap.")
    if not (jnp.issubdtype(counts.dtype, jnp.integer) or counts.dtype == jnp.bool_):
        raise TypeError(f"counts must be integers or bools; got {counts.dtype}. Quantise analog inputs with "
                        "jsnn.lower.quantize_inputs.")
    if not isinstance(counts, jax.core.Tracer) and bool(((counts < 0) | (counts > spec["max"])).any()):
        raise ValueError(f"counts must lie in [0, {spec['max']}] ({spec['bits']}-bit input).")
    x = counts.astype(jnp.int32)
    spikes, vs, overflow = [], [], []
    out = x
    for layer in tables.manifest["layers"]:
        v, s, ovf = _layer(layer, tables.arrays, x)
        spikes.append(s)
        vs.append(v)
        overflow.append(ovf)
        x = s
        out = v if s is None else s
    return IntResult(out, tuple(spikes), tuple(vs), tuple(overflow))
