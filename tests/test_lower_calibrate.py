"""Choosing a saturating target's scale by the integer simulator's spike agreement."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jsnn.lower import PROFILES, lower, lower_calibrated, spike_agreement
from jsnn.neurons import IF, LI
from jsnn.nn import Linear, Sequential


def _if_net(weight, *, threshold=1.0):
    first = eqx.tree_at(lambda m: m.weight, Linear(6, 4, use_bias=False, key=jax.random.key(0)),
                        jnp.asarray(weight, jnp.float32))
    return Sequential([first, IF(threshold=threshold), Linear(4, 2, key=jax.random.key(1)), LI(decay=0.5)])


def test_weights_on_the_grid_agree_exactly_and_off_the_grid_do_not():
    rng = np.random.default_rng(0)
    x = (rng.random((16, 8, 6)) < 0.5).astype(np.float32)  # counts 0 or max: dequantised exactly to 0 and 1
    on_grid = rng.integers(-8, 9, (4, 6)) / 16  # multiples of 1/16: exact at the target's power-of-two scale
    exact = dataclasses.replace(PROFILES["spinnaker"], reset="subtract")  # the IF net's reset
    tables, _ = lower(_if_net(on_grid), exact, x)
    assert spike_agreement(_if_net(on_grid), tables, x) == 1.0
    coarse = dataclasses.replace(exact, weight_bits=2)
    off_grid = on_grid + rng.normal(0, 0.05, (4, 6))
    tables, _ = lower(_if_net(off_grid), coarse, x)
    assert spike_agreement(_if_net(off_grid), tables, x) < 1.0


def test_search_doubles_the_scale_until_weights_bind_and_keeps_the_best():
    rng = np.random.default_rng(1)
    # near-equal weights far below the threshold: the 16-bit state binds before the 8-bit weights
    net = _if_net(rng.uniform(0.08, 0.1, (4, 6)), threshold=1.5)
    x = rng.random((32, 8, 6)).astype(np.float32)
    tables, report, trials = lower_calibrated(net, "xylo", x, weight_slacks=(1.0, 2.0))
    assert {t["weight_slack"] for t in trials} == {1.0, 2.0}
    slacks = sorted({t["state_slack"] for t in trials})
    assert slacks == [2.0**i for i in range(len(slacks))] and len(slacks) > 1
    best = max(trials, key=lambda t: t["calibration_spike_agreement"])
    assert (report[0]["state_slack"], report[0]["weight_slack"]) == (best["state_slack"], best["weight_slack"])
    assert report[0]["calibration_spike_agreement"] == best["calibration_spike_agreement"]
    assert spike_agreement(net, tables, x) == best["calibration_spike_agreement"]
    widest, _ = lower(net, "xylo", x, state_slack=2 * slacks[-1])  # past the last state slack nothing changes
    last, _ = lower(net, "xylo", x, state_slack=slacks[-1])
    np.testing.assert_array_equal(widest.arrays["layer0.weight"], last.arrays["layer0.weight"])
