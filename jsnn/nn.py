"""Spiking network layers as Equinox modules, and the ``Sequential`` container.

Two kinds of layer make a network:

* stateless maps of one time step (``Linear``, ``Conv2d``, ``Flatten``), applied to all
  steps at once, so the input projection of every step is one matmul outside any scan;
* temporal layers (the neurons of :mod:`jsnn.neurons`, and :class:`Recurrent`), which
  carry state and run over time with ``lax.scan``.

``Sequential`` runs a feed-forward net *layer by layer*: each temporal layer scans over
the whole time series before the next projection. For a feed-forward net this is the
same computation as stepping all layers together (layer l reads layer l-1's spikes of the
same step), but every weight multiply becomes one large matmul.

Single-sample semantics: a layer maps one sample; batch with ``jax.vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from jsnn.neurons import LIF, Neuron, Trace

__all__ = ["AvgPool2d", "Conv2d", "Flatten", "Linear", "Recurrent", "Sequential", "conv_net", "mlp"]


def _uniform(key, shape, bound, dtype):
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class Linear(eqx.Module):
    """Affine map of one time step, ``W x + b``, with ``W`` of shape ``(out, in)`` (NIR ``Affine``).

    Initialised as PyTorch's ``nn.Linear``: uniform in ``±1/sqrt(in_features)``.

    Args:
      in_features: input width.
      out_features: output width.
      use_bias: whether to add a bias.
      scale: multiplies the initial weights (spiking nets often need a larger gain).
      dtype: parameter dtype.
      key: PRNG key (keyword-only).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> layer = Linear(3, 2, key=jax.random.key(0))
      >>> layer(jnp.ones(3, jnp.float32)).shape
      (2,)
    """

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"] | None
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)
    compute_dtype: str | None = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        scale: float = 1.0,
        dtype=jnp.float32,
        compute_dtype: str | None = None,
        key: PRNGKeyArray,
    ):
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear sizes must be positive; got ({in_features}, {out_features}).")
        wkey, bkey = jax.random.split(key)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = scale * _uniform(wkey, (out_features, in_features), bound, dtype)
        self.bias = _uniform(bkey, (out_features,), bound, dtype) if use_bias else None
        self.in_features = in_features
        self.out_features = out_features
        self.compute_dtype = None if compute_dtype is None else jnp.dtype(compute_dtype).name

    def __call__(self, x: Float[Array, " in"]) -> Float[Array, " out"]:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) got input of shape {x.shape}; "
                f"the last axis must have {self.in_features} features."
            )
        if self.compute_dtype is None:
            y = x @ self.weight.T
        else:  # mixed precision: low-precision operands, accumulation in the parameter dtype
            cd = self.compute_dtype
            y = jnp.matmul(x.astype(cd), self.weight.T.astype(cd), preferred_element_type=self.weight.dtype)
        return y if self.bias is None else y + self.bias


class Conv2d(eqx.Module):
    """2-D convolution of one time step, channels first: ``(C_in, H, W) -> (C_out, H', W')``.

    The kernel has shape ``(C_out, C_in, kH, kW)`` as NIR ``Conv2d``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> conv = Conv2d(1, 4, 3, padding=1, key=jax.random.key(0))
      >>> conv(jnp.ones((1, 8, 8), jnp.float32)).shape
      (4, 8, 8)
    """

    weight: Float[Array, "cout cin kh kw"]
    bias: Float[Array, " cout"] | None
    stride: tuple[int, int] = eqx.field(static=True)
    padding: tuple[int, int] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        use_bias: bool = True,
        scale: float = 1.0,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        wkey, bkey = jax.random.split(key)
        bound = 1.0 / math.sqrt(in_channels * kh * kw)
        self.weight = scale * _uniform(wkey, (out_channels, in_channels, kh, kw), bound, dtype)
        self.bias = _uniform(bkey, (out_channels,), bound, dtype) if use_bias else None
        self.stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
        self.padding = (padding, padding) if isinstance(padding, int) else tuple(padding)

    def __call__(self, x: Float[Array, "cin h w"]) -> Float[Array, "cout h2 w2"]:
        if x.ndim != 3 or x.shape[0] != self.weight.shape[1]:
            raise ValueError(
                f"Conv2d expects one time step of shape (C_in={self.weight.shape[1]}, H, W); "
                f"got {x.shape}."
            )
        y = jax.lax.conv_general_dilated(
            x[None],
            self.weight,
            window_strides=self.stride,
            padding=[(p, p) for p in self.padding],
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
        )[0]
        return y if self.bias is None else y + self.bias[:, None, None]


class Flatten(eqx.Module):
    """Flatten one time step to a vector."""

    def __call__(self, x: Array) -> Array:
        return x.reshape(-1)


# --- pooling ------------------------------------------------------------------------------------


class AvgPool2d(eqx.Module):
    """Average pooling of one time step, channels first: ``(C, H, W) -> (C, H', W')``.

    ``y[c, i, j] = mean(x[c, i*s : i*s + k, j*s : j*s + k])`` over a ``k x k`` window with
    stride ``s`` (default ``s = k``), no padding: ``H' = (H - k) // s + 1``. A linear map, so
    a spiking net can average spikes before the next projection (NIR ``AvgPool2d``).

    Args:
      kernel_size: window size ``k`` (an int or ``(kH, kW)``).
      stride: step between windows (default: the kernel size, non-overlapping windows).

    Example:
      >>> import jax.numpy as jnp
      >>> AvgPool2d(2)(jnp.arange(16.0).reshape(1, 4, 4))[0].tolist()
      [[2.5, 4.5], [10.5, 12.5]]
    """

    kernel_size: tuple[int, int] = eqx.field(static=True)
    stride: tuple[int, int] = eqx.field(static=True)

    def __init__(self, kernel_size: int | tuple[int, int], *, stride: int | tuple[int, int] | None = None):
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
        self.kernel_size = pair(kernel_size)
        self.stride = self.kernel_size if stride is None else pair(stride)
        if min(self.kernel_size) < 1 or min(self.stride) < 1:
            raise ValueError(f"AvgPool2d kernel_size and stride must be positive; got {kernel_size}, {stride}.")

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, "c h2 w2"]:
        kh, kw = self.kernel_size
        if x.ndim != 3 or x.shape[1] < kh or x.shape[2] < kw:
            raise ValueError(f"AvgPool2d({self.kernel_size}) expects one time step of shape (C, H, W) with "
                             f"H >= {kh} and W >= {kw}; got {x.shape}.")
        # a concrete zero and lax.add make this XLA's differentiable reduce_window_sum
        total = jax.lax.reduce_window(x, np.zeros((), x.dtype), jax.lax.add, (1, kh, kw), (1, *self.stride), "VALID")
        return total / jnp.asarray(kh * kw, x.dtype)


class Recurrent(Neuron):
    """A spiking layer with recurrent weights: ``c_t = x_t + W_rec s_{t-1}``.

    The feed-forward part ``x_t`` is computed outside the scan by the preceding layer;
    only the recurrent product runs inside it.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> rec = Recurrent(5, key=jax.random.key(0))
      >>> spikes, trace = rec(jnp.ones((4, 5), jnp.float32))
      >>> spikes.shape
      (4, 5)
    """

    weight: Float[Array, "n n"]
    neuron: Neuron

    def __init__(
        self,
        size: int,
        neuron: Neuron | None = None,
        *,
        scale: float = 1.0,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        self.weight = scale * _uniform(key, (size, size), 1.0 / math.sqrt(size), dtype)
        self.neuron = LIF() if neuron is None else neuron

    def init_state(self, shape, dtype):
        return self.neuron.init_state(shape, dtype)

    def step(self, state, current):
        return self.neuron.step(state, current + self.weight @ state.s)


class Sequential(eqx.Module):
    """A feed-forward spiking network run layer by layer over time.

    Attributes:
      layers: the layers, applied in order.
      time_chunk: if set, the sequence is run in chunks of this many steps (the neuron
        states carried from chunk to chunk): each layer's projection is then one matmul per
        chunk instead of one per sequence. Same result; smaller intermediates that stay in
        cache on CPUs for long sequences. ``None`` runs the whole sequence at once.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jsnn.neurons import LIF, LI
      >>> k1, k2 = jax.random.split(jax.random.key(0))
      >>> net = Sequential([Linear(4, 8, key=k1), LIF(), Linear(8, 2, key=k2), LI()])
      >>> net(jnp.ones((10, 4), jnp.float32)).shape
      (10, 2)
    """

    layers: tuple
    time_chunk: int | None = eqx.field(static=True)

    def __init__(self, layers: Sequence[eqx.Module], *, time_chunk: int | None = None):
        if time_chunk is not None and time_chunk < 1:
            raise ValueError(f"time_chunk must be a positive number of steps or None; got {time_chunk}.")
        self.layers = tuple(layers)
        self.time_chunk = time_chunk

    def __call__(self, inputs: Float[Array, "T ..."]) -> Float[Array, "T ..."]:
        """Outputs of the last layer at every step for one sample (time axis first)."""
        return self.run(inputs)[0]

    def init_states(self, inputs: Float[Array, "T ..."]) -> list:
        """Zero state of every temporal layer for ``inputs`` (shapes traced without any compute)."""
        shapes = jax.eval_shape(lambda x: self._segment(x, None)[2], inputs[:1])
        return [layer.init_state(sh.shape[1:], sh.dtype) for layer, sh in zip(self._neurons(), shapes, strict=True)]

    def _neurons(self) -> list[Neuron]:
        return [layer for layer in self.layers if isinstance(layer, Neuron)]

    def _segment(self, x, states):
        """Run every layer over a stretch of steps: ``(outputs, final_states, neuron_inputs, traces)``."""
        finals, inputs, traces = [], [], []
        for layer in self.layers:
            if isinstance(layer, Neuron):
                inputs.append(x)
                state = layer.init_state(x.shape[1:], x.dtype) if states is None else states[len(finals)]
                final, x, trace = layer.scan(x, state)
                finals.append(final)
                traces.append(trace)
            else:
                x = jax.vmap(layer)(x)
        return x, finals, inputs, traces

    def run(self, inputs: Float[Array, "T ..."]) -> tuple[Array, list[Trace]]:
        """Run the net and return ``(outputs, traces)``, one trace per temporal layer."""
        steps = inputs.shape[0]
        if self.time_chunk is None or self.time_chunk >= steps:
            out, _, _, traces = self._segment(inputs, None)
            return out, traces
        n_chunks, chunk = steps // self.time_chunk, self.time_chunk
        body = inputs[: n_chunks * chunk].reshape(n_chunks, chunk, *inputs.shape[1:])

        def one_chunk(states, x):
            out, finals, _, traces = self._segment(x, states)
            return finals, (out, traces)

        states, (out, traces) = jax.lax.scan(one_chunk, self.init_states(inputs), body)
        merge = lambda a: a.reshape(n_chunks * chunk, *a.shape[2:])  # noqa: E731
        out, traces = jax.tree.map(merge, (out, traces))
        if n_chunks * chunk < steps:  # the remainder, from the carried states
            tail_out, _, _, tail_traces = self._segment(inputs[n_chunks * chunk :], states)
            out, traces = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), (out, traces), (tail_out, tail_traces))
        return out, traces

    @property
    def neuron_layers(self) -> list[int]:
        """Indices of the temporal layers (those that produce a trace)."""
        return [i for i, layer in enumerate(self.layers) if isinstance(layer, Neuron)]


def mlp(
    in_features: int,
    hidden: Sequence[int] | int,
    out_features: int,
    *,
    neuron: Neuron | None = None,
    readout: Neuron | None = None,
    use_bias: bool = True,
    scale: float = 1.0,
    dtype=jnp.float32,
    compute_dtype: str | None = None,
    time_chunk: int | None = None,
    key: PRNGKeyArray,
) -> Sequential:
    """A feed-forward spiking MLP: ``Linear, neuron`` per hidden layer, then ``Linear, readout``.

    Args:
      in_features: input width.
      hidden: hidden widths (any number of layers, possibly none); an int is one hidden layer.
      out_features: number of outputs (classes).
      neuron: the hidden neuron (default ``LIF()``), shared by all hidden layers.
      readout: the output neuron (default ``LI(decay=0.9)``; use a ``LIF`` for spike outputs).
      use_bias: biases in the Linear layers.
      scale: initial weight gain.
      dtype: parameter dtype.
      compute_dtype: matmul operand dtype of every Linear (see :class:`Linear`).
      time_chunk: run the sequence in chunks of this many steps (see :class:`Sequential`).
      key: PRNG key.

    Returns:
      A :class:`Sequential`.

    Example:
      >>> import jax
      >>> net = mlp(64, [32], 10, key=jax.random.key(0))
      >>> [type(layer).__name__ for layer in net.layers]
      ['Linear', 'LIF', 'Linear', 'LI']
    """
    from jsnn.neurons import LI

    neuron = LIF() if neuron is None else neuron
    readout = LI() if readout is None else readout
    hidden = [hidden] if isinstance(hidden, int) else list(hidden)
    sizes = [in_features, *hidden, out_features]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
        raise TypeError(f"mlp sizes must be integers; got in_features={in_features!r}, hidden={hidden!r}, "
                        f"out_features={out_features!r}.")
    keys = jax.random.split(key, len(sizes) - 1)
    layers: list[eqx.Module] = []
    for i, k in enumerate(keys):
        layers.append(Linear(sizes[i], sizes[i + 1], use_bias=use_bias, scale=scale, dtype=dtype,
                             compute_dtype=compute_dtype, key=k))
        layers.append(neuron if i < len(keys) - 1 else readout)
    return Sequential(layers, time_chunk=time_chunk)


def conv_net(
    in_shape: tuple[int, int, int],
    channels: Sequence[int],
    out_features: int,
    *,
    neuron: Neuron | None = None,
    readout: Neuron | None = None,
    scale: float = 1.0,
    dtype=jnp.float32,
    key: PRNGKeyArray,
) -> Sequential:
    """A VGG-style spiking conv net: ``Conv2d 3x3, neuron`` per stage, ``AvgPool2d(2)`` after every
    second stage (while the image is at least 4 pixels high and wide, with even sides), then
    ``Flatten, Linear, readout``.

    Args:
      in_shape: one time step's input ``(C, H, W)``.
      channels: output channels of each stage (its length is the depth).
      out_features: number of outputs (classes).
      neuron: the stage neuron (default ``LIF()``), shared by all stages.
      readout: the output neuron (default ``LI()``).
      scale: initial weight gain of every layer.
      dtype: parameter dtype.
      key: PRNG key.

    Returns:
      A :class:`Sequential` that maps ``(T, C, H, W)`` inputs to ``(T, out_features)``.

    Example:
      >>> import jax
      >>> net = conv_net((1, 8, 8), [4, 4], 10, key=jax.random.key(0))
      >>> [type(layer).__name__ for layer in net.layers]
      ['Conv2d', 'LIF', 'Conv2d', 'LIF', 'AvgPool2d', 'Flatten', 'Linear', 'LI']
    """
    from jsnn.neurons import LI

    if len(in_shape) != 3 or min(in_shape) < 1 or not channels or min(channels) < 1:
        raise ValueError(f"conv_net needs in_shape (C, H, W) and at least one positive channel count; "
                         f"got {in_shape} and {list(channels)}.")
    neuron = LIF() if neuron is None else neuron
    readout = LI() if readout is None else readout
    keys = jax.random.split(key, len(channels) + 1)
    c, h, w = in_shape
    layers: list[eqx.Module] = []
    for i, (cout, k) in enumerate(zip(channels, keys[:-1], strict=True)):
        layers += [Conv2d(c, cout, 3, padding=1, scale=scale, dtype=dtype, key=k), neuron]
        c = cout
        if i % 2 == 1 and h >= 4 and w >= 4 and h % 2 == 0 and w % 2 == 0:
            layers.append(AvgPool2d(2))
            h, w = h // 2, w // 2
    layers += [Flatten(), Linear(c * h * w, out_features, scale=scale, dtype=dtype, key=keys[-1]), readout]
    return Sequential(layers)
