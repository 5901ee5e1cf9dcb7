"""Exact spike-time derivatives: IFT identity, finite differences, FP = reverse autodiff = hand adjoint."""

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

from test_exact_simulate import CFG, CFG_NEWTON, golden, simulate_layer

F64 = jnp.float64
NEWTON_CFG = LIFConfig(tau_syn=4.0, tau_mem=7.0, threshold=1.0, t_end=30.0)
SUBTRACT_CFG = LIFConfig(tau_syn=5.0, tau_mem=10.0, threshold=1.0, t_end=30.0, reset="subtract")


def finite(t):
    return jnp.where(jnp.isfinite(t), t, jnp.zeros_like(t))


def small_net(cfg, key=3):
    """3 inputs (2 spikes each) -> 4 -> 2, up to 7 spikes per neuron, buffers that hold them all."""
    net = EventNet((3, 4, 2), key=jax.random.key(key), cfg=cfg, max_spikes=(8, 8), dtype=F64,
                   init=[(2.0, 1.0), (0.8, 0.5)])
    x = jax.random.uniform(jax.random.key(2), (3, 2), F64, 0.0, 10.0)
    return net, x


def net_loss(weights, net, x, mode):
    """A loss touching every differentiable output: spike times of both layers, v_end and v_int."""
    out = eqx.tree_at(lambda n: n.weights, net, weights)(x, grad=mode)
    t_out = finite(out[-1].times)
    return (jnp.sum(t_out * jnp.arange(1.0, t_out.shape[1] + 1.0, dtype=F64)) + jnp.sum(jnp.sin(out[-1].v_int))
            + jnp.sum(out[-1].v_end ** 2) + 0.1 * jnp.sum(finite(out[0].times) ** 2))


def test_ift_identity_single_neuron_equal_taus():
    # tau_mem = tau_syn = tau, one input w at 0: V(t) = w (t/tau) e^{-t/tau}; ALGORITHMS §2.9 item 2
    tau, theta = 5.0, 1.0
    cfg = LIFConfig(tau_syn=tau, tau_mem=tau, threshold=theta, t_end=40.0)
    w = jnp.array(6.0, F64)
    t_of_w = jax.jit(lambda w: simulate_layer(w.reshape(1, 1), jnp.zeros((1, 1), F64), cfg, 2).times[0, 0])
    t = float(t_of_w(w))
    dv_dw = (t / tau) * np.exp(-t / tau)
    vdot = (float(w) * np.exp(-t / tau) - theta) / tau
    ift = -dv_dw / vdot
    # derivative of t* = -tau W0(-theta/w): W' = W/(z(1+W)), with W = -t/tau, z = -theta/w
    big_w, z = -t / tau, -theta / float(w)
    lambert = -tau * big_w / (z * (1 + big_w)) * theta / float(w) ** 2
    np.testing.assert_allclose(ift, lambert, rtol=1e-12)
    np.testing.assert_allclose(float(jax.grad(t_of_w)(w)), ift, rtol=1e-10)
    np.testing.assert_allclose(float(jax.jvp(t_of_w, (w,), (jnp.ones((), F64),))[1]), ift, rtol=1e-10)


@pytest.mark.parametrize("cfg", [CFG, CFG_NEWTON], ids=["closed_form", "newton"])
def test_golden_example_gradients(cfg):
    p = jnp.array([4.5, 3.0, 2.0, 4.0], F64)
    first = lambda p: golden(p, cfg)[1].times[0, 0]  # noqa: E731
    vint = lambda p: golden(p, cfg)[1].v_int[0]  # noqa: E731
    expected_t = [-0.2731422, -0.0948553, -0.5758736, -0.6275777]
    expected_v = [0.3574568, 0.2614540, 3.947867, 7.847565]
    np.testing.assert_allclose(jax.jit(jax.jacfwd(first))(p), expected_t, atol=2e-7)
    np.testing.assert_allclose(jax.jit(jax.grad(first))(p), expected_t, atol=2e-7)
    np.testing.assert_allclose(jax.jit(jax.grad(vint))(p), expected_v, rtol=2e-7)


