"""IDE: the implicit gradient, its solvers and the custom_vjp wiring (ALGORITHMS §3.8, oracles 5-7)."""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilibrium_nets import F64, exact_fixed_point, simulate, single_layer
from jsnn.equilibrium import (SOLVERS, EquilibriumConfig, backward_stats, equilibrium, feedback_fc, implicit_vjp,
                              simulate_rates)

TIGHT = EquilibriumConfig(T=30, tol=1e-13, max_iter=200, on_fail="ignore")


@pytest.fixture(scope="module")
def problem():
    net, x = single_layer(seed=5, n=20)
    a_star = exact_fixed_point(net, x, iters=400)
    c = jnp.asarray(np.random.default_rng(5).normal(size=20), F64)
    return net, x, a_star, c


def _fp_loss(net, x, c, iters):
    fx = net.input_current(x)
    a = jax.lax.fori_loop(0, iters, lambda _, a: net.fixed_point_map(a, fx), jnp.zeros(20, F64))
    return jnp.sum(c * a)


def test_implicit_gradient_matches_finite_differences(problem):
    net, x, a_star, c = problem
    grad_net, grad_x, _ = implicit_vjp(net, x[None], a_star[None], c[None], TIGHT)
    gw = np.asarray(grad_net.connections[0].weight)
    loss = jax.jit(lambda w: _fp_loss(eqx.tree_at(lambda n: n.connections[0].weight, net, w), x, c, 400))
    w0 = net.connections[0].weight
    eps = 1e-6
    rng = np.random.default_rng(0)
    active = np.argwhere(np.abs(gw) > 1e-3 * np.abs(gw).max())
    for i, j in active[rng.choice(len(active), 8, replace=False)]:
        fd = (loss(w0.at[i, j].add(eps)) - loss(w0.at[i, j].add(-eps))) / (2 * eps)
        assert abs(float(fd) - gw[i, j]) <= 1e-5 * abs(gw[i, j]), (i, j, float(fd), gw[i, j])
    # input gradient too
    fd_x = (_fp_loss(net, x.at[3].add(eps), c, 400) - _fp_loss(net, x.at[3].add(-eps), c, 400)) / (2 * eps)
    np.testing.assert_allclose(float(grad_x[0, 3]), float(fd_x), rtol=1e-5)


def test_implicit_gradient_matches_grad_through_500_unrolled_iterations(problem):
    net, x, a_star, c = problem
    grad_net, _, _ = implicit_vjp(net, x[None], a_star[None], c[None], TIGHT)
    unrolled = eqx.filter_grad(lambda n: _fp_loss(n, x, c, 500))(net)
    for got, want in [(grad_net.connections[0].weight, unrolled.connections[0].weight),
                      (grad_net.encoder.weight, unrolled.encoder.weight)]:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * float(jnp.abs(want).max()))


def test_solvers_agree_with_the_dense_solve_and_not_with_the_halved_iteration(problem):
    net, x, a_star, c = problem
    fx = net.input_current(x)
    J = jax.jacobian(lambda a: net.fixed_point_map(a, fx))(a_star)
    dense = np.linalg.solve(np.eye(20) - np.asarray(J).T, np.asarray(c))
    jt = lambda y: J.T @ y  # noqa: E731
    for name, solver in SOLVERS.items():
        y, k, rel = solver(jt, c, tol=1e-12, max_iter=100)
        np.testing.assert_allclose(y, dense, rtol=0, atol=1e-6 * np.abs(dense).max(), err_msg=name)
        assert float(rel) <= 1e-10, name
    halved = np.linalg.solve(2 * np.eye(20) - np.asarray(J).T, np.asarray(c))  # the authors' "iter" fixed point
    assert np.abs(halved - dense).max() > 0.1 * np.abs(dense).max()


