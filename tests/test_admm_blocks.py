"""Closed-form ADMM blocks against the augmented Lagrangian coded directly from ALGORITHMS §1.2 (float64).

The oracle ``lagrangian`` below is written out layer by layer from the formula, independent of the
library's block code. Each block must make the gradient of L_rho with respect to the block vanish (or
be coordinate-wise optimal against a grid, for the discontinuous Heaviside block).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.optim import admm_blocks as blk

N, T = 3, 4
RHO, BETA, DECAY, TH = 1.3, 0.4, 0.9, 1.0
F64 = jnp.float64


def lagrangian(weights, z, a, dual, x, y, rho=RHO, beta=BETA, decay=DECAY, th=TH, h=None):
    """L_rho of §1.2, written out per layer. ``h`` optionally fixes H(z) of the hidden layers (for grads in a)."""
    n_layers = len(weights)
    inputs = [x] + list(a)
    total = jnp.sum((z[-1][:, T - 1] - y) ** 2)
    for l in range(n_layers):
        w, b = weights[l]
        z_prev = jnp.concatenate([jnp.zeros_like(z[l][:, :1]), z[l][:, :-1]], axis=1)
        res = z[l] - decay * z_prev - jnp.einsum("ntj,ij->nti", inputs[l], w)
        if b is not None:
            res = res - b
        if l < n_layers - 1:  # reset term: + th * a_{l,t-1}
            res = res.at[:, 1:].add(th * a[l][:, :-1])
        total = total + rho / 2 * jnp.sum(res**2)
        if l == n_layers - 1:
            total = total + jnp.sum(dual * res[:, T - 1])
    for l in range(n_layers - 1):
        hl = (z[l] > th).astype(F64) if h is None else h[l]
        total = total + beta / 2 * jnp.sum((a[l] - hl) ** 2)
    return total


lag = lagrangian
grad_w = jax.grad(lagrangian, argnums=0)
grad_z = jax.grad(lagrangian, argnums=1)
grad_a = jax.grad(lagrangian, argnums=2)


def problem(sizes, seed=0, use_bias=False):
    rng = np.random.default_rng(seed)
    weights = [(jnp.asarray(rng.normal(size=(o, i)) / np.sqrt(i)),
                jnp.asarray(rng.normal(size=o) * 0.1) if use_bias else None)
               for i, o in zip(sizes[:-1], sizes[1:])]
    x = jnp.asarray(rng.random((N, T, sizes[0])))
    z = [jnp.asarray(rng.normal(size=(N, T, d)) + 0.8) for d in sizes[1:]]
    a = [jnp.asarray(rng.random((N, T, d))) for d in sizes[1:-1]]
    dual = jnp.asarray(rng.normal(size=(N, sizes[-1])))
    y = jnp.asarray(np.eye(sizes[-1])[rng.integers(0, sizes[-1], N)])
    return weights, z, a, dual, x, y


SIZES = [5, 4, 3, 2]


@pytest.mark.parametrize("use_bias", [False, True])
def test_hidden_weight_update_is_lstsq_and_zeroes_the_gradient(use_bias):
    weights, z, a, dual, x, y = problem(SIZES, use_bias=use_bias)
    inputs = [x] + a
    for l in range(len(SIZES) - 2):
        w, b = blk.hidden_weight_update(z[l], a[l], inputs[l], decay=DECAY, threshold=TH, ridge=0.0,
                                        use_bias=use_bias)
        targets = blk.membrane_targets(z[l], a[l], decay=DECAY, threshold=TH).reshape(N * T, -1)
        rows = inputs[l].reshape(N * T, -1)
        if use_bias:
            rows = jnp.concatenate([rows, jnp.ones((N * T, 1), F64)], axis=1)
        ref = jnp.linalg.lstsq(rows, targets)[0].T
        np.testing.assert_allclose(w, ref[:, : w.shape[1]], atol=1e-10)
        if use_bias:
            np.testing.assert_allclose(b, ref[:, -1], atol=1e-10)
        new = list(weights)
        new[l] = (w, b)
        grads = grad_w(new, z, a, dual, x, y)
        assert float(jnp.max(jnp.abs(grads[l][0]))) < 1e-8
        if use_bias:
            assert float(jnp.max(jnp.abs(grads[l][1]))) < 1e-8


@pytest.mark.parametrize("n, t", [(1, 3), (3, 1), (1, 1)])  # N = 1 or T = 1: fewer rows than inputs
def test_zero_ridge_solve_is_the_min_norm_lstsq_for_a_singular_gram(n, t):
    rng = np.random.default_rng(n + 10 * t)
    a_prev, z = rng.random((n, t, 5)), rng.normal(size=(n, t, 4))
    num, gram = blk.weight_statistics(jnp.asarray(z), jnp.asarray(a_prev))
    assert np.linalg.matrix_rank(np.asarray(gram)) < 5
    ref = np.linalg.lstsq(a_prev.reshape(n * t, 5), z.reshape(n * t, 4), rcond=None)[0].T
    traced = jax.jit(lambda num, gram, ridge: blk.solve_weights(num, gram, ridge=ridge)[0])
    for w in (blk.solve_weights(num, gram, ridge=0.0)[0], traced(num, gram, 0.0)):
        np.testing.assert_allclose(w, ref, atol=1e-12)
    w, _ = blk.hidden_weight_update(jnp.asarray(z), jnp.zeros((n, t, 4)), jnp.asarray(a_prev), decay=0.0,
                                    threshold=TH, ridge=0.0)
    np.testing.assert_allclose(w, ref, atol=1e-12)
    # the case: one sample, two equal inputs
    w, _ = blk.solve_weights(jnp.ones((1, 2), F64), jnp.ones((2, 2), F64), ridge=0.0)
    np.testing.assert_allclose(w, [[0.5, 0.5]], atol=1e-15)
    # a positive ridge keeps the Cholesky route (ridge form, not the pseudo-inverse) under jit too
    eps = 1e-3 * (np.trace(gram) / 5 + 1)
    ridge_ref = np.asarray(num) @ np.linalg.inv(np.asarray(gram) + eps * np.eye(5))
    np.testing.assert_allclose(traced(num, gram, 1e-3), ridge_ref, atol=1e-10)


@pytest.mark.parametrize("ridge", [1e-2, 0.0, "traced"])
def test_vmapped_solves_run_lane_by_lane_on_cpu_and_equal_each_lanes_solve(ridge):
    # jaxlib's batched CPU LAPACK kernels wait on XLA's thread pool from inside it: two at once hung a
    # 2-core ADMM sweep, so a vmapped solve must reach LAPACK one matrix (rank 2) at a time
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 20, 6))
    gram, num = jnp.asarray(np.einsum("bnk,bnl->bkl", a, a)), jnp.asarray(rng.normal(size=(4, 3, 6)))
    ridges = jnp.asarray([0.0, 1e-2, 0.0, 1e-3]) if ridge == "traced" else jnp.full((4,), ridge)
    solve = jax.jit(jax.vmap(lambda n, g, r: blk.solve_weights(n, g, ridge=r if ridge == "traced" else ridge)[0]))
    lanes = solve(num, gram, ridges)
    for i in range(4):
        np.testing.assert_allclose(lanes[i], blk.solve_weights(num[i], gram[i], ridge=float(ridges[i]))[0],
                                   rtol=1e-10, atol=1e-12)
    hlo = solve.lower(num, gram, ridges).compile().as_text()
    calls = [line for line in hlo.splitlines() if "custom_call_target=\"lapack_" in line]
    assert calls, "no LAPACK call found: the check below would pass vacuously"
    for line in calls:
        shape = line.split("=", 1)[1].split("custom-call")[0]
        assert "[4," not in shape, f"a batched LAPACK call: {line.strip()[:160]}"


def test_nonpositive_beta_shift_or_negative_ridge_are_refused():
    with pytest.raises(ValueError, match="must be positive and finite; got 0.0"):
        blk.spike_system(jnp.array([[1.0, 2.0]], F64), 0.0)  # Woodbury branch (d_up < d)
    with pytest.raises(ValueError, match="must be positive and finite"):
        blk.spike_system(jnp.ones((3, 2), F64), -1.0)
    weights, z, a, dual, x, y = problem(SIZES)
    with pytest.raises(ValueError, match="must be positive and finite"):
        blk.spike_update(z[0], x, *weights[0], z[1], a[1], *weights[1], rho=RHO, beta=0.0, decay=DECAY,
                         threshold=TH)
    for ridge in (-1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ridge must be non-negative and finite"):
            blk.solve_weights(jnp.ones((1, 2), F64), jnp.ones((2, 2), F64), ridge=ridge)


@pytest.mark.parametrize("use_bias", [False, True])
def test_readout_weight_update_with_multiplier_zeroes_the_gradient(use_bias):
    weights, z, a, dual, x, y = problem(SIZES, seed=1, use_bias=use_bias)
    w, b = blk.readout_weight_update(z[-1], a[-1], dual, rho=RHO, decay=DECAY, ridge=0.0, use_bias=use_bias)
    new = weights[:-1] + [(w, b)]
    grads = grad_w(new, z, a, dual, x, y)
    assert float(jnp.max(jnp.abs(grads[-1][0]))) < 1e-8
    if use_bias:
        assert float(jnp.max(jnp.abs(grads[-1][1]))) < 1e-8


def test_weight_statistics_sum_over_chunks_and_mask_padding():
    weights, z, a, dual, x, y = problem(SIZES, seed=2)
    targets = blk.membrane_targets(z[0], a[0], decay=DECAY, threshold=TH)
    full = blk.weight_statistics(targets, x, use_bias=True)
    pad_t = jnp.concatenate([targets, jnp.ones_like(targets[:1])])
    pad_x = jnp.concatenate([x, jnp.ones_like(x[:1])])
    mask = jnp.array([1.0, 1.0, 1.0, 0.0], F64)
    parts = [blk.weight_statistics(pad_t[i:i + 2], pad_x[i:i + 2], use_bias=True, mask=mask[i:i + 2]) for i in (0, 2)]
    for k in range(2):
        np.testing.assert_allclose(parts[0][k] + parts[1][k], full[k], atol=1e-12)


@pytest.mark.parametrize("sizes", [[5, 4, 3, 2], [5, 3, 4, 2]])  # Woodbury (d_up < d) and direct systems
def test_unclipped_spike_update_zeroes_the_gradient(sizes):
    weights, z, a, dual, x, y = problem(sizes, seed=3)
    inputs = [x] + a
    h = [(zl > TH).astype(F64) for zl in z[:-1]]
    for l in range(len(sizes) - 2):
        up_is_readout = l + 1 == len(sizes) - 2
        new_a = blk.spike_update(z[l], inputs[l], *weights[l], z[l + 1], None if up_is_readout else a[l + 1],
                                 *weights[l + 1], dual if up_is_readout else None,
                                 rho=RHO, beta=BETA, decay=DECAY, threshold=TH, clip=False)
        a_new = list(a)
        a_new[l] = new_a
        grad = grad_a(weights, z, a_new, dual, x, y, h=h)[l]
        assert float(jnp.max(jnp.abs(grad))) < 1e-8


def test_clipped_spike_update_solves_the_box_qp_when_gram_is_diagonal():
    weights, z, a, dual, x, y = problem([5, 3, 4, 2], seed=4)
    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(4, 3)))
    weights[1] = (jnp.asarray(q * np.array([2.0, 0.7, 1.5])), None)  # orthogonal columns: W^T W diagonal
    z[1] = 3 * z[1]  # push the unconstrained solution outside [0, 1] here and there
    h = [(zl > TH).astype(F64) for zl in z[:-1]]
    new_a = blk.spike_update(z[0], x, *weights[0], z[1], a[1], *weights[1], None,
                             rho=RHO, beta=BETA, decay=DECAY, threshold=TH)
    grad = grad_a(weights, z, [new_a, a[1]], dual, x, y, h=h)[0]
    at0, at1 = new_a <= 0, new_a >= 1
    assert bool(jnp.any(at0 | at1)) and bool(jnp.any(~at0 & ~at1))
    assert float(jnp.max(jnp.abs(jnp.where(at0 | at1, 0, grad)))) < 1e-8  # interior: stationary
    assert float(jnp.min(jnp.where(at0, grad, 0))) > -1e-8  # at 0: the gradient points inward
    assert float(jnp.max(jnp.where(at1, grad, 0))) < 1e-8


def test_exact_readout_update_zeroes_the_gradient():
    weights, z, a, dual, x, y = problem(SIZES, seed=5)
    cur = blk.currents(a[-1], *weights[-1])
    z_new = blk.readout_membrane_update(z[-1], cur, y, dual, rho=RHO, decay=DECAY, sweep="exact")
    grad = grad_z(weights, z[:-1] + [z_new], a, dual, x, y)[-1]
    assert float(jnp.max(jnp.abs(grad))) < 1e-8


@pytest.mark.parametrize("sweep", ["red_black", "jacobi"])
def test_per_step_readout_update_is_stationary_in_the_steps_it_updates_last(sweep):
    weights, z, a, dual, x, y = problem(SIZES, seed=6)
    cur = blk.currents(a[-1], *weights[-1])
    z_new = blk.readout_membrane_update(z[-1], cur, y, dual, rho=RHO, decay=DECAY, sweep=sweep)
    if sweep == "red_black":  # odd steps are minimised given the final even ones
        grad = grad_z(weights, z[:-1] + [z_new], a, dual, x, y)[-1]
        assert float(jnp.max(jnp.abs(grad[:, 1::2]))) < 1e-8
    else:  # Jacobi: each step is minimised given the *old* neighbours
        for t in range(T):
            z_t = z[-1].at[:, t].set(z_new[:, t])
            grad = grad_z(weights, z[:-1] + [z_t], a, dual, x, y)[-1]
            assert float(jnp.max(jnp.abs(grad[:, t]))) < 1e-8


def _on_grid(weights, zs, a, dual, x, y, grid, onehot):
    """L_rho with one element of a hidden layer's z (selected by ``onehot`` masks) set to each grid value."""
    return jax.vmap(lambda v: lagrangian(weights, [jnp.where(m, v, zl) for zl, m in zip(zs, onehot)],
                                         a, dual, x, y))(grid)


