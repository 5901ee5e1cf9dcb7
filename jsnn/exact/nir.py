"""Continuous-time NIR export and import of event-driven CuBa-LIF networks (``EventNet``).

NIR's neuron nodes are ODEs (ALGORITHMS §5.5), so an EventNet needs no time step. A spike is a Dirac
impulse; through ``Linear`` (weight W, (out, in)) it reaches a ``CubaLIF`` node

    tau_syn I' = -I + w_in S,    tau_mem V' = (v_leak - V) + r I,    spike if V > v_threshold, then V <- v_reset

so an impulse of weight w makes I jump by ``w_in w / tau_syn``. The EventNet (``tau_mem V' = -V + I``, I
jumps by w) is therefore exported as ``Linear(W)`` + ``CubaLIF(tau_syn, tau_mem, r=1, v_leak=0,
v_threshold=theta, v_reset=0, w_in=tau_syn)``, and an integrator readout as ``CubaLI`` with the same
fields. Times are written in seconds: ``time_unit`` (default 1e-3) is the length in seconds of one time
unit of the net (its tau_syn = 5 reads 5 ms). Continuous time makes the subtractive and the zero reset
coincide (V = theta at a crossing), so ``v_reset = 0`` is exact for both.

Every neuron node's ``metadata`` records ``time="continuous"``, ``reset``, ``spike_cmp``, ``max_spikes``
(the spike buffer of the layer: each neuron transmits its first ``max_spikes`` spikes) and ``time_unit``;
the graph's records ``t_end``, ``readout`` (and the decision it implies) and the net's exact constants.

The importer reads ``CubaLIF`` / ``CubaLI`` chains, including ones written by other tools: per-neuron
``r``, ``w_in`` and thresholds fold into the incoming weight rows (a neuron's spikes do not change when
its input, state and threshold are scaled together), but all nodes must share ``tau_syn`` and
``tau_mem`` and have ``v_leak = v_reset = 0``. A ``LIF`` node (or ``IF``, ``LI``, ...) is refused: its
potential jumps at each input spike, which a CuBa-LIF reaches only in the limit tau_syn -> 0, never
exactly.

References:
  Pedersen et al., "Neuromorphic intermediate representation: a unified instruction set for
  interoperable brain-inspired computing", arXiv 2311.14641.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jsnn.lower.nir_io import NIRError, _chain, _nir

from .flow import LIFConfig
from .net import EventNet

__all__ = ["exact_from_nir", "exact_to_nir", "read_exact_nir", "write_exact_nir"]

_IMPORTABLE = ("Input", "Output", "Linear", "Affine", "CubaLIF", "CubaLI")


def exact_to_nir(net: EventNet, *, time_unit: float = 1e-3):
    """A continuous-time ``nir.NIRGraph`` of a feed-forward EventNet.

    Args:
      net: the network.
      time_unit: seconds per time unit of the net (recorded; the time constants are written in seconds).

    Returns:
      ``input -> 0 (Linear) -> 1 (CubaLIF) -> ... -> output``, the last neuron node a ``CubaLI`` for an
      integrator readout.

    Raises:
      NIRError: a recurrent net or input-event caps (no NIR form here).

    Example:
      >>> import jax
      >>> graph = exact_to_nir(EventNet((3, 4, 2), key=jax.random.key(0)))
      >>> [type(graph.nodes[k]).__name__ for k in ("0", "1", "2", "3")]
      ['Linear', 'CubaLIF', 'Linear', 'CubaLIF']
    """
    nir = _nir()
    if not isinstance(net, EventNet):
        raise NIRError(f"expected a jsnn.exact.EventNet; got {type(net).__name__}.")
    if not time_unit > 0:
        raise ValueError(f"time_unit must be positive; got {time_unit}.")
    if net.rec_weights is not None:
        raise NIRError("recurrent EventNets are not exported: the exporter writes feed-forward chains.")
    if any(cap is not None for cap in net.max_events):
        raise NIRError(f"input-event caps (max_events={net.max_events}) have no NIR form; rebuild without them.")
    cfg = net.cfg
    nodes = {"input": nir.Input(input_type={"input": np.array([net.weights[0].shape[1]])})}
    names = ["input"]
    for index, (weight, buffer) in enumerate(zip(net.weights, net.max_spikes, strict=True)):
        w = np.asarray(weight)
        ones = np.ones(w.shape[0])  # neuron constants in float64 whatever the weights' dtype: they read back exactly
        nodes[str(2 * index)] = nir.Linear(weight=w)
        meta = {"time": "continuous", "time_unit": float(time_unit), "weight_layout": "out_in", "producer": "jsnn",
                "max_spikes": int(buffer)}
        fields = {"tau_syn": ones * (cfg.tau_syn * time_unit), "tau_mem": ones * (cfg.tau_mem * time_unit),
                  "r": ones, "v_leak": 0 * ones, "w_in": ones * (cfg.tau_syn * time_unit)}
        if net.readout == "integrator" and index == len(net.weights) - 1:
            node = nir.CubaLI(**fields, metadata=meta)
        else:
            meta.update(reset=cfg.reset, spike_cmp=">")
            node = nir.CubaLIF(**fields, v_threshold=ones * cfg.threshold, v_reset=0 * ones, metadata=meta)
        nodes[str(2 * index + 1)] = node
        names += [str(2 * index), str(2 * index + 1)]
    nodes["output"] = nir.Output(output_type={"output": np.array([net.weights[-1].shape[0]])})
    names.append("output")
    decision = "argmax of the integral of v over [0, t_end]" if net.readout == "integrator" else \
        "the output that spikes first"
    metadata = {"producer": "jsnn.exact", "time": "continuous", "time_unit": float(time_unit),
                "t_end": float(cfg.t_end), "readout": net.readout, "decision": decision,
                "tau_syn": float(cfg.tau_syn), "tau_mem": float(cfg.tau_mem), "threshold": float(cfg.threshold),
                "reset": cfg.reset}
    return nir.NIRGraph(nodes=nodes, edges=list(itertools.pairwise(names)), metadata=metadata)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _one(values, what: str) -> float:
    flat = np.unique(np.asarray(values, np.float64))
    if flat.size != 1:
        raise NIRError(f"{what} differs between neurons; an EventNet shares one value across the network.")
    return float(flat[0])


def _snap(value: float, recorded) -> float:
    """The exactly recorded constant where it agrees with the node's value (undoes the unit round trip)."""
    if recorded is not None and abs(float(recorded) - value) <= 1e-9 * abs(value):
        return float(recorded)
    return value


