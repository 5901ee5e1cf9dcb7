"""Deploying event-driven CuBa-LIF nets: continuous-time NIR, exact discretisation, lowering (float64)."""

import argparse
import dataclasses
import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import nir
import numpy as np
import pytest
from test_lower_intsim import _run_c

from jsnn.checkpoint import save_checkpoint
from jsnn.exact import (
    EventNet,
    LIFConfig,
    bin_spikes,
    check_dt,
    exact_from_nir,
    exact_to_nir,
    from_sequential,
    n_steps,
    read_exact_nir,
    to_sequential,
    write_exact_nir,
)
from jsnn.exact.method import ExactConfig, build_exact, encode_latency
from jsnn.lower import (
    LoweringError,
    agreement_report,
    load_tables,
    lower_exact,
    quantize_inputs,
    simulate_int,
)
from jsnn.lower import cli as lower_cli
from jsnn.lower.exact import bin_batch
from jsnn.lower.nir_io import NIRError
from jsnn.lower.profiles import PROFILES
from jsnn.neurons import LIF, CubaLIF
from jsnn.nn import Linear, Sequential
from jsnn.simulate import simulate

CFG = LIFConfig(tau_syn=5.0, tau_mem=10.0, t_end=30.0)
F64 = jnp.float64


def _net(sizes=(5, 12, 3), *, seed=0, readout="spiking", cfg=CFG):
    return EventNet(sizes, key=jax.random.key(seed), cfg=cfg, dtype=F64, readout=readout, max_spikes=6,
                    init=[(1.2, 0.8)] * (len(sizes) - 2) + [(0.5, 0.5)])


def _times(n_in, batch, *, grid=None, seed=1):
    t = jax.random.uniform(jax.random.key(seed), (batch, n_in, 1), F64) * 10.0
    return t if grid is None else jnp.floor(t / grid) * grid


@eqx.filter_jit
def _run(net, times):
    return jax.vmap(net)(times)


def _spike_times(net, times):
    return [np.asarray(r.times) for r in _run(net, times)]


# ----------------------------------------------------------------------------- NIR, continuous time
def test_nir_fields_and_metadata_follow_the_spec():
    graph = exact_to_nir(_net(readout="integrator"))
    assert [type(graph.nodes[k]).__name__ for k in ("0", "1", "2", "3")] == ["Linear", "CubaLIF", "Linear", "CubaLI"]
    hidden = graph.nodes["1"]
    np.testing.assert_array_equal(hidden.tau_syn, np.full(12, 5e-3))
    np.testing.assert_array_equal(hidden.w_in, hidden.tau_syn)  # an impulse of weight w makes I jump by w
    np.testing.assert_array_equal(hidden.r, np.ones(12))
    np.testing.assert_array_equal(hidden.v_reset, np.zeros(12))
    assert graph.nodes["0"].weight.shape == (12, 5)
    assert hidden.metadata["max_spikes"] == 6 and hidden.metadata["reset"] == "zero"
    assert graph.metadata["t_end"] == 30.0 and graph.metadata["readout"] == "integrator"


@pytest.mark.parametrize("readout", ["spiking", "integrator"])
def test_nir_file_round_trip_gives_identical_spike_times(tmp_path, readout):
    net = _net(readout=readout)
    write_exact_nir(tmp_path / "net.nir", net)
    back = read_exact_nir(tmp_path / "net.nir", dtype=F64)
    assert back.cfg == net.cfg and back.max_spikes == net.max_spikes and back.readout == readout
    times = _times(5, 16)
    for a, b in zip(_spike_times(net, times), _spike_times(back, times), strict=True):
        np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
        np.testing.assert_allclose(a[np.isfinite(a)], b[np.isfinite(b)], rtol=0, atol=1e-9)
    if readout == "integrator":
        v = [_run(n, times)[-1].v_int for n in (net, back)]
        np.testing.assert_allclose(v[0], v[1], rtol=1e-12)


def _graph(r, w_in, theta, *, kind=nir.CubaLIF, tau_syn=5e-3):
    w = np.array([[2.0, 1.5], [1.0, 3.0]])
    n = np.ones(2)
    neuron = kind(tau_syn=tau_syn * n, tau_mem=1e-2 * n, r=np.asarray(r), v_leak=0 * n, v_threshold=np.asarray(theta),
                  v_reset=0 * n, w_in=np.asarray(w_in)) if kind is nir.CubaLIF else kind(
        tau=1e-2 * n, r=n, v_leak=0 * n, v_threshold=n, v_reset=0 * n)
    nodes = {"input": nir.Input(input_type={"input": np.array([2])}), "w": nir.Linear(weight=w), "n": neuron,
             "output": nir.Output(output_type={"output": np.array([2])})}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "w"), ("w", "n"), ("n", "output")], metadata={"t_end": 30.0})