@pytest.mark.parametrize("cfg", [CFG, NEWTON_CFG], ids=["closed_form", "newton"])
def test_finite_differences_at_fixed_spike_count(cfg):
    net, x = small_net(cfg)
    eps = 1e-6
    counts = jax.jit(lambda w: [r.count for r in eqx.tree_at(lambda n: n.weights, net, w)(x)])
    times = jax.jit(lambda w: eqx.tree_at(lambda n: n.weights, net, w)(x)[-1].times)
    labels = jnp.int32(1)

    @jax.jit
    def loss(w):
        return ttfs_loss(eqx.tree_at(lambda n: n.weights, net, w)(x)[-1], labels, t_end=cfg.t_end)

    jac = jax.jit(spike_time_jacobian)(net, x)[1]
    grads = jax.grad(loss)(net.weights)
    base_counts = counts(net.weights)
    assert base_counts[1].min() >= 1 and base_counts[0].max() >= 2  # several spikes, every output fires
    rng = np.random.default_rng(0)
    for layer in range(2):
        for _ in range(3):
            i, j = (int(rng.integers(s)) for s in net.weights[layer].shape)
            plus = [w.at[i, j].add(eps) if m == layer else w for m, w in enumerate(net.weights)]
            minus = [w.at[i, j].add(-eps) if m == layer else w for m, w in enumerate(net.weights)]
            for a, b, c in zip(counts(plus), counts(minus), base_counts):
                np.testing.assert_array_equal(a, c)
                np.testing.assert_array_equal(b, c)
            fd_t = np.asarray(finite(times(plus)) - finite(times(minus))) / (2 * eps)
            exact_t = np.asarray(jac[layer][:, :, i, j])
            nz = np.abs(exact_t) > 1e-8
            np.testing.assert_allclose(fd_t[nz], exact_t[nz], rtol=1e-6)
            np.testing.assert_allclose(fd_t[~nz], 0.0, atol=1e-8)
            fd_l = float(loss(plus) - loss(minus)) / (2 * eps)
            np.testing.assert_allclose(fd_l, float(grads[layer][i, j]), rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("cfg", [CFG, NEWTON_CFG, SUBTRACT_CFG], ids=["closed_form", "newton", "subtract"])
def test_fp_reverse_autodiff_and_hand_adjoint_agree(cfg):
    net, x = small_net(cfg)
    out = net(x)
    assert not any(bool(jnp.any(r.overflow)) for r in out)
    assert int(out[0].count.max()) >= 3 and int(out[1].count.min()) >= 1
    g_fp = jax.jit(jax.jacfwd(net_loss), static_argnums=3)(net.weights, net, x, "fp")
    g_rev = jax.jit(jax.grad(net_loss), static_argnums=3)(net.weights, net, x, "autodiff")
    g_adj = jax.jit(jax.grad(net_loss), static_argnums=3)(net.weights, net, x, "adjoint")
    for a, b, c in zip(g_fp, g_rev, g_adj):
        scale = float(jnp.max(jnp.abs(a)))
        np.testing.assert_allclose(b, a, atol=1e-9 * scale)
        np.testing.assert_allclose(c, a, atol=1e-9 * scale)


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

    primal, jv = jax.jvp(fwd, (w, ev_t), (v_w, v_t))
    assert int(jnp.sum(primal[0] > 0)) >= 3
    u = tuple(jax.random.normal(kk, p.shape, F64) for kk, p in zip(k[2:], primal))
    _, vjp = jax.vjp(adj, w, ev_t)
    ju_w, ju_t = vjp(u)
    lhs = sum(float(jnp.vdot(a, b)) for a, b in zip(u, jv))
    rhs = float(jnp.vdot(ju_w, v_w) + jnp.vdot(ju_t, v_t))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-11)


def test_dot_product_crossing_time_rule():
    v0, i0, h = jnp.array(0.2, F64), jnp.array(4.0, F64), jnp.array(50.0, F64)
    f = lambda v, i: crossing_time(v, i, h, CFG)[0]  # noqa: E731
    dv, di, u = 0.3, -0.7, 1.9
    _, jv = jax.jvp(f, (v0, i0), (jnp.array(dv, F64), jnp.array(di, F64)))
    _, vjp = jax.vjp(f, v0, i0)
    jt_v, jt_i = vjp(jnp.array(u, F64))
    np.testing.assert_allclose(u * float(jv), float(jt_v) * dv + float(jt_i) * di, rtol=1e-13)


@pytest.mark.parametrize("mode", ["fp", "autodiff", "adjoint"])
def test_no_spikes_give_zero_not_nan_gradients(mode):
    net, x = small_net(CFG)
    net = eqx.tree_at(lambda n: n.weights, net, [jnp.zeros_like(w) for w in net.weights])
    assert all(int(r.count.sum()) == 0 for r in net(x))

    def loss(w):
        out = eqx.tree_at(lambda n: n.weights, net, w)(x, grad=mode)[-1]
        return ttfs_loss(out, jnp.int32(0), t_end=CFG.t_end) + jnp.sum(finite(out.times))

    g = jax.jit(jax.jacfwd(loss) if mode == "fp" else jax.grad(loss))(net.weights)
    for gw in g:
        assert np.all(np.asarray(gw) == 0.0)


def test_grazing_crossing_is_flagged_and_gradient_finite():
    # tau_mem = 2 tau_syn, V0 = 0: w = 4 theta touches the threshold with zero slope; just above it grazes
    cfg = LIFConfig(tau_syn=5.0, tau_mem=10.0, t_end=30.0, eps_graze=1e-3)
    w = jnp.array([[4.0 + 1e-9]], F64)
    t0 = jnp.zeros((1, 1), F64)
    r = simulate_layer(w, t0, cfg, 2)
    assert int(r.count[0]) == 1 and int(r.grazing[0]) == 1
    for g in (jax.jit(jax.grad(lambda w: simulate_layer(w, t0, cfg, 2).times[0, 0]))(w),
              jax.jit(jax.jacfwd(lambda w: simulate_layer(w, t0, cfg, 2).times[0, 0]))(w)):
        assert np.all(np.isfinite(np.asarray(g)))
    clean = simulate_layer(jnp.array([[6.0]], F64), t0, cfg, 2)
    assert int(clean.grazing[0]) == 0


def test_jit_and_vmap_over_batch_and_seeds():
    cfg = CFG
    xs = jax.random.uniform(jax.random.key(5), (3, 4, 1), F64, 0.0, 10.0)
    nets = jax.vmap(lambda k: EventNet((4, 5, 2), key=k, cfg=cfg, max_spikes=(2, 2), dtype=F64,
                                       init=[(1.5, 1.0), (1.0, 0.5)]))(jax.random.split(jax.random.key(0), 2))

    def loss(net, x):
        return jnp.sum(finite(net(x)[-1].times))

    batched = jax.jit(jax.vmap(jax.vmap(jax.grad(loss), in_axes=(None, 0)), in_axes=(0, None)))(nets, xs)
    single = jax.jit(jax.grad(loss))
    for s in range(2):
        net_s = jax.tree.map(lambda a: a[s], nets)
        for b in range(3):
            g = single(net_s, xs[b])
            for a, c in zip(jax.tree.leaves(batched), jax.tree.leaves(g)):
                np.testing.assert_allclose(a[s, b], c, rtol=1e-12, atol=1e-14)
