"""The bit-exact integer simulator against a plain-Python reference and the C program."""

import dataclasses
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.lower import PROFILES, Profile, lower, quantize_inputs, save_tables, shadow_network, simulate_int
from jsnn.neurons import IF, LI, LIF, CubaLIF
from jsnn.nn import Linear, Sequential
from jsnn.simulate import simulate


def _net(neurons, sizes, *, scale=2.0, seed=0):
    keys = jax.random.split(jax.random.key(seed), len(neurons))
    layers = []
    for k, neuron, n_in, n_out in zip(keys, neurons, sizes[:-1], sizes[1:], strict=True):
        layers += [Linear(n_in, n_out, scale=scale, key=k), neuron]
    return Sequential(layers)


def _inputs(n, *, B=4, T=12, seed=1):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (B, T, n))


# ----------------------------------------------------------------------------- plain-Python reference
def _floor_shift(x, k):
    return x >> k  # Python ints: arithmetic (floor) shift


def _decay(v, enc, code):
    if enc == "none":
        return v
    if enc == "shift":
        return v - _floor_shift(v, code)
    if enc == "mul12_rtz":
        p = (abs(v) * (4096 - code)) >> 12
        return -p if v < 0 else p
    return (v * code) >> 32


def _ovf(x, bits, rule):
    half = 2 ** (bits - 1)
    y = (x + half) % (2 * half) - half if rule == "wrap" else min(max(x, -(half - 1)), half - 1)
    return y, int(y != x)


def reference(tables, counts):
    """The manifest semantics with Python integers, one neuron and one step at a time."""
    x = [[int(c) for c in row] for row in np.asarray(counts)]
    results = []
    for layer in tables.manifest["layers"]:
        p = f"layer{layer['index']}."
        W = tables.arrays[p + "weight"].astype(int).tolist()
        b = tables.arrays[p + "bias"].astype(int).tolist()
        k = layer["threshold_shift"]
        n = len(b)
        spiking = layer["kind"] != "li"
        theta = tables.arrays[p + "threshold"].astype(int).tolist() if spiking else None
        amount = tables.arrays[p + "reset"].astype(int).tolist() if spiking else None
        dm, ds = layer["decay_mem"], layer["decay_syn"]
        u, v, s = [0] * n, [0] * n, [0] * n
        ovf_u = ovf_v = 0
        ys, vs = [], []
        for row in x:
            y_t, v_t = [], []
            for j in range(n):
                c = (sum(W[j][i] * row[i] for i in range(len(row))) + b[j]) * 2**k
                if layer["kind"] == "cuba":
                    u[j], e = _ovf(_decay(u[j], ds["encoding"], ds["code"]) + c, layer["current_bits"],
                                   layer["current_overflow"])
                    ovf_u += e
                    cur = u[j]
                else:
                    cur = c
                if not spiking:
                    pre = _decay(v[j], dm["encoding"], dm["code"]) + cur
                elif layer["reset"] == "zero":
                    pre = _decay(0 if s[j] else v[j], dm["encoding"], dm["code"]) + cur
                elif layer["order"] == "reset_first":
                    pre = _decay(v[j] - amount[j] * 2**k * s[j], dm["encoding"], dm["code"]) + cur
                else:
                    pre = _decay(v[j], dm["encoding"], dm["code"]) - amount[j] * 2**k * s[j] + cur
                v[j], e = _ovf(pre, layer["state_bits"], layer["overflow"])
                ovf_v += e
                if spiking:
                    th = theta[j] * 2**k
                    s[j] = int(v[j] >= th) if layer["cmp"] == ">=" else int(v[j] > th)
                y_t.append(s[j] if spiking else v[j])
                v_t.append(v[j])
            ys.append(y_t)
            vs.append(v_t)
        results.append((ys, vs, (ovf_u, ovf_v)))
        x = ys
    return results


def _assert_matches_reference(tables, counts, got=None):
    got = jax.jit(lambda c: simulate_int(tables, c))(jnp.asarray(counts)) if got is None else got
    for i, (ys, vs, ovf) in enumerate(reference(tables, counts)):
        out = got.v[i] if got.spikes[i] is None else got.spikes[i]
        np.testing.assert_array_equal(np.asarray(out), np.array(ys))
        np.testing.assert_array_equal(np.asarray(got.v[i]), np.array(vs))
        assert tuple(int(a) for a in got.overflow[i]) == ovf
    return got


