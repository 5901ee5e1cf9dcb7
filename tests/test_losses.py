"""Losses against direct numpy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn import losses

OUT = np.asarray(jax.random.normal(jax.random.key(0), (6, 4), jnp.float64))
SPIKES = (OUT > 0.3).astype(np.float64)


def _ce(logits, label):
    logits = logits - logits.max()
    return np.log(np.exp(logits).sum()) - logits[label]


@pytest.mark.parametrize(
    ("loss", "data", "logits"),
    [
        (losses.ce_count, SPIKES, SPIKES.sum(0)),
        (losses.ce_max_membrane, OUT, OUT.max(0)),
        (losses.ce_last_membrane, OUT, OUT[-1]),
        (losses.ce_mean_membrane, OUT, OUT.mean(0)),
    ],
)
def test_cross_entropies(loss, data, logits):
    for label in range(4):
        np.testing.assert_allclose(loss(jnp.asarray(data), label), _ce(logits, label), rtol=1e-12)


def test_mse_to_one_hot():
    target = np.array([0.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(losses.mse_membrane(jnp.asarray(OUT), 2), ((OUT - target) ** 2).mean(), rtol=1e-12)


def test_rate_regularizer():
    rates = SPIKES.mean(0)
    np.testing.assert_allclose(losses.rate_regularizer(jnp.asarray(SPIKES), target=0.1), ((rates - 0.1) ** 2).mean())


def test_batched_shapes_are_rejected_with_a_hint():
    with pytest.raises(ValueError, match="vmap"):
        losses.ce_count(jnp.ones((2, 6, 4), jnp.float32), 0)


@pytest.mark.parametrize("name", ["ce_count", "ce_mean_membrane", "ce_max_membrane", "ce_last_membrane",
                                  "mse_membrane"])
@pytest.mark.parametrize("label", [10, 12, -1])
def test_out_of_range_label_is_refused_or_nan(name, label):
    loss = getattr(losses, name)
    out = jnp.ones((3, 10))
    with pytest.raises(ValueError, match="outside \\[0, 10\\)"):
        loss(out, label)
    traced = jax.jit(loss)(out, jnp.asarray(label))  # under jit the label is not concrete: the loss is NaN
    assert jnp.isnan(traced)
    assert jnp.isfinite(jax.jit(loss)(out, jnp.asarray(9)))


def test_label_must_be_one_integer():
    with pytest.raises(ValueError, match="one integer"):
        losses.ce_count(jnp.ones((3, 10)), jnp.array([1, 2]))
