"""The ADMM iteration, its chunked state, and its optax face (float64, sizes 5-4-3-2, N = 3..5, T = 4)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jsnn.optim import (
    AdmmOptions,
    StateLayout,
    admm,
    admm_metrics,
    admm_step,
    init_params,
    init_state,
    make_batch,
    to_sequential,
)
from jsnn.optim.admm import forward_state
from jsnn.simulate import simulate

F64 = jnp.float64
SIZES = [5, 4, 3, 2]
T = 4
_step = jax.jit(admm_step, static_argnames=("options", "mesh"))
HYPER = dict(rho=1.0, beta=0.1, decay=0.95, threshold=1.0, warmup=1, ridge=1e-6)


def step(params, state, batch, options=AdmmOptions(), **overrides):
    """admm_step, jitted, always with the same set of keyword arguments (one compile per options/shapes)."""
    return _step(params, state, batch, options=options, **{**HYPER, **overrides})


def data(n=3, seed=0, chunk_size=None):
    rng = np.random.default_rng(seed)
    layout = StateLayout(num_samples=n, num_steps=T, chunk_size=chunk_size)
    x = rng.random((n, T, SIZES[0]))
    labels = rng.integers(0, SIZES[-1], n)
    return layout, make_batch(x, labels, layout, targets=np.eye(SIZES[-1])[labels], dtype=F64)


def random_params(seed=0, gain=2.0):
    rng = np.random.default_rng(seed)
    return tuple({"weight": jnp.asarray(gain * rng.normal(size=(o, i)) / np.sqrt(i))}
                 for i, o in zip(SIZES[:-1], SIZES[1:]))


def unpad(state, n):
    """Per-sample arrays as (N, ...) without padding."""
    flat = lambda v: v.reshape((-1,) + v.shape[2:])[:n]  # noqa: E731
    return [flat(v) for v in (*state.z, *state.a, state.dual)]


def test_teacher_state_is_a_fixed_point_and_matches_the_simulation():
    layout, batch = data(n=3, seed=1)
    params = random_params(seed=1)
    state = forward_state(params, init_state(params, layout), batch, decay=0.95, threshold=1.0)
    assert 0.05 < float(jnp.mean(state.a[0])) < 0.95  # the teacher's hidden layer fires, but not always
    targets = state.z[-1][:, :, -1]  # y = z*_{L,T}: a zero loss
    batch = batch._replace(y=targets)
    metrics = admm_metrics(params, state, batch)
    assert metrics["loss"] < 1e-20 and max(metrics["rms_cz"] + metrics["rms_ca"]) < 1e-12
    assert metrics["spike_disagreement"] == [0.0, 0.0]  # state = simulation (§1.7.5)
    new_params, new_state = step(params, state, batch, warmup=0, ridge=1e-14)
    inputs = [batch.x] + list(state.a)
    for l, (old, new) in enumerate(zip(params, new_params)):  # compare W A (a Gram may be singular)
        np.testing.assert_allclose(inputs[l] @ new["weight"].T, inputs[l] @ old["weight"].T, atol=1e-8)
    for old, new in zip((*state.z, *state.a, state.dual), (*new_state.z, *new_state.a, new_state.dual)):
        np.testing.assert_allclose(new, old, atol=1e-8)
    # and the network is an ordinary jsnn Sequential whose readout is the state's
    net = to_sequential(new_params, decay=0.95, threshold=1.0)
    out = jax.vmap(lambda xi: simulate(net, xi))(batch.x[0])
    np.testing.assert_allclose(out, state.z[-1][0], atol=1e-8)


def test_chunked_state_with_padding_equals_one_chunk():
    n = 5
    results = []
    for chunk in (None, 2):  # 2 -> three chunks, the last one half padding
        layout, batch = data(n=n, seed=2, chunk_size=chunk)
        params = init_params(SIZES, dtype=F64)
        state = init_state(params, StateLayout(num_samples=n, num_steps=T))  # same draws for both
        state = state._replace(**{f: (tuple(_chunk(v, layout) for v in getattr(state, f)) if f in "za" else
                                      _chunk(state.dual, layout)) for f in ("z", "a", "dual")})
        for _ in range(3):
            params, state = step(params, state, batch)
        results.append((params, unpad(state, n)))
    for p1, p2 in zip(jax.tree.leaves(results[0][0]), jax.tree.leaves(results[1][0])):
        np.testing.assert_allclose(p1, p2, atol=1e-10)
    for s1, s2 in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(s1, s2, atol=1e-10)


def _chunk(v, layout):
    """(1, N, ...) state array -> (C, B, ...) with zero padding."""
    flat = v[0]
    pad = layout.num_chunks * layout.batch_size - flat.shape[0]
    flat = jnp.concatenate([flat, jnp.zeros((pad,) + flat.shape[1:], flat.dtype)])
    return flat.reshape((layout.num_chunks, layout.batch_size) + flat.shape[1:])


def test_jacobi_gauss_seidel_and_red_black_agree_where_they_must():
    layout, batch = data(n=3, seed=3)
    params = init_params(SIZES, dtype=F64)
    state = init_state(params, layout, seed=3)
    params, state = step(params, state, batch)  # nonzero weights
    out = {s: step(params, state, batch, options=AdmmOptions(sweep=s, readout="sweep"))
           for s in ("jacobi", "gauss_seidel", "red_black")}
    (pj, sj), (pg, sg), (pr, sr) = out["jacobi"], out["gauss_seidel"], out["red_black"]
    # U1 comes first: identical hidden weights
    np.testing.assert_allclose(pj[0]["weight"], pg[0]["weight"], atol=1e-12)
    # the spike update of layer 1 reads only old potentials: vectorised = unrolled (§1.7.7)
    np.testing.assert_allclose(sg.a[0], sj.a[0], atol=1e-9)
    np.testing.assert_allclose(sr.a[0], sj.a[0], atol=1e-9)
    # potentials agree where both read the same old neighbours: t = 1 (GS), even steps (red-black)
    np.testing.assert_allclose(sg.z[0][:, :, 0], sj.z[0][:, :, 0], atol=1e-9)
    np.testing.assert_allclose(sr.z[0][:, :, ::2], sj.z[0][:, :, ::2], atol=1e-9)
    assert not np.allclose(sg.z[0], sj.z[0])  # the sweeps do differ elsewhere


def test_random_orders_with_biases_run_and_follow_the_seed():
    layout, batch = data(n=3, seed=4)
    params = init_params(SIZES, use_bias=True, dtype=F64)
    options = AdmmOptions(sweep="gauss_seidel", time_order="random", layer_order="random", readout="sweep")
    runs = []
    for _ in range(2):
        p, s = params, init_state(params, layout, seed=7)
        for _ in range(3):
            p, s = step(p, s, batch, options=options)
        runs.append(p)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(runs[0]))
    assert "bias" in runs[0][0] and runs[0][0]["bias"].shape == (4,)
    for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
        np.testing.assert_array_equal(a, b)


def _optax_update(opt):
    """One jitted optax update (a plain user training step)."""

    @jax.jit
    def update(params, opt_state, batch):
        updates, opt_state = opt.update(jax.tree.map(jnp.zeros_like, params), opt_state, params, batch=batch)
        return optax.apply_updates(params, updates), opt_state

    return update


def test_optax_face_equals_direct_admm_steps():
    layout, batch = data(n=3, seed=5)
    params = init_params(SIZES, dtype=F64)
    opt = admm(layout=layout, seed=5, **HYPER)
    update = _optax_update(opt)
    via_optax, opt_state = params, opt.init(params)
    p, s = params, init_state(params, layout, seed=5)
    for _ in range(3):
        via_optax, opt_state = update(via_optax, opt_state, batch)
        p, s = step(p, s, batch)
    for a, b in zip(jax.tree.leaves(via_optax), jax.tree.leaves(p)):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_chain_with_a_clip_damps_the_admm_step():
    layout, batch = data(n=3, seed=6)
    params = init_params(SIZES, dtype=F64)

    @jax.jit
    def first_update(max_norm):
        plain_opt = admm(layout=layout)
        plain, _ = plain_opt.update(None, plain_opt.init(params), params, batch=batch)
        chained = optax.chain(admm(layout=layout), optax.clip_by_global_norm(max_norm))
        clipped, _ = chained.update(None, chained.init(params), params, batch=batch)
        return plain, clipped

    plain, _ = first_update(jnp.inf)
    norm = float(optax.tree_utils.tree_norm(plain))
    plain, clipped = first_update(0.5 * norm)
    for a, b in zip(jax.tree.leaves(clipped), jax.tree.leaves(plain)):
        np.testing.assert_allclose(a, 0.5 * b, rtol=1e-10)


def test_inject_hyperparams_vmap_over_rho_beta_equals_separate_runs():
    layout, batch = data(n=3, seed=7)
    params = init_params(SIZES, dtype=F64)
    rhos = jnp.array([0.5, 1.0, 2.0, 4.0], F64)
    betas = jnp.array([0.05, 0.1, 0.2, 0.4], F64)
    injected = optax.inject_hyperparams(admm)

    states = jax.vmap(lambda r, b: injected(rho=r, beta=b, layout=layout, warmup=1).init(params))(rhos, betas)
    lane_update = jax.jit(jax.vmap(_optax_update(injected(rho=1.0, beta=0.1, layout=layout, warmup=1)).__wrapped__,
                                   in_axes=(0, 0, None)))

    @jax.jit
    def separate(params, opt_state, batch, rho, beta):  # the plain transformation, one (rho, beta) at a time
        opt = admm(rho, beta, layout=layout, warmup=1)
        updates, opt_state = opt.update(None, opt_state, params, batch=batch)
        return optax.apply_updates(params, updates), opt_state

    lanes = jax.tree.map(lambda v: jnp.stack([v] * 4), params)
    for _ in range(2):
        lanes, states = lane_update(lanes, states, batch)
    for i in range(4):
        single, single_state = params, admm(layout=layout).init(params)
        for _ in range(2):
            single, single_state = separate(single, single_state, batch, rhos[i], betas[i])
        for a, b in zip(jax.tree.leaves(lanes), jax.tree.leaves(single)):
            np.testing.assert_allclose(a[i], b, atol=1e-9)


def test_new_traced_hyperparameters_do_not_recompile():
    layout, batch = data(n=3, seed=8)
    params = init_params(SIZES, dtype=F64)
    state = init_state(params, layout)
    step(params, state, batch)
    before = _step._cache_size()
    step(params, state, batch, rho=2.0, beta=0.3, decay=0.8, threshold=1.5, warmup=7, ridge=1e-3)
    assert _step._cache_size() == before


def test_mismatched_inputs_raise_clear_errors():
    layout, batch = data(n=3, seed=9)
    params = init_params(SIZES, dtype=F64)
    state = init_state(params, layout)
    with pytest.raises(ValueError, match="same StateLayout"):
        admm_step(params, state, data(n=4)[1])
    with pytest.raises(TypeError, match="state is float64"):
        admm_step(init_params(SIZES), state, batch)
    with pytest.raises(ValueError, match="sweep must be one of"):
        AdmmOptions(sweep="sideways")
    with pytest.raises(ValueError, match="samples of"):
        make_batch(np.zeros((2, T, 5)), np.array([0, 1]), layout)


def test_make_batch_refuses_labels_outside_the_classes():
    layout = StateLayout(num_samples=2, num_steps=T)
    with pytest.raises(ValueError, match=">= 0"):
        make_batch(np.zeros((2, T, 5)), np.array([0, -1]), layout)
    with pytest.raises(ValueError, match="outside the 3 classes"):
        make_batch(np.zeros((2, T, 5)), np.array([0, 3]), layout, targets=np.eye(3)[[0, 1]])


@pytest.mark.parametrize("bad", [dict(beta=0.0), dict(beta=-0.1), dict(rho=0.0), dict(rho=float("nan")),
                                 dict(beta=float("inf"))])
def test_nonpositive_rho_or_beta_is_refused_before_any_work(bad):
    layout, batch = data(n=1, seed=10)  # N = 1: with beta = 0 the spike system is singular (NaN weights)
    params = init_params(SIZES, dtype=F64)
    state = init_state(params, layout)
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"{name} must be positive and finite"):
        admm_step(params, state, batch, **{**HYPER, **bad})
    with pytest.raises(ValueError, match=f"{name} must be positive and finite"):
        admm(**{"rho": 1.0, "beta": 0.1, **bad}, layout=layout)
