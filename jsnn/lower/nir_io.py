"""NIR export and import of jsnn networks (ALGORITHMS §5.5), with the ``nir`` package.

Mapping (forward-Euler discretisation of the NIR ODEs with step ``dt``):

=========================  ===================================================================
jsnn                       NIR
=========================  ===================================================================
``Linear`` (bias / none)   ``Affine(weight (out, in), bias)`` / ``Linear(weight)``
``Conv2d``                 ``Conv2d(input_shape, weight (C_out, C_in, kH, kW), stride, padding, 1, 1, bias)``
``Flatten``                ``Flatten(input_type, start_dim=0, end_dim=-1)``
``LIF(decay, threshold)``  ``LIF(tau = dt/(1-decay), r = tau/dt, v_leak = 0, v_threshold, v_reset = 0)``
``IF``, ``LIF(decay=1)``   ``IF(r = 1/dt, v_threshold, v_reset = 0)``
``CubaLIF``                ``CubaLIF(tau_syn = dt/(1-decay_syn), tau_mem = dt/(1-decay_mem), r = tau_mem/dt,
                           v_leak = 0, v_threshold, v_reset = 0, w_in = tau_syn/dt)``
``LI(decay)``              ``LI(tau = dt/(1-decay), r = tau/dt, v_leak = 0)``; ``I(r = 1/dt)`` for decay 1
=========================  ===================================================================

NIR has no time step and no subtractive reset. Every neuron node therefore carries
``metadata`` with ``dt``, ``reset`` ("subtract" or "zero"), ``spike_cmp``, ``order``,
``integrator`` ("euler_forward"), ``decay`` (the exact per-step decays: one value, or one
per neuron for an ``LI`` readout with per-neuron decays) and ``weight_layout`` ("out_in").
A subtractive reset is written as ``v_reset = 0`` plus ``reset = "subtract"``: exact in
continuous time, but an importer that ignores the metadata resets to zero instead and
diverges in discrete time. The importer here honours the metadata and accepts ``dt`` and
``reset`` overrides for graphs from other tools.

References:
  Pedersen et al., "Neuromorphic intermediate representation: a unified instruction set
  for interoperable brain-inspired computing", arXiv 2311.14641.
"""

from __future__ import annotations

import io
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jsnn.neurons import IF, LI, LIF, CubaLIF
from jsnn.nn import Conv2d, Flatten, Linear, Sequential

__all__ = ["NIRError", "from_nir", "read_nir", "to_nir", "write_nir"]


class NIRError(ValueError):
    """A network or graph that this NIR mapping cannot express."""


def _nir():
    try:
        import nir
    except ImportError:
        raise ImportError("NIR export needs the optional 'nir' package: pip install 'jsnn[nir]'.") from None
    return nir


def _full(value, shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, np.float64), shape).astype(np.float32)


def _tau(decay, dt: float, what: str) -> np.ndarray:
    decay = np.asarray(decay, np.float64)
    if ((decay < 0) | (decay >= 1)).any():
        raise NIRError(f"{what} must lie in [0, 1) for a NIR time constant; got {decay}.")
    return dt / (1.0 - decay)