MIXED = [LIF(decay=0.9), CubaLIF(decay_syn=0.6, decay_mem=0.85, order="reset_first", cmp=">="),
         IF(reset="zero"), LI(decay=0.8)]
TINY_WRAP = Profile(name="tiny_wrap", weight_bits=8, threshold_bits=8, state_bits=8, overflow="wrap",
                    current_bits=8, current_overflow="wrap", input_bits=4)


@pytest.fixture(scope="module", params=["xylo", "loihi", "spinnaker", "tiny_wrap"])
def lowered(request):
    """The mixed net (every neuron kind and decay encoding) lowered once per target, calibrated on
    weaker inputs than it then sees (so the tiny 8-bit wrapping profile overflows), and its
    integer simulation of a small batch (one jit compile per target, shared by the tests)."""
    target = TINY_WRAP if request.param == "tiny_wrap" else request.param
    net = _net(MIXED, [6, 5, 4, 4, 3], scale=3.0)
    x = _inputs(6, B=3)
    tables, _ = lower(net, target, x / 3, x_max=1.0, headroom=1.0)
    counts = quantize_inputs(tables, x)
    batch = jax.jit(jax.vmap(lambda c: simulate_int(tables, c)))(jnp.asarray(counts))
    return request.param, tables, counts, batch


def test_simulator_matches_python_reference_for_every_encoding(lowered):
    name, tables, counts, batch = lowered
    for b in range(2):
        _assert_matches_reference(tables, counts[b], jax.tree.map(lambda a, b=b: a[b], batch))
    assert int(sum(np.asarray(s).sum() for s in batch.spikes if s is not None)) > 0  # not silent
    if name == "tiny_wrap":
        assert sum(int(u.sum()) + int(v.sum()) for u, v in batch.overflow) > 0  # the wrap path is exercised


def test_simulator_matches_reference_per_channel_and_other_rounding():
    profile = dataclasses.replace(PROFILES["xylo"], name="custom", scale_mode="per_channel", rounding="half_away",
                                  spike_cmp=">=", weight_bits=4)
    net = _net([LIF(decay=0.8), LIF(decay=0.5, order="reset_first"), LI(decay=0.9)], [5, 6, 4, 2])
    x = _inputs(5)
    tables, _ = lower(net, profile, x)
    assert np.unique(tables.arrays["layer0.scale"]).size > 1
    _assert_matches_reference(tables, quantize_inputs(tables, x)[1])


@pytest.mark.parametrize("rule", ["wrap", "saturate"])
def test_overflow_follows_the_profile_exactly(rule):
    # an 8-bit state with a generous headroom: the calibrated peak does not fit, so states overflow
    profile = Profile(name="tiny", weight_bits=8, threshold_bits=8, state_bits=8, overflow=rule, current_bits=8,
                      current_overflow=rule, input_bits=4)
    net = _net([CubaLIF(decay_syn=0.9, decay_mem=0.9), LI(decay=0.9)], [4, 3, 2], scale=4.0)
    x = _inputs(4, T=20)
    tables, _ = lower(net, profile, x / 40, x_max=1.0, headroom=1.0)  # calibrated on much weaker inputs
    counts = quantize_inputs(tables, x)
    got = _assert_matches_reference(tables, counts[0])
    assert sum(int(u) + int(v) for u, v in got.overflow) > 0
    lo, hi = -(2**7), 2**7 - 1
    for v in got.v:
        assert int(jnp.min(v)) >= lo and int(jnp.max(v)) <= hi
        if rule == "saturate":
            assert int(jnp.min(v)) >= -hi


