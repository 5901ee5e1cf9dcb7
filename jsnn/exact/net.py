"""Feed-forward event-driven CuBa-LIF networks and their exact spike-time Jacobian.

References:
  Lee, Haghighatshoar, Karbasi, "Exact gradient computation for spiking neural networks via forward
  propagation", AISTATS 2023, arXiv 2210.15415.
  Wunderlich and Pehle, "Event-based backpropagation can compute exact gradients for spiking neural
  networks", Sci. Rep. 2021, arXiv 2009.08378.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .adjoint import layer_core_adjoint
from .flow import LIFConfig
from .parallel import layer_core_parallel
from .readout import integrator_readout
from .recurrent import recurrent_layer_core
from .simulate import LayerResult, layer_core, sort_events

__all__ = ["EventNet", "spike_time_jacobian"]

GradMode = Literal["fp", "autodiff", "adjoint"]
SimMode = Literal["event", "parallel"]
ReadoutMode = Literal["spiking", "integrator"]


class EventNet(eqx.Module):
    """A network of continuous-time CuBa-LIF layers, simulated event by event (optionally recurrent).

    Layer l has weights ``weights[l]`` of shape (out, in) and a spike buffer of ``max_spikes[l]`` spikes
    per neuron; ``max_events[l]`` optionally caps the number of input events layer l sees (the earliest
    ones). With ``rec_weights``, hidden layer l also feeds its own spikes back through ``rec_weights[l]``
    (``recurrent_layer_core``). All layers share the constants ``cfg``. Single-sample semantics: batch with
    ``jax.vmap``.

    Attributes:
      weights: one (out, in) matrix per layer.
      rec_weights: one (n, n) recurrent matrix per hidden layer (``rec[n, m]``: from neuron m to n), or
        ``None`` for a feed-forward net. The output layer is feed-forward.
      cfg: neuron constants (static).
      max_spikes: buffer size per neuron, per layer (static).
      max_events: input-event cap per layer, ``None`` for no cap (static).
      sim: layer simulator of the ``"fp"`` and ``"autodiff"`` gradient modes (static): ``"event"`` steps each
        neuron through event slots (``layer_core``); ``"parallel"`` handles all neurons at once and solves
        for a crossing only where a spike is (``layer_core_parallel``: the same results and derivatives to
        rounding, much faster for wide layers). ``grad="adjoint"`` always runs ``layer_core_adjoint``, whose
        forward pass is ``layer_core``.
      readout: ``"spiking"`` (the last layer is a CuBa-LIF layer like the others) or ``"integrator"`` (a
        non-spiking leaky-integrator readout in closed form, ``integrator_readout``: its potential is smooth
        in the weights, for voltage losses) (static).

    Example:
      >>> import equinox as eqx, jax
      >>> net = EventNet((5, 8, 3), key=jax.random.key(0))
      >>> out = eqx.filter_jit(net)(jax.numpy.zeros((5, 1)))
      >>> out[-1].times.shape
      (3, 4)
    """

    weights: list[Float[Array, "out in"]]
    rec_weights: list[Float[Array, "n n"]] | None
    cfg: LIFConfig = eqx.field(static=True)
    max_spikes: tuple[int, ...] = eqx.field(static=True)
    max_events: tuple[int | None, ...] = eqx.field(static=True)
    sim: SimMode = eqx.field(static=True, default="event")
    readout: ReadoutMode = eqx.field(static=True, default="spiking")

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        key: PRNGKeyArray,
        cfg: LIFConfig = LIFConfig(),
        max_spikes: Sequence[int] | int = 4,
        max_events: Sequence[int | None] | None = None,
        init: Sequence[tuple[float, float]] | None = None,
        dtype=jnp.float32,
        sim: SimMode = "event",
        readout: ReadoutMode = "spiking",
        recurrent: tuple[float, float] | None = None,
    ):
        """Build a network with Gaussian weights ``W_l ~ N(mean_l, std_l^2)``.

        Args:
          sizes: ``(n_inputs, n_hidden..., n_outputs)``.
          key: PRNG key (keyword-only).
          cfg: neuron constants.
          max_spikes: spikes per neuron per layer (one int for all layers, or one per layer).
          max_events: per-layer input-event caps (``None`` entries for none).
          init: ``(mean, std)`` per layer; default mean ``6 threshold / fan_in`` and std
            ``2 threshold / sqrt(fan_in)``, so that a layer's summed input can cross the threshold.
          dtype: parameter dtype (float32 default).
          sim: ``"event"`` or ``"parallel"`` (see the class attributes).
          readout: ``"spiking"`` or ``"integrator"`` (see the class attributes).
          recurrent: ``(mean, std)`` of Gaussian recurrent weights for every hidden layer, or ``None`` (no
            recurrent connections). Recurrent layers run ``recurrent_layer_core`` (one event loop over the
            layer) in every gradient mode but ``"adjoint"``, which does not support them.

        Raises:
          ValueError: for inconsistent sizes, per-layer settings, an unknown ``sim`` or ``readout``, or an input-event
            cap on an integrator readout.
        """
        if sim not in get_args(SimMode):
            raise ValueError(f"sim must be 'event' (event-slot scan) or 'parallel' (vectorised core); got {sim!r}.")
        if readout not in get_args(ReadoutMode):
            raise ValueError(f"readout must be 'spiking' or 'integrator' (non-spiking); got {readout!r}.")
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least (inputs, outputs), all positive; got {sizes}.")
        n_layers = len(sizes) - 1
        if isinstance(max_spikes, int):
            max_spikes = (max_spikes,) * n_layers
        if max_events is None:
            max_events = (None,) * n_layers
        if len(max_spikes) != n_layers or len(max_events) != n_layers:
            raise ValueError(f"max_spikes and max_events need one entry per layer ({n_layers}); got "
                             f"{max_spikes!r} and {max_events!r}.")
        if readout == "integrator" and max_events[-1] is not None:
            raise ValueError("an integrator readout takes every input spike in closed form; set the last "
                             f"max_events entry to None (got {max_events[-1]}).")
        if init is None:
            init = [(6.0 * cfg.threshold / fan_in, 2.0 * cfg.threshold / fan_in**0.5) for fan_in in sizes[:-1]]
        if len(init) != n_layers:
            raise ValueError(f"init needs one (mean, std) per layer ({n_layers}); got {init!r}.")
        keys = jax.random.split(key, n_layers)
        self.weights = [
            m + s * jax.random.normal(k, (n_out, n_in), dtype)
            for k, n_in, n_out, (m, s) in zip(keys, sizes[:-1], sizes[1:], init)
        ]
        self.rec_weights = None if recurrent is None else [
            recurrent[0] + recurrent[1] * jax.random.normal(k, (n, n), dtype)
            for k, n in zip(jax.random.split(jax.random.fold_in(key, 1), n_layers), sizes[1:-1])
        ]
        self.cfg = cfg
        self.max_spikes = tuple(int(k) for k in max_spikes)
        self.max_events = tuple(max_events)
        self.sim = sim
        self.readout = readout

    def __call__(self, in_times: Float[Array, "n_in K_in"], *, grad: GradMode = "autodiff") -> list[LayerResult]:
        """Simulate the network on one sample's input spike times.

        Args:
          in_times: spike times per input neuron (n_in, K_in); ``inf`` for empty slots. A (n_in,) vector is
            read as one spike per input.
          grad: which derivative rule reverse mode uses: ``"autodiff"`` or ``"fp"`` differentiate through
            the event scan with the IFT spike-time rule (``jax.jvp``/``jacfwd`` is then FP), ``"adjoint"``
            uses the hand-written EventProp ``custom_vjp`` (reverse mode only, O(spikes) memory). ``self.sim``
            picks the simulator of ``"autodiff"``/``"fp"``; ``"adjoint"`` always uses the event scan.

        Returns:
          One ``LayerResult`` per layer (an integrator readout's has no spikes). The ``overflow`` of a layer
          also flags inputs cut by its ``max_events``, and every neuron of every layer after one that
          overflowed (its input spike list was truncated), so a False flag always means an exact result.
        """
        in_times = jnp.asarray(in_times)
        if in_times.ndim == 1:
            in_times = in_times[:, None]
        n_in = self.weights[0].shape[1]
        if in_times.ndim != 2 or in_times.shape[0] != n_in:
            raise ValueError(f"in_times must be (n_inputs={n_in}, K) or (n_inputs,); got {in_times.shape}. "
                             "Batch with jax.vmap.")
        if in_times.dtype != self.weights[0].dtype:
            raise ValueError(f"in_times dtype {in_times.dtype} differs from the weights' {self.weights[0].dtype}; "
                             "cast the inputs with .astype().")
        if grad not in ("fp", "autodiff", "adjoint"):
            raise ValueError(f"grad must be 'fp', 'autodiff' or 'adjoint'; got {grad!r}.")
        if grad == "adjoint" and self.rec_weights:
            raise ValueError("the hand adjoint (grad='adjoint') covers feed-forward layers only; use "
                             "grad='autodiff' (reverse mode) or 'fp' for a recurrent net.")
        if grad == "adjoint":
            core = layer_core_adjoint
        else:
            core = layer_core_parallel if self.sim == "parallel" else layer_core
        results = []
        times = in_times
        lost = jnp.asarray(False)  # whether an earlier layer lost spikes: every later result depends on them
        for layer, (weight, k, cap) in enumerate(zip(self.weights, self.max_spikes, self.max_events)):
            last = layer == len(self.weights) - 1
            if self.readout == "integrator" and last:
                res = integrator_readout(weight, times, self.cfg)
            else:
                ev_t, ev_src, cut = sort_events(times, cap)
                if self.rec_weights is not None and not last:
                    res = recurrent_layer_core(weight, self.rec_weights[layer], ev_t, ev_src, self.cfg, k)
                else:
                    res = core(weight, ev_t, ev_src, self.cfg, k)
                res = res._replace(overflow=res.overflow | cut)
            res = res._replace(overflow=res.overflow | lost)
            lost = jnp.any(res.overflow)
            results.append(res)
            times = res.times
        return results


def spike_time_jacobian(net: EventNet, in_times: Float[Array, "n_in K_in"]) -> list[list[Array]]:
    """Exact Jacobian of every buffered spike time with respect to every weight, by forward mode (FP).

    ``J[l][m][n, k, i, j] = d t_{l,n,k} / d M_m[i, j]`` where ``t_{l,n,k}`` is the k-th spike of neuron n
    in layer l and ``M = net.weights + net.rec_weights`` lists every weight matrix of the net: the
    feed-forward ones (m < L), then, for a recurrent net, the recurrent matrix of each hidden layer
    (m = L + h for hidden layer h). Each spike time's derivative is the IFT rule
    ``-(dV/dW)(t_k) / Vdot(t_k)`` propagated forward through the events (no stored trajectory, no backward
    pass). Empty slots have zero rows.

    Args:
      net: the network.
      in_times: one sample's input spike times (n_in, K_in).

    Returns:
      ``J[l][m]`` of shape ``(n_l, max_spikes_l, *M[m].shape)``.

    References:
      Lee, Haghighatshoar, Karbasi, arXiv 2210.15415.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jsnn.exact.flow import LIFConfig
      >>> net = EventNet((1, 1), key=jax.random.key(0), max_spikes=1)
      >>> net = eqx.tree_at(lambda n: n.weights, net, [jnp.array([[5.0]])])
      >>> J = spike_time_jacobian(net, jnp.array([[1.0]]))
      >>> round(float(J[0][0][0, 0, 0, 0]), 6)
      -1.236068
    """
    n_ff = len(net.weights)

    def times(matrices):
        net_w = eqx.tree_at(lambda n: n.weights, net, matrices[:n_ff])
        if net.rec_weights is not None:
            net_w = eqx.tree_at(lambda n: n.rec_weights, net_w, matrices[n_ff:])
        return [r.times for r in net_w(in_times, grad="fp")]

    return jax.jacfwd(times)(list(net.weights) + list(net.rec_weights or []))
