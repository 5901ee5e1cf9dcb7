"""Quantisation-aware fine-tuning onto lowered tables (jsnn.lower.finetune) and lowering at given scales."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jsnn.data import load_dataset
from jsnn.lower import PROFILES, fit_to_tables, grid_inputs, grid_network, lower, shadow_network, spike_agreement
from jsnn.lower.finetune import fake_quantize
from jsnn.lower.quantize import round_mode
from jsnn.neurons import LI, LIF
from jsnn.nn import mlp
from jsnn.simulate import simulate


@pytest.mark.parametrize("mode", ["half_even", "half_away", "floor", "toward_zero"])
def test_fake_quantize_rounds_like_the_lowering_and_passes_gradients_inside_the_range(mode):
    x = jnp.asarray(np.random.default_rng(0).normal(0, 1.0, 400), jnp.float64)
    scale, limit = 7.0, 10
    q = fake_quantize(x, scale, limit, mode)
    expected = np.clip(round_mode(np.clip(np.asarray(x), -limit / scale, limit / scale) * scale, mode), -limit, limit)
    np.testing.assert_allclose(np.asarray(q) * scale, expected, atol=1e-9)
    inside = np.abs(np.asarray(x)) < limit / scale
    assert 0 < inside.sum() < len(inside), "the draw must hit both sides of the clip"
    grad = jax.grad(lambda v: jnp.sum(fake_quantize(v, scale, limit, mode)))(x)
    np.testing.assert_array_equal(np.asarray(grad), inside.astype(np.float64))


def test_lowering_at_the_tables_own_scales_gives_the_same_tables():
    net = mlp(6, [5], 3, key=jax.random.key(0))
    x = np.random.default_rng(1).random((8, 6, 6)).astype(np.float32)
    tables, _ = lower(net, "loihi", x, weight_slack=2.0)
    scales = [tables.arrays[f"layer{i}.scale"] for i in range(2)]
    exps = [layer["weight_exp"] for layer in tables.manifest["layers"]]
    assert max(exps) > 0  # the Loihi weight exponent is in play
    again, _ = lower(net, "loihi", x, scales=scales, weight_exps=exps, x_max=tables.manifest["input"]["x_max"])
    for name, array in tables.arrays.items():
        np.testing.assert_array_equal(again.arrays[name], array, err_msg=name)
    with pytest.raises(ValueError, match="one array per layer"):
        lower(net, "loihi", x, scales=scales[:1])
    with pytest.raises(ValueError, match="weight_exps goes with scales"):
        lower(net, "loihi", x, weight_exps=exps)


def _digits(n):
    data = load_dataset("digits", "train")
    x = data.x.reshape(len(data), -1)[:n].astype(np.float32)
    return jnp.asarray(np.repeat(x[:, None, :], 6, axis=1)), jnp.asarray(data.y[:n])  # direct code, T = 6


def test_fine_tuning_puts_the_float_network_on_the_grid_of_its_tables():
    x, y = _digits(128)
    net = mlp(64, [24], 10, neuron=LIF(decay=0.875, threshold=1.0), readout=LI(decay=0.875), scale=2.0,
              key=jax.random.key(2))
    profile = PROFILES["xylo"]  # 4-bit input counts, 8-bit weights, subtract reset as the net
    tables, _ = lower(net, profile, x)

    def loss(n, inputs, labels):
        out = jax.vmap(lambda s: simulate(n, s))(inputs)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(out.mean(axis=1), labels))

    grid_view = grid_network(net, tables)
    np.testing.assert_allclose(grid_view.layers[0].weight, shadow_network(net, tables).layers[0].weight, rtol=1e-6)
    grads = jax.grad(lambda n: loss(grid_network(n, tables), grid_inputs(tables, x), y))(net)
    assert float(jnp.abs(grads.layers[0].weight).sum()) > 0, "the straight-through gradient must reach the weights"

    before = spike_agreement(net, tables, np.asarray(x))
    grid_net, new_tables, report, losses = fit_to_tables(
        net, tables, loss, lambda epoch: [(x[i:i + 32], y[i:i + 32]) for i in range(0, 128, 32)], np.asarray(x),
        optimizer=optax.adam(3e-3), epochs=2, progress=False)
    assert len(losses) == 2 and len(report) == 2
    for i in range(2):
        np.testing.assert_array_equal(new_tables.arrays[f"layer{i}.scale"], tables.arrays[f"layer{i}.scale"])
    assert not np.array_equal(new_tables.arrays["layer0.weight"], tables.arrays["layer0.weight"]), "it must train"
    # the returned float network holds exactly the table values
    s_in = tables.manifest["input"]["scale"]
    w = np.asarray(grid_net.layers[0].weight, np.float64) * new_tables.arrays["layer0.scale"][:, None] / s_in
    np.testing.assert_allclose(w, new_tables.arrays["layer0.weight"], atol=1e-3)
    after = spike_agreement(grid_net, new_tables, np.asarray(x))
    assert before < 0.999 <= after, (before, after)
