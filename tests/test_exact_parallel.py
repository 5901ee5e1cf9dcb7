"""jsnn.exact.parallel: the vectorised layer core against the event-slot scan (values, reverse mode, FP).

Compile time dominates, so each neuron configuration is compiled once: ``compare`` (one jit per configuration,
cached) runs both cores on a batch of random layers, and the tests read its results: values under both root
solvers and both resets, derivatives (reverse mode and FP) with the closed form and reset to zero, and a
two-layer network with reset by subtraction.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.cli import main
from jsnn.exact.flow import LIFConfig
from jsnn.exact.method import EXACT_DEFAULTS, ExactConfig
from jsnn.exact.net import EventNet
from jsnn.exact.parallel import layer_core_parallel
from jsnn.exact.simulate import layer_core, sort_events

from test_exact_simulate import jit

F64 = jnp.float64
MAX_SPIKES = 3
# both root solvers and both resets; eps_graze is large in the first so that some crossings count as grazing
CONFIGS = {"closed_form_zero": LIFConfig(tau_syn=5.0, tau_mem=10.0, t_end=30.0, eps_graze=0.1),
           "newton_subtract": LIFConfig(tau_syn=4.0, tau_mem=7.0, t_end=30.0, reset="subtract")}
DERIVATIVES = "closed_form_zero"
# inputs per layer, with 4 spikes each: 24 events, and 64 for the unrolled sweeps of long event lists
N_IN = {"closed_form_zero": 6, "newton_subtract": 16}
K_IN, N_OUT = 4, 12


def finite(t):
    return jnp.where(jnp.isfinite(t), t, jnp.zeros_like(t))


def layers(n_in, n_seeds=4):
    """Random layers (weights, sorted events) with tied times, inf slots and events after t_end.

    Seed 0 has only valid events (every event slot taken); the others mix times in [0, 36) with inf.
    """
    ws, ts = [], []
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        t = rng.uniform(0.0, 25.0 if seed == 0 else 36.0, (n_in, K_IN))
        if seed:
            t[rng.random((n_in, K_IN)) < 0.2] = np.inf
        t[1, 0] = t[0, 0]  # a tie between sources
        t[2, 1] = t[2, 0]  # and within one source
        w = rng.normal(3.0 / n_in, 2.5 / n_in**0.5, (N_OUT, n_in))
        w[0] = 0.0  # a neuron that never fires
        w[1] = 20.0  # one that overflows
        ws.append(w)
        ts.append(t)
    ev_t, ev_src, _ = jax.jit(jax.vmap(sort_events))(jnp.asarray(np.stack(ts), F64))
    return jnp.asarray(np.stack(ws), F64), ev_t, ev_src


def scalar(res):
    """A loss touching times, v_end and v_int (v_end, v_int only where the buffer held every spike)."""
    t = finite(res.times) * jnp.arange(1.0, MAX_SPIKES + 1.0, dtype=F64)
    return (jnp.sum(t) + jnp.sum(jnp.where(res.overflow, 0.0, res.v_end ** 2))
            + jnp.sum(jnp.where(res.overflow, 0.0, jnp.sin(res.v_int))))


@functools.cache
def compare(name):
    """Both cores on ``layers()`` under ``CONFIGS[name]``: results (and for ``DERIVATIVES``, gradients and FP
    tangents), one compile."""
    cfg = CONFIGS[name]
    w, ev_t, ev_src = layers(N_IN[name])
    rng = np.random.default_rng(7)
    dw = rng.normal(size=w.shape)
    dt = np.where(np.isfinite(ev_t) & (np.asarray(ev_t) < cfg.t_end), rng.normal(size=ev_t.shape), 0.0)

    def one(core, w, ev_t, ev_src, dw, dt):
        def f(w, t):  # (differentiable outputs, scalar loss), LayerResult
            r = core(w, t, ev_src, cfg, MAX_SPIKES)
            outputs = finite(r.times), jnp.where(r.overflow, 0.0, r.v_end), jnp.where(r.overflow, 0.0, r.v_int)
            return (outputs, scalar(r)), r

        if name != DERIVATIVES:
            return f(w, ev_t)[1]
        # one linearisation gives both the FP tangents and, transposed, the reverse-mode gradient
        _, f_lin, res = jax.linearize(f, w, ev_t, has_aux=True)
        grads = jax.linear_transpose(lambda a, b: f_lin(a, b)[1], w, ev_t)(jnp.ones((), F64))
        return res, grads, f_lin(dw, dt)[0]

    @jit
    def run(w, ev_t, ev_src, dw, dt):
        return {sim: jax.vmap(functools.partial(one, core))(w, ev_t, ev_src, dw, dt)
                for sim, core in (("event", layer_core), ("parallel", layer_core_parallel))}

    return run(w, ev_t, ev_src, dw, dt), ev_t


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def compared(request):
    return request.param, *compare(request.param)


def results(res, name):
    """The LayerResult of both cores."""
    return (res["event"][0], res["parallel"][0]) if name == DERIVATIVES else (res["event"], res["parallel"])


def test_layers_cover_the_edge_cases(compared):
    name, res, ev_t = compared
    a, _ = results(res, name)
    count = np.asarray(a.count)
    t = np.asarray(ev_t)
    assert np.all(np.isfinite(t[0])) and np.any(np.isinf(t)) and np.any(np.isfinite(t) & (t >= 30.0))
    assert np.any((t[:, 1:] == t[:, :-1]) & np.isfinite(t[:, 1:]))  # tied event times
    for c in (0, 1, MAX_SPIKES):
        assert np.any(count == c), c
    assert np.any(count > MAX_SPIKES + 1)  # overflow; layer_core keeps counting past the buffer
    assert np.any(np.asarray(a.overflow)) and not np.all(np.asarray(a.overflow))
    if name == "closed_form_zero":
        assert int(np.asarray(a.grazing)[~np.asarray(a.overflow)].sum()) > 0


def test_parallel_core_equals_event_scan(compared):
    name, res, _ = compared
    a, b = results(res, name)
    np.testing.assert_array_equal(np.asarray(b.overflow), np.asarray(a.overflow))
    keep = ~np.asarray(a.overflow)
    for field in ("count", "grazing"):
        np.testing.assert_array_equal(np.asarray(getattr(b, field))[keep], np.asarray(getattr(a, field))[keep])
    for field in ("v_end", "v_int"):
        np.testing.assert_allclose(np.asarray(getattr(b, field))[keep], np.asarray(getattr(a, field))[keep],
                                   rtol=1e-9, atol=1e-12)
    # the buffered spikes agree for every neuron, including those that overflow
    np.testing.assert_array_equal(np.isfinite(np.asarray(b.times)), np.isfinite(np.asarray(a.times)))
    np.testing.assert_allclose(finite(b.times), finite(a.times), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.i_spike, a.i_spike, rtol=1e-9, atol=1e-12)
    # an overflowing neuron stops at spike max_spikes + 1 (layer_core runs on while it has slots)
    np.testing.assert_array_equal(np.asarray(b.count)[~keep], MAX_SPIKES + 1)
    assert np.all(np.asarray(a.count)[~keep] >= MAX_SPIKES + 1)


def test_reverse_mode_and_fp_equal_event_scan():
    res, _ = compare(DERIVATIVES)
    for (ga, gb) in zip(res["event"][1], res["parallel"][1]):  # d/dW, d/d(event times)
        scale = float(jnp.max(jnp.abs(ga)))
        assert scale > 0
        np.testing.assert_allclose(gb, ga, rtol=0, atol=1e-8 * scale)
    for ja, jb in zip(res["event"][2], res["parallel"][2]):  # FP tangents of times, v_end, v_int
        scale = float(jnp.max(jnp.abs(ja)))
        assert scale > 0
        np.testing.assert_allclose(jb, ja, rtol=0, atol=1e-8 * scale)


def net_losses(out):
    t_out = finite(out[-1].times)
    return (jnp.sum(t_out * jnp.arange(1.0, t_out.shape[1] + 1.0, dtype=F64)) + jnp.sum(jnp.sin(out[-1].v_int))
            + jnp.sum(out[-1].v_end ** 2) + 0.1 * jnp.sum(finite(out[0].times) ** 2))


def test_event_net_parallel_equals_event_under_jit_and_vmap():
    # reset by subtraction here (the cores' derivatives are compared with reset to zero); FP gradients
    # (grad="fp"), batched with vmap
    cfg = LIFConfig(tau_syn=5.0, tau_mem=10.0, t_end=30.0, reset="subtract")
    nets = {sim: EventNet((3, 5, 2), key=jax.random.key(3), cfg=cfg, max_spikes=(8, 8), dtype=F64,
                          init=[(1.5, 0.8), (0.6, 0.4)], sim=sim) for sim in ("event", "parallel")}
    xs = np.random.default_rng(2).uniform(0.0, 10.0, (3, 3, 2))

    @jit
    def run(weights, xs):
        def per_sim(net):
            def loss(w, x):
                out = eqx.tree_at(lambda n: n.weights, net, w)(x, grad="fp")
                return net_losses(out), out

            return jax.vmap(jax.jacfwd(loss, has_aux=True), in_axes=(None, 0))(weights, xs)

        return {sim: per_sim(net) for sim, net in nets.items()}

    (g_a, out_a), (g_b, out_b) = run(nets["event"].weights, xs).values()
    assert int(out_a[0].count.max()) >= 2 and int(out_a[1].count.max()) >= 1
    assert not any(bool(jnp.any(r.overflow)) for r in out_a)
    for ra, rb in zip(out_a, out_b):
        np.testing.assert_array_equal(rb.count, ra.count)
        np.testing.assert_allclose(finite(rb.times), finite(ra.times), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(rb.v_end, ra.v_end, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(rb.v_int, ra.v_int, rtol=1e-9, atol=1e-12)
    for ga, gb in zip(g_a, g_b):
        scale = float(jnp.max(jnp.abs(ga)))
        assert scale > 0
        np.testing.assert_allclose(gb, ga, rtol=0, atol=1e-8 * scale)


def test_sim_is_validated_configured_and_a_train_flag(tmp_path, capsys):
    with pytest.raises(ValueError, match="sim must be 'event'"):
        EventNet((2, 2), key=jax.random.key(0), sim="grid")
    with pytest.raises(ValueError, match="sim must be one of"):
        ExactConfig(sim="grid")
    assert EventNet((2, 2), key=jax.random.key(0)).sim == "event"
    config = ExactConfig(sim="parallel")
    assert ExactConfig.from_dict(config.to_dict()) == config
    assert ExactConfig.from_dict({"hidden": [120]}).sim == "event"  # headers written before the field
    assert EXACT_DEFAULTS["mnist"]["sim"] == "parallel"
    assert main(["train", "--method", "bptt", "--sim", "event", "--out", str(tmp_path)]) == 2
    assert "--sim applies to --method exact" in capsys.readouterr().err
    assert main(["train", "--method", "exact", "--sim", "grid", "--out", str(tmp_path)]) == 2
    assert "invalid choice: 'grid'" in capsys.readouterr().err
    assert main(["train", "--method", "bptt", "--readout", "integrator", "--out", str(tmp_path)]) == 2
    assert "--readout applies to --method exact" in capsys.readouterr().err