def _neuron_node(nir, neuron, shape, dt: float):
    meta = {"dt": dt, "integrator": "euler_forward", "weight_layout": "out_in"}
    if isinstance(neuron, LI):
        decay = np.asarray(neuron.decay, np.float64)
        meta["decay"] = float(decay) if decay.ndim == 0 else np.broadcast_to(decay, shape).copy()
        if np.all(np.asarray(neuron.decay) == 1.0):
            return nir.I(r=_full(1.0 / dt, shape), metadata=meta)
        tau = _tau(neuron.decay, dt, "LI decay")
        return nir.LI(tau=_full(tau, shape), r=_full(tau / dt, shape), v_leak=_full(0.0, shape), metadata=meta)
    if not isinstance(neuron, LIF | IF | CubaLIF):
        raise NIRError(f"no NIR mapping for {type(neuron).__name__}; exportable layers are Linear, Conv2d, Flatten, "
                       "LIF, IF, CubaLIF and LI.")
    if neuron.reset == "none":
        raise NIRError("a neuron with reset='none' has no NIR form; use an LI readout instead.")
    meta.update(reset=neuron.reset, spike_cmp=neuron.cmp, order=getattr(neuron, "order", "leak_first"))
    theta = _full(neuron.threshold, shape)
    zeros = _full(0.0, shape)
    if isinstance(neuron, IF) or isinstance(neuron, LIF) and np.all(np.asarray(neuron.decay) == 1.0):
        meta["decay"] = 1.0
        return nir.IF(r=_full(1.0 / dt, shape), v_threshold=theta, v_reset=zeros, metadata=meta)
    if isinstance(neuron, CubaLIF):
        if np.ndim(neuron.decay_mem) or np.ndim(neuron.decay_syn):
            raise NIRError("per-neuron CubaLIF decays are not exported; use scalar decays.")
        meta["decay"] = [float(neuron.decay_syn), float(neuron.decay_mem)]
        tau_syn, tau_mem = _tau(neuron.decay_syn, dt, "decay_syn"), _tau(neuron.decay_mem, dt, "decay_mem")
        return nir.CubaLIF(tau_syn=_full(tau_syn, shape), tau_mem=_full(tau_mem, shape), r=_full(tau_mem / dt, shape),
                           v_leak=zeros, v_threshold=theta, v_reset=zeros, w_in=_full(tau_syn / dt, shape),
                           metadata=meta)
    if np.ndim(neuron.decay):
        raise NIRError("per-neuron LIF decays are not exported; use a scalar decay.")
    meta["decay"] = float(neuron.decay)
    tau = _tau(neuron.decay, dt, "LIF decay")
    return nir.LIF(tau=_full(tau, shape), r=_full(tau / dt, shape), v_leak=zeros, v_threshold=theta,
                   v_reset=zeros, metadata=meta)


def to_nir(net: Sequential, *, dt: float = 1e-3, input_shape: tuple[int, ...] | None = None):
    """A ``nir.NIRGraph`` of a feed-forward network: ``input -> 0 -> 1 -> ... -> output``.

    Args:
      net: the network.
      dt: time step in seconds (NIR has none; it sets the time constants and is recorded).
      input_shape: shape of one time step of input (needed when the first layer is not Linear).

    Returns:
      The graph.

    Example:
      >>> import jax
      >>> from jsnn.nn import mlp
      >>> graph = to_nir(mlp(4, [3], 2, key=jax.random.key(0)))
      >>> [type(graph.nodes[k]).__name__ for k in ("0", "1", "2", "3")]
      ['Affine', 'LIF', 'Affine', 'LI']
    """
    nir = _nir()
    if not isinstance(net, Sequential):
        raise NIRError(f"expected a jsnn.nn.Sequential; got {type(net).__name__}.")
    if not dt > 0:
        raise ValueError(f"dt must be positive; got {dt}.")
    if input_shape is None:
        if not isinstance(net.layers[0], Linear):
            raise NIRError("pass input_shape=(C, H, W) (one time step) for a network that starts with "
                           f"{type(net.layers[0]).__name__}.")
        input_shape = (net.layers[0].in_features,)
    shape = tuple(input_shape)
    nodes = {"input": nir.Input(input_type={"input": np.array(shape)})}
    names = ["input"]
    for i, layer in enumerate(net.layers):
        name = str(i)
        if isinstance(layer, Linear):
            w = np.asarray(layer.weight, np.float32)
            node = nir.Linear(weight=w) if layer.bias is None else nir.Affine(weight=w,
                                                                             bias=np.asarray(layer.bias, np.float32))
        elif isinstance(layer, Conv2d):
            w = np.asarray(layer.weight, np.float32)
            bias = np.zeros(w.shape[0], np.float32) if layer.bias is None else np.asarray(layer.bias, np.float32)
            node = nir.Conv2d(input_shape=shape[1:], weight=w, stride=layer.stride, padding=layer.padding,
                              dilation=1, groups=1, bias=bias, metadata={"use_bias": layer.bias is not None})
        elif isinstance(layer, Flatten):
            node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
        else:
            node = _neuron_node(nir, layer, shape, dt)
        nodes[name] = node
        names.append(name)
        if not hasattr(layer, "init_state"):
            example = jax.ShapeDtypeStruct(shape, jnp.float32)
            shape = tuple(jax.eval_shape(layer, example).shape)
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    names.append("output")
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:], strict=True)),
                        metadata={"dt": dt, "producer": "jsnn"})


