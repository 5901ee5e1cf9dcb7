"""Lowering event-driven (exact-gradient) networks: discretise, then the usual tables, and an agreement report.

An :class:`~jsnn.exact.EventNet` is continuous-time CuBa-LIF. :func:`lower_exact` discretises it with the
exact per-step propagator (:func:`jsnn.exact.to_sequential`), bins the calibration spike times onto the
grid (:func:`jsnn.exact.bin_spikes`) and hands the resulting ``Sequential`` of ``CubaLIF`` layers to
:func:`~jsnn.lower.calibrate.lower_calibrated`, so tables, C program and integer simulator are the ones of
every other network. Only targets that hold a current-based neuron take it.

:func:`agreement_report` measures, for one dt, what each stage loses: the spike-time error of the
discrete float network against the event-driven one (first spikes of directly driven neurons lie within
one step when the inputs are on the grid), spike presence and count agreement per layer, the
float-vs-integer spike agreement as ``jsnn lower`` reports it, and the decisions of all three.

References:
  Rotter and Diesmann, "Exact digital simulation of time-invariant linear systems with applications to
  neuronal modeling", Biol. Cybern. 81, 1999.
  Davies et al., "Loihi: a neuromorphic manycore processor with on-chip learning", IEEE Micro 2018.
"""

from __future__ import annotations

from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jsnn.exact.discrete import (
    bin_spikes,
    check_dt,
    discrete_first_spike_times,
    n_steps,
    to_sequential,
)
from jsnn.exact.losses import first_spike_times
from jsnn.exact.net import EventNet
from jsnn.lower.calibrate import lower_calibrated, spike_agreement
from jsnn.lower.intsim import simulate_int
from jsnn.lower.profiles import PROFILES, Profile, get_profile
from jsnn.lower.tables import LoweringError, Tables, quantize_inputs
from jsnn.nn import Sequential
from jsnn.simulate import simulate

__all__ = ["Decision", "agreement_report", "bin_batch", "cuba_targets", "lower_exact"]

Decision = Literal["first_spike", "count", "voltage"]


def cuba_targets() -> list[str]:
    """The shipped targets that hold current-based (``CubaLIF``) neurons.

    Example:
      >>> "loihi" in cuba_targets(), "speck" in cuba_targets()
      (True, False)
    """
    return sorted(name for name, p in PROFILES.items() if "CubaLIF" in p.neurons)


def bin_batch(net: EventNet, in_times: Float[Array, "B n_in K"], dt: float) -> Float[Array, "B T n_in"]:
    """Input spike times of a batch, binned onto the grid of ``dt`` over ``[0, t_end]`` (``bin_spikes``)."""
    steps = n_steps(net.cfg, check_dt(net.cfg, dt))
    return jax.vmap(lambda t: bin_spikes(t, dt, steps))(jnp.asarray(in_times))


