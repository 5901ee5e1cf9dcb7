"""Quantiser, decay codes, integer primitives and profiles of jsnn.lower."""

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from jsnn.lower.intops import exact_matmul, mul12_rtz, mul_u32_floor, saturate, shift_decay, wrap
from jsnn.lower.profiles import PROFILES, Profile, UnknownTargetError, get_profile
from jsnn.lower.quantize import decay_code, decay_effective, dequantize, quantize, round_mode

finite = st.floats(-1e3, 1e3, allow_nan=False)
scales = st.floats(0.01, 100.0)
MODES = ["half_even", "half_away", "floor", "toward_zero"]


@settings(max_examples=200, deadline=None)
@given(x=finite, scale=scales, bits=st.integers(2, 16))
def test_quantize_round_trip_error_at_most_half_a_step(x, scale, bits):
    limit = 2 ** (bits - 1) - 1
    if abs(x * scale) > limit:
        x = math.copysign(limit / scale, x) * 0.999
    q, clipped = quantize([x], scale, limit)
    assert clipped == 0.0
    assert abs(dequantize(q, scale)[0] - x) <= 0.5 / scale * (1 + 1e-12)


@settings(max_examples=100, deadline=None)
@given(x=finite, scale=scales, bits=st.integers(2, 16))
def test_quantize_saturates_at_the_limits(x, scale, bits):
    limit = 2 ** (bits - 1) - 1
    q, clipped = quantize([x], scale, limit)
    assert -limit <= q[0] <= limit
    if round_mode(x * scale, "half_even") > limit:
        assert q[0] == limit and clipped == 1.0
    if round_mode(x * scale, "half_even") < -limit:
        assert q[0] == -limit and clipped == 1.0


def _python_round(x, mode):
    if mode == "half_even":
        return round(x)
    if mode == "half_away":
        return math.copysign(math.floor(abs(x) + 0.5), x)
    return math.floor(x) if mode == "floor" else math.trunc(x)


@settings(max_examples=200, deadline=None)
@given(x=st.one_of(finite, st.integers(-50, 50).map(lambda n: n + 0.5)), mode=st.sampled_from(MODES))
def test_rounding_mode_is_respected(x, mode):
    q, _ = quantize([x], 1.0, 10**6, mode=mode)
    assert q[0] == _python_round(x, mode)


def test_rounding_modes_differ_on_ties_and_negatives():
    x = [2.5, -2.5, -1.7]
    assert round_mode(x, "half_even").tolist() == [2.0, -2.0, -2.0]
    assert round_mode(x, "half_away").tolist() == [3.0, -3.0, -2.0]
    assert round_mode(x, "floor").tolist() == [2.0, -3.0, -2.0]
    assert round_mode(x, "toward_zero").tolist() == [2.0, -2.0, -1.0]


def test_decay_codes_follow_the_encodings():
    assert decay_code(0.9, "shift") == ("shift", 3) and decay_effective("shift", 3) == 0.875
    assert decay_code(0.75, "shift") == ("shift", 2)
    assert decay_code(0.9, "mul12_rtz") == ("mul12_rtz", round(4096 * 0.1))
    assert decay_code(0.9, "mul_u32_floor") == ("mul_u32_floor", round(0.9 * 2**32))
    assert decay_code(1.0, "shift") == ("none", 0)
    with pytest.raises(ValueError, match="no leak"):
        decay_code(0.9, "none")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        decay_code(1.5, "shift")


def test_shift_decay_sequences_of_the_spec():
    def run(v, n):
        out = [v]
        for _ in range(n):
            out.append(int(shift_decay(jnp.array([out[-1]], jnp.int32), 2)[0]))
        return out

    assert run(100, 3) == [100, 75, 57, 43]
    assert run(-100, 3) == [-100, -75, -56, -42]
    assert run(3, 2) == [3, 3, 3]
    assert run(-3, 3) == [-3, -2, -1, 0]


@settings(max_examples=50, deadline=None)
@given(vs=st.lists(st.integers(-(2**23) + 1, 2**23 - 1), min_size=16, max_size=16), d=st.integers(0, 4096))
def test_mul12_split_product_matches_int64_reference(vs, d):
    ref = [int(math.copysign((abs(v) * (4096 - d)) >> 12, v)) if v else 0 for v in vs]
    assert mul12_rtz(jnp.array(vs, jnp.int32), d).tolist() == ref


