"""Event-driven CuBa-LIF simulation: spike times against closed forms, fine Euler, the golden example."""

import functools
from decimal import Decimal, localcontext

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import lambertw

from jsnn.exact.flow import LIFConfig, crossing_time, flow
from jsnn.exact.simulate import simulate_layer as _simulate_layer
from jsnn.exact.simulate import sort_events

# Compile time dominates these tests: LLVM's optimisation passes take ~40 % of it and buy nothing for
# programs that run once, so the tests compile without them (numerics are unchanged: no fast-math).
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

# one compilation per (shape, config): eager calls of a scan would recompile every time (plain jax.jit: it
# is also nested inside the tests' top-level programs, and only a top-level jit takes compiler options)
simulate_layer = jax.jit(_simulate_layer, static_argnums=(2, 3), static_argnames="max_events")

F64 = jnp.float64
CFG = LIFConfig(tau_syn=5.0, tau_mem=10.0, threshold=1.0, t_end=30.0)
CFG_NEWTON = LIFConfig(tau_syn=5.0, tau_mem=10.0, threshold=1.0, t_end=30.0, root="newton")
GOLDEN_IN = jnp.array([[1.0], [3.0], [4.0]], F64)


def golden(params, cfg):
    """ALGORITHMS §2.9 item 4: h <- (in0 w=4.5 t=1, in1 w=3 t=3); o <- (in2 w=2 t=4, h w=4)."""
    wh0, wh1, wo2, woh = params
    h = simulate_layer(jnp.stack([wh0, wh1, jnp.zeros((), F64)])[None], GOLDEN_IN, cfg, 4)
    in_o = jnp.concatenate([jnp.pad(GOLDEN_IN[2:], ((0, 0), (0, 3)), constant_values=jnp.inf), h.times])
    o = simulate_layer(jnp.stack([wo2, woh])[None], in_o, cfg, 4)
    return h, o


@functools.cache
def golden_all(cfg):
    """The golden example, its FP/reverse derivatives of the first output spike and of int V_o, in one compile."""
    first = lambda p: golden(p, cfg)[1].times[0, 0]  # noqa: E731
    vint = lambda p: golden(p, cfg)[1].v_int[0]  # noqa: E731

    @jit
    def compute(p):
        h, o = golden(p, cfg)
        return {"h": h, "o": o, "jacfwd_first": jax.jacfwd(first)(p), "grad_first": jax.grad(first)(p),
                "grad_vint": jax.grad(vint)(p)}

    return compute(jnp.array([4.5, 3.0, 2.0, 4.0], F64))


def euler_spikes(weights, in_times, cfg, dt):
    """Plain-Python forward Euler of one neuron (numpy), spike on V >= threshold, reset to 0."""
    v = i = 0.0
    out = []
    events = sorted(zip(in_times, weights))
    k = 0
    for step in range(int(round(cfg.t_end / dt))):
        t = step * dt
        while k < len(events) and events[k][0] <= t:
            i += events[k][1]
            k += 1
        v_new = v + dt * (i - v) / cfg.tau_mem
        i = i - dt * i / cfg.tau_syn
        if v_new >= cfg.threshold:
            # linear interpolation of the crossing inside the step
            out.append(t + dt * (cfg.threshold - v) / (v_new - v))
            v_new = 0.0
        v = v_new
    return np.array(out)


@pytest.mark.parametrize("cfg", [CFG, CFG_NEWTON], ids=["closed_form", "newton"])
def test_golden_example_spike_times(cfg):
    res = golden_all(cfg)
    h, o = res["h"], res["o"]
    np.testing.assert_allclose(h.times[0, :2], [3.695398, 6.667696], atol=1e-6)
    np.testing.assert_allclose(o.times[0, :3], [6.174819, 8.096777, 10.789039], atol=1e-6)
    assert int(h.count[0]) == 2 and int(o.count[0]) == 3
    assert not bool(h.overflow[0]) and not bool(o.overflow[0])


def test_closed_form_tau_ratio_two_matches_quadratic():
    # tau_mem = 2 tau_syn, V0 = 0, one input w at t0: w x - w x^2 = theta, x = exp(-(t - t0)/tau_mem)
    for w, t0 in [(4.5, 1.0), (7.0, 0.0), (20.0, 2.5)]:
        x = (w + np.sqrt(w * w - 4 * w)) / (2 * w)
        expected = t0 - 10.0 * np.log(x)
        for cfg in (CFG, CFG_NEWTON):
            r = simulate_layer(jnp.array([[w]], F64), jnp.array([[t0]], F64), cfg, 3)
            np.testing.assert_allclose(float(r.times[0, 0]), expected, rtol=1e-12)
    # below w = 4 theta there is no spike
    r = simulate_layer(jnp.array([[3.99]], F64), jnp.array([[0.0]], F64), CFG, 3)
    assert int(r.count[0]) == 0 and not np.isfinite(float(r.times[0, 0]))