def test_nir_import_folds_r_w_in_and_thresholds_into_the_weights():
    # other tools' conventions: r, w_in and thresholds per neuron; spikes depend only on W r w_in / (tau_syn theta)
    graph = _graph(r=[2.0, 0.5], w_in=[5e-3, 2e-2], theta=[2.0, 1.0])
    net = exact_from_nir(graph, dtype=F64)
    np.testing.assert_allclose(net.weights[0], [[2.0, 1.5], [2.0, 6.0]], rtol=1e-12)  # rows x (1, 2), theta 1
    assert net.cfg.threshold == 1.0 and net.cfg.tau_syn == pytest.approx(5.0) and net.cfg.t_end == 30.0


def test_nir_import_refuses_what_it_cannot_represent():
    with pytest.raises(NIRError, match=r"\['LIF'\].*tau_syn -> 0"):
        exact_from_nir(_graph(None, None, None, kind=nir.LIF))
    graph = _graph([1.0, 1.0], [5e-3, 5e-3], [1.0, 1.0])
    graph.nodes["n"].v_leak = np.array([0.0, 0.1])
    with pytest.raises(NIRError, match="v_leak"):
        exact_from_nir(graph)
    graph = _graph([1.0, 1.0], [5e-3, 5e-3], [1.0, 1.0])
    graph.nodes["n"].tau_syn = np.array([5e-3, 6e-3])
    with pytest.raises(NIRError, match="tau_syn differs"):
        exact_from_nir(graph)


# ----------------------------------------------------------------------------- discretisation
def test_exact_propagator_reproduces_the_continuous_potential_on_the_grid():
    # sub-threshold (no spike), inputs on the grid: v at the last step is V(t_end) to rounding, at any dt
    net = _net()
    net = eqx.tree_at(lambda n: n.weights, net, [w * 0.02 for w in net.weights])
    times = _times(5, 4, grid=0.5)
    v_end = _run(net, times)[0].v_end
    for dt in (0.5, 0.1):
        _, traces = jax.vmap(lambda x, dt=dt: simulate(to_sequential(net, dt), x, record=True))(
            bin_batch(net, times, dt))
        assert not traces[1].spikes.any()
        np.testing.assert_allclose(traces[1].v[:, -1], v_end, rtol=0, atol=1e-13)


@pytest.fixture(scope="module")
def reports():
    net, times = _net(seed=4), _times(5, 24, grid=0.2)  # inputs on every grid below
    return net, times, [agreement_report(net, times, dt) for dt in (0.2, 0.1, 0.05, 0.02)]


def test_first_spikes_of_directly_driven_neurons_lie_within_one_step(reports):
    layer = reports[2][0]["layers"][0]  # dt = 0.2
    assert layer["both_fired"] > 100 and layer["within_one_step"] == 1.0
    assert layer["first_spike_error_max"] < 0.2
    assert layer["interpolated_error_mean"] < layer["first_spike_error_mean"] / 10  # V interpolated: O(dt^2)


def test_counts_agree_and_the_error_shrinks_with_dt(reports):
    net, times, reports = reports
    for layer in range(2):
        errors = [r["layers"][layer]["first_spike_error_mean"] for r in reports]
        assert all(a > b for a, b in itertools.pairwise(errors)), errors
        assert errors[-1] < 0.02
    fine = reports[-1]
    assert fine["layers"][0]["fired_agreement"] == 1.0 and fine["layers"][1]["fired_agreement"] == 1.0
    assert fine["decision_agreement"] == 1.0
    # spike counts are equal wherever every crossing is transversal (dV/dt >= 0.1 theta / tau_mem at each spike):
    # a grazing crossing can fall between two grid points
    hidden = _run(net, times)[0]
    _, traces = jax.vmap(lambda x: simulate(to_sequential(net, 0.02), x, record=True))(bin_batch(net, times, 0.02))
    slopes = np.where(np.isfinite(hidden.times), hidden.i_spike - CFG.threshold, 1.0)
    separated = np.all(slopes > 0.1, axis=-1) & ~np.asarray(hidden.overflow)
    assert separated.mean() > 0.9
    counts = np.asarray(traces[1].spikes).sum(axis=1)
    np.testing.assert_array_equal(counts[separated], np.asarray(hidden.count)[separated])


