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

from jsnn.bptt import BPTTConfig, BPTTState, bptt_method
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
        opt_state = optimizer.init(eqx.filter(net, eqx.is_inexact_array))
        opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        return BPTTState(net, opt_state)

    step(state_with(1e-3, 0.9, 1.0), x, y, jax.random.key(1))
    step(state_with(5e-2, 0.8, 0.7), x, y, jax.random.key(2))
    assert step._cached._cache_size() == 1