def test_equal_time_constants_match_lambert_w():
    cfg = LIFConfig(tau_syn=5.0, tau_mem=5.0, threshold=1.0, t_end=60.0)
    for w in (3.0, 5.0, 12.0):  # spikes iff w > e * theta
        expected = -5.0 * np.real(lambertw(-1.0 / w, 0))
        r = simulate_layer(jnp.array([[w]], F64), jnp.array([[0.0]], F64), cfg, 3)
        np.testing.assert_allclose(float(r.times[0, 0]), expected, rtol=1e-12)
    r = simulate_layer(jnp.array([[2.7]], F64), jnp.array([[0.0]], F64), cfg, 3)
    assert int(r.count[0]) == 0


@pytest.mark.parametrize("cfg", [CFG, LIFConfig(tau_syn=4.0, tau_mem=7.0, threshold=1.0, t_end=30.0)],
                         ids=["closed_form", "newton"])
def test_spike_times_match_fine_euler_with_first_order_convergence(cfg):
    weights = [2.5, 3.0, -1.0, 4.0]
    in_times = [0.5, 2.0, 6.0, 9.0]
    r = simulate_layer(jnp.array([weights], F64), jnp.array(in_times, F64)[:, None], cfg, 8)
    exact = np.asarray(r.times[0, : int(r.count[0])])
    assert len(exact) >= 2
    errors = []
    for dt in (2e-3, 5e-4):
        approx = euler_spikes(weights, in_times, cfg, dt)
        assert len(approx) == len(exact)
        errors.append(np.max(np.abs(approx - exact)))
    assert errors[1] < 20 * 5e-4
    assert errors[1] < errors[0] / 2.5  # O(dt): a 4x smaller step cuts the error about 4x


def test_flow_is_the_ode_solution():
    cfg = LIFConfig(tau_syn=3.0, tau_mem=7.0)
    v0, i0, s = jnp.array(0.3, F64), jnp.array(1.7, F64), jnp.array(2.0, F64)
    v, i = flow(v0, i0, s, cfg)
    dv = jax.jacfwd(lambda s: flow(v0, i0, s, cfg)[0])(s)
    di = jax.jacfwd(lambda s: flow(v0, i0, s, cfg)[1])(s)
    np.testing.assert_allclose(float(dv), float((i - v) / cfg.tau_mem), rtol=1e-13)
    np.testing.assert_allclose(float(di), float(-i / cfg.tau_syn), rtol=1e-13)


def test_crossing_respects_horizon_and_threshold_value():
    v0, i0 = jnp.array(0.0, F64), jnp.array(5.0, F64)
    s, has = crossing_time(v0, i0, jnp.array(100.0, F64), CFG)
    assert bool(has)
    np.testing.assert_allclose(float(flow(v0, i0, s, CFG)[0]), 1.0, rtol=1e-13)
    _, has_short = crossing_time(v0, i0, s - 1e-9, CFG)
    assert not bool(has_short)


def test_overflowing_buffers_are_reported():
    # a strong input makes the neuron fire repeatedly; a buffer of 2 cannot hold them
    r = simulate_layer(jnp.array([[60.0]], F64), jnp.array([[0.0]], F64), CFG, 2)
    assert int(r.count[0]) > 2 and bool(r.overflow[0])
    assert np.all(np.isfinite(np.asarray(r.times[0])))
    big = simulate_layer(jnp.array([[60.0]], F64), jnp.array([[0.0]], F64), CFG, 64)
    np.testing.assert_allclose(r.times[0], big.times[0, :2], rtol=1e-13)  # the kept ones are the first
    assert not bool(big.overflow[0]) and int(big.count[0]) > int(r.count[0])  # count: a lower bound
    # a per-layer event cap that cuts finite events is reported too
    cut = simulate_layer(jnp.array([[1.0, 1.0]], F64), jnp.array([[1.0], [2.0]], F64), CFG, 2, max_events=1)
    assert bool(cut.overflow[0])


def test_reset_modes_agree_in_continuous_time():
    w, t = jnp.array([[9.0, 4.0]], F64), jnp.array([[0.0], [5.0]], F64)
    a = simulate_layer(w, t, CFG, 6)
    b = simulate_layer(w, t, LIFConfig(tau_syn=5.0, tau_mem=10.0, t_end=30.0, reset="subtract"), 6)
    assert int(a.count[0]) >= 2
    np.testing.assert_allclose(a.times, b.times, rtol=1e-12)


def test_sort_events_and_bad_inputs():
    t, src, over = sort_events(jnp.array([[3.0, jnp.inf], [1.0, 2.0]], F64), 2)
    assert t.tolist() == [1.0, 2.0] and src.tolist() == [1, 1] and bool(over)
    with pytest.raises(ValueError, match="matching 'in'"):
        simulate_layer(jnp.ones((1, 3), F64), jnp.ones((2, 1), F64), CFG, 2)
    with pytest.raises(ValueError, match="dtype"):
        simulate_layer(jnp.ones((1, 2), jnp.float32), jnp.ones((2, 1), F64), CFG, 2)
    with pytest.raises(ValueError, match="positive"):
        LIFConfig(tau_syn=-1.0)


