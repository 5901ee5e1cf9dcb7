"""The Yin-Yang data set: a small 2-D, 3-class problem that a linear classifier cannot solve.

Points are drawn uniformly in the square [0, 2R]^2 and kept inside the circle of radius R centred at
(R, R), with R = 0.5 and dot radius r = 0.1. With d_L = ||p - (0.5 R, R)|| and d_R = ||p - (1.5 R, R)||:

    dot   if d_L < r or d_R < r
    yin   else if d_R <= r or r < d_L <= 0.5 R or (y > R and d_R > 0.5 R)
    yang  otherwise

Labels are 0 = yin, 1 = yang, 2 = dot. (The reference PyTorch code labels yin 1 and yang 0 despite
its class names; jsnn follows the class names.) Classes are balanced by rejection sampling: the count
of each class is fixed first (they differ by at most one), uniform points in the circle are drawn, each
class keeps its first points up to its count and the rest are rejected; the kept samples are then
shuffled. Features are (x, y, 1 - x, 1 - y).

Written from the description in the paper; no code was copied from the reference implementation.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from jaxtyping import Bool, Float, Int

from .dataset import Dataset

R_BIG = 0.5
R_SMALL = 0.1
CLASS_NAMES = ("yin", "yang", "dot")
DEFAULT_SIZES = {"train": 5000, "test": 1000}
_SPLIT_STREAM = {"train": 0, "test": 1}


def yinyang_class(x: Float[np.ndarray, "*s"], y: Float[np.ndarray, "*s"]) -> Int[np.ndarray, "*s"]:
    """Classify points by the Yin-Yang rule (0 = yin, 1 = yang, 2 = dot); points must lie in the circle.

    Args:
        x: Horizontal coordinates in [0, 1].
        y: Vertical coordinates in [0, 1], same shape as ``x``.

    Returns:
        int32 labels, same shape as ``x``.

    References:
        Kriener, Goeltz and Petrovici, The Yin-Yang dataset, arXiv 2102.08211.

    Example:
        >>> import numpy as np
        >>> yinyang_class(np.array([0.25, 0.5, 0.5]), np.array([0.5, 0.9, 0.1])).tolist()
        [2, 0, 1]
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d_left = np.hypot(x - 0.5 * R_BIG, y - R_BIG)
    d_right = np.hypot(x - 1.5 * R_BIG, y - R_BIG)
    dot = (d_left < R_SMALL) | (d_right < R_SMALL)
    yin = (
        (d_right <= R_SMALL)
        | ((d_left > R_SMALL) & (d_left <= 0.5 * R_BIG))
        | ((y > R_BIG) & (d_right > 0.5 * R_BIG))
    )
    return np.where(dot, 2, np.where(yin, 0, 1)).astype(np.int32)


def _inside_circle(x: Float[np.ndarray, " n"], y: Float[np.ndarray, " n"]) -> Bool[np.ndarray, " n"]:
    return np.hypot(x - R_BIG, y - R_BIG) <= R_BIG


def load_yinyang(
    split: Literal["train", "test"] = "train", *, n: int | None = None, seed: int = 42
) -> Dataset:
    """Generate a Yin-Yang split, deterministic in ``(split, seed)``, with balanced classes.

    The generator is ``np.random.default_rng((seed, s))`` with s = 0 for train and 1 for test, so the
    two splits are independent draws for every seed. Class k in 0..2 gets ``n // 3`` samples, plus one
    when ``k < n % 3``; the samples are returned in a random order.

    Args:
        split: ``"train"`` or ``"test"``.
        n: Number of samples; default 5000 for train and 1000 for test, as in the original.
        seed: Seed shared by both splits.

    Returns:
        A :class:`Dataset` with ``x`` float32 (n, 4) = (x, y, 1 - x, 1 - y) in [0, 1], ``y`` int32 (n,),
        3 classes (0 = yin, 1 = yang, 2 = dot).

    Raises:
        ValueError: For an unknown split or ``n < 1``.

    References:
        Kriener, Goeltz and Petrovici, The Yin-Yang dataset, arXiv 2102.08211.

    Example:
        >>> from jsnn.data import load_yinyang
        >>> ds = load_yinyang("test", n=300)
        >>> ds.x.shape, [int((ds.y == k).sum()) for k in range(3)]
        ((300, 4), [100, 100, 100])
    """
    if split not in DEFAULT_SIZES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    n = DEFAULT_SIZES[split] if n is None else n
    if n < 1:
        raise ValueError(f"n must be a positive number of samples; got {n}.")
    rng = np.random.default_rng((seed, _SPLIT_STREAM[split]))
    wanted = [n // 3 + (k < n % 3) for k in range(3)]
    found: list[list[np.ndarray]] = [[], [], []]
    have = [0, 0, 0]
    while any(h < w for h, w in zip(have, wanted, strict=True)):
        # The dots cover about 8 % of the circle, the rarest class; draw enough for them in one go.
        points = rng.uniform(0.0, 2.0 * R_BIG, size=(max(64, 16 * max(wanted)), 2))
        points = points[_inside_circle(points[:, 0], points[:, 1])]
        labels = yinyang_class(points[:, 0], points[:, 1])
        for k in range(3):
            take = points[labels == k][: wanted[k] - have[k]]
            found[k].append(take)
            have[k] += take.shape[0]
    xy = np.concatenate([np.concatenate(f) for f in found]).reshape(n, 2)
    y = np.repeat(np.arange(3, dtype=np.int32), wanted)
    order = rng.permutation(n)
    xy, y = xy[order], y[order]
    x = np.concatenate([xy, 1.0 - xy], axis=1).astype(np.float32)
    return Dataset(x=x, y=y, num_classes=3, name=f"yinyang/{split}")