def lower_exact(net: EventNet, target: str | Profile, calibration_times: Float[Array, "B n_in K"], dt: float,
                **kwargs: Any) -> tuple[Sequential, Tables, list[dict[str, Any]]]:
    """Discretise ``net`` with step ``dt`` and lower it for a current-based target.

    Args:
      net: a feed-forward EventNet with a spiking readout.
      target: a profile name or :class:`~jsnn.lower.profiles.Profile` that holds ``CubaLIF``.
      calibration_times: input spike times of a few hundred samples (B, n_in, K).
      dt: step in the net's time units (:func:`jsnn.exact.check_dt`); recorded in the manifest.
      **kwargs: passed to :func:`~jsnn.lower.calibrate.lower_calibrated` (``headroom``, ...). ``x_max``
        defaults to the target's largest input count: binned inputs are spike counts, one count per spike
        (input scale 1). Read as analog values instead (x_max = 1), a spike became 255 counts and the
        first layer's scale, bounded by the 17-bit threshold register, left its weights a few levels at
        small dt (9 at dt = 0.05 on the Yin-Yang net).

    Returns:
      ``(seq, tables, report)``: the discretised float network, its tables and the calibration report.

    Raises:
      LoweringError: a target without current-based neurons (the message names those with them), or an
        integrator readout (no non-spiking current-based readout in the tables).
      ValueError: a bad dt (the message says what works), a recurrent net.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> net = EventNet((3, 4, 2), key=jax.random.key(0))
      >>> times = jax.random.uniform(jax.random.key(1), (8, 3, 1)) * 10
      >>> seq, tables, report = lower_exact(net, "loihi", times, 0.5)
      >>> tables.manifest["layers"][0]["kind"], tables.manifest["dt"]
      ('cuba', 0.5)
    """
    profile = get_profile(target)
    if "CubaLIF" not in profile.neurons:
        raise LoweringError(f"target {profile.name!r} cannot hold a current-based (CubaLIF) neuron, which an "
                            f"exact-gradient network needs; targets that can: {', '.join(cuba_targets())}.")
    if net.readout == "integrator":
        raise LoweringError("an integrator (non-spiking CuBa) readout has no table form; lower a net trained "
                            "with a spiking readout, or export it with jsnn.exact.exact_to_nir.")
    seq = to_sequential(net, dt)
    kwargs.setdefault("x_max", float(profile.input_max))
    tables, report, _ = lower_calibrated(seq, profile, np.asarray(bin_batch(net, calibration_times, dt)), dt=dt,
                                         **kwargs)
    return seq, tables, report


def _decide(first: Array, counts: Array, v_sum: Array, decision: Decision, t_end: float) -> Int[Array, " B"]:
    """Class per sample from (B, n_out) first-spike times, spike counts and summed potentials."""
    if decision == "first_spike":
        return jnp.argmin(first, axis=1)
    if decision == "count":  # ties go to the earlier first spike
        return jnp.argmax(counts.astype(first.dtype) - first / (2 * t_end), axis=1)
    return jnp.argmax(v_sum, axis=1)


@eqx.filter_jit
def _event_run(net: EventNet, in_times):
    """The EventNet on a batch; per layer (first spike times, counts, overflow, v_int), and the hidden overflow."""
    results = jax.vmap(net)(in_times)
    first = [jax.vmap(lambda r: first_spike_times(r, net.cfg.t_end))(r) for r in results]
    return first, [r.count for r in results], [r.overflow for r in results], results[-1].v_int


@eqx.filter_jit
def _grid_run(seq: Sequential, binned, threshold, dt, t_end):
    """The discrete net on a batch; per layer (first spike at the grid point, interpolated, count, spikes, v)."""
    _, traces = jax.vmap(lambda x: simulate(seq, x, record=True))(binned)
    return [_grid_times(traces[i].spikes, traces[i].v, threshold, dt, t_end) for i in sorted(traces)]


def _grid_times(spikes, v, threshold, dt, t_end):
    def one(s, u, interpolate):
        return discrete_first_spike_times(s, u, threshold, dt, t_end, interpolate=interpolate)

    return (jax.vmap(lambda s, u: one(s, u, False))(spikes, v), jax.vmap(lambda s, u: one(s, u, True))(spikes, v),
            jnp.sum(spikes > 0, axis=1), jnp.sum(v, axis=1))