def test_ge_model_on_gt_target_gives_identical_spikes():
    net = _net([LIF(decay=0.9, cmp=">="), LI(decay=0.9)], [5, 6, 2])
    x = _inputs(5)
    ge = dataclasses.replace(PROFILES["xylo"], spike_cmp=">=", name="xylo_ge")
    t_gt, _ = lower(net, "xylo", x)
    t_ge, _ = lower(net, ge, x)
    np.testing.assert_array_equal(t_gt.arrays["layer0.threshold"], t_ge.arrays["layer0.threshold"] - 1)
    counts = jnp.asarray(quantize_inputs(t_gt, x))
    a, b = (jax.jit(jax.vmap(lambda c, t=t: simulate_int(t, c)))(counts) for t in (t_gt, t_ge))
    assert int(a.spikes[0].sum()) > 0
    np.testing.assert_array_equal(np.asarray(a.spikes[0]), np.asarray(b.spikes[0]))


def test_float_shadow_reproduces_integer_spikes_and_float_model_mostly_agrees():
    net = _net([LIF(decay=0.75), LI(decay=0.75)], [8, 16, 3])
    x = np.round(_inputs(8, B=16, T=10) * 15) / 15  # exactly representable 4-bit inputs
    tables, _ = lower(net, "xylo", x, x_max=1.0)
    counts = quantize_inputs(tables, x)
    ints = jax.jit(jax.vmap(lambda c: simulate_int(tables, c)))(jnp.asarray(counts))
    int_spikes = np.asarray(ints.spikes[0])
    run = jax.jit(jax.vmap(lambda n, xi: simulate(n, xi, record=True)[1][1].spikes, in_axes=(None, 0)))
    float_spikes = np.asarray(run(net, jnp.asarray(x, jnp.float32)))
    shadow = shadow_network(net, tables, dtype=jnp.float64)
    shadow_spikes = np.asarray(run(shadow, jnp.asarray(counts / tables.manifest["input"]["scale"])))
    assert 0 < int_spikes.mean() < 1
    # the shadow differs from the integers only by the floor inside the shift decay (ALGORITHMS §5.6 item 1)
    assert np.mean(shadow_spikes == int_spikes) >= 0.995
    # vs the unquantised model: documented floor for 8-bit weights, decay 0.75 exact as a shift
    assert np.mean(float_spikes == int_spikes) >= 0.97


def test_bad_counts_are_refused():
    tables, _ = lower(_net([LIF(), LI()], [3, 2, 2]), "xylo", _inputs(3))
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        simulate_int(tables, jnp.full((4, 3), 16, jnp.int32))
    with pytest.raises(TypeError, match="quantize_inputs"):
        simulate_int(tables, jnp.ones((4, 3), jnp.float32))
    with pytest.raises(ValueError, match="shape"):
        simulate_int(tables, jnp.ones((4, 5), jnp.int32))


# ----------------------------------------------------------------------------- the C program
def _run_c(tmp_path, tables, counts):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    files = save_tables(tables, tmp_path)
    exe = tmp_path / "net"
    subprocess.run([cc, "-O2", "-std=c99", "-Wall", "-Werror", "-o", str(exe), files["program"]], check=True,
                   cwd=tmp_path)
    results = []
    for c in counts:
        inp = tmp_path / "in.txt"
        inp.write_text(f"{c.shape[0]} {c.shape[1]}\n" + "\n".join(" ".join(map(str, r)) for r in c) + "\n")
        out = subprocess.run([str(exe), str(inp)], check=True, capture_output=True, text=True).stdout.splitlines()
        layers, ovf = {}, {}
        for line in out:
            parts = line.split()
            if parts[0] == "overflow":
                ovf[int(parts[1][1:])] = (int(parts[2]), int(parts[3]))
            else:
                layers.setdefault(int(parts[0][1:]), []).append([int(v) for v in parts[2:]])
        results.append((layers, ovf))
    return results


def test_c_program_equals_simulator_bit_for_bit(tmp_path, lowered):
    _, tables, counts, batch = lowered
    for b, (layers, ovf) in enumerate(_run_c(tmp_path, tables, counts)):
        got = jax.tree.map(lambda a, b=b: a[b], batch)
        for i, spikes in enumerate(got.spikes):
            want = got.v[i] if spikes is None else spikes
            np.testing.assert_array_equal(np.array(layers[i]), np.asarray(want))
            assert ovf[i] == tuple(int(a) for a in got.overflow[i])
