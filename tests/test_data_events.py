"""Tests for jsnn.data.events: framing by time and by count, and the neighbourhood denoise filter.

Every result is checked against a plain-Python loop over the events.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsnn.data import EVENT_DTYPE, denoise, make_events, to_frames


def random_events(seed: int, n: int, width: int = 5, height: int = 4, t_max: int = 50, polarities: int = 2):
    rng = np.random.default_rng(seed)
    return make_events(
        rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, t_max, n), rng.integers(0, polarities, n)
    )


def frames_by_time_loop(events, sensor_size, n_bins):
    width, height, polarities = sensor_size
    frames = np.zeros((n_bins, polarities, height, width), np.int64)
    t0 = min(int(e["t"]) for e in events)
    duration = max(int(e["t"]) for e in events) - t0 + 1
    for e in events:
        b = (int(e["t"]) - t0) * n_bins // duration
        frames[b, int(e["p"]) if polarities > 1 else 0, int(e["y"]), int(e["x"])] += 1
    return frames


def frames_by_count_loop(events, sensor_size, k):
    width, height, polarities = sensor_size
    ordered = sorted(range(len(events)), key=lambda i: (int(events[i]["t"]), i))
    frames = np.zeros((-(-len(events) // k), polarities, height, width), np.int64)
    for rank, i in enumerate(ordered):
        e = events[i]
        frames[rank // k, int(e["p"]), int(e["y"]), int(e["x"])] += 1
    return frames


def denoise_loop(events, filter_time):
    kept = []
    for i, a in enumerate(events):
        for j, b in enumerate(events):
            dx, dy = abs(int(a["x"]) - int(b["x"])), abs(int(a["y"]) - int(b["y"]))
            if i != j and max(dx, dy) == 1 and 0 <= int(a["t"]) - int(b["t"]) < filter_time:
                kept.append(i)
                break
    return kept


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_bins", [1, 3, 7])
def test_time_bins_match_loop(seed, n_bins):
    events = random_events(seed, 60)
    got = to_frames(events, (5, 4, 2), n_time_bins=n_bins)
    assert got.shape == (n_bins, 2, 4, 5) and got.dtype == np.float32
    np.testing.assert_array_equal(got, frames_by_time_loop(events, (5, 4, 2), n_bins))
    assert got.sum() == len(events)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 7, 60, 100])
def test_event_count_frames_match_loop_on_unsorted_events(seed, k):
    events = random_events(seed, 60)  # timestamps are random, so the array is not time-sorted
    got = to_frames(events, (5, 4, 2), event_count=k, dtype=np.int32)
    assert got.dtype == np.int32 and got.shape[0] == -(-60 // k)
    np.testing.assert_array_equal(got, frames_by_count_loop(events, (5, 4, 2), k))


def test_hand_worked_time_bins():
    # t0 = 10, D = 30 - 10 + 1 = 21; T = 2 -> bins floor(0 * 2 / 21) = 0, floor(10 * 2 / 21) = 0, floor(20 * 2 / 21) = 1.
    events = make_events([0, 1, 1], [0, 0, 0], [10, 20, 30], [1, 1, 0])
    frames = to_frames(events, (2, 1, 2), n_time_bins=2)
    np.testing.assert_array_equal(frames[0, 1, 0], [1, 1])
    np.testing.assert_array_equal(frames[1, 0, 0], [0, 1])
    assert frames.sum() == 3


def test_single_polarity_channel_merges_polarities():
    events = random_events(9, 40)
    merged = to_frames(events, (5, 4, 1), n_time_bins=3)
    np.testing.assert_array_equal(merged[:, 0], to_frames(events, (5, 4, 2), n_time_bins=3).sum(axis=1))


def test_foreign_field_widths_and_order_are_accepted():
    events = random_events(3, 50)
    foreign = np.zeros(50, dtype=[("t", "<u4"), ("p", "?"), ("y", "<u2"), ("x", "<i4")])
    for name in ("x", "y", "t"):
        foreign[name] = events[name]
    foreign["p"] = events["p"].astype(bool)
    np.testing.assert_array_equal(
        to_frames(foreign, (5, 4, 2), n_time_bins=4), to_frames(events, (5, 4, 2), n_time_bins=4)
    )
    np.testing.assert_array_equal(denoise(foreign, 5)["t"], denoise(events, 5)["t"])


def test_empty_events_give_zero_frames():
    empty = make_events([], [], [], [])
    assert to_frames(empty, (3, 2, 2), n_time_bins=4).shape == (4, 2, 2, 3)
    assert not to_frames(empty, (3, 2, 2), n_time_bins=4).any()
    assert to_frames(empty, (3, 2, 2), event_count=5).shape == (0, 2, 2, 3)
    assert denoise(empty, 10).dtype == EVENT_DTYPE and len(denoise(empty, 10)) == 0


def test_framing_errors_say_what_is_wrong():
    events = random_events(0, 10)
    with pytest.raises(ValueError, match="exactly one"):
        to_frames(events, (5, 4, 2))
    with pytest.raises(ValueError, match="exactly one"):
        to_frames(events, (5, 4, 2), n_time_bins=2, event_count=3)
    with pytest.raises(ValueError, match="outside the sensor"):
        to_frames(events, (3, 4, 2), n_time_bins=2)
    with pytest.raises(ValueError, match="polarities must lie"):
        to_frames(make_events([0], [0], [0], [-1]), (1, 1, 2), n_time_bins=1)
    with pytest.raises(ValueError, match=">= 1"):
        to_frames(events, (5, 4, 2), event_count=0)
    with pytest.raises(TypeError, match="structured array"):
        to_frames(np.zeros((10, 4)), (5, 4, 2), n_time_bins=2)


def test_make_events_rejects_overflow_and_ragged_input():
    with pytest.raises(ValueError, match="outside int16"):
        make_events([40_000], [0], [0], [0])
    with pytest.raises(ValueError, match="equal length"):
        make_events([0, 1], [0], [0], [0])


def test_denoise_hand_worked():
    # (5,5)@0 has no earlier neighbour; (6,5)@3 is supported by (5,5)@0 (3 < 10); (20,5)@4 is isolated;
    # (5,5)@12 is supported by (6,5)@3 (9 < 10); (6,5)@13 is not supported by (5,5)@0 (13 >= 10) but by (5,5)@12;
    # (6,6)@20 is supported by (5,5)@12 diagonally (8 < 10); (6,6)@40 is not (27 >= 10); same pixel never counts.
    events = make_events([5, 6, 20, 5, 6, 6, 6], [5, 5, 5, 5, 5, 6, 6], [0, 3, 4, 12, 13, 20, 40], [1] * 7)
    assert denoise(events, 10)["t"].tolist() == [3, 12, 13, 20]


def test_denoise_window_is_strict_and_simultaneous_neighbours_support_each_other():
    events = make_events([0, 1], [0, 0], [0, 10], [0, 0])
    assert denoise(events, 10)["t"].tolist() == []  # 10 - 0 is not < 10
    assert denoise(events, 11)["t"].tolist() == [10]
    pair = make_events([3, 4], [3, 4], [7, 7], [0, 1])
    assert denoise(pair, 1)["x"].tolist() == [3, 4]


@pytest.mark.parametrize("seed", range(3))
def test_denoise_matches_pairwise_loop_and_keeps_order(seed):
    events = random_events(seed, 120, width=8, height=6, t_max=200)
    kept = denoise_loop(events, 15)
    np.testing.assert_array_equal(denoise(events, 15), events[kept])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 30)), max_size=25),
    st.integers(1, 12),
)
def test_denoise_property_matches_pairwise_loop(triples, filter_time):
    xs, ys, ts = ([v[i] for v in triples] for i in range(3))
    events = make_events(xs, ys, ts, [0] * len(triples))
    np.testing.assert_array_equal(denoise(events, filter_time), events[denoise_loop(events, filter_time)])


def test_denoise_rejects_bad_filter_time():
    with pytest.raises(ValueError, match="filter_time"):
        denoise(random_events(0, 5), 0)
