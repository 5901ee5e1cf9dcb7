"""Shortcut back-propagation (ALGORITHMS §4.3): stripping, routing, vanilla equivalence, schedules, errors."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jsnn import cli
from jsnn.bptt import BPTTConfig, bptt_loss, make_network
from jsnn.nn import Linear, Sequential, conv_net, mlp
from jsnn.shortcut import (
    PoolHead,
    ShortcutNet,
    attach,
    balance_schedule,
    shortcut_loss,
    strip,
)
from jsnn.simulate import simulate

F64 = jnp.float64


def _mlp(key=0):
    return mlp(6, [5, 5, 5, 5], 3, scale=3.0, dtype=F64, key=jax.random.key(key))


def _conv(key=0):
    return conv_net((1, 4, 4), [2, 2, 2], 3, scale=3.0, dtype=F64, key=jax.random.key(key))


@pytest.fixture(scope="module")
def data():
    x = jax.random.uniform(jax.random.key(5), (4, 6, 6), F64)  # (B, T, 6): MLP inputs; (B, T, 1, ..) below
    return x, jnp.array([0, 1, 2, 1])


def _conv_inputs(key):
    return jax.random.uniform(jax.random.key(key), (4, 3, 1, 4, 4), F64)


def _arrays(tree):
    return jax.tree.leaves(eqx.filter(tree, eqx.is_array))


@pytest.mark.parametrize("build", [_mlp, _conv])
def test_strip_is_the_backbone_built_without_branches(build):
    model = attach(build(), at=[1, 2], input_shape=None if build is _mlp else (1, 4, 4), key=jax.random.key(9))
    plain = build()  # same key, never saw a branch
    stripped = strip(model)
    assert jax.tree.structure(stripped) == jax.tree.structure(plain)
    for a, b in zip(_arrays(stripped), _arrays(plain), strict=True):
        np.testing.assert_array_equal(a, b)
    count = lambda t: sum(a.size for a in _arrays(t))  # noqa: E731
    assert count(stripped) == count(plain) < count(model)


@pytest.mark.parametrize("build", [_mlp, _conv])
def test_stripped_outputs_and_spikes_equal_the_training_model_bit_for_bit(build, data):
    x = data[0] if build is _mlp else _conv_inputs(1)
    model = attach(build(), at=[1, 3] if build is _mlp else [2], input_shape=x.shape[2:], key=jax.random.key(2))
    out, _, traces = eqx.filter_jit(jax.vmap(model.run))(x)
    out_plain, rec = eqx.filter_jit(jax.vmap(lambda xi: simulate(strip(model), xi, record=True)))(x)
    np.testing.assert_array_equal(out, out_plain)
    spiking = [t.spikes for t in traces if t.spikes is not None]
    assert len(spiking) == len([t for t in rec.values() if t.spikes is not None]) > 1
    for s, (_, t) in zip(spiking, sorted(rec.items()), strict=False):
        np.testing.assert_array_equal(s, t.spikes)
    assert float(sum(s.sum() for s in spiking)) > 0  # the spikes compared are not all zero


def test_branch_weight_zero_gives_exactly_the_vanilla_bptt_gradients(data):
    config = BPTTConfig(hidden=(5,), depth=3, T=3, weight_scale=3.0)
    net = jax.tree.map(lambda a: a.astype(F64) if eqx.is_inexact_array(a) else a,
                       make_network(config, 6, 3, key=jax.random.key(0)))
    model = attach(net, at=[1, 2], key=jax.random.key(1))
    x, y = data[0][:, :3], data[1]
    grad = lambda f: eqx.filter_jit(eqx.filter_grad(f, has_aux=True))  # noqa: E731
    vanilla, _ = grad(lambda n: bptt_loss(n, config, x, y))(net)
    weights = (jnp.ones((), F64), jnp.zeros((), F64))
    ours, _ = grad(lambda m: shortcut_loss(m, x, y, weights))(model)
    pairs = list(zip(_arrays(vanilla), _arrays(ours.backbone), strict=True))
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)
    assert all(float(jnp.abs(a).sum()) > 0 for a, _ in pairs[:2])  # the first layer learns: not a 0 == 0 test
    assert all(float(jnp.abs(a).max()) == 0 for a in _arrays(ours.heads))


@pytest.mark.parametrize("build", [_mlp, _conv])
def test_branch_gradients_reach_only_layers_up_to_their_stage(build, data):
    x = data[0] if build is _mlp else _conv_inputs(3)
    model = attach(build(), at=[1, 2], input_shape=x.shape[2:], key=jax.random.key(4))
    layers = model.backbone.layers
    for b, stage in enumerate(model.at):
        cut = model.backbone.neuron_layers[stage - 1]

        def branch_ce(m, b=b):
            logits = jax.vmap(m)(x)[1][:, b]
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, data[1]))

        grads = eqx.filter_jit(eqx.filter_grad(branch_ce))(model)
        norms = [sum(float(jnp.abs(a).sum()) for a in _arrays(eqx.filter(g, eqx.is_inexact_array)))
                 for g in grads.backbone.layers]
        assert norms[0] > 0  # the first layer gets branch b's gradient
        assert all(n == 0 for n in norms[cut + 1 :]), (b, norms)  # nothing past its stage, readout included
        has_params = [i for i, layer in enumerate(layers[: cut + 1])
                      if _arrays(eqx.filter(layer, eqx.is_inexact_array))]
        assert all(norms[i] > 0 for i in has_params), (b, norms)
        heads = [sum(float(jnp.abs(a).sum()) for a in _arrays(h)) for h in grads.heads]
        assert heads[b] > 0 and all(h == 0 for i, h in enumerate(heads) if i != b)


def test_branches_raise_the_first_layer_gradient_of_a_deep_net():
    """§4.3.4 (smoke): at initialisation, branches (branch weight 1) carry more gradient to layer 1."""
    net = mlp(16, [16] * 6, 4, scale=4.0, dtype=F64, key=jax.random.key(0))
    model = attach(net, at=list(range(1, 6)), key=jax.random.key(1))
    x = jax.random.uniform(jax.random.key(2), (8, 2, 16), F64)
    y = jnp.arange(8) % 4
    grad = eqx.filter_jit(eqx.filter_grad(lambda m, w: shortcut_loss(m, x, y, w)[0]))
    first = lambda w: float(optax.tree_utils.tree_norm(grad(model, w).backbone.layers[0].weight))  # noqa: E731
    one, zero = jnp.ones((), F64), jnp.zeros((), F64)
    vanilla, branches = first((one, zero)), first((zero, one))
    assert vanilla > 0 and branches > 2 * vanilla, (vanilla, branches)


def test_schedules_are_pure_with_the_right_endpoints():
    steps = jnp.arange(0, 25)
    for name in ("linear", "cosine"):
        weights = balance_schedule(name, 20)
        w_main, w_branch = jax.vmap(weights)(steps)
        assert float(w_branch[0]) == 1.0 and float(w_main[0]) == 0.0
        assert abs(float(w_branch[20])) < 1e-7 and float(w_branch[-1]) == float(w_branch[20])
        assert bool(jnp.all(jnp.diff(w_branch) <= 0)) and bool(jnp.all(w_branch >= 0)) and bool(jnp.all(w_main >= 0))
        np.testing.assert_allclose(w_main + w_branch, 1.0, rtol=1e-7)
        np.testing.assert_array_equal(jax.jit(weights)(7)[1], weights(7)[1])  # same value traced or not
    np.testing.assert_allclose(float(balance_schedule("linear", 20)(5)[1]), 0.75, rtol=1e-7)
    np.testing.assert_allclose(float(balance_schedule("cosine", 20)(10)[1]), 0.5, rtol=1e-6)
    assert [float(v) for v in balance_schedule("constant")(123)] == [1.0, 1.0]
    by_epoch = balance_schedule("linear", 4, steps_per_epoch=10)  # lam_e = 1 - e/E, e = step // 10
    assert [round(float(by_epoch(s)[1]), 6) for s in (0, 9, 10, 25, 40)] == [1.0, 1.0, 0.75, 0.5, 0.0]
    user = balance_schedule(optax.exponential_decay(1.0, 10, 0.5))
    np.testing.assert_allclose(float(user(10)[1]), 0.5, rtol=1e-6)


def test_bad_input_raises_clear_errors():
    net = _mlp()
    for at in ([0], [5], [2, 1], [1, 1], []):
        with pytest.raises(ValueError, match="stage numbers"):
            attach(net, at=at, key=jax.random.key(0))
    wrong = lambda shape, k, *, key: PoolHead(shape, k + 1, key=key)  # noqa: E731
    with pytest.raises(ValueError, match="3 classes"):
        attach(net, at=[1], head=wrong, key=jax.random.key(0))
    with pytest.raises(ValueError, match="input_shape"):
        attach(_conv(), at=[1], key=jax.random.key(0))
    with pytest.raises(ValueError, match="unknown balance schedule"):
        balance_schedule("exponential", 10)
    with pytest.raises(ValueError, match="total"):
        balance_schedule("linear")
    with pytest.raises(TypeError, match="ShortcutNet"):
        strip(net)


class _MaxHead(eqx.Module):
    linear: Linear

    def __call__(self, x):
        return self.linear(x.max(axis=0))


def test_custom_head_is_used():
    head = lambda shape, k, *, key: _MaxHead(Linear(shape[0], k, key=key))  # noqa: E731
    model = attach(_mlp(), at=[2], head=head, key=jax.random.key(0))
    assert isinstance(model.heads[0], _MaxHead) and model.heads[0].linear.weight.dtype == F64
    x = jax.random.uniform(jax.random.key(1), (2, 3, 6), F64)
    hidden = jax.vmap(lambda xi: Sequential(model.backbone.layers[:4])(xi))(x)  # stage 2's spikes
    expected = jax.vmap(lambda h: model.heads[0].linear(h.max(axis=0)))(hidden)
    np.testing.assert_array_equal(jax.vmap(model)(x)[1][:, 0], expected)


def _cli(capsys, *args):
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured


TINY = ["--data", "digits", "--epochs", "1", "--hidden", "8", "--depth", "3", "--T", "2", "--no-progress"]


@pytest.mark.slow  # end-to-end training runs: bench-sized, run with -m slow
def test_cli_trains_evaluates_and_lowers_the_stripped_network(tmp_path, capsys):
    from jsnn.lower.nir_io import read_nir

    out = tmp_path / "run"
    code, io = _cli(capsys, "train", "--method", "shortcut", *TINY, "--schedule", "cosine", "--out", str(out))
    assert code == 0, io.err
    result = json.loads(io.out)
    assert result["config"]["branches"] is None and result["config"]["schedule"] == "cosine"
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"gnorm_0", "gnorm_3", "w_branch", "branch_loss"} <= set(metrics[0])
    code, io = _cli(capsys, "evaluate", str(out / "checkpoint.eqx"))
    assert code == 0, io.err
    assert json.loads(io.out)["test_accuracy"] == result["test_accuracy"]

    from jsnn.shortcut import build_shortcut

    run = build_shortcut(result["config"])
    net = run.load_network(out / "checkpoint.eqx")
    assert isinstance(net, Sequential) and len(net.layers) == 8  # 4 x (Linear, neuron): no head
    code, io = _cli(capsys, "lower", str(out / "checkpoint.eqx"), "--target", "xylo", "--out", str(tmp_path / "low"),
                    "--nir", "--calibration-samples", "16")
    assert code == 0, io.err
    with np.load(tmp_path / "low" / "tables.npz") as tables:
        stored = sum(a.size for k, a in tables.items() if k.endswith(".weight"))
    n_weights = sum(layer.weight.size for layer in net.layers if isinstance(layer, Linear))
    assert stored == n_weights, (stored, n_weights)
    exported = read_nir(tmp_path / "low" / "network.nir")
    assert [type(layer).__name__ for layer in exported.layers] == [type(layer).__name__ for layer in net.layers]
    np.testing.assert_array_equal(exported.layers[0].weight, net.layers[0].weight)
    assert sum(a.size for a in _arrays(eqx.filter(exported, eqx.is_inexact_array))) == \
        sum(a.size for a in _arrays(eqx.filter(net, eqx.is_inexact_array)))


@pytest.mark.parametrize(("flags", "message"), [
    (["--method", "shortcut", "--branches", "4"], "outside the backbone"),
    (["--method", "shortcut", "--schedule", "exponential"], "invalid choice"),
    (["--method", "bptt", "--branches", "1"], "--branches applies to --method shortcut"),
    (["--method", "shortcut", "--depth", "1"], "at least 2 hidden layers"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, flags, message):
    code, io = _cli(capsys, "train", *TINY, *flags, "--out", str(tmp_path / "x"))
    assert code == 2
    lines = io.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], io.err


def test_bptt_builds_the_same_deep_backbone():
    from jsnn.methods import build_bptt
    from jsnn.shortcut import build_shortcut

    config = {"data": "digits", "hidden": [8], "depth": 3, "arch": "conv", "T": 2, "weight_scale": 2.0}
    bptt, shortcut = build_bptt(config).method, build_shortcut(config).method
    plain = bptt.network(bptt.init(jax.random.key(0)))
    backbone = shortcut.network(shortcut.init(jax.random.key(0)))
    assert [type(layer).__name__ for layer in plain.layers] == [
        "Conv2d", "LIF", "Conv2d", "LIF", "AvgPool2d", "Conv2d", "LIF", "Flatten", "Linear", "LI"]
    assert jax.tree.structure(plain) == jax.tree.structure(backbone)
    for a, b in zip(_arrays(plain), _arrays(backbone), strict=True):  # same initial backbone: a fair comparison
        np.testing.assert_array_equal(a, b)
