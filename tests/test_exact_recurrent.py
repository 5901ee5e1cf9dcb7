"""Recurrent event-driven CuBa-LIF layer: feed-forward limit, fine Euler, finite differences, FP = reverse mode.

Compile time dominates, so each configuration's derivative oracles are compiled once, as one program
(``derivatives``, cached and shared by the tests).
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jsnn.exact import recurrent_layer_core, simulate_recurrent_layer
from jsnn.exact.flow import LIFConfig
from jsnn.exact.simulate import layer_core, sort_events

from test_exact_simulate import CFG, jit, simulate_layer

F64 = jnp.float64
NEWTON_SUBTRACT_CFG = LIFConfig(tau_syn=4.0, tau_mem=7.0, threshold=1.0, t_end=30.0, reset="subtract")
CONFIGS = {"closed_form_zero": CFG, "newton_subtract": NEWTON_SUBTRACT_CFG}
EPS = 1e-6

# 2 inputs with 2 spikes each -> 3 neurons: 0 is driven by the inputs, 1 only through 0, 2 is inhibited by 1
IN_TIMES = jnp.array([[0.5, 9.0], [2.0, 14.0]], F64)
W = jnp.array([[5.0, 3.0], [0.5, 0.0], [2.0, 3.5]], F64)
R = jnp.array([[-0.5, 0.0, 0.0], [2.5, -0.5, 0.0], [1.5, -3.0, 0.3]], F64)

simulate = jax.jit(simulate_recurrent_layer, static_argnums=(3, 4), static_argnames="max_events")


def finite(t):
    return jnp.where(jnp.isfinite(t), t, jnp.zeros_like(t))


def loss(res):
    """A scalar touching every differentiable output: weighted spike times, int V, V(t_end)."""
    t = finite(res.times)
    return jnp.sum(t * jnp.arange(1.0, t.shape[1] + 1.0, dtype=F64)) + jnp.sum(jnp.sin(res.v_int)) + jnp.sum(
        res.v_end**2)


@functools.cache
def derivatives(cfg, max_spikes=6):
    """Base run, runs at +-EPS of every entry of (W, R), and the Jacobians of finite times and of ``loss``."""
    ev_t, ev_src, _ = sort_events(IN_TIMES)

    def run(p):
        return recurrent_layer_core(p[0], p[1], ev_t, ev_src, cfg, max_spikes)

    def times(p):
        return finite(run(p).times)

    def forward(p):
        res = run(p)
        return res.count, finite(res.times), loss(res), res.overflow

    @jit
    def compute(p):
        flat, unravel = ravel_pytree(p)
        steps = EPS * jnp.eye(flat.shape[0], dtype=F64)
        perturbed = jax.vmap(lambda d: (forward(unravel(flat + d)), forward(unravel(flat - d))))(steps)
        return {"base": forward(p), "perturbed": perturbed,
                "jacfwd": (jax.jacfwd(times)(p), jax.jacfwd(lambda q: loss(run(q)))(p)),
                "jacrev": (jax.jacrev(times)(p), jax.grad(lambda q: loss(run(q)))(p))}

    return compute((W, R))


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_zero_recurrence_equals_feed_forward_layer_core(cfg):
    # 4 neurons, neuron 3 a copy of neuron 0 (simultaneous crossings), 2 to 8 spikes each
    in_times = jnp.array([[0.5, 7.0], [2.0, 12.0], [4.0, jnp.inf]], F64)
    w = jnp.array([[5.0, 3.0, -1.0], [2.0, 2.5, 4.0], [9.0, -2.0, 3.0], [5.0, 3.0, -1.0]], F64)
    ev_t, ev_src, _ = sort_events(in_times)
    rec0 = jnp.zeros((4, 4), F64)

    def total(res):
        return jnp.sum(finite(res.times)) + jnp.sum(res.v_int)

    @jit
    def both(w):
        rec = recurrent_layer_core(w, rec0, ev_t, ev_src, cfg, 10)
        ff = layer_core(w, ev_t, ev_src, cfg, 10)
        g_rec = jax.grad(lambda w: total(recurrent_layer_core(w, rec0, ev_t, ev_src, cfg, 10)))(w)
        g_ff = jax.grad(lambda w: total(layer_core(w, ev_t, ev_src, cfg, 10)))(w)
        return rec, ff, g_rec, g_ff

    rec, ff, g_rec, g_ff = both(w)
    assert np.all(np.asarray(ff.count) >= 2) and not np.any(np.asarray(ff.overflow))
    np.testing.assert_array_equal(rec.count, ff.count)
    np.testing.assert_allclose(rec.times[0], rec.times[3], rtol=0, atol=1e-12)  # ties fire both at one time
    for field in ("times", "v_end", "v_int", "i_spike"):
        np.testing.assert_allclose(getattr(rec, field), getattr(ff, field), rtol=0, atol=1e-12, err_msg=field)
    assert not np.any(np.asarray(rec.overflow))
    np.testing.assert_allclose(g_rec, g_ff, rtol=0, atol=1e-10)


def euler_recurrent(w, rec, in_times, cfg, dt):
    """Plain-Python forward Euler of the recurrent layer: spike on V >= threshold (crossing interpolated in
    the step), reset to 0, then column m of ``rec`` is added to every current. Returns per neuron the spike
    times and the currents just before them."""
    w, rec = np.asarray(w).tolist(), np.asarray(rec).tolist()
    n = len(w)
    events = sorted((float(t), j) for j, row in enumerate(np.asarray(in_times)) for t in row if np.isfinite(t))
    v, i, out, cur, k = [0.0] * n, [0.0] * n, [[] for _ in range(n)], [[] for _ in range(n)], 0
    a, b = dt / cfg.tau_mem, 1.0 - dt / cfg.tau_syn
    for step in range(int(round(cfg.t_end / dt))):
        t = step * dt
        while k < len(events) and events[k][0] <= t:
            i = [x + row[events[k][1]] for x, row in zip(i, w)]
            k += 1
        v_new = [x + a * (y - x) for x, y in zip(v, i)]
        i = [y * b for y in i]
        for m in range(n):
            if v_new[m] >= cfg.threshold:
                out[m].append(t + dt * (cfg.threshold - v[m]) / (v_new[m] - v[m]))
                cur[m].append(i[m])
                v_new[m] = 0.0
                i = [y + row[m] for y, row in zip(i, rec)]
        v = v_new
    return out, cur


def test_spike_times_match_fine_euler():
    cfg = LIFConfig(tau_syn=5.0, tau_mem=10.0, threshold=1.0, t_end=18.0)
    res = simulate(W, R, IN_TIMES, cfg, 8)
    ff = simulate(W, jnp.zeros_like(R), IN_TIMES, cfg, 8)
    exact = [np.asarray(res.times[n, : int(res.count[n])]) for n in range(3)]
    # the recurrent spikes matter: neuron 1 fires only through neuron 0, neuron 2 differs too
    assert int(ff.count[1]) == 0 and len(exact[1]) >= 2
    assert int(ff.count[2]) != len(exact[2]) or np.max(np.abs(ff.times[2, : len(exact[2])] - exact[2])) > 0.1
    approx, currents = euler_recurrent(W, R, IN_TIMES, cfg, 1e-5)
    for n in range(3):
        assert len(approx[n]) == len(exact[n]), n
        np.testing.assert_allclose(approx[n], exact[n], rtol=0, atol=2e-4)  # error ~2e-5
        # i_spike is the current just before the spike (before a self-connection's jump)
        np.testing.assert_allclose(currents[n], res.i_spike[n, : len(exact[n])], rtol=0, atol=2e-4)


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_derivatives_match_central_finite_differences(cfg):
    d = derivatives(cfg)
    count, _, _, overflow = d["base"]
    (c_plus, t_plus, l_plus, _), (c_minus, t_minus, l_minus, _) = d["perturbed"]
    assert int(count[1]) >= 2 and not np.any(np.asarray(overflow))
    # the spike pattern is the same at every +-EPS probe, so the finite differences see one smooth branch
    assert np.all(np.asarray(c_plus) == np.asarray(count)) and np.all(np.asarray(c_minus) == np.asarray(count))
    fd_times = np.moveaxis(np.asarray(t_plus - t_minus) / (2 * EPS), 0, -1)  # (n, K, n_params)
    fd_loss = np.asarray(l_plus - l_minus) / (2 * EPS)
    jac_times = np.concatenate([np.asarray(j).reshape(*fd_times.shape[:2], -1) for j in d["jacfwd"][0]], -1)
    grad_loss = np.concatenate([np.asarray(g).reshape(-1) for g in d["jacrev"][1]])
    assert np.any(np.abs(np.asarray(d["jacfwd"][0][1])) > 0.1)  # rec_weight derivatives are exercised
    np.testing.assert_allclose(fd_times, jac_times, rtol=1e-6, atol=1e-6 * np.max(np.abs(jac_times)))
    np.testing.assert_allclose(fd_loss, grad_loss, rtol=1e-6, atol=1e-6 * np.max(np.abs(grad_loss)))


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_forward_mode_equals_reverse_mode(cfg):
    d = derivatives(cfg)
    for fwd, rev in zip(jax.tree.leaves(d["jacfwd"]), jax.tree.leaves(d["jacrev"]), strict=True):
        np.testing.assert_allclose(fwd, rev, rtol=1e-9, atol=1e-9)


def test_spikes_past_the_buffer_set_overflow_and_are_not_transmitted():
    # neuron 0 fires twice (buffer 1); neuron 1 listens to neuron 0 only; neuron 2 is silent
    in_times = jnp.array([[1.0], [8.0]], F64)
    w = jnp.array([[5.0, 3.0], [0.0, 0.0], [0.0, 0.0]], F64)
    rec = jnp.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 0.0, 0.0]], F64)
    res = simulate(w, rec, in_times, CFG, 1)
    # neuron 1 misses neuron 0's second spike, so its results are not exact: the whole layer is flagged
    assert res.count.tolist() == [2, 1, 0] and res.overflow.tolist() == [True, True, True]
    # oracle: neuron 0 alone, then neuron 1 fed by the one spike neuron 0 transmits
    n0 = simulate_layer(w[:1], in_times, CFG, 1)
    n1 = simulate_layer(jnp.array([[0.0, 0.0, 6.0]], F64), jnp.concatenate([in_times, n0.times]), CFG, 1)
    np.testing.assert_allclose(res.times[:2], jnp.concatenate([n0.times, n1.times]), rtol=1e-12)
    np.testing.assert_allclose(res.v_end[1], n1.v_end[0], rtol=1e-12)
    # a neuron firing far past its buffer exhausts the event slots: every neuron is flagged
    burst = simulate(jnp.array([[60.0], [0.0]], F64), jnp.zeros((2, 2), F64), jnp.array([[0.0]], F64), CFG, 1)
    assert int(burst.count[0]) > 2 and burst.overflow.tolist() == [True, True]


def test_jit_and_vmap_over_a_batch_of_input_times():
    batch = jnp.stack([IN_TIMES, IN_TIMES + 1.5, IN_TIMES[:, ::-1] * 0.5])
    batched = jax.jit(jax.vmap(lambda x: simulate_recurrent_layer(W, R, x, CFG, 6)))(batch)
    for b in range(batch.shape[0]):
        single = simulate(W, R, batch[b], CFG, 6)
        for got, want in zip(batched, single, strict=True):
            np.testing.assert_allclose(got[b], want, rtol=1e-12)
    assert len({tuple(np.asarray(batched.count[b]).tolist()) for b in range(3)}) > 1  # the samples differ


def test_bad_shapes_and_dtypes_raise():
    w, rec, x = jnp.ones((2, 3), F64), jnp.zeros((2, 2), F64), jnp.ones((3, 1), F64)
    with pytest.raises(ValueError, match="matching 'in'"):
        simulate_recurrent_layer(w, rec, jnp.ones((2, 1), F64), CFG, 2)
    with pytest.raises(ValueError, match="matching 'in'"):
        simulate_recurrent_layer(w, rec, jnp.ones((3,), F64), CFG, 2)
    with pytest.raises(ValueError, match=r"rec_weight must be square \(n, n\) with n = weight.shape\[0\] = 2"):
        simulate_recurrent_layer(w, jnp.zeros((3, 3), F64), x, CFG, 2)
    with pytest.raises(ValueError, match="rec_weight dtype float32 differs from the weights' float64"):
        simulate_recurrent_layer(w, rec.astype(jnp.float32), x, CFG, 2)
    with pytest.raises(ValueError, match="share one floating dtype"):
        simulate_recurrent_layer(w.astype(jnp.int32), rec.astype(jnp.int32), x.astype(jnp.int32), CFG, 2)
    with pytest.raises(ValueError, match="max_spikes must be a positive int"):
        simulate_recurrent_layer(w, rec, x, CFG, 0)


def test_event_net_with_recurrent_hidden_layers():
    from jsnn.exact.net import EventNet

    kw = dict(key=jax.random.key(3), cfg=CFG, max_spikes=3, init=[(3.0, 1.0), (1.0, 0.5)], dtype=F64)
    ff, rec = EventNet((2, 3, 2), **kw), EventNet((2, 3, 2), recurrent=(0.0, 1.0), **kw)
    assert ff.rec_weights is None and [r.shape for r in rec.weights] == [w.shape for w in ff.weights]
    assert [r.shape for r in rec.rec_weights] == [(3, 3)]
    np.testing.assert_array_equal(rec.weights[0], ff.weights[0])  # the recurrent option leaves W's init alone
    zero = eqx.tree_at(lambda n: n.rec_weights, rec, [jnp.zeros((3, 3), F64)])
    a, b = jit(lambda n: n(IN_TIMES))(ff), jit(lambda n: n(IN_TIMES))(zero)
    assert int(a[0].count.sum()) > 0
    for ra, rb in zip(a, b):  # R = 0 is the feed-forward net
        np.testing.assert_allclose(finite(rb.times), finite(ra.times), rtol=1e-12, atol=1e-12)
    # reverse mode and FP agree on the recurrent weights' gradient, which is not zero
    f = lambda r: jnp.sum(finite(eqx.tree_at(lambda n: n.rec_weights, rec, r)(IN_TIMES)[-1].times))  # noqa: E731
    g_rev, g_fwd = jit(jax.grad(f))(rec.rec_weights), jit(jax.jacfwd(f))(rec.rec_weights)
    np.testing.assert_allclose(g_fwd[0], g_rev[0], rtol=1e-9, atol=1e-12)
    assert float(jnp.max(jnp.abs(g_rev[0]))) > 0
    with pytest.raises(ValueError, match="feed-forward layers only"):
        rec(IN_TIMES, grad="adjoint")