def agreement_report(net: EventNet, in_times: Float[Array, "B n_in K"], dt: float, *,
                     labels: Int[Array, " B"] | None = None, tables: Tables | None = None,
                     decision: Decision = "first_spike") -> dict[str, Any]:
    """How the discretised float network (and its integer tables) agree with the event-driven one at ``dt``.

    Args:
      net: the EventNet.
      in_times: input spike times of the samples (B, n_in, K), e.g. ``encode_latency`` of test samples.
      dt: the step.
      labels: class labels (adds accuracies).
      tables: tables of ``to_sequential(net, dt)`` (adds the integer rows, as ``jsnn lower`` reports).
      decision: how a class is read: ``"first_spike"`` (TTFS; sub-step interpolated on the grid),
        ``"count"`` or ``"voltage"`` (integrator readout: the largest integral of v).

    Returns:
      A JSON-able dict: ``dt``, ``steps``, ``layers`` (per spiking layer: ``first_spike_error_mean`` and
      ``_max`` of the grid reading ``(n+1) dt`` over neuron-samples that fire in both, ``within_one_step``,
      ``interpolated_error_mean``, ``fired_agreement``, ``count_agreement``), ``event_overflow_samples``
      (samples where an EventNet hidden buffer overflowed: the discrete net transmits those spikes),
      ``decision_agreement`` (float vs event) and, with ``labels``, ``accuracy_event`` and
      ``accuracy_float``; with ``tables``, ``float_int_spike_agreement`` (``jsnn.lower.spike_agreement``
      on these inputs), ``int_overflow_events``, ``decision_agreement_int_float`` and ``accuracy_int``.

    Example:
      >>> import jax
      >>> net = EventNet((3, 4, 2), key=jax.random.key(0))
      >>> times = jax.random.uniform(jax.random.key(1), (4, 3, 1)) * 10
      >>> report = agreement_report(net, times, 0.5)
      >>> report["steps"], len(report["layers"])
      (40, 2)
    """
    cfg = net.cfg
    seq = to_sequential(net, dt)
    dtype = net.weights[0].dtype
    in_times = jnp.asarray(in_times, dtype)
    binned = bin_batch(net, in_times, dt)
    first_event, count_event, overflow_event, v_int = _event_run(net, in_times)
    grid = _grid_run(seq, binned, jnp.asarray(cfg.threshold, dtype), jnp.asarray(dt, dtype),
                     jnp.asarray(cfg.t_end, dtype))
    spiking = len(net.weights) - (net.readout == "integrator")
    layers = []
    for index in range(spiking):
        t_event = np.asarray(first_event[index])
        t_grid, t_interp, counts_grid, _ = (np.asarray(a) for a in grid[index])
        fired_event, fired_grid = t_event < cfg.t_end, counts_grid > 0
        both = fired_event & fired_grid
        err = np.abs(t_grid - t_event)[both]
        comparable = ~np.asarray(overflow_event[index])
        same_count = counts_grid == np.asarray(count_event[index])
        layers.append({
            "layer": index, "both_fired": int(both.sum()),
            "first_spike_error_mean": float(err.mean()) if err.size else 0.0,
            "first_spike_error_max": float(err.max()) if err.size else 0.0,
            "within_one_step": float((err < dt).mean()) if err.size else 1.0,
            "interpolated_error_mean": float(np.abs(t_interp - t_event)[both].mean()) if err.size else 0.0,
            "fired_agreement": float((fired_event == fired_grid).mean()),
            "count_agreement": float(same_count[comparable].mean()) if comparable.any() else 1.0,
        })
    hidden_overflow = np.zeros(in_times.shape[0], bool)
    for overflow in overflow_event[:-1]:
        hidden_overflow |= np.asarray(overflow).any(axis=1)
    _, first_out, counts_out, v_sum = grid[-1]
    pred_event = _decide(first_event[-1], count_event[-1], v_int, decision, cfg.t_end)
    pred_float = _decide(first_out, counts_out, v_sum, decision, cfg.t_end)
    report: dict[str, Any] = {
        "dt": float(dt), "steps": int(binned.shape[1]), "samples": int(in_times.shape[0]), "decision": decision,
        "layers": layers, "event_overflow_samples": int(hidden_overflow.sum()),
        "decision_agreement": float(jnp.mean(pred_event == pred_float)),
    }
    if labels is not None:
        labels = jnp.asarray(labels)
        report["accuracy_event"] = float(jnp.mean(pred_event == labels.astype(pred_event.dtype)))
        report["accuracy_float"] = float(jnp.mean(pred_float == labels.astype(pred_float.dtype)))
    if tables is not None:
        report["float_int_spike_agreement"] = spike_agreement(seq, tables, binned)
        counts = jnp.asarray(quantize_inputs(tables, binned))
        result = jax.jit(jax.vmap(lambda c: simulate_int(tables, c)))(counts)
        last = tables.manifest["layers"][-1]
        theta = jnp.asarray(tables.arrays[f"layer{last['index']}.threshold"]) << last["threshold_shift"]
        _, first_int, counts_int, v_int_sum = _grid_times(result.spikes[-1], result.v[-1].astype(dtype),
                                                          theta.astype(dtype), dt, cfg.t_end)
        pred_int = _decide(first_int, counts_int, v_int_sum, decision, cfg.t_end)
        report["int_overflow_events"] = int(sum(int(jnp.sum(u)) + int(jnp.sum(v)) for u, v in result.overflow))
        report["decision_agreement_int_float"] = float(jnp.mean(pred_int == pred_float))
        if labels is not None:
            report["accuracy_int"] = float(jnp.mean(pred_int == labels.astype(pred_int.dtype)))
    return report

