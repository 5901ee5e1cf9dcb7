"""Run a spiking network over time.

``simulate`` checks the input at the boundary (shape, dtype, NaN-free where concrete),
then runs the network layer by layer: the input projection of all time steps is one
matmul outside the scan, and each neuron layer is one ``lax.scan``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jsnn.neurons import Trace
from jsnn.nn import Conv2d, Linear, Sequential

__all__ = ["simulate", "simulate_batch"]


def _param_dtype(net: Sequential):
    for leaf in jax.tree.leaves(net):
        if isinstance(leaf, jax.Array | np.ndarray) and jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.dtype
    return jnp.float32


def _check_step_shape(net: Sequential, shape: tuple[int, ...]) -> None:
    """Refuse inputs whose per-step shape cannot be what the first layer takes (a batch read as time)."""
    if shape[0] == 0:
        raise ValueError(f"inputs have no time steps (shape {shape}); pass at least one step.")
    first = net.layers[0] if net.layers else None
    if isinstance(first, Linear):
        ok, what = len(shape) == 2, f"(time, {first.in_features})"  # the Linear layer names a wrong width
    elif isinstance(first, Conv2d):
        ok, what = len(shape) == 4 and shape[1] == first.weight.shape[1], f"(time, {first.weight.shape[1]}, H, W)"
    else:
        return
    if not ok:
        raise ValueError(f"inputs of shape {shape} do not fit the network, which takes one sample of shape {what}. "
                         "A batch (batch, time, ...) goes through jsnn.simulate_batch or jax.vmap.")


def _prepare_inputs(net: Sequential, inputs) -> Array:
    inputs = jnp.asarray(inputs)
    if inputs.ndim < 2:
        raise ValueError(
            f"inputs must have shape (time, features...); got {inputs.shape}. "
            "Encode static data first (e.g. jsnn.encode.rate), and batch with jax.vmap "
            "or simulate_batch."
        )
    _check_step_shape(net, inputs.shape)
    dtype = _param_dtype(net)
    if jnp.issubdtype(inputs.dtype, jnp.bool_) or jnp.issubdtype(inputs.dtype, jnp.integer):
        return inputs.astype(dtype)
    if not jnp.issubdtype(inputs.dtype, jnp.floating):
        raise TypeError(f"inputs must be real (bool, int or float); got {inputs.dtype}.")
    if inputs.dtype != dtype:
        raise TypeError(
            f"inputs are {inputs.dtype} but the network's parameters are {dtype}; "
            f"cast with inputs.astype({jnp.dtype(dtype).name!r})."
        )
    if not isinstance(inputs, jax.core.Tracer) and not bool(jnp.isfinite(inputs).all()):
        raise ValueError("inputs contain NaN or infinity; clean the data before simulating.")
    return inputs


def simulate(
    net: Sequential,
    inputs: Float[Array, "T ..."],
    *,
    record: bool | Sequence[int] = False,
) -> Array | tuple[Array, dict[int, Trace]]:
    """Simulate one sample through ``net``.

    Args:
      net: a :class:`jsnn.nn.Sequential` network.
      inputs: input per time step, shape ``(T, *features)``; bool or integer spikes are
        cast to the parameter dtype.
      record: ``False`` for the outputs only; ``True`` to record every neuron layer; or
        the indices (in ``net.layers``) of the neuron layers to record.

    Returns:
      The last layer's outputs ``(T, n_out)`` (spikes, or potentials for an ``LI``
      readout); with ``record``, also a dict from layer index to :class:`jsnn.neurons.Trace`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jsnn.nn import Linear, Sequential
      >>> from jsnn.neurons import LIF, LI
      >>> net = Sequential([Linear(3, 4, key=jax.random.key(0)), LIF(), Linear(4, 2, key=jax.random.key(1)), LI()])
      >>> out, traces = simulate(net, jnp.ones((5, 3), bool), record=True)
      >>> out.shape, sorted(traces), traces[1].spikes.shape
      ((5, 2), [1, 3], (5, 4))
    """
    x = _prepare_inputs(net, inputs)
    out, traces = net.run(x)
    if record is False:
        return out
    indices = net.neuron_layers
    wanted = indices if record is True else list(record)
    unknown = sorted(set(wanted) - set(indices))
    if unknown:
        raise ValueError(f"record={list(wanted)} names layers {unknown} that are not neuron layers; "
                         f"the neuron layers are {indices}.")
    by_index = dict(zip(indices, traces, strict=True))
    return out, {i: by_index[i] for i in wanted}


def simulate_batch(net: Sequential, inputs: Float[Array, "B T ..."], **kwargs):
    """``simulate`` vmapped over a leading batch axis: inputs ``(B, T, *features)``."""
    inputs = jnp.asarray(inputs)
    if inputs.ndim < 3:
        raise ValueError(f"batched inputs must have shape (batch, time, features...); got {inputs.shape}.")
    return jax.vmap(lambda x: simulate(net, x, **kwargs))(inputs)