def _count_scans(jaxpr, length):
    n = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan" and eqn.params["length"] == length:
            n += 1
        for v in eqn.params.values():
            if hasattr(v, "jaxpr") and hasattr(v.jaxpr, "eqns"):
                n += _count_scans(v.jaxpr, length)
            elif hasattr(v, "eqns"):
                n += _count_scans(v, length)
    return n


def test_custom_vjp_primal_is_bit_exact_and_backward_has_no_scan_over_T():
    net = feedback_fc(6, [10], 3, norm="spectral", feedback_scale=0.2, dtype=F64, key=jax.random.key(1))
    x = jax.random.uniform(jax.random.key(2), (4, 6), F64)
    cfg = EquilibriumConfig(T=37, on_fail="ignore")
    eff = net.materialize()
    a, info = equilibrium(eff, x, cfg)
    want = jax.vmap(lambda xi: simulate_rates(eff, xi, 37).rates[0])(x)
    assert np.array_equal(np.asarray(a), np.asarray(want))

    def loss(n):
        a, _ = equilibrium(n.materialize(), x, cfg)
        return jnp.sum(jax.vmap(n.logits)(a) ** 2)

    jaxpr = jax.make_jaxpr(eqx.filter_grad(loss))(net).jaxpr
    assert _count_scans(jaxpr, 37) == 1  # the forward simulation only; the backward is a solve
    g = eqx.filter_grad(loss)(net)
    assert float(net.connections[0].scale) < 1  # inside the clip, so
    assert float(jnp.abs(g.connections[0].scale)) > 0  # IDE's learnable norm g is trained


def test_probe_reports_solver_statistics_and_single_sample_works(problem):
    net, x, _, c = problem
    cfg = EquilibriumConfig(T=50, tol=1e-10, max_iter=60)

    def loss(diff):
        n, probe = diff
        a, _ = equilibrium(n, x, cfg, probe=probe)  # one sample
        return jnp.sum(c * a)

    grads, pg = jax.grad(loss)((net, jnp.zeros(4, F64)))
    stats = backward_stats(pg)
    assert 1 <= float(stats["solver_iterations"]) <= 60
    assert float(stats["solver_residual"]) <= 1e-10
    assert grads.connections[0].weight.shape == (20, 20)


def test_non_convergence_warns_with_the_residual_or_raises(problem):
    net, x, _, c = problem

    def grad(cfg):
        return jax.grad(lambda xx: jnp.sum(c * equilibrium(net, xx, cfg)[0]))(x)

    with pytest.warns(RuntimeWarning, match=r"relative residual \d\.\d+e[-+]\d+ > tol"):
        g = grad(EquilibriumConfig(T=20, solver="fixed_point", tol=1e-12, max_iter=2))
        jax.block_until_ready(g)
    assert bool(jnp.all(jnp.isfinite(g)))
    with pytest.raises(Exception, match="did not reach tol"):
        jax.block_until_ready(grad(EquilibriumConfig(T=20, solver="fixed_point", tol=1e-12, max_iter=2,
                                                     on_fail="error")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.block_until_ready(grad(EquilibriumConfig(T=20, tol=1e-8, max_iter=60)))  # converges: silent


@pytest.mark.parametrize("kwargs, match", [({"T": 0}, "T .*>= 1"), ({"T_backward": 0}, "T_backward"),
                                           ({"solver": "newton"}, "unknown solver 'newton'"),
                                           ({"on_fail": "panic"}, "on_fail")])
def test_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EquilibriumConfig(**kwargs)


def test_unmaterialised_net_and_wrong_input_shape_are_clear_errors():
    net = feedback_fc(3, [4], 2, norm="frobenius", dtype=F64, key=jax.random.key(0))
    with pytest.raises(ValueError, match="materialize"):
        equilibrium(net, jnp.ones(3, F64))
    with pytest.raises(ValueError, match="batch"):
        equilibrium(net.materialize(key=jax.random.key(1)), jnp.ones((2, 5), F64))