def test_overflow_flags_every_result_that_depends_on_lost_spikes_in_every_simulator_path():
    from jsnn.exact.net import EventNet

    # 1 input -> 2 -> 2 -> 2: hidden neuron 0 fires 4 times (input weight 12), past a buffer of 2
    weights = [jnp.array([[12.0], [0.5]], F64), jnp.array([[3.0, 0.0], [1.0, 1.0]], F64),
               jnp.array([[1.0, 1.0], [1.0, -1.0]], F64)]
    x = jnp.array([[0.0]], F64)

    def nets(max_spikes):
        kw = dict(key=jax.random.key(0), cfg=CFG, max_spikes=max_spikes, dtype=F64)
        out = {}
        for name, extra in [("event", {}), ("parallel", {"sim": "parallel"}), ("integrator", {"readout": "integrator"}),
                            ("recurrent", {"recurrent": (0.0, 1.0)})]:
            net = eqx.tree_at(lambda n: n.weights, EventNet((1, 2, 2, 2), **kw, **extra), weights)
            if name == "recurrent":  # weak recurrent weights: the second layer still does not overflow itself
                net = eqx.tree_at(lambda n: n.rec_weights, net, [0.1 * jnp.ones((2, 2), F64)] * 2)
            out[name] = (net, "autodiff")
        out["adjoint"] = (out["event"][0], "adjoint")
        return out

    @jit
    def run(x):
        out = {}
        for buffers in ((2, 8, 8), (8, 8, 8)):
            for name, (net, grad) in nets(buffers).items():
                out[f"{name}{buffers[0]}"] = [(r.overflow, r.count) for r in net(x, grad=grad)]
        return out

    out = run(x)
    for name in ("event", "parallel", "integrator", "recurrent", "adjoint"):
        (o1, c1), (o2, c2), (o3, _) = out[f"{name}2"]
        assert int(c1[0]) > 2 and bool(o1[0]), name  # the overflowing neuron
        assert int(jnp.max(c2)) <= 8 and bool(jnp.all(o2)) and bool(jnp.all(o3)), name  # every later layer
        assert bool(jnp.all(o1)) == (name == "recurrent"), name  # a recurrent layer flags all its neurons
        for overflow, count in out[f"{name}8"]:  # the same net with buffers that hold every spike
            assert not bool(jnp.any(overflow)) and int(jnp.max(count)) <= 8, name


def _first_crossing_decimal(v0, i0, s0, cfg, digits=40):
    """The crossing near ``s0`` of the closed-form V from the float64 state (v0, i0), by bisection in
    ``digits``-digit decimal arithmetic; returns it with the slope dV/dt there."""
    with localcontext() as ctx:
        ctx.prec = digits
        ts, tm, th, v0, i0 = (Decimal(float(x)) for x in (cfg.tau_syn, cfg.tau_mem, cfg.threshold, v0, i0))

        def v(s):
            em, es = (-s / tm).exp(), (-s / ts).exp()
            return em * v0 + (s / tm * em * i0 if ts == tm else ts / (ts - tm) * (es - em) * i0)

        lo, hi = Decimal(float(s0)) - Decimal("1e-7"), Decimal(float(s0)) + Decimal("1e-7")
        assert v(lo) < th <= v(hi)
        for _ in range(70):  # bracket 2e-7 / 2^70: far below float64's resolution
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if v(mid) < th else (lo, mid)
        return lo, float(((-lo / ts).exp() * i0 - v(lo)) / tm)


@pytest.mark.parametrize("cfg", [LIFConfig(tau_syn=4.0, tau_mem=7.0), CFG, LIFConfig(tau_syn=5.0, tau_mem=5.0)],
                         ids=["newton", "closed_form", "equal_taus"])
def test_crossings_just_above_the_grazing_guard_are_exact_to_the_evaluation_of_v(cfg):
    # states whose crossing (at s0) has a slope 1.05 to 3 times the grazing guard, by flowing back from it
    rng = np.random.default_rng(0)
    n = 40
    slope, s0 = cfg.graze * rng.uniform(1.05, 3.0, n), rng.uniform(0.5, 8.0, n)
    v0, i0 = flow(jnp.full(n, cfg.threshold), jnp.asarray(cfg.threshold + cfg.tau_mem * slope), -jnp.asarray(s0), cfg)
    s, has = jax.jit(lambda v, i: crossing_time(v, i, jnp.full_like(v, 50.0), cfg))(v0, i0)
    assert bool(jnp.all(has))
    eps = float(jnp.finfo(F64).eps)
    for k in range(n):
        ref, vdot = _first_crossing_decimal(v0[k], i0[k], s0[k], cfg)
        assert cfg.graze < vdot < 3.1 * cfg.graze
        # float64 evaluates V to about eps * threshold, so no solver can do better than eps * threshold / vdot
        # (1.5e-9 here); stopping at |V - threshold| <= 4 eps threshold allowed 4 eps * threshold / vdot
        err = abs(float(Decimal(float(s[k])) - ref))
        assert err <= 3 * eps * cfg.threshold / vdot, (k, err, vdot)