def on_grid(weights, zs, a, dual, x, y, grid, l, n, t, k):
    onehot = [jnp.zeros(zl.shape, bool) for zl in zs]
    onehot[l] = onehot[l].at[n, t, k].set(True)
    return _on_grid(weights, zs, a, dual, x, y, grid, onehot)


def test_red_black_membrane_update_is_coordinatewise_optimal():
    weights, z, a, dual, x, y = problem(SIZES, seed=7)
    inputs = [x] + a
    grid = jnp.concatenate([jnp.linspace(-3.0, 5.0, 1601, dtype=F64), jnp.array([TH, TH + 1e-9], F64)])
    rng = np.random.default_rng(7)
    for l in range(2):
        cur = blk.currents(inputs[l], *weights[l])
        z_new = blk.hidden_membrane_update(z[l], a[l], cur, rho=RHO, beta=BETA, decay=DECAY, threshold=TH,
                                           sweep="red_black")
        zs = list(z)
        zs[l] = z_new
        base = lag(weights, zs, a, dual, x, y)
        for _ in range(4):  # odd steps were minimised last, so they are optimal in the final state
            n, t, k = int(rng.integers(N)), int(rng.choice([1, 3])), int(rng.integers(z_new.shape[-1]))
            vals = on_grid(weights, zs, a, dual, x, y, grid, l, n, t, k)
            assert float(base) <= float(vals.min()) + 1e-4 * (1 + RHO * 10)  # spike-side eps slack


