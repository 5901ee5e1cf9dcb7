"""Neuron updates against hand-worked traces for every reset mode and order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.neurons import IF, LI, LIF, CubaLIF

C = jnp.array([[0.8], [0.8], [0.8], [0.8]], jnp.float64)


def _run(neuron, currents=C):
    spikes, trace = neuron(currents)
    return np.asarray(spikes[:, 0]), np.asarray(trace.v[:, 0])


def test_lif_subtract_leak_first_by_hand():
    # v1 = .8; v2 = .4 + .8 = 1.2 -> spike; v3 = .6 - 1 + .8 = .4; v4 = .2 + .8 = 1.0 (not > 1)
    s, v = _run(LIF(decay=0.5, threshold=1.0))
    np.testing.assert_allclose(v, [0.8, 1.2, 0.4, 1.0])
    np.testing.assert_array_equal(s, [0, 1, 0, 0])


def test_lif_subtract_reset_first_decays_the_subtraction():
    # v3 = .5 * (1.2 - 1) + .8 = .9; v4 = .45 + .8 = 1.25 -> spike
    s, v = _run(LIF(decay=0.5, threshold=1.0, order="reset_first"))
    np.testing.assert_allclose(v, [0.8, 1.2, 0.9, 1.25])
    np.testing.assert_array_equal(s, [0, 1, 0, 1])


def test_lif_reset_to_zero_by_hand():
    # v3 = .5 * 0 + .8 = .8; v4 = .4 + .8 = 1.2 -> spike
    s, v = _run(LIF(decay=0.5, threshold=1.0, reset="zero"))
    np.testing.assert_allclose(v, [0.8, 1.2, 0.8, 1.2])
    np.testing.assert_array_equal(s, [0, 1, 0, 1])


def test_lif_no_reset_by_hand():
    s, v = _run(LIF(decay=0.5, threshold=1.0, reset="none"))
    np.testing.assert_allclose(v, [0.8, 1.2, 1.4, 1.5])
    np.testing.assert_array_equal(s, [0, 1, 1, 1])


def test_comparison_flag_decides_at_threshold():
    currents = jnp.array([[1.0], [0.0]], jnp.float64)
    strict, _ = _run(LIF(decay=1.0, threshold=1.0, cmp=">"), currents)
    inclusive, _ = _run(LIF(decay=1.0, threshold=1.0, cmp=">="), currents)
    np.testing.assert_array_equal(strict, [0, 0])
    np.testing.assert_array_equal(inclusive, [1, 0])


def test_if_integrates_without_leak():
    s, v = _run(IF(threshold=1.0), jnp.full((4, 1), 0.6, jnp.float64))
    np.testing.assert_allclose(v, [0.6, 1.2, 0.8, 1.4])
    np.testing.assert_array_equal(s, [0, 1, 0, 1])


def test_cuba_lif_current_feeds_membrane_same_step():
    # i = 1, 1.5, 1.75; v = 1, .5 + 1.5 = 2 -> spike; v3 = .5*2 - 1 + 1.75 = 1.75 -> spike
    s, v = _run(CubaLIF(decay_syn=0.5, decay_mem=0.5, threshold=1.0), jnp.ones((3, 1), jnp.float64))
    np.testing.assert_allclose(v, [1.0, 2.0, 1.75])
    np.testing.assert_array_equal(s, [0, 1, 1])


def test_li_readout_is_leaky_sum():
    v, trace = LI(decay=0.5)(jnp.ones((3, 2), jnp.float64))
    np.testing.assert_allclose(v[:, 0], [1.0, 1.5, 1.75])
    assert trace.spikes is None


def test_detach_reset_keeps_forward_values():
    a = LIF(decay=0.7, detach_reset=True)(C)[1].v
    b = LIF(decay=0.7, detach_reset=False)(C)[1].v
    np.testing.assert_array_equal(a, b)


def test_parameters_can_be_traced_and_vmapped():
    decays = jnp.array([0.5, 0.9], jnp.float64)
    v = jax.vmap(lambda d: LIF(decay=d, reset="none")(C)[1].v[:, 0])(decays)
    expected = [[0.8 * sum(d**k for k in range(t + 1)) for t in range(4)] for d in (0.5, 0.9)]
    np.testing.assert_allclose(v, expected)


def test_per_neuron_thresholds_broadcast():
    s, _ = LIF(decay=1.0, threshold=jnp.array([0.5, 2.0], jnp.float64))(jnp.ones((2, 2), jnp.float64))
    np.testing.assert_array_equal(s, [[1, 0], [1, 0]])


@pytest.mark.parametrize("kwargs", [{"reset": "soft"}, {"cmp": "<"}, {"order": "late"}])
def test_bad_flags_are_rejected(kwargs):
    with pytest.raises(ValueError, match=list(kwargs)[0]):
        LIF(**kwargs)


def test_currents_without_time_axis_are_rejected():
    with pytest.raises(ValueError, match="time"):
        LIF()(jnp.ones(3, jnp.float32))


def test_integer_currents_are_rejected():
    with pytest.raises(TypeError, match="floating"):
        LIF()(jnp.ones((3, 2), jnp.int32))


@pytest.mark.parametrize(("build", "field"), [
    (lambda v: LIF(decay=v), "decay"), (lambda v: CubaLIF(decay_mem=v), "decay_mem"),
    (lambda v: CubaLIF(decay_syn=v), "decay_syn"), (lambda v: LI(decay=v), "decay"),
])
@pytest.mark.parametrize("value", [-0.5, 1.5, float("nan"), np.array([0.5, 1.2])])
def test_decay_outside_the_unit_interval_is_refused(build, field, value):
    with pytest.raises(ValueError, match=f"{field} must be finite and in \\[0, 1\\]"):
        build(value)


@pytest.mark.parametrize("neuron", [LIF, IF, CubaLIF])
@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), np.array([1.0, 0.0])])
def test_threshold_must_be_positive_and_finite(neuron, value):
    with pytest.raises(ValueError, match=r"threshold must be finite and in \(0, inf\]"):
        neuron(threshold=value)


def test_valid_edges_and_traced_parameters_are_accepted():
    LIF(decay=0.0, threshold=1e-3), LIF(decay=1.0), LI(decay=jnp.array([0.0, 1.0]))
    # under vmap (a sweep) the values are traced and not checked here
    out = jax.vmap(lambda d: LIF(decay=d)(jnp.ones((2, 1)))[0].sum())(jnp.array([0.5, 0.9]))
    assert out.shape == (2,)
