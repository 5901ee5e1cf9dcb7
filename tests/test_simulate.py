"""``simulate`` (layer-by-layer lax.scan) against a plain Python loop over time."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.neurons import LI, LIF, CubaLIF
from jsnn.nn import Conv2d, Flatten, Linear, Recurrent, Sequential, mlp
from jsnn.simulate import simulate, simulate_batch


def _net():
    k = jax.random.split(jax.random.key(0), 4)
    return Sequential([
        Linear(5, 6, scale=3.0, dtype=jnp.float64, key=k[0]),
        LIF(decay=0.8, threshold=0.5),
        Linear(6, 4, scale=3.0, dtype=jnp.float64, key=k[1]),
        Recurrent(4, CubaLIF(decay_syn=0.6, decay_mem=0.7, threshold=0.4, reset="zero"), scale=2.0,
                  dtype=jnp.float64, key=k[2]),
        Linear(4, 3, dtype=jnp.float64, key=k[3]),
        LI(decay=0.9),
    ])


def _python_loop(net, x):
    """Every layer advanced together, step by step, with the equations written out in numpy."""
    l0, n1, l2, rec, l4, ro = net.layers
    w0, b0, w2, b2, w4, b4 = (np.asarray(a) for a in (l0.weight, l0.bias, l2.weight, l2.bias, l4.weight, l4.bias))
    wr = np.asarray(rec.weight)
    cu = rec.neuron
    v1 = np.zeros(6); s1 = np.zeros(6)
    i3 = np.zeros(4); v3 = np.zeros(4); s3 = np.zeros(4)
    v5 = np.zeros(3)
    outs, spikes1, spikes3 = [], [], []
    for t in range(x.shape[0]):
        v1 = n1.decay * v1 - n1.threshold * s1 + (w0 @ x[t] + b0)
        s1 = (v1 > n1.threshold).astype(float)
        c3 = w2 @ s1 + b2 + wr @ s3
        i3 = cu.decay_syn * i3 + c3
        v3 = cu.decay_mem * (1 - s3) * v3 + i3
        s3 = (v3 > cu.threshold).astype(float)
        v5 = ro.decay * v5 + (w4 @ s3 + b4)
        outs.append(v5.copy()); spikes1.append(s1); spikes3.append(s3)
    return np.array(outs), np.array(spikes1), np.array(spikes3)


def test_scan_matches_python_loop():
    net = _net()
    x = np.asarray(jax.random.bernoulli(jax.random.key(1), 0.5, (20, 5)), np.float64)
    out, traces = simulate(net, x, record=True)
    ref_out, ref_s1, ref_s3 = _python_loop(net, x)
    assert ref_s1.sum() > 5 and ref_s3.sum() > 5, "the test network must spike"
    np.testing.assert_array_equal(traces[1].spikes, ref_s1)
    np.testing.assert_array_equal(traces[3].spikes, ref_s3)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)


def test_record_selected_layers_only():
    out, traces = simulate(_net(), jnp.ones((3, 5), bool), record=[3])
    assert list(traces) == [3] and traces[3].v.shape == (3, 4)


def test_record_rejects_non_neuron_layers():
    with pytest.raises(ValueError, match="not neuron layers"):
        simulate(_net(), jnp.ones((3, 5), bool), record=[0])


def test_batch_equals_per_sample():
    net = _net()
    x = jax.random.bernoulli(jax.random.key(2), 0.5, (3, 7, 5))
    batched = simulate_batch(net, x)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], simulate(net, x[i]))


def test_conv_net_runs_and_matches_dense_equivalent():
    # A 1x1 convolution over a 1x1 image is a Linear layer: both nets must agree.
    k = jax.random.key(3)
    conv = Conv2d(5, 4, 1, dtype=jnp.float64, key=k)
    dense = Linear(5, 4, dtype=jnp.float64, key=k)
    dense = eqx.tree_at(lambda layer: (layer.weight, layer.bias), dense, (conv.weight[:, :, 0, 0], conv.bias))
    x = jax.random.normal(jax.random.key(4), (6, 5), jnp.float64)
    a = simulate(Sequential([conv, LIF(), Flatten()]), x[:, :, None, None])
    b = simulate(Sequential([dense, LIF()]), x)
    np.testing.assert_allclose(a, b)


def test_surrogate_gradient_matches_hand_derivation():
    # One LIF neuron, no reset: v_t = sum_k d^(t-k) w x_k, loss = sum_t s_t.
    # d loss / d w = sum_t sg'(v_t - thr) * sum_{k<=t} d^(t-k) x_k.
    d, thr, w = 0.8, 1.0, 0.7
    x = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    neuron = LIF(decay=d, threshold=thr, reset="none")

    def loss(weight):
        return neuron(weight * jnp.asarray(x)[:, None])[0].sum()

    got = jax.grad(loss)(jnp.float64(w))
    dv = np.array([sum(d ** (t - k) * x[k] for k in range(t + 1)) for t in range(len(x))])
    v = w * dv
    expected = np.sum(neuron.surrogate.derivative(jnp.asarray(v - thr)) * dv)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_inputs_without_time_axis_are_rejected():
    with pytest.raises(ValueError, match="time"):
        simulate(_net(), jnp.ones(5, jnp.float64))


def test_dtype_mismatch_is_explained():
    net = mlp(5, [4], 2, key=jax.random.key(0))  # float32 parameters
    with pytest.raises(TypeError, match="astype"):
        simulate(net, jnp.ones((3, 5), jnp.float64))


def test_nan_inputs_are_rejected():
    x = jnp.ones((3, 5), jnp.float64).at[1, 2].set(jnp.nan)
    with pytest.raises(ValueError, match="NaN"):
        simulate(_net(), x)


def test_wrong_feature_count_is_explained():
    with pytest.raises(ValueError, match="5 features"):
        simulate(_net(), jnp.ones((3, 7), jnp.float64))


@pytest.mark.parametrize("chunk", [1, 7])
def test_time_chunks_give_the_same_outputs_traces_and_gradients(chunk):
    # 20 steps in chunks of 1 or 7 (with a remainder): states carry over, gradients included.
    net = _net()
    chunked = Sequential(net.layers, time_chunk=chunk)
    x = jax.random.bernoulli(jax.random.key(5), 0.5, (20, 5)).astype(jnp.float64)
    out, traces = simulate(net, x, record=True)
    out_c, traces_c = simulate(chunked, x, record=True)
    np.testing.assert_allclose(out_c, out, rtol=1e-12)
    for i in traces:
        np.testing.assert_array_equal(traces_c[i].spikes, traces[i].spikes)
        np.testing.assert_allclose(traces_c[i].v, traces[i].v, rtol=1e-12)

    def loss(n):
        o, tr = simulate(n, x, record=True)
        return jnp.sum(o ** 2) + jnp.sum(tr[1].v * tr[3].spikes.sum())

    grads = jax.tree.leaves(eqx.filter_grad(loss)(net))
    grads_c = jax.tree.leaves(eqx.filter_grad(loss)(chunked))
    for a, b in zip(grads, grads_c, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def test_a_batch_is_not_read_as_time():
    net = mlp(6, [4], 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="simulate_batch"):
        simulate(net, jnp.ones((2, 5, 6)))
    assert simulate_batch(net, jnp.ones((2, 5, 6), jnp.float32)).shape == (2, 5, 3)


def test_no_time_steps_is_explained():
    net = mlp(64, [4], 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="no time steps"):
        simulate(net, jnp.ones((0, 64)))


def test_conv_input_shape_is_checked():
    net = Sequential([Conv2d(2, 3, 3, key=jax.random.key(0)), LIF(), Flatten()])
    with pytest.raises(ValueError, match=r"\(time, 2, H, W\)"):
        simulate(net, jnp.ones((4, 3, 2, 6, 6)))


def test_mlp_takes_an_int_hidden_width_and_explains_bad_sizes():
    assert [type(l).__name__ for l in mlp(64, 128, 10, key=jax.random.key(0)).layers] == ["Linear", "LIF", "Linear",
                                                                                            "LI"]
    with pytest.raises(TypeError, match="integers"):
        mlp(64, [12.5], 10, key=jax.random.key(0))
