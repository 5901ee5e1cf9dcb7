"""Quantisation-aware fine-tuning of a network onto the grid of its lowered tables.

Lowering rounds each weight, bias and threshold to the target's grid and quantises the
inputs to the chip's counts, so the float network and its integer tables disagree on a few
spikes (B5 on MNIST: 98.6-98.9 % of hidden spikes for the Xylo- and Loihi-like targets). A
neuron driven near its threshold fires one step earlier or later after a rounding of its
input current. :func:`fit_to_tables` fine-tunes the network through the tables' eyes:

- weights and biases are *fake-quantised* to the tables' grid ``k / s`` (``|k|`` within the
  target's width, the target's rounding rule) with the straight-through estimator: the
  forward pass uses the grid value, the gradient is 1 inside the range and 0 outside;
- thresholds, decays and reset are the ones the tables realise (:func:`shadow_network`);
- the inputs are quantised to the counts the chip receives.

It returns a float network whose parameters lie on the grid, and its tables re-lowered at the
same scales. The float simulation of that network then differs from the integer one only by
the rounding inside the integer decay and by saturation (ALGORITHMS §5.6).

References:
  Jacob et al., "Quantization and training of neural networks for efficient
  integer-arithmetic-only inference", arXiv 1712.05877.
  Bengio, Léonard, Courville, "Estimating or propagating gradients through stochastic
  neurons for conditional computation", arXiv 1308.3432 (the straight-through estimator).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int
from tqdm.auto import tqdm

from jsnn.lower.profiles import Profile
from jsnn.lower.quantize import round_mode, signed_max
from jsnn.lower.tables import Tables, lower, shadow_network
from jsnn.nn import Sequential

__all__ = ["fake_quantize", "fit_to_tables", "grid_inputs", "grid_network"]

#: one pair (weight, bias or None) per Linear layer: what fine-tuning moves
LinearParams = list[tuple[Array, Array | None]]


def fake_quantize(x: Float[Array, "..."], scale, limit: int, mode: str = "half_even") -> Float[Array, "..."]:
    """``x`` on the grid ``k / scale`` with ``|k| <= limit``, with the straight-through gradient.

    Args:
      x: values.
      scale: grid steps per unit (broadcastable to ``x``).
      limit: largest integer code.
      mode: rounding rule (see :func:`~jsnn.lower.quantize.round_mode`).

    Returns:
      The grid values; their derivative with respect to ``x`` is 1 inside ``[-limit/scale,
      limit/scale]`` and 0 outside.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.array([0.26, -0.74, 3.0])
      >>> fake_quantize(x, 4.0, 2).tolist(), jax.grad(lambda x: fake_quantize(x, 4.0, 2).sum())(x).tolist()
      ([0.25, -0.5, 0.5], [1.0, 0.0, 0.0])
    """
    bound = limit / scale
    clipped = jnp.clip(x, -bound, bound)
    on_grid = round_mode(clipped * scale, mode) / scale
    return clipped + jax.lax.stop_gradient(on_grid - clipped)


def grid_inputs(tables: Tables, x: Float[Array, "... T n"]) -> Float[Array, "... T n"]:
    """Inputs as the chip receives them: ``clip(round_half_even(x * scale), 0, max) / scale``.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from jsnn.nn import mlp
      >>> tables, _ = lower(mlp(3, [2], 2, key=jax.random.key(0)), "xylo", np.ones((1, 2, 3)))
      >>> [round(v * 15, 6) for v in grid_inputs(tables, jnp.array([0.5, 0.52, 2.0])).tolist()]  # 4-bit counts
      [8.0, 8.0, 15.0]
    """
    spec = tables.manifest["input"]
    scale = jnp.asarray(spec["scale"], x.dtype)
    return jnp.clip(jnp.round(x * scale), 0, spec["max"]) / scale


def _linear_params(net: Sequential, n_layers: int) -> LinearParams:
    return [(net.layers[2 * i].weight, net.layers[2 * i].bias) for i in range(n_layers)]


def _with_linear_params(net: Sequential, params: LinearParams) -> Sequential:
    layers = list(net.layers)
    for i, (weight, bias) in enumerate(params):
        lin = eqx.tree_at(lambda m: m.weight, layers[2 * i], weight)
        layers[2 * i] = lin if bias is None else eqx.tree_at(lambda m: m.bias, lin, bias)
    return Sequential(layers)


def grid_network(net: Sequential, tables: Tables) -> Sequential:
    """``net`` as ``tables`` realise it, differentiable in its weights and biases.

    Neurons are those of :func:`~jsnn.lower.tables.shadow_network` (table thresholds,
    effective decays, the target's reset); weights and biases are ``net``'s, fake-quantised
    (:func:`fake_quantize`) at the tables' scales. Run it on :func:`grid_inputs`.

    Example:
      >>> import jax, numpy as np
      >>> from jsnn.nn import mlp
      >>> net = mlp(4, [3], 2, key=jax.random.key(0))
      >>> tables, _ = lower(net, "xylo", np.ones((1, 5, 4)))
      >>> w = grid_network(net, tables).layers[0].weight
      >>> bool(np.allclose(w, shadow_network(net, tables).layers[0].weight))
      True
    """
    profile = Profile.from_dict(tables.manifest["profile"])
    s_in = tables.manifest["input"]["scale"]
    params = []
    for entry in tables.manifest["layers"]:
        i = entry["index"]
        lin = net.layers[2 * i]
        big = jnp.asarray(tables.arrays[f"layer{i}.scale"], lin.weight.dtype)
        step = (s_in if i == 0 else 1.0) * 2 ** entry.get("weight_exp", 0)  # mantissa steps per unit
        weight = fake_quantize(lin.weight, big[:, None] / step, profile.weight_max, profile.rounding)
        bias = None if lin.bias is None else fake_quantize(lin.bias, big, signed_max(profile.bias_bits),
                                                           profile.rounding)
        params.append((weight, bias))
    return _with_linear_params(shadow_network(net, tables, dtype=net.layers[0].weight.dtype), params)


def fit_to_tables(
    net: Sequential,
    tables: Tables,
    loss_fn: Callable[[Sequential, Float[Array, "B T n"], Int[Array, " B"]], Float[Array, ""]],
    batches: Callable[[int], Iterable[tuple[Float[Array, "B T n"], Int[Array, " B"]]]],
    calibration_inputs: Float[Array, "C T n"],
    *,
    optimizer: optax.GradientTransformation,
    epochs: int = 1,
    progress: bool = True,
) -> tuple[Sequential, Tables, list[dict[str, Any]], list[float]]:
    """Quantisation-aware fine-tuning of ``net`` on the grid of ``tables``.

    Args:
      net: the network that was lowered into ``tables``.
      tables: its tables (from :func:`~jsnn.lower.tables.lower` or
        :func:`~jsnn.lower.calibrate.lower_calibrated`).
      loss_fn: ``loss_fn(net, inputs, labels)``, a scalar training loss of encoded inputs.
      batches: ``batches(epoch)`` gives one epoch of ``(inputs, labels)`` batches.
      calibration_inputs: encoded inputs for the re-lowering's report (peaks, saturation).
      optimizer: an optax transform (a small learning rate: the network is trained already).
      epochs: passes over ``batches``.
      progress: show a tqdm bar with the loss.

    Returns:
      ``(grid_net, new_tables, report, losses)``: the fine-tuned network with every
      parameter on the grid (dequantised table weights, biases and thresholds, effective
      decays, the target's reset), its tables re-lowered at the same scales, the lowering
      report, and the mean loss of each epoch. Simulate ``grid_net`` on :func:`grid_inputs`.

    Raises:
      ValueError: ``epochs`` below 1.
      LoweringError: the fine-tuned parameters do not fit the target (from ``lower``).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, optax
      >>> from jsnn.nn import mlp
      >>> from jsnn.simulate import simulate
      >>> net = mlp(4, [3], 2, key=jax.random.key(0))
      >>> x = jnp.asarray(np.random.default_rng(0).random((8, 5, 4)), jnp.float32)
      >>> y = jnp.arange(8) % 2
      >>> loss = lambda n, x, y: jnp.mean((jax.vmap(lambda s: simulate(n, s))(x).sum(1)[:, 0] - y) ** 2)
      >>> tables, _ = lower(net, "xylo", x)
      >>> grid_net, new_tables, report, losses = fit_to_tables(
      ...     net, tables, loss, lambda epoch: [(x, y)], x, optimizer=optax.adam(1e-3), progress=False)
      >>> len(losses), new_tables.arrays["layer0.weight"].dtype
      (1, dtype('int32'))
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int; got {epochs!r}.")
    n_layers = len(tables.manifest["layers"])
    params = _linear_params(net, n_layers)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, inputs, labels):
        def loss(p):
            return loss_fn(grid_network(_with_linear_params(net, p), tables), grid_inputs(tables, inputs), labels)

        value, grads = jax.value_and_grad(loss)(params)
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes a float with its int32 step count
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    losses = []
    for epoch in range(epochs):
        total, count = 0.0, 0
        bar = tqdm(batches(epoch), desc=f"fit to tables, epoch {epoch + 1}/{epochs}", disable=not progress)
        for inputs, labels in bar:
            params, opt_state, value = step(params, opt_state, inputs, labels)
            total, count = total + float(value), count + 1
            bar.set_postfix(loss=f"{total / count:.4f}")
        losses.append(total / max(count, 1))
    # the grid values of the tuned parameters, lowered at the old scales (the rounding there is exact,
    # so the float32 grid values land on the same integers); then the net those tables realise
    on_grid = grid_network(_with_linear_params(net, params), tables)
    scales = [tables.arrays[f"layer{e['index']}.scale"] for e in tables.manifest["layers"]]
    new_tables, report = lower(on_grid, Profile.from_dict(tables.manifest["profile"]), np.asarray(calibration_inputs),
                               x_max=tables.manifest["input"]["x_max"], dt=tables.manifest["dt"], scales=scales,
                               weight_exps=[e.get("weight_exp", 0) for e in tables.manifest["layers"]])
    return shadow_network(on_grid, new_tables, dtype=net.layers[0].weight.dtype), new_tables, report, losses