def test_sequential_round_trip():
    net, dt = _net(readout="integrator"), 0.25
    seq = to_sequential(net, dt)
    assert isinstance(seq.layers[1], CubaLIF) and seq.layers[3].reset == "none"
    back = from_sequential(seq, dt, t_end=CFG.t_end, max_spikes=6)
    assert back.readout == "integrator"
    assert back.cfg.tau_syn == pytest.approx(5.0, rel=1e-13) and back.cfg.tau_mem == pytest.approx(10.0, rel=1e-13)
    for a, b in zip(net.weights, back.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    times = _times(5, 8)
    a, b = _spike_times(net, times)[0], _spike_times(back, times)[0]
    np.testing.assert_allclose(np.where(np.isfinite(a), a, -1), np.where(np.isfinite(b), b, -1), rtol=0, atol=1e-9)
    again = to_sequential(back, dt)
    for x, y in zip(jax.tree.leaves(seq), jax.tree.leaves(again), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-13)


def test_bad_steps_and_layers_are_refused():
    with pytest.raises(ValueError, match="positive"):
        check_dt(CFG, 0.0)
    with pytest.raises(ValueError, match="positive"):
        check_dt(CFG, float("nan"))
    with pytest.raises(ValueError, match=r"too coarse.*dt <= 1.25"):
        to_sequential(_net(), 2.0)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="bias-free Linear"):
        from_sequential(Sequential([Linear(2, 2, key=key), CubaLIF()]), 0.5, t_end=10.0)
    with pytest.raises(ValueError, match="bias-free Linear"):
        from_sequential(Sequential([Linear(2, 2, use_bias=False, key=key), LIF()]), 0.5, t_end=10.0)
    two = Sequential([Linear(2, 2, use_bias=False, key=key), CubaLIF(decay_mem=0.9),
                      Linear(2, 2, use_bias=False, key=key), CubaLIF(decay_mem=0.8)])
    with pytest.raises(ValueError, match="one decay_mem"):
        from_sequential(two, 0.5, t_end=10.0)


# ----------------------------------------------------------------------------- lowering and the CLI
def _parse(argv):
    parser = argparse.ArgumentParser()
    lower_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["lower", *argv])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run = build_exact({"data": "yinyang", "hidden": [8], "epochs": 1, "seed": 0})
    path = tmp_path_factory.mktemp("exact") / "checkpoint.eqx"
    save_checkpoint(path, run.method.init(jax.random.key(0)), {"config": run.config, "step": 0, "epoch": 0,
                                                                 "batch": 0})
    return path, run


@pytest.fixture(scope="module")
def lowered(tmp_path_factory, checkpoint):
    out = tmp_path_factory.mktemp("lowered")
    result = lower_cli.run(_parse([str(checkpoint[0]), "--target", "loihi", "--dt", "0.5", "--nir", "--out",
                                   str(out), "--calibration-samples", "16"]))
    return out, result