def _chain(graph) -> list[str]:
    nxt: dict[str, str] = {}
    for src, dst in graph.edges:
        if src in nxt:
            raise NIRError(f"node {src!r} has several successors; only feed-forward chains are imported.")
        nxt[src] = dst
    inputs = [k for k, n in graph.nodes.items() if type(n).__name__ == "Input"]
    if len(inputs) != 1:
        raise NIRError(f"the graph needs exactly one Input node; found {len(inputs)}.")
    order, node = [], nxt.get(inputs[0])
    while node is not None and type(graph.nodes[node]).__name__ != "Output":
        if node in order:
            raise NIRError("the graph has a cycle; recurrent NIR graphs are not imported.")
        order.append(node)
        node = nxt.get(node)
    if node is None:
        raise NIRError("no path from the Input node to an Output node.")
    return order


def _uniform(values, what: str):
    arr = np.asarray(values, np.float64)
    flat = np.unique(arr)
    return float(flat[0]) if flat.size == 1 else jnp.asarray(arr.reshape(-1), jnp.float32)


def _decay(tau, dt: float, meta_decay, what: str, *, per_neuron: bool = False):
    """Per-step decay ``1 - dt/tau`` (the exact metadata values where they agree with tau): one float, or
    a float32 vector for per-neuron time constants where ``per_neuron`` allows them."""
    derived = 1.0 - dt / np.asarray(tau, np.float64)
    if meta_decay is not None and np.allclose(derived, np.asarray(meta_decay, np.float64), rtol=0, atol=1e-6):
        derived = np.broadcast_to(np.asarray(meta_decay, np.float64), derived.shape)
    flat = np.unique(derived)
    if flat.size == 1:
        return float(flat[0])
    if not per_neuron:
        raise NIRError(f"{what}: per-neuron time constants are not imported; use one tau per node.")
    return jnp.asarray(derived.reshape(-1), jnp.float32)


def _check_r(node, expected, dt: float, what: str):
    if not np.allclose(np.asarray(node.r, np.float64), expected, rtol=1e-5):
        raise NIRError(f"{what}: r must equal tau/dt (1/dt for IF) under jsnn's Euler mapping with dt={dt}; "
                       "rescale the incoming weights or pass the graph's dt.")


