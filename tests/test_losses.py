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