def test_cli_lowers_an_exact_checkpoint_and_writes_continuous_nir(lowered, checkpoint):
    out, result = lowered
    assert result["dt"] == 0.5 and load_tables(out).manifest["dt"] == 0.5
    assert [layer["kind"] for layer in load_tables(out).manifest["layers"]] == ["cuba", "cuba"]
    path, run = checkpoint
    net, back = run.load_network(path), read_exact_nir(out / "network.nir")
    assert back.cfg == net.cfg
    for a, b in zip(net.weights, back.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    report = result["agreement"]  # on the 16 calibration samples
    assert report["steps"] == 60 and report["samples"] == 16
    assert report["float_int_spike_agreement"] > 0.95
    assert {"accuracy_event", "accuracy_float", "accuracy_int", "decision_agreement_int_float"} <= set(report)


def test_tables_c_program_and_integer_simulator_agree_bit_for_bit(tmp_path, lowered, checkpoint):
    tables = load_tables(lowered[0])
    assert min(layer["weight_exp"] for layer in tables.manifest["layers"]) > 0  # shifted mantissas in C too
    path, run = checkpoint
    net = run.load_network(path)
    times = jax.vmap(lambda x: encode_latency(ExactConfig.from_dict(run.config), x))(jnp.asarray(run.test[0][:3]))
    counts = quantize_inputs(tables, bin_batch(net, times, 0.5))
    want = jax.vmap(lambda c: simulate_int(tables, c))(jnp.asarray(counts))
    assert int(np.asarray(want.spikes[0]).sum()) > 0  # not silent
    for b, (layers, ovf) in enumerate(_run_c(tmp_path, tables, counts)):
        for i in range(2):
            np.testing.assert_array_equal(np.array(layers[i]), np.asarray(want.spikes[i][b]))
            assert ovf[i] == tuple(int(a[b]) for a in want.overflow[i])


def _first_steps(spikes):
    fired = np.asarray(spikes) > 0
    return np.where(fired.any(axis=1), fired.argmax(axis=1), -1)  # (B, n): first spike step, -1 if silent


def test_integer_tables_track_the_float_net_at_a_fine_step():
    # regression (issue 16): at dt = tau_syn / 100 the Loihi-like tables drifted from the float net. Binned
    # spikes were read as analog values (a spike = 255 counts, capping the first layer's weights at a few
    # levels), and the state unit was the weights' (the round-toward-zero decay then kills small currents).
    # Now: unit spike counts, all 8 mantissa bits, and a weight exponent that moves u and v onto their range.
    net, times, dt = _net((5, 24, 3), seed=3), _times(5, 64, seed=4), 0.05
    binned = bin_batch(net, times, dt)
    _, traces = jax.vmap(lambda x: simulate(to_sequential(net, dt), x, record=True))(binned)
    float_first = [_first_steps(traces[i].spikes) for i in sorted(traces)]

    def drift(profile, **kwargs):
        _, tables, report = lower_exact(net, profile, times, dt, max_slack=1.0, weight_slacks=(1.0,), **kwargs)
        result = jax.vmap(lambda c: simulate_int(tables, c))(jnp.asarray(quantize_inputs(tables, binned)))
        rows = []
        for a, b in zip(float_first, (_first_steps(s) for s in result.spikes), strict=True):
            both = (a >= 0) & (b >= 0)
            assert both.mean() > 0.3  # enough neurons fire in both to compare
            rows.append((np.abs(a - b)[both].mean(), (np.abs(a - b)[both] <= 1).mean()))
        return tables, report, rows

    tables, report, rows = drift("loihi")
    for row in rows:  # mean first-spike error in steps, fraction within one step, per layer
        assert row[0] < 0.5 and row[1] > 0.95, rows
    for entry, row in zip(tables.manifest["layers"], report, strict=True):
        weight, exp = tables.arrays[f"layer{entry['index']}.weight"], entry["weight_exp"]
        assert exp > 0 and row["weight_exp"] == exp and row["saturation_fraction"] == 0.0
        np.testing.assert_array_equal(weight, (weight >> exp) << exp)  # mantissa << exponent
        assert np.abs(weight >> exp).max() == PROFILES["loihi"].weight_max  # the mantissas use all 8 bits
    # the same nets lowered as before the fix (spikes as analog values, pow2 scales, no exponent) fail it
    before = dataclasses.replace(PROFILES["loihi"], pow2=True, weight_exp_max=0, name="loihi_before")
    _, _, rows = drift(before, x_max=1.0)
    assert rows[0][0] > 2.0 and rows[0][1] < 0.5, rows


def test_targets_without_current_based_neurons_are_refused():
    times = _times(5, 2)
    with pytest.raises(LoweringError, match="targets that can: loihi, spinnaker, xylo"):
        lower_exact(_net(), "speck", times, 0.5)
    with pytest.raises(LoweringError, match="integrator"):
        lower_exact(_net(readout="integrator"), "loihi", times, 0.5)


@pytest.mark.parametrize("argv,match", [
    (["--target", "speck", "--dt", "0.5"], "targets that can: loihi, spinnaker, xylo"),
    (["--target", "loihi"], r"needs --dt.*at most 1.25"),
    (["--target", "loihi", "--dt", "5"], r"too coarse.*dt <= 1.25"),
    (["--target", "loihi", "--dt", "-1"], "positive"),
])
def test_cli_errors_leave_no_output(tmp_path, checkpoint, argv, match):
    out = tmp_path / "out"
    with pytest.raises(lower_cli.LowerUsageError, match=match):
        lower_cli.run(_parse([str(checkpoint[0]), *argv, "--out", str(out)]))
    assert not out.exists()
