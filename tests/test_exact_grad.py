"""Exact spike-time derivatives: IFT identity, finite differences, FP = reverse autodiff = hand adjoint.

Compile time dominates these tests, so each neuron configuration is compiled once: ``analyse`` (one jit per
configuration, cached and shared by the tests) returns the forward results at the base
weights and at every finite-difference perturbation (one vmapped call), the FP Jacobians
(``spike_time_jacobian`` and ``jax.jacfwd``), and the reverse-autodiff and hand-adjoint Jacobians
(``jax.jacrev``) of two losses.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.exact.adjoint import layer_core_adjoint
from jsnn.exact.flow import LIFConfig, crossing_time
from jsnn.exact.losses import ttfs_loss
from jsnn.exact.net import EventNet, spike_time_jacobian
from jsnn.exact.simulate import layer_core, sort_events

from test_exact_simulate import CFG, CFG_NEWTON, golden_all, jit, simulate_layer

F64 = jnp.float64
# both root solvers and both reset modes, each compiled once (the two resets agree in continuous time:
# test_exact_simulate.py::test_reset_modes_agree_in_continuous_time)
NEWTON_SUBTRACT_CFG = LIFConfig(tau_syn=4.0, tau_mem=7.0, threshold=1.0, t_end=30.0, reset="subtract")
CONFIGS = {"closed_form": CFG, "newton_subtract": NEWTON_SUBTRACT_CFG}
EPS = 1e-6
N_PROBES = 3  # perturbed weights per layer


def finite(t):
    return jnp.where(jnp.isfinite(t), t, jnp.zeros_like(t))


def small_net(cfg, key=3):
    """3 inputs (2 spikes each) -> 4 -> 2, up to 7 spikes per neuron, buffers that hold them all."""
    net = EventNet((3, 4, 2), key=jax.random.key(key), cfg=cfg, max_spikes=(8, 8), dtype=F64,
                   init=[(2.0, 1.0), (0.8, 0.5)])
    x = jax.random.uniform(jax.random.key(2), (3, 2), F64, 0.0, 10.0)
    return net, x


def losses(out):
    """[TTFS loss (label 1), a loss touching every differentiable output of both layers]."""
    t_out = finite(out[-1].times)
    composite = (jnp.sum(t_out * jnp.arange(1.0, t_out.shape[1] + 1.0, dtype=F64)) + jnp.sum(jnp.sin(out[-1].v_int))
                 + jnp.sum(out[-1].v_end ** 2) + 0.1 * jnp.sum(finite(out[0].times) ** 2))
    return jnp.stack([ttfs_loss(out[-1], jnp.int32(1), t_end=30.0), composite])


def probes(net):
    """(layer, i, j) of the perturbed weights: N_PROBES random entries per layer."""
    rng = np.random.default_rng(0)
    return [(layer, *(int(rng.integers(s)) for s in w.shape)) for layer, w in enumerate(net.weights)
            for _ in range(N_PROBES)]


def analyse(net):
    """Everything the derivative oracles need for one network, as one compiled program of (weights, x)."""
    def run(weights, x, mode):
        return eqx.tree_at(lambda n: n.weights, net, weights)(x, grad=mode)

    def forward(weights, x):
        out = run(weights, x, "autodiff")
        return [r.count for r in out], [finite(r.times) for r in out], losses(out), [r.overflow for r in out]

    @jit
    def compute(weights, perturbed, x):
        net_w = eqx.tree_at(lambda n: n.weights, net, weights)
        return {"base": forward(weights, x), "perturbed": jax.vmap(forward, in_axes=(0, None))(perturbed, x),
                "fp": (spike_time_jacobian(net_w, x), jax.jacfwd(lambda w: losses(run(w, x, "fp")))(weights)),
                "autodiff": jax.jacrev(lambda w: losses(run(w, x, "autodiff")))(weights),
                "adjoint": jax.jacrev(lambda w: losses(run(w, x, "adjoint")))(weights)}

    return compute


def perturbations(weights, where):
    """Stack of weight lists: +EPS then -EPS at each probe."""
    out = []
    for sign in (1.0, -1.0):
        for layer, i, j in where:
            out.append([w.at[i, j].add(sign * EPS) if m == layer else w for m, w in enumerate(weights)])
    return jax.tree.map(lambda *a: jnp.stack(a), *out)


@functools.cache
def analysis(name):
    """(name, net, probes, compiled program, its results at the net's weights) for ``CONFIGS[name]``."""
    net, x = small_net(CONFIGS[name])
    where = probes(net)
    compute = analyse(net)
    return name, net, where, compute, compute(net.weights, perturbations(net.weights, where), x)


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def analysed(request):
    return analysis(request.param)


def test_ift_identity_single_neuron_equal_taus():
    # tau_mem = tau_syn = tau, one input w at 0: V(t) = w (t/tau) e^{-t/tau}; ALGORITHMS §2.9 item 2
    tau, theta = 5.0, 1.0
    cfg = LIFConfig(tau_syn=tau, tau_mem=tau, threshold=theta, t_end=40.0)
    w = jnp.array(6.0, F64)

    def t_of_w(w):
        return simulate_layer(w.reshape(1, 1), jnp.zeros((1, 1), F64), cfg, 2).times[0, 0]

    t, g_rev, (_, g_fwd) = jit(lambda w: (t_of_w(w), jax.grad(t_of_w)(w),
                                              jax.jvp(t_of_w, (w,), (jnp.ones((), F64),))))(w)
    t = float(t)
    dv_dw = (t / tau) * np.exp(-t / tau)
    vdot = (float(w) * np.exp(-t / tau) - theta) / tau
    ift = -dv_dw / vdot
    # derivative of t* = -tau W0(-theta/w): W' = W/(z(1+W)), with W = -t/tau, z = -theta/w
    big_w, z = -t / tau, -theta / float(w)
    lambert = -tau * big_w / (z * (1 + big_w)) * theta / float(w) ** 2
    np.testing.assert_allclose(ift, lambert, rtol=1e-12)
    np.testing.assert_allclose(float(g_rev), ift, rtol=1e-10)
    np.testing.assert_allclose(float(g_fwd), ift, rtol=1e-10)


@pytest.mark.parametrize("cfg", [CFG, CFG_NEWTON], ids=["closed_form", "newton"])
def test_golden_example_gradients(cfg):
    res = golden_all(cfg)
    expected_t = [-0.2731422, -0.0948553, -0.5758736, -0.6275777]
    expected_v = [0.3574568, 0.2614540, 3.947867, 7.847565]
    np.testing.assert_allclose(res["jacfwd_first"], expected_t, atol=2e-7)
    np.testing.assert_allclose(res["grad_first"], expected_t, atol=2e-7)
    np.testing.assert_allclose(res["grad_vint"], expected_v, rtol=2e-7)


def test_finite_differences_at_fixed_spike_count(analysed):
    name, net, where, _, res = analysed
    base_counts = res["base"][0]
    p_counts, p_times, p_loss, _ = res["perturbed"]
    assert int(base_counts[1].min()) >= 1 and int(base_counts[0].max()) >= 2  # several spikes, every output fires
    n = len(where)
    for a, c in zip(p_counts, base_counts):  # the spike pattern is the same at every +-EPS
        np.testing.assert_array_equal(np.asarray(a), np.broadcast_to(np.asarray(c), a.shape))
    fp_times, fp_loss = res["fp"]
    for p, (layer, i, j) in enumerate(where):
        for out_layer in range(2):
            fd_t = np.asarray(p_times[out_layer][p] - p_times[out_layer][n + p]) / (2 * EPS)
            exact_t = np.asarray(finite(fp_times[out_layer][layer][:, :, i, j]))
            nz = np.abs(exact_t) > 1e-8
            np.testing.assert_allclose(fd_t[nz], exact_t[nz], rtol=1e-6, err_msg=f"{name} {layer, i, j}")
            np.testing.assert_allclose(fd_t[~nz], 0.0, atol=1e-8)
        fd_l = np.asarray(p_loss[p] - p_loss[n + p]) / (2 * EPS)
        for mode in ("autodiff", "adjoint"):
            np.testing.assert_allclose(fd_l, np.asarray(res[mode][layer][:, i, j]), rtol=1e-6, atol=1e-10)


def test_fp_reverse_autodiff_and_hand_adjoint_agree(analysed):
    _, net, _, _, res = analysed
    counts, overflow = res["base"][0], res["base"][3]
    assert int(counts[0].max()) >= 3 and int(counts[1].min()) >= 1
    assert not any(bool(jnp.any(o)) for o in overflow)
    g_fp = res["fp"][1]
    for a, b, c in zip(g_fp, res["autodiff"], res["adjoint"]):
        for row in range(2):  # each loss separately: its own scale
            scale = float(jnp.max(jnp.abs(a[row])))
            assert scale > 0
            np.testing.assert_allclose(b[row], a[row], atol=1e-9 * scale)
            np.testing.assert_allclose(c[row], a[row], atol=1e-9 * scale)


def test_no_spikes_give_zero_not_nan_gradients():
    _, net, where, compute, _ = analysis("closed_form")
    zeros = [jnp.zeros_like(w) for w in net.weights]
    res = compute(zeros, perturbations(zeros, where), small_net(net.cfg)[1])
    assert all(int(c.sum()) == 0 for c in res["base"][0])
    fp_times, fp_loss = res["fp"]
    for jac in jax.tree.leaves(fp_times):  # every spike time: zero derivative
        assert np.all(np.asarray(jac) == 0.0)
    for g in (fp_loss, res["autodiff"], res["adjoint"]):  # TTFS loss in every mode: zero, not NaN
        for gw in g:
            assert np.all(np.asarray(gw[0]) == 0.0)
            assert np.all(np.isfinite(np.asarray(gw[1])))


def test_dot_product_hand_adjoint_against_forward_tangents():
    # <u, J v> (J by forward mode through the IFT custom_jvp) = <J^T u, v> (J^T by the hand EventProp vjp)
    w = jnp.array([[4.5, 3.0, 1.0], [2.0, -1.0, 6.0]], F64)
    ev_t, ev_src, _ = sort_events(jnp.array([[1.0, 7.0], [3.0, jnp.inf], [4.0, 9.0]], F64))
    k = jax.random.split(jax.random.key(3), 5)
    v_w, v_t = jax.random.normal(k[0], w.shape, F64), jax.random.normal(k[1], ev_t.shape, F64)
    v_t = jnp.where(jnp.isfinite(ev_t), v_t, 0.0)

    def fwd(w, t):
        r = layer_core(w, t, ev_src, CFG, 6)
        return finite(r.times), r.v_end, r.v_int

    def adj(w, t):
        r = layer_core_adjoint(w, t, ev_src, CFG, 6)
        return finite(r.times), r.v_end, r.v_int

    @jit
    def both(w, t, v_w, v_t):
        primal, jv = jax.jvp(fwd, (w, t), (v_w, v_t))
        u = tuple(jax.random.normal(kk, p.shape, F64) for kk, p in zip(k[2:], primal))
        _, vjp = jax.vjp(adj, w, t)
        return primal, u, jv, vjp(u)

    primal, u, jv, (ju_w, ju_t) = both(w, ev_t, v_w, v_t)
    assert int(jnp.sum(primal[0] > 0)) >= 3
    lhs = sum(float(jnp.vdot(a, b)) for a, b in zip(u, jv))
    rhs = float(jnp.vdot(ju_w, v_w) + jnp.vdot(ju_t, v_t))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-11)


