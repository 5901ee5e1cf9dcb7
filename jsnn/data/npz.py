"""Your own data as one ``.npz`` file: ``jsnn train --data PATH.npz`` and ``jsnn.methods.load_split_arrays``.

Layout (``np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)``, no pickled objects):

- ``x_train``, ``x_test``: real (or integer / boolean) features, all finite, either
  ``(N, F)``: one static feature vector per sample (signed or in [0, 1]; images flattened to ``F``), or
  ``(N, T, F)``: a time series of ``T`` steps with ``F`` channels per step. Event streams go in this layout
  too: bin them into frames with :func:`jsnn.data.to_frames` and flatten each frame, ``(N, T, C*H*W)``.
- ``y_train``, ``y_test``: integer class labels ``(N,)`` in ``0 .. K-1`` (integral floats are accepted).
- ``num_classes`` (optional scalar): ``K``; otherwise ``K = 1 + the largest label`` of either split.

Anything else in the file is ignored. The file's sha256 (:func:`npz_sha256`) is recorded in a run's
config so that ``jsnn evaluate`` notices when the file has changed since training.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from .dataset import DataError, Dataset

__all__ = ["NPZ_KEYS", "is_npz_path", "load_npz", "npz_sha256"]

#: the arrays an ``.npz`` data file must hold
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def is_npz_path(name: str | os.PathLike[str]) -> bool:
    """Whether a ``--data`` value names a file (ends in ``.npz``) rather than a bundled data set.

    Example:
        >>> is_npz_path("runs/mine.npz"), is_npz_path("digits")
        (True, False)
    """
    return str(name).lower().endswith(".npz")


def npz_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of the file's bytes (hex).

    Raises:
        DataError: If the file cannot be read.
    """
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as err:
        raise DataError(f"cannot read the data file {path}: {err.strerror or err}.") from None


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"{where} must be 1-D (N,) integer labels; got shape {y.shape}.")
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return y.astype(np.int64)
    raise DataError(f"{where} must hold integer class labels 0..K-1; got dtype {y.dtype}"
                    + (" with non-integer values" if y.dtype.kind == "f" else "") + ".")


def _features(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where} must be a real (or integer) array; got dtype {x.dtype}.")
    if x.ndim not in (2, 3):
        raise DataError(f"{where} must be (N, F) features or (N, T, F) time series; got shape {x.shape}. "
                        "Flatten images to (N, H*W).")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise DataError(f"{where} holds {bad} NaN or infinite value(s); fill or drop them first.")
    return x


def load_npz(path: str | os.PathLike[str]) -> tuple[Dataset, Dataset]:
    """Read and check a data file in the layout of this module's docstring.

    Args:
        path: the ``.npz`` file.

    Returns:
        ``(train, test)`` :class:`Dataset` s with float32 features (shape kept: ``(N, F)`` or ``(N, T, F)``)
        and int32 labels.

    Raises:
        DataError: One line naming the file and the problem: not found, not an ``.npz``, pickled object
            arrays, a missing key, a wrong shape or dtype, mismatched lengths, NaN/inf features, labels out
            of range or not integers.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "toy.npz")
        >>> rng = np.random.default_rng(0)
        >>> np.savez(path, x_train=rng.normal(size=(6, 3)), y_train=[0, 1, 2, 0, 1, 2],
        ...          x_test=rng.normal(size=(3, 3)), y_test=[2, 1, 0])
        >>> train, test = load_npz(path)
        >>> train.x.shape, train.num_classes, test.y.tolist()
        ((6, 3), 3, [2, 1, 0])
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} not found; pass an existing .npz file or one of digits, mnist, yinyang.")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not an .npz archive; save the arrays with np.savez(path, x_train=..., "
                        "y_train=..., x_test=..., y_test=...).")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in NPZ_KEYS if k not in archive.files]
            if missing:
                raise DataError(f"{path} lacks the array(s) {missing}; it needs {list(NPZ_KEYS)} "
                                f"(found {sorted(archive.files)}).")
            arrays = {k: archive[k] for k in NPZ_KEYS}
            declared = archive["num_classes"] if "num_classes" in archive.files else None
    except DataError:
        raise
    except ValueError as err:  # object arrays need pickle, which we never load
        if "allow_pickle" in str(err):
            raise DataError(f"{path} holds pickled object arrays, which jsnn does not load; store plain "
                            "numeric arrays (e.g. np.stack a list of equal-length samples).") from None
        raise DataError(f"{path} is not a readable .npz archive: {err}.") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path} is not a readable .npz archive: {err}.") from None
    splits = {}
    for split in ("train", "test"):
        x = _features(arrays[f"x_{split}"], f"{path.name}: x_{split}")
        y = _labels(arrays[f"y_{split}"], f"{path.name}: y_{split}")
        if len(x) != len(y):
            raise DataError(f"{path.name}: x_{split} has {len(x)} samples but y_{split} has {len(y)}.")
        if len(y) == 0:
            raise DataError(f"{path.name}: the {split} split is empty.")
        splits[split] = (x, y)
    (xa, ya), (xb, yb) = splits["train"], splits["test"]
    if xa.shape[1:] != xb.shape[1:]:
        raise DataError(f"{path.name}: x_train samples have shape {xa.shape[1:]} but x_test samples "
                        f"{xb.shape[1:]}; both splits need the same layout.")
    top = int(max(ya.max(), yb.max()))
    if declared is not None:
        if declared.shape != () or declared.dtype.kind not in "iu" or int(declared) < 2:
            raise DataError(f"{path.name}: num_classes must be an integer scalar >= 2; got {declared!r}.")
        num_classes = int(declared)
    else:
        num_classes = max(top + 1, 2)
    low = int(min(ya.min(), yb.min()))
    if low < 0 or top >= num_classes:
        raise DataError(f"{path.name}: labels must lie in 0..{num_classes - 1}; got range {low}..{top}.")
    return tuple(Dataset(x=x, y=y.astype(np.int32), num_classes=num_classes, name=f"{path.name}/{split}")
                 for split, (x, y) in splits.items())
