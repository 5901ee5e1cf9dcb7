"""Event-camera data: the common structured layout (x, y, t, p), framing and denoising.

An event stream is a 1-D numpy structured array with integer fields ``x`` (column), ``y`` (row), ``t``
(timestamp, e.g. microseconds) and ``p`` (polarity). :data:`EVENT_DTYPE` is the layout jsnn creates;
arrays loaded from other tools are accepted with any integer (or bool) field widths, so files written
by tonic and similar tools load directly. Frames use the (time, polarity, height, width) layout for
a sensor of size (W, H, P).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Int, Shaped

EVENT_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
"""The structured dtype of event arrays made by jsnn: x, y int16; t int64; p int8."""

_FIELDS = ("x", "y", "t", "p")
_NEIGHBOURS = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)]


def make_events(
    x: Int[np.ndarray, " n"], y: Int[np.ndarray, " n"], t: Int[np.ndarray, " n"], p: Int[np.ndarray, " n"]
) -> np.ndarray:
    """Build an event array with :data:`EVENT_DTYPE` from four equal-length integer sequences.

    Args:
        x: Columns.
        y: Rows.
        t: Timestamps.
        p: Polarities.

    Returns:
        A structured array of shape (n,) and dtype :data:`EVENT_DTYPE`.

    Raises:
        ValueError: If the sequences differ in length or a value does not fit the field's integer type.

    Example:
        >>> ev = make_events([0, 1], [2, 3], [10, 20], [1, 0])
        >>> ev["t"].tolist()
        [10, 20]
    """
    columns = [np.asarray(c) for c in (x, y, t, p)]
    if len({c.shape for c in columns}) != 1 or columns[0].ndim != 1:
        raise ValueError(f"x, y, t, p must be 1-D and of equal length; got shapes {[c.shape for c in columns]}.")
    events = np.empty(columns[0].shape[0], dtype=EVENT_DTYPE)
    for name, column in zip(_FIELDS, columns, strict=True):
        if column.size and column.dtype.kind not in "iub":
            raise ValueError(f"field {name!r} must hold integers; got dtype {column.dtype}.")
        info = np.iinfo(EVENT_DTYPE[name])
        if column.size and (column.min() < info.min or column.max() > info.max):
            raise ValueError(f"field {name!r} has values outside {EVENT_DTYPE[name]} ({info.min}..{info.max}).")
        events[name] = column
    return events


def _check_events(events: np.ndarray) -> None:
    """Raise a clear error unless ``events`` is a 1-D structured array with integer x, y, t, p fields."""
    names = getattr(getattr(events, "dtype", None), "names", None)
    if not isinstance(events, np.ndarray) or names is None or not set(_FIELDS) <= set(names):
        raise TypeError(
            "events must be a numpy structured array with fields x, y, t, p; got "
            f"{type(events).__name__} with fields {names}. Build one with jsnn.data.make_events(x, y, t, p)."
        )
    if events.ndim != 1:
        raise ValueError(f"events must be a 1-D array of events; got shape {events.shape}.")
    for name in _FIELDS:
        if events.dtype[name].kind not in "iub":
            raise TypeError(f"event field {name!r} must be an integer type; got {events.dtype[name]}.")
    if events.size and (events["x"].min() < 0 or events["y"].min() < 0):
        raise ValueError("event coordinates x and y must be non-negative.")


def to_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int, int],
    *,
    n_time_bins: int | None = None,
    event_count: int | None = None,
    dtype: np.dtype | type = np.float32,
) -> Shaped[np.ndarray, "frames polarity height width"]:
    """Count events per pixel and polarity in frames, by equal time windows or by equal event counts.

    With ``n_time_bins = T``: with t0 = min t and D = max t - t0 + 1, event i goes to frame
    floor((t_i - t0) * T / D), so the T windows have equal length D / T and every event is counted once.
    With ``event_count = K``: the events, in stable time order, are cut into consecutive groups of K;
    there are ceil(n / K) frames and the last holds the remaining n mod K events when that is not zero.
    Frame f holds ``frames[f, p, y, x]`` = number of events at pixel (x, y) with polarity p. With P = 1,
    all polarities share channel 0; otherwise p must lie in 0..P-1.

    Args:
        events: Structured event array (fields x, y, t, p).
        sensor_size: (W, H, P): width, height, number of polarity channels.
        n_time_bins: Number of equal time windows. Give exactly one of this and ``event_count``.
        event_count: Number of events per frame.
        dtype: Element type of the result.

    Returns:
        Frames of shape (frames, P, H, W). An empty event array gives T zero frames (time bins) or
        zero frames (event count).

    Raises:
        TypeError: If ``events`` is not a structured array with integer fields x, y, t, p.
        ValueError: For a bad sensor size, both or neither of ``n_time_bins``/``event_count``, a
            non-positive count, or events outside the sensor or polarity range.

    Example:
        >>> ev = make_events([0, 1, 1], [0, 0, 1], [0, 5, 9], [0, 1, 1])
        >>> to_frames(ev, (2, 2, 2), n_time_bins=2).sum(axis=(1, 2, 3)).tolist()
        [1.0, 2.0]
    """
    _check_events(events)
    if len(sensor_size) != 3 or min(sensor_size) < 1:
        raise ValueError(f"sensor_size must be (width, height, polarities), all >= 1; got {sensor_size}.")
    width, height, polarities = (int(s) for s in sensor_size)
    if (n_time_bins is None) == (event_count is None):
        raise ValueError("give exactly one of n_time_bins (equal time windows) and event_count (events per frame).")
    count = n_time_bins if n_time_bins is not None else event_count
    if count < 1:
        raise ValueError(f"n_time_bins / event_count must be >= 1; got {count}.")
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    t = events["t"].astype(np.int64)
    p = np.zeros_like(x) if polarities == 1 else events["p"].astype(np.int64)
    if events.size:
        if x.max() >= width or y.max() >= height:
            raise ValueError(
                f"events reach x={x.max()}, y={y.max()} outside the sensor {width}x{height}; "
                "check sensor_size=(width, height, polarities)."
            )
        if p.min() < 0 or p.max() >= polarities:
            raise ValueError(
                f"polarities must lie in 0..{polarities - 1}; got {p.min()}..{p.max()}. "
                "Map -1/+1 polarities with (p > 0), or use sensor_size with P = 1 to merge them."
            )
    if n_time_bins is not None:
        n_frames = n_time_bins
        frame = (t - t.min()) * n_time_bins // (t.max() - t.min() + 1) if events.size else t
    else:
        n_frames = -(-events.size // event_count)
        frame = np.empty_like(t)
        frame[np.argsort(t, kind="stable")] = np.arange(events.size) // event_count
    flat = ((frame * polarities + p) * height + y) * width + x
    counts = np.bincount(flat, minlength=n_frames * polarities * height * width)
    return counts.reshape(n_frames, polarities, height, width).astype(dtype)


def denoise(events: np.ndarray, filter_time: int) -> np.ndarray:
    """Drop events that have no support: keep event i only if a neighbouring pixel fired shortly before.

    Event i at (x_i, y_i, t_i) is kept when some event j at one of the 8 neighbouring pixels
    (max(|x_j - x_i|, |y_j - y_i|) = 1; the pixel itself does not count) has 0 <= t_i - t_j < filter_time.
    Polarity is ignored. Kept events stay in their input order; the input need not be sorted.

    Args:
        events: Structured event array (fields x, y, t, p).
        filter_time: Support window, in the units of ``t``; must be positive.

    Returns:
        The kept events, same dtype as ``events``.

    Raises:
        TypeError: If ``events`` is not a structured array with integer fields x, y, t, p.
        ValueError: If ``filter_time`` is not positive, or x, y or t span so much that the sort key
            would overflow int64.

    References:
        Delbruck, Frame-free dynamic digital vision, Proc. Int. Symp. Secure-Life Electronics, 2008
        (the background-activity filter; no arXiv id).

    Example:
        >>> ev = make_events([5, 6, 20], [5, 5, 5], [0, 3, 4], [1, 1, 1])
        >>> denoise(ev, filter_time=10)["x"].tolist()
        [6]
    """
    _check_events(events)
    if not filter_time > 0:
        raise ValueError(f"filter_time must be positive; got {filter_time}.")
    if events.size == 0:
        return events.copy()
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    t = events["t"].astype(np.int64)
    width, height = int(x.max()) + 1, int(y.max()) + 1
    t_span = int(t.max() - t.min()) + 1
    if width * height * t_span >= 2**62:
        raise ValueError(
            f"x, y and t span {width} x {height} x {t_span}, too much to sort as one int64 key; "
            "shift t to start at 0 or split the stream in time."
        )
    # Events sorted by (pixel, time) as one int64 key; for each neighbour pixel, the latest event there
    # at or before t_i is found by a binary search.
    dt = t - t.min()
    key = (x * height + y) * t_span + dt
    order = np.argsort(key, kind="stable")
    sorted_key, sorted_t = key[order], t[order]
    keep = np.zeros(events.size, dtype=bool)
    for dx, dy in _NEIGHBOURS:
        nx, ny = x + dx, y + dy
        valid = (nx >= 0) & (nx < width) & (ny >= 0) & (ny < height)
        pixel = nx * height + ny
        query = pixel * t_span + dt
        pos = np.searchsorted(sorted_key, query, side="right") - 1
        pos_ok = np.clip(pos, 0, None)
        same_pixel = (pos >= 0) & (sorted_key[pos_ok] // t_span == pixel)
        keep |= valid & same_pixel & (t - sorted_t[pos_ok] < filter_time)
    return events[keep]