def test_dot_product_crossing_time_rule():
    v0, i0, h = jnp.array(0.2, F64), jnp.array(4.0, F64), jnp.array(50.0, F64)
    f = lambda v, i: crossing_time(v, i, h, CFG)[0]  # noqa: E731
    dv, di, u = 0.3, -0.7, 1.9

    @jit
    def both(v0, i0):
        _, jv = jax.jvp(f, (v0, i0), (jnp.array(dv, F64), jnp.array(di, F64)))
        return jv, jax.vjp(f, v0, i0)[1](jnp.array(u, F64))

    jv, (jt_v, jt_i) = both(v0, i0)
    np.testing.assert_allclose(u * float(jv), float(jt_v) * dv + float(jt_i) * di, rtol=1e-13)


def test_grazing_crossing_is_flagged_and_gradient_finite():
    # tau_mem = 2 tau_syn, V0 = 0: w = 4 theta touches the threshold with zero slope; just above it grazes
    cfg = LIFConfig(tau_syn=5.0, tau_mem=10.0, t_end=30.0, eps_graze=1e-3)
    t0 = jnp.zeros((1, 1), F64)
    first = lambda w: simulate_layer(w, t0, cfg, 2).times[0, 0]  # noqa: E731

    @jit
    def all_of(w):
        return simulate_layer(w, t0, cfg, 2), jax.grad(first)(w), jax.jacfwd(first)(w)

    r, g_rev, g_fwd = all_of(jnp.array([[4.0 + 1e-9]], F64))
    assert int(r.count[0]) == 1 and int(r.grazing[0]) == 1
    assert np.all(np.isfinite(np.asarray(g_rev))) and np.all(np.isfinite(np.asarray(g_fwd)))
    clean = all_of(jnp.array([[6.0]], F64))[0]
    assert int(clean.grazing[0]) == 0