def test_dual_update_adds_rho_times_the_readout_residual():
    z = jnp.array([[[1.0], [3.0]]], F64)  # (1, 2, 1)
    c = jnp.array([[[0.5], [0.25]]], F64)
    dual = blk.dual_update(jnp.array([[2.0]], F64), z, c, rho=2.0, decay=0.5)
    assert float(dual[0, 0]) == 2.0 + 2.0 * (3.0 - 0.5 * 1.0 - 0.25)


def test_library_lagrangian_matches_the_loop_oracle():
    weights, z, a, dual, x, y = problem(SIZES, seed=8, use_bias=True)
    lib = blk.augmented_lagrangian(weights, z, a, dual, x, y, rho=RHO, beta=BETA, decay=DECAY, threshold=TH)
    np.testing.assert_allclose(lib["lagrangian"], lag(weights, z, a, dual, x, y), rtol=1e-12)


def test_warm_up_blocks_never_raise_the_lagrangian():
    """Monotone warm-up (§1.7.3): with the multiplier frozen at 0, U1, U3 (red-black), U4, U5 never raise L_rho."""
    weights, z, a, _, x, y = problem(SIZES, seed=9)
    dual = jnp.zeros((N, SIZES[-1]), F64)
    kw = dict(rho=RHO, beta=BETA, decay=DECAY, threshold=TH)

    def value():
        return float(lag(weights, z, a, dual, x, y))

    def check(before, what):
        after = value()
        n_eps = sum(int(jnp.sum((zl > TH) & (zl < TH + 2e-5))) for zl in z[:-1])
        assert after <= before + 1e-9 * abs(before) + n_eps * 1e-5 * (1 + 10 * RHO), what
        return after

    current = value()
    for _ in range(4):
        for l in range(2):
            weights[l] = blk.hidden_weight_update(z[l], a[l], ([x] + a)[l], decay=DECAY, threshold=TH, ridge=0.0)
            current = check(current, f"U1 layer {l}")
        for l in range(2):
            up_readout = l == 1
            a[l] = blk.spike_update(z[l], ([x] + a)[l], *weights[l], z[l + 1], None if up_readout else a[l + 1],
                                    *weights[l + 1], dual if up_readout else None, **kw)
            current = value()  # U2 (clipped) is logged, not asserted
            z[l] = blk.hidden_membrane_update(z[l], a[l], blk.currents(([x] + a)[l], *weights[l]), **kw)
            current = check(current, f"U3 layer {l}")
        weights[2] = blk.readout_weight_update(z[2], a[1], dual, rho=RHO, decay=DECAY, ridge=0.0)
        current = check(current, "U4")
        z[2] = blk.readout_membrane_update(z[2], blk.currents(a[1], *weights[2]), y, dual, rho=RHO, decay=DECAY)
        current = check(current, "U5")