def exact_from_nir(graph, *, time_unit: float | None = None, t_end: float | None = None,
                   max_spikes: int | tuple[int, ...] | None = None, dtype=jnp.float32) -> EventNet:
    """An EventNet from a feed-forward continuous-time ``nir.NIRGraph`` of ``CubaLIF`` (and a last ``CubaLI``).

    Args:
      graph: the graph (from :func:`exact_to_nir`, :func:`read_exact_nir`'s file or another tool).
      time_unit: seconds per time unit of the result (default: the graph's metadata, else 1e-3).
      t_end: simulated window in those units (default: the graph's metadata; required otherwise).
      max_spikes: spike buffers per layer (default: each node's metadata, else 4).
      dtype: weight dtype.

    Returns:
      The EventNet; node i's incoming weight row n becomes ``W[n] * r_n w_in_n / (tau_syn theta_n)`` with
      threshold 1 where the thresholds differ (else the shared threshold).

    Raises:
      NIRError: node types it cannot import (named), or parameters without an EventNet form.

    Example:
      >>> import jax
      >>> net = EventNet((3, 4, 2), key=jax.random.key(0))
      >>> back = exact_from_nir(exact_to_nir(net))
      >>> bool(jax.numpy.all(back.weights[1] == net.weights[1]))
      True
    """
    meta = dict(graph.metadata or {})
    unknown = sorted({type(node).__name__ for node in graph.nodes.values()} - set(_IMPORTABLE))
    if unknown:
        extra = (" A LIF's potential jumps at every input spike, which a current-based neuron reaches only as "
                 "tau_syn -> 0, never exactly." if "LIF" in unknown else "")
        raise NIRError(f"cannot import node types {unknown} into an EventNet; it imports Linear/Affine (zero "
                       f"bias) followed by CubaLIF, and a CubaLI readout.{extra}")
    unit = float(time_unit if time_unit is not None else meta.get("time_unit", 1e-3))
    if t_end is None:
        if "t_end" not in meta:
            raise NIRError("the graph records no t_end; pass t_end= (the simulated window, in the net's units).")
        t_end = float(meta["t_end"])
    order = _chain(graph)
    if len(order) < 2 or len(order) % 2:
        raise NIRError(f"expected (Linear, CubaLIF) pairs from input to output; got {order}.")
    weights, taus, thresholds, resets, buffers, readout = [], set(), [], set(), [], "spiking"
    for position in range(0, len(order), 2):
        lin, neuron = graph.nodes[order[position]], graph.nodes[order[position + 1]]
        lname, nname = type(lin).__name__, type(neuron).__name__
        what = f"node {order[position + 1]!r} ({nname})"
        if lname not in ("Linear", "Affine") or nname not in ("CubaLIF", "CubaLI"):
            raise NIRError(f"nodes {order[position]!r}, {order[position + 1]!r} are ({lname}, {nname}); expected a "
                           "Linear or Affine followed by a CubaLIF or CubaLI.")
        if lname == "Affine" and np.any(np.asarray(lin.bias) != 0):
            raise NIRError(f"node {order[position]!r} has a non-zero bias; an EventNet has none (use a bias "
                           "input spike).")
        last = position + 2 == len(order)
        if nname == "CubaLI" and not last:
            raise NIRError(f"{what} is a non-spiking readout but not the last layer.")
        if np.any(np.asarray(neuron.v_leak) != 0):
            raise NIRError(f"{what}: v_leak must be 0.")
        node_meta = dict(neuron.metadata or {})
        tau_syn = _one(neuron.tau_syn, f"{what} tau_syn")
        taus.add((tau_syn / unit, _one(neuron.tau_mem, f"{what} tau_mem") / unit))
        gain = np.asarray(neuron.r, np.float64) * np.asarray(neuron.w_in, np.float64) / tau_syn
        w = np.asarray(lin.weight, np.float64) * np.broadcast_to(gain, (np.asarray(lin.weight).shape[0],))[:, None]
        if nname == "CubaLIF":
            if np.any(np.asarray(neuron.v_reset) != 0):
                raise NIRError(f"{what}: v_reset must be 0 (an EventNet resets to 0).")
            theta = np.broadcast_to(np.asarray(neuron.v_threshold, np.float64), (w.shape[0],))
            if np.any(theta <= 0):
                raise NIRError(f"{what}: thresholds must be positive.")
            thresholds.append(theta)
            resets.add(_text(node_meta.get("reset", "zero")))
        else:
            readout = "integrator"
            thresholds.append(None)
        weights.append(w)
        buffers.append(int(node_meta.get("max_spikes", 4)))
    if len(taus) != 1:
        raise NIRError(f"all neuron nodes must share tau_syn and tau_mem (an EventNet has one pair); got {sorted(taus)}.")
    tau_syn, tau_mem = taus.pop()
    shared = {float(v) for theta in thresholds if theta is not None for v in theta}
    if not shared:
        raise NIRError("the graph has no spiking (CubaLIF) layer.")
    threshold = shared.pop() if len(shared) == 1 else 1.0
    if shared:  # several thresholds: normalise each spiking neuron's row to threshold 1
        weights = [w if theta is None else w / theta[:, None] for w, theta in zip(weights, thresholds, strict=True)]
    cfg = LIFConfig(tau_syn=_snap(tau_syn, meta.get("tau_syn")), tau_mem=_snap(tau_mem, meta.get("tau_mem")),
                    threshold=_snap(threshold, meta.get("threshold")), t_end=float(t_end),
                    reset=resets.pop() if len(resets) == 1 else "zero")
    sizes = (weights[0].shape[1], *(w.shape[0] for w in weights))
    net = EventNet(sizes, key=jax.random.key(0), cfg=cfg, max_spikes=tuple(buffers) if max_spikes is None else
                   max_spikes, dtype=dtype, readout=readout)
    return eqx.tree_at(lambda n: n.weights, net, [jnp.asarray(w, dtype) for w in weights])


def write_exact_nir(path: str | os.PathLike, net: EventNet, **kwargs) -> None:
    """Export an EventNet (see :func:`exact_to_nir` for ``kwargs``) to a NIR HDF5 file, atomically."""
    import tempfile

    nir = _nir()
    graph = exact_to_nir(net, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_exact_nir(path: str | os.PathLike, **kwargs) -> EventNet:
    """Read a NIR HDF5 file into an EventNet (see :func:`exact_from_nir` for ``kwargs``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NIR file {path} does not exist.")
    return exact_from_nir(_nir().read(str(path)), **kwargs)