def from_nir(graph, *, dt: float | None = None, reset: str | None = None) -> Sequential:
    """A jsnn network from a feed-forward ``nir.NIRGraph``.

    Args:
      graph: the graph (e.g. from :func:`read_nir` or another framework).
      dt: time step; default: the graph's metadata, else 1e-3.
      reset: "subtract" or "zero" for every spiking node; default: each node's metadata,
        else "zero" (NIR's own semantics).

    Returns:
      A :class:`~jsnn.nn.Sequential` with float32 parameters.

    Example:
      >>> import jax
      >>> from jsnn.nn import mlp
      >>> net = from_nir(to_nir(mlp(4, [3], 2, key=jax.random.key(0))))
      >>> type(net.layers[1]).__name__
      'LIF'
    """
    layers = []
    key = jax.random.key(0)
    for name in _chain(graph):
        node = graph.nodes[name]
        kind = type(node).__name__
        meta = dict(getattr(node, "metadata", None) or {})
        step = float(dt if dt is not None else meta.get("dt", (graph.metadata or {}).get("dt", 1e-3)))
        what = f"node {name!r} ({kind})"
        flags = {"reset": reset or meta.get("reset", "zero"), "cmp": meta.get("spike_cmp", ">")}
        if kind in ("Affine", "Linear"):
            w = jnp.asarray(np.asarray(node.weight), jnp.float32)
            bias = kind == "Affine"
            lin = Linear(w.shape[1], w.shape[0], use_bias=bias, key=key)
            layers.append(eqx.tree_at(lambda m: m.weight, lin, w) if not bias else
                          eqx.tree_at(lambda m: (m.weight, m.bias), lin,
                                      (w, jnp.asarray(np.asarray(node.bias), jnp.float32))))
        elif kind == "Conv2d":
            w = jnp.asarray(np.asarray(node.weight), jnp.float32)
            if np.any(np.asarray(node.dilation) != 1) or node.groups != 1 or isinstance(node.padding, str):
                raise NIRError(f"{what}: only dilation 1, groups 1 and integer padding are imported.")
            use_bias = meta.get("use_bias", True)
            pair = lambda v: tuple(int(x) for x in np.broadcast_to(np.asarray(v), (2,)))  # noqa: E731
            conv = Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=pair(node.stride),
                          padding=pair(node.padding), use_bias=use_bias, key=key)
            conv = eqx.tree_at(lambda m: m.weight, conv, w)
            if use_bias:
                conv = eqx.tree_at(lambda m: m.bias, conv, jnp.asarray(np.asarray(node.bias), jnp.float32))
            layers.append(conv)
        elif kind == "Flatten":
            layers.append(Flatten())
        elif kind == "LIF":
            if np.any(np.asarray(node.v_leak) != 0) or np.any(np.asarray(node.v_reset) != 0):
                raise NIRError(f"{what}: v_leak and v_reset must be 0 for jsnn's LIF.")
            decay = _decay(node.tau, step, meta.get("decay"), what)
            _check_r(node, np.asarray(node.tau, np.float64) / step, step, what)
            layers.append(LIF(decay=decay, threshold=_uniform(node.v_threshold, what),
                              order=meta.get("order", "leak_first"), **flags))
        elif kind == "IF":
            _check_r(node, 1.0 / step, step, what)
            layers.append(IF(threshold=_uniform(node.v_threshold, what), **flags))
        elif kind == "CubaLIF":
            syn, mem = (None, None) if meta.get("decay") is None else np.asarray(meta["decay"]).tolist()
            _check_r(node, np.asarray(node.tau_mem, np.float64) / step, step, what)
            if not np.allclose(np.asarray(node.w_in, np.float64), np.asarray(node.tau_syn, np.float64) / step,
                               rtol=1e-5):
                raise NIRError(f"{what}: w_in must equal tau_syn/dt under jsnn's Euler mapping.")
            layers.append(CubaLIF(decay_syn=_decay(node.tau_syn, step, syn, what),
                                  decay_mem=_decay(node.tau_mem, step, mem, what),
                                  threshold=_uniform(node.v_threshold, what),
                                  order=meta.get("order", "leak_first"), **flags))
        elif kind == "LI":
            _check_r(node, np.asarray(node.tau, np.float64) / step, step, what)
            layers.append(LI(decay=_decay(node.tau, step, meta.get("decay"), what, per_neuron=True)))
        elif kind == "I":
            _check_r(node, 1.0 / step, step, what)
            layers.append(LI(decay=1.0))
        else:
            raise NIRError(f"{what}: no jsnn mapping; importable nodes are Affine, Linear, Conv2d, Flatten, LIF, "
                           "IF, CubaLIF, LI and I.")
    return Sequential(layers)


def write_nir(path: str | os.PathLike, net: Sequential, **kwargs) -> None:
    """Export ``net`` (see :func:`to_nir` for ``kwargs``) to a NIR HDF5 file, atomically.

    The file is built in memory and written with :func:`jsnn.checkpoint.atomic_write_bytes`, like the
    other outputs: the usual permissions (0666 less the umask), and never a half-written file.
    """
    from jsnn.checkpoint import atomic_write_bytes

    nir = _nir()
    graph = to_nir(net, **kwargs)
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    atomic_write_bytes(path, buffer.getvalue())


def read_nir(path: str | os.PathLike, **kwargs) -> Sequential:
    """Read a NIR HDF5 file into a jsnn network (see :func:`from_nir` for ``kwargs``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NIR file {path} does not exist.")
    return from_nir(_nir().read(str(path)), **kwargs)