def test_round_toward_zero_differs_from_floor_on_negatives():
    assert int(mul12_rtz(jnp.array([-1000], jnp.int32), 410)[0]) == -899
    assert (-1000 * 3686) >> 12 == -900


@settings(max_examples=50, deadline=None)
@given(vs=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=16, max_size=16), d=st.integers(0, 2**32 - 1))
def test_mul_u32_floor_matches_python_integer_product(vs, d):
    assert mul_u32_floor(jnp.array(vs, jnp.int32), d).tolist() == [(v * d) >> 32 for v in vs]


@settings(max_examples=50, deadline=None)
@given(xs=st.lists(st.integers(-(2**30), 2**30), min_size=16, max_size=16), bits=st.integers(2, 31))
def test_wrap_and_saturate_follow_their_formulas(xs, bits):
    half = 2 ** (bits - 1)
    y, n = wrap(jnp.array(xs, jnp.int32), bits)
    want = [(x + half) % (2 * half) - half for x in xs]
    assert y.tolist() == want and int(n) == sum(a != b for a, b in zip(want, xs, strict=True))
    y, n = saturate(jnp.array(xs, jnp.int32), bits)
    want = [min(max(x, -(half - 1)), half - 1) for x in xs]
    assert y.tolist() == want and int(n) == sum(a != b for a, b in zip(want, xs, strict=True))


@pytest.mark.parametrize("n_in,x_max,w_max", [(784, 255, 127), (64, 15, 32767), (300, 1, 32767), (5, 3, 7)])
def test_exact_matmul_equals_int64_product(n_in, x_max, w_max):
    rng = np.random.default_rng(n_in)
    x = rng.integers(0, x_max + 1, (7, n_in))
    w = rng.integers(-w_max, w_max + 1, (9, n_in))
    w[0, :] = w_max  # extreme rows
    w[1, :] = -w_max
    got = exact_matmul(jnp.asarray(x, jnp.int32), jnp.asarray(w, jnp.int32), x_max=x_max, w_max=w_max)
    ref = x.astype(np.int64) @ w.T.astype(np.int64)
    np.testing.assert_array_equal(np.asarray(got, np.int64), ref)


def test_exact_matmul_takes_one_matmul_where_the_row_norms_allow_it():
    rng = np.random.default_rng(0)
    x_max, n_in = 255, 784
    w = rng.integers(-127, 128, (6, n_in)) * (rng.random((6, n_in)) < 0.5)
    budget = (2**24 - 1) // x_max  # rows at the largest L1 norm that is still exact in float32
    w[0] = 0
    w[0, : budget // 127] = 127
    w[0, budget // 127] = budget % 127
    w[1] = -w[0]
    x = np.full((3, n_in), x_max)
    x[1] = rng.integers(0, x_max + 1, n_in)
    row_l1 = int(np.abs(w).sum(axis=1).max())
    assert row_l1 == budget

    def product(a):
        return exact_matmul(a, jnp.asarray(w, jnp.int32), x_max=x_max, w_max=127, row_l1=row_l1)

    got = product(jnp.asarray(x, jnp.int32))
    np.testing.assert_array_equal(np.asarray(got, np.int64), x.astype(np.int64) @ w.T.astype(np.int64))
    dots = str(jax.make_jaxpr(product)(jnp.asarray(x, jnp.int32))).count("dot_general")
    assert dots == 1


def test_profiles_validate_and_look_up():
    assert set(PROFILES) == {"xylo", "loihi", "spinnaker", "speck"}
    assert get_profile("loihi").threshold_shift == 6
    with pytest.raises(UnknownTargetError, match="unknown target 'tpu'"):
        get_profile("tpu")
    with pytest.raises(ValueError, match="weight_bits"):
        Profile(name="bad", weight_bits=40)
    with pytest.raises(ValueError, match="overflow"):
        Profile(name="bad", weight_bits=8, overflow="clamp")
    p = PROFILES["spinnaker"]
    assert Profile.from_dict(p.to_dict()) == p
