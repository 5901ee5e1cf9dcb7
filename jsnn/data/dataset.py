"""The in-memory data set container shared by every loader, and the error type for bad data files.

Every loader in :mod:`jsnn.data` returns a :class:`Dataset`: host (numpy) arrays with a float32 feature
matrix and int32 labels. Batches are moved to the accelerator one at a time by
:func:`jsnn.data.iterate_batches`, never the whole set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float32, Int32


class DataError(ValueError):
    """A data file is missing, truncated, corrupt or has an unexpected layout.

    The message always says which file and what to do about it.

    Example:
        >>> from jsnn.data import DataError
        >>> issubclass(DataError, ValueError)
        True
    """


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled data set held in host memory.

    Attributes:
        x: Features, float32, one row (or image) per sample, values in [0, 1] for the bundled loaders.
        y: Integer class labels in ``0 .. num_classes - 1``, int32, shape ``(N,)``.
        num_classes: Number of classes.
        name: Short name, e.g. ``"digits/train"``.

    Raises:
        TypeError: If ``x`` is not float32 or ``y`` is not int32 (cast with ``.astype`` first).
        ValueError: If ``x`` and ``y`` disagree on the number of samples, ``y`` is not 1-D, or a label is
            outside ``0 .. num_classes - 1``.

    Example:
        >>> import numpy as np
        >>> ds = Dataset(np.zeros((3, 2), np.float32), np.array([0, 1, 1], np.int32), 2, "toy")
        >>> len(ds), ds.x.shape
        (3, (3, 2))
    """

    x: Float32[np.ndarray, "N *features"]
    y: Int32[np.ndarray, " N"]
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.x, np.ndarray) or self.x.dtype != np.float32:
            raise TypeError(
                f"Dataset.x must be a float32 numpy array; got {type(self.x).__name__} "
                f"of dtype {getattr(self.x, 'dtype', None)}. Convert with np.asarray(x, np.float32)."
            )
        if not isinstance(self.y, np.ndarray) or self.y.dtype != np.int32:
            raise TypeError(
                f"Dataset.y must be an int32 numpy array; got {type(self.y).__name__} "
                f"of dtype {getattr(self.y, 'dtype', None)}. Convert with np.asarray(y, np.int32)."
            )
        if self.y.ndim != 1 or self.x.ndim < 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"Dataset needs x of shape (N, ...) and y of shape (N,); got x {self.x.shape}, y {self.y.shape}."
            )
        if self.y.size and (self.y.min() < 0 or self.y.max() >= self.num_classes):
            raise ValueError(
                f"labels of {self.name!r} must lie in 0..{self.num_classes - 1}; "
                f"got range {self.y.min()}..{self.y.max()}."
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])
