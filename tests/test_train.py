"""The shared training loop: exact resume, Ctrl-C checkpoints, divergence, metrics."""

import json
import os
import signal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jsnn.bptt import BPTTConfig, BPTTState, bptt_method, trainable
from jsnn.checkpoint import load_checkpoint
from jsnn.data import load_digits
from jsnn.train import Method, TrainingDiverged, evaluate, fit

CONFIG = BPTTConfig(hidden=(16,), T=3, lr=5e-3)


@pytest.fixture(scope="module")
def digits():
    train, test = load_digits("train"), load_digits("test")
    return (train.x[:320], train.y[:320]), (test.x[:100], test.y[:100])


def _method():
    return bptt_method(CONFIG, 64, 10, total_steps=30)


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(state, eqx.is_array))]


def _metrics(path):
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in path.read_text().splitlines()]


def test_resume_equals_uninterrupted_run(digits, tmp_path):
    train, test = digits
    full = fit(_method(), train, test, epochs=3, batch_size=32, seed=7, out_dir=tmp_path / "a", progress=False,
               log_every=4)
    # Stop in the middle of the second epoch (10 steps per epoch), then resume twice.
    first = fit(_method(), train, test, epochs=3, batch_size=32, seed=7, out_dir=tmp_path / "b", progress=False,
                log_every=4, stop_after_steps=13)
    assert first.interrupted
    fit(_method(), train, test, epochs=3, batch_size=32, seed=7, out_dir=tmp_path / "b", progress=False,
        log_every=4, resume=True, stop_after_steps=20)
    resumed = fit(_method(), train, test, epochs=3, batch_size=32, seed=7, out_dir=tmp_path / "b", progress=False,
                  log_every=4, resume=True)
    for a, b in zip(_leaves(full.state), _leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.test_accuracy == full.test_accuracy
    assert _metrics(tmp_path / "a" / "metrics.jsonl") == _metrics(tmp_path / "b" / "metrics.jsonl")


def test_training_learns_digits(digits):
    train, test = digits
    method = bptt_method(BPTTConfig(hidden=(32,), T=4, lr=1e-2), 64, 10, total_steps=50)
    result = fit(method, train, test, epochs=5, batch_size=32, seed=0, progress=False)
    assert result.test_accuracy > 0.6  # chance is 0.1


class _InterruptAtTrace:
    """A step that raises SIGINT while it is traced: the loop must finish that step, checkpoint and stop."""

    def __init__(self, method):
        self.method = method

    def step(self, state, x, y, key):
        os.kill(os.getpid(), signal.SIGINT)
        return self.method.step(state, x, y, key)


def test_ctrl_c_saves_a_checkpoint_and_stops(digits, tmp_path):
    base = _method()
    method = base._replace(step=_InterruptAtTrace(base).step)
    result = fit(method, *digits, epochs=2, batch_size=32, seed=0, out_dir=tmp_path, progress=False)
    assert result.interrupted
    state, header = load_checkpoint(tmp_path / "checkpoint.eqx", base.init(jax.random.key(0)))
    assert (header["epoch"], header["batch"], header["step"]) == (0, 1, 1)
    for a, b in zip(_leaves(result.state), _leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_divergence_names_the_last_good_checkpoint(digits, tmp_path):
    base = _method()

    def step(state, x, y, key):
        state, metrics = base.step(state, x, y, key)
        return state, {**metrics, "loss": jnp.where(metrics["loss"] > -1, jnp.nan, 0.0)}

    fit(base, *digits, epochs=1, batch_size=32, seed=0, out_dir=tmp_path, progress=False)
    with pytest.raises(TrainingDiverged, match="checkpoint.eqx"):
        fit(base._replace(step=step), *digits, epochs=2, batch_size=32, seed=0, out_dir=tmp_path, progress=False,
            resume=True, log_every=1)


def test_resume_without_checkpoint_is_explained(digits, tmp_path):
    with pytest.raises(FileNotFoundError, match="without --resume"):
        fit(_method(), *digits, epochs=1, batch_size=32, out_dir=tmp_path, resume=True, progress=False)


def test_batch_larger_than_data_is_explained(digits):
    with pytest.raises(ValueError, match="larger than the training set"):
        fit(_method(), *digits, epochs=1, batch_size=10_000, progress=False)


def test_evaluate_pads_the_last_batch_and_counts_exactly():
    labels = np.arange(10, dtype=np.int32) % 3
    method = Method(init=lambda key: None, step=None, network=None,
                    predict=lambda state, x: x[:, 0].astype(jnp.int32))
    x = np.stack([labels, labels], axis=1).astype(np.float32)
    x[:3, 0] = 5  # three wrong predictions
    assert evaluate(method, None, x, labels, batch_size=4) == 0.7


def test_step_compiles_once_for_new_hyperparameter_values(digits):
    # Traced hyperparameters (the learning rate via inject_hyperparams, the LIF decay and threshold as
    # array leaves) must not trigger a recompilation when their values change.
    train, _ = digits
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    method = bptt_method(CONFIG, 64, 10, optimizer=optimizer)
    step = eqx.filter_jit(method.step)
    x, y = jnp.asarray(train[0][:32]), jnp.asarray(train[1][:32])

    def state_with(lr, decay, threshold):
        net = eqx.tree_at(lambda n: (n.layers[1].decay, n.layers[1].threshold), method.init(jax.random.key(0)).net,
                          (jnp.float32(decay), jnp.float32(threshold)))
        opt_state = optimizer.init(trainable(net))  # the weights: neuron constants are hyperparameters, not trained
        opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        return BPTTState(net, opt_state)

    step(state_with(1e-3, 0.9, 1.0), x, y, jax.random.key(1))
    step(state_with(5e-2, 0.8, 0.7), x, y, jax.random.key(2))
    assert step._cached._cache_size() == 1


def _toy_method(loss_at, saturated_at=lambda step: 0.0, poison_at=None):
    """A cheap method whose loss (and 'saturated' metric) follow a script; its weight turns NaN at ``poison_at``."""

    def init(key):
        return {"w": jnp.zeros(2), "count": jnp.zeros((), jnp.int32)}

    def step(state, x, y, key):
        count = state["count"] + 1
        w = state["w"] + 1.0
        if poison_at is not None:
            w = jnp.where(count >= poison_at, jnp.nan, w)
        loss = jax.pure_callback(lambda c: np.float32(loss_at(int(c))), jax.ShapeDtypeStruct((), jnp.float32),
                                 state["count"])
        sat = jax.pure_callback(lambda c: np.float32(saturated_at(int(c))), jax.ShapeDtypeStruct((), jnp.float32),
                                state["count"])
        return {"w": w, "count": count}, {"loss": loss, "saturated": sat}

    return Method(init=init, step=step, predict=lambda state, x: jnp.zeros(len(x), jnp.int32),
                  network=lambda state: state)


TOY_DATA = (np.zeros((40, 2), np.float32), np.zeros(40, np.int32))


def test_a_nonfinite_state_never_replaces_the_last_good_checkpoint(tmp_path):
    fit(_toy_method(lambda c: 1.0), TOY_DATA, None, epochs=1, batch_size=4, out_dir=tmp_path, progress=False)
    before = (tmp_path / "checkpoint.eqx").read_bytes()
    # the weights turn NaN at the last step before an interrupt: the loss of that step was computed before the
    # update, so only the check at the save can see it
    method = _toy_method(lambda c: 1.0, poison_at=13)
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite.*checkpoint.eqx \(step 10\) is kept"):
        fit(method, TOY_DATA, None, epochs=2, batch_size=4, out_dir=tmp_path, progress=False, resume=True,
            stop_after_steps=13)
    assert (tmp_path / "checkpoint.eqx").read_bytes() == before


@pytest.mark.parametrize(("loss_at", "saturated_at", "match", "stop_step"), [
    (lambda c: 2.0 if c < 3 else 1e31, lambda c: 0.0, "exploded", 13),
    (lambda c: 2.0 if c < 3 else 1e4, lambda c: 0.0, "exploded", 13),
    (lambda c: 2.0, lambda c: 1.0 if c >= 5 else 0.0, "saturated", 55),
    (lambda c: 2.0 if c != 4 else float("inf"), lambda c: 0.0, "inf", 5),
])
def test_divergence_is_detected_whatever_its_size(tmp_path, loss_at, saturated_at, match, stop_step):
    with pytest.raises(TrainingDiverged, match=f"at step {stop_step}: .*{match}"):
        fit(_toy_method(loss_at, saturated_at), TOY_DATA, None, epochs=6, batch_size=4, progress=False)


def test_short_loss_spikes_do_not_stop_a_run():
    spiky = lambda c: 1e5 if c % 5 == 1 else 2.0  # noqa: E731  (bad for 1 step in 5, never 10 in a row)
    result = fit(_toy_method(spiky, lambda c: float(c % 3 == 0)), TOY_DATA, None, epochs=3, batch_size=4,
                 progress=False)
    assert float(result.state["count"]) == 30