def run_exact(args, profile: Profile, net: EventNet, training) -> dict[str, Any]:
    """``jsnn lower`` for an exact-gradient checkpoint: discretise at ``--dt``, lower, report, write.

    Every check runs before any file is written: the target must hold CubaLIF, ``--dt`` must be given
    and fit the time constants. The summary adds ``dt`` and the ``agreement`` (:func:`agreement_report`
    on the calibration samples, with their labels).

    Args:
      args: the parsed ``jsnn lower`` arguments.
      profile: the target profile.
      net: the checkpoint's EventNet.
      training: the exact ``TrainingRun`` its header rebuilds (encoding and training data).

    Returns:
      The JSON-able summary ``jsnn lower`` prints.
    """
    from pathlib import Path

    from jsnn.exact.discrete import max_dt
    from jsnn.exact.method import ExactConfig, encode_latency
    from jsnn.exact.nir import exact_to_nir, write_exact_nir
    from jsnn.lower.cli import LowerUsageError
    from jsnn.lower.tables import save_tables

    cfg = net.cfg
    if "CubaLIF" not in profile.neurons:
        raise LowerUsageError(f"target {profile.name!r} cannot hold a current-based (CubaLIF) neuron, which an "
                              f"exact-gradient network needs; targets that can: {', '.join(cuba_targets())}.")
    if args.dt is None:
        raise LowerUsageError(f"an exact-gradient checkpoint needs --dt, the grid step in the net's time units "
                              f"(tau_syn={cfg.tau_syn:g}, tau_mem={cfg.tau_mem:g}): at most {max_dt(cfg):g}, "
                              f"e.g. --dt {max_dt(cfg) / 2:g}.")
    try:
        dt = check_dt(cfg, args.dt)
    except ValueError as err:
        raise LowerUsageError(f"--dt: {err}") from None
    if args.nir:
        exact_to_nir(net)  # fails before any file is written if the net has no NIR form
    config = ExactConfig.from_dict(training.config)
    dtype = net.weights[0].dtype
    x = jnp.asarray(training.train[0][: args.calibration_samples], dtype)
    labels = jnp.asarray(training.train[1][: args.calibration_samples])
    times = jax.vmap(lambda xi: encode_latency(config, xi))(x)
    _, tables, report = lower_exact(net, profile, times, dt, headroom=args.headroom,
                                    compensate_decay=args.compensate_decay)
    decision = {"ttfs": "first_spike", "count": "count"}.get(config.loss, "voltage")
    agreement = agreement_report(net, times, dt, labels=labels, tables=tables, decision=decision)
    files = save_tables(tables, args.out)
    if args.nir:
        files["nir"] = str(Path(args.out) / "network.nir")
        write_exact_nir(files["nir"], net)
    return {"target": profile.name, "weight_bits": profile.weight_bits, "dt": dt, "files": files,
            "report": report, "agreement": agreement}
