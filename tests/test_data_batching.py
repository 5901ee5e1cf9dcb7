"""Tests for jsnn.data.batching: key-determined shuffling, batch sizes, resuming, per-batch transfer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn.data import Dataset, iterate_batches, num_batches


def toy(n: int = 23) -> Dataset:
    """Sample i has features (i, -i) and label i % 5, so each row can be traced back to its index.

    All shuffling tests use the default n so that jax.random.permutation compiles once.
    """
    i = np.arange(n)
    return Dataset(np.stack([i, -i], axis=1).astype(np.float32), (i % 5).astype(np.int32), 5, "toy")


def batches_by_hand(n: int, batch_size: int, drop_last: bool) -> list[range]:
    out = [range(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    return [b for b in out if len(b) == batch_size] if drop_last else out


@pytest.mark.parametrize("drop_last", [True, False])
def test_num_batches_matches_slicing_by_hand(drop_last):
    for n in range(0, 30):
        for batch_size in range(1, 12):
            assert num_batches(n, batch_size, drop_last) == len(batches_by_hand(n, batch_size, drop_last))


def test_num_batches_rejects_bad_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        num_batches(10, 0)


@pytest.mark.parametrize("drop_last", [True, False])
def test_batches_follow_the_key_permutation(drop_last):
    ds, key = toy(), jax.random.key(7)
    order = np.asarray(jax.random.permutation(key, len(ds)))
    got = list(iterate_batches(ds, 5, key=key, drop_last=drop_last))
    expected = batches_by_hand(len(ds), 5, drop_last)
    assert len(got) == len(expected)
    for (x, y), positions in zip(got, expected, strict=True):
        index = order[positions.start : positions.stop]
        assert isinstance(x, jax.Array) and x.dtype == jnp.float32 and y.dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(x), ds.x[index])
        np.testing.assert_array_equal(np.asarray(y), ds.y[index])
    if not drop_last:
        seen = np.concatenate([np.asarray(x)[:, 0] for x, _ in got]).astype(int)
        assert sorted(seen.tolist()) == list(range(len(ds)))


def test_same_key_same_batches_other_key_other_order():
    ds = toy()
    a = [np.asarray(x) for x, _ in iterate_batches(ds, 4, key=jax.random.key(1))]
    b = [np.asarray(x) for x, _ in iterate_batches(ds, 4, key=jax.random.key(1))]
    c = [np.asarray(x) for x, _ in iterate_batches(ds, 4, key=jax.random.key(2))]
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c, strict=True))


@pytest.mark.parametrize("start", [0, 1, 3, 5])
def test_start_batch_resumes_bit_for_bit(start):
    ds, key = toy(), jax.random.key(3)
    full = list(iterate_batches(ds, 4, key=key))
    resumed = list(iterate_batches(ds, 4, key=key, start_batch=start))
    assert len(resumed) == len(full) - start
    for (x1, y1), (x2, y2) in zip(full[start:], resumed, strict=True):
        np.testing.assert_array_equal(np.asarray(x1), np.asarray(x2))
        np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))


def test_no_shuffle_keeps_order_and_needs_no_key():
    ds = toy(10)
    got = np.concatenate([np.asarray(y) for _, y in iterate_batches((ds.x, ds.y), 3, shuffle=False, drop_last=False)])
    np.testing.assert_array_equal(got, ds.y)


def test_sequence_of_arrays_yields_tuple_of_same_length():
    ds = toy()  # same length as the other tests: the permutation compiles once
    batch = next(iterate_batches([ds.x, ds.y, ds.y.astype(np.float32)], 4, key=jax.random.key(0)))
    assert len(batch) == 3 and [b.shape for b in batch] == [(4, 2), (4,), (4,)]


def test_only_one_batch_at_a_time_is_put_on_the_device(monkeypatch):
    shapes = []
    real_put = jax.device_put

    def recording_put(value, *args, **kwargs):
        shapes.append(np.shape(value))
        return real_put(value, *args, **kwargs)

    monkeypatch.setattr(jax, "device_put", recording_put)
    batches = list(iterate_batches(toy(), 4, key=jax.random.key(0)))
    assert len(batches) == 5 and len(shapes) == 10
    assert all(shape[0] == 4 for shape in shapes)


def test_bad_arguments_raise_at_call_time():
    ds = toy(10)
    with pytest.raises(ValueError, match="start_batch"):
        iterate_batches(ds, 3, key=jax.random.key(0), start_batch=4)
    with pytest.raises(ValueError, match="drop_last=False"):
        iterate_batches(ds, 11, key=jax.random.key(0))
    with pytest.raises(ValueError, match="PRNG key"):
        iterate_batches(ds, 3)
    with pytest.raises(ValueError, match="same first dimension"):
        iterate_batches((np.zeros(4), np.zeros(5)), 2, shuffle=False)
    with pytest.raises(ValueError, match="same first dimension"):
        iterate_batches((), 2, shuffle=False)
