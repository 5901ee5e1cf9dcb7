"""Mini-batches from host memory: a key-determined shuffle, one device transfer per batch, resumable.

The data stay in host (numpy) memory; each batch is gathered on the host and only that batch is put on
the device, so an epoch never copies the whole data set to the accelerator. The order of an epoch is
``jax.random.permutation(key, n)``, so the same key gives the same batches on every run and machine,
and ``start_batch`` lets a training loop resume in the middle of an epoch bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import jax
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .dataset import Dataset


def num_batches(n: int, batch_size: int, drop_last: bool = True) -> int:
    """Number of batches in one epoch over ``n`` samples.

    Args:
        n: Number of samples.
        batch_size: Samples per batch, >= 1.
        drop_last: Whether an incomplete last batch is dropped.

    Returns:
        ``n // batch_size`` when ``drop_last``, else ``ceil(n / batch_size)``.

    Raises:
        ValueError: If ``n < 0`` or ``batch_size < 1``.

    Example:
        >>> num_batches(10, 4), num_batches(10, 4, drop_last=False)
        (2, 3)
    """
    if n < 0 or batch_size < 1:
        raise ValueError(f"need n >= 0 and batch_size >= 1; got n={n}, batch_size={batch_size}.")
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_batches(
    data: Dataset | Sequence[np.ndarray],
    batch_size: int,
    *,
    key: PRNGKeyArray | None = None,
    shuffle: bool = True,
    drop_last: bool = True,
    start_batch: int = 0,
) -> Iterator[tuple[Array, ...]]:
    """Iterate over one epoch of mini-batches as JAX arrays, transferring one batch at a time.

    Arguments are checked when this is called, before the first batch is asked for.

    With ``perm = jax.random.permutation(key, n)`` (or ``arange(n)`` when not shuffling), batch b holds
    samples ``perm[b * batch_size : (b + 1) * batch_size]``, for b = ``start_batch`` .. num_batches - 1.
    Use a new key per epoch, e.g. ``jax.random.fold_in(key, epoch)``.

    Args:
        data: A :class:`Dataset` (yields ``(x, y)``) or a sequence of arrays with a common first
            dimension (yields a tuple of the same length). Keep them as numpy arrays in host memory.
        batch_size: Samples per batch.
        key: PRNG key that fixes the order; required when ``shuffle`` is True.
        shuffle: Shuffle the samples (else keep their order).
        drop_last: Drop the incomplete last batch.
        start_batch: Index of the first batch to yield, to resume an epoch; 0 <= start_batch <= number
            of batches.

    Returns:
        An iterator over tuples of JAX arrays, each with leading dimension ``batch_size`` (the last may be
        shorter when ``drop_last`` is False).

    Raises:
        ValueError: For arrays of different lengths, no arrays, a bad ``batch_size`` or ``start_batch``,
            ``drop_last`` with fewer samples than ``batch_size``, or ``shuffle`` without a key.

    Example:
        >>> import jax, numpy as np
        >>> x, y = np.arange(10, dtype=np.float32)[:, None], np.arange(10, dtype=np.int32)
        >>> batches = list(iterate_batches((x, y), 4, key=jax.random.key(0)))
        >>> len(batches), batches[0][0].shape
        (2, (4, 1))
    """
    arrays = (data.x, data.y) if isinstance(data, Dataset) else tuple(np.asarray(a) for a in data)
    if not arrays or any(a.ndim == 0 for a in arrays) or len({a.shape[0] for a in arrays}) != 1:
        raise ValueError(
            "data must be a Dataset or a non-empty sequence of arrays with the same first dimension; got "
            f"shapes {[a.shape for a in arrays]}."
        )
    n = arrays[0].shape[0]
    total = num_batches(n, batch_size, drop_last)
    if total == 0 and n > 0:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {n} samples, so drop_last=True gives no batch; "
            "lower batch_size or pass drop_last=False."
        )
    if not 0 <= start_batch <= total:
        raise ValueError(f"start_batch must lie in 0..{total} (batches per epoch); got {start_batch}.")
    if shuffle and key is None:
        raise ValueError("shuffle=True needs a PRNG key: pass key=jax.random.key(seed), or shuffle=False.")
    order = np.asarray(jax.random.permutation(key, n)) if shuffle else np.arange(n)
    return _batches(arrays, order, batch_size, range(start_batch, total))


def _batches(
    arrays: tuple[np.ndarray, ...], order: np.ndarray, batch_size: int, batch_indices: range
) -> Iterator[tuple[Array, ...]]:
    """Gather each batch on the host and put only that batch on the device."""
    for b in batch_indices:
        index = order[b * batch_size : (b + 1) * batch_size]
        yield tuple(jax.device_put(a[index]) for a in arrays)