def test_jit_and_vmap_over_batch_and_seeds():
    # the batched program (vmap over seeds and samples) against the single-sample program of `analysis`
    _, net, where, compute, _ = analysis("closed_form")
    xs = jax.random.uniform(jax.random.key(5), (3, 3, 2), F64, 0.0, 10.0)
    seeds = [EventNet((3, 4, 2), key=jax.random.key(k), cfg=net.cfg, max_spikes=(8, 8), dtype=F64,
                      init=[(2.0, 1.0), (0.8, 0.5)]).weights for k in (3, 4)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *seeds)

    def grads(weights, x):
        return jax.jacrev(lambda w: losses(eqx.tree_at(lambda n: n.weights, net, w)(x)))(weights)

    batched = jit(jax.vmap(jax.vmap(grads, in_axes=(None, 0)), in_axes=(0, None)))(stacked, xs)
    for s, weights in enumerate(seeds):
        for b in range(3):
            single = compute(weights, perturbations(weights, where), xs[b])["autodiff"]
            for a, c in zip(batched, single):
                np.testing.assert_allclose(a[s, b], c, rtol=1e-12, atol=1e-14)


def test_spike_time_jacobian_of_a_recurrent_net_includes_the_recurrent_weights():
    from test_exact_recurrent import IN_TIMES

    net = EventNet((2, 3, 2), key=jax.random.key(3), cfg=CFG, max_spikes=3, init=[(3.0, 1.0), (1.0, 0.5)],
                   dtype=F64, recurrent=(0.0, 1.0))
    rec = net.rec_weights[0]

    def run(r):
        out = eqx.tree_at(lambda n: n.rec_weights, net, [r])(IN_TIMES)
        return [r.count for r in out], [finite(r.times) for r in out]

    unit = jnp.eye(rec.size, dtype=F64).reshape((-1, *rec.shape))
    steps = jnp.concatenate([EPS * unit, -EPS * unit])  # +EPS, then -EPS, at every recurrent weight

    @jit
    def compute(rec):
        return spike_time_jacobian(net, IN_TIMES), run(rec), jax.vmap(lambda d: run(rec + d))(steps)

    jac, (count, _), (counts, times) = compute(rec)
    assert [len(j) for j in jac] == [3, 3]  # W_0, W_1, then the hidden layer's R_0
    assert [j[2].shape for j in jac] == [(3, 3, 3, 3), (2, 3, 3, 3)]
    assert int(count[0].sum()) > 0 and float(jnp.max(jnp.abs(jac[1][2]))) > 0
    for layer in range(2):  # central differences, where no spike count changes
        assert np.all(np.asarray(counts[layer]) == np.asarray(count[layer]))
        fd = (times[layer][: rec.size] - times[layer][rec.size:]) / (2 * EPS)  # (R entries, n, K)
        fd = jnp.moveaxis(fd, 0, -1).reshape(jac[layer][2].shape)
        np.testing.assert_allclose(jac[layer][2], fd, rtol=1e-5, atol=1e-6)
