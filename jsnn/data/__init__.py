"""Data sets for jsnn: the embedded 8x8 digits, MNIST (IDX, checksummed), Yin-Yang, event streams, your own .npz.

Every loader returns a :class:`Dataset` of host numpy arrays (x float32, y int32);
:func:`iterate_batches` moves one mini-batch at a time to the device. Attribution for the data is in
``jsnn/data/NOTICE``.

Example:
    >>> import jax
    >>> from jsnn.data import load_dataset, iterate_batches
    >>> train = load_dataset("digits", "train")
    >>> x, y = next(iterate_batches(train, 32, key=jax.random.key(0)))
    >>> x.shape, y.shape
    ((32, 64), (32,))
"""

from __future__ import annotations

from typing import Any, Literal

from .batching import iterate_batches as iterate_batches
from .batching import num_batches as num_batches
from .dataset import DataError as DataError
from .dataset import Dataset as Dataset
from .digits import DIGITS_PATH
from .digits import load_digits as load_digits
from .download import download_mnist as download_mnist
from .events import EVENT_DTYPE as EVENT_DTYPE
from .events import denoise as denoise
from .events import make_events as make_events
from .events import to_frames as to_frames
from .mnist import MNIST_SIZES, ENV_VAR
from .mnist import find_mnist_dir as find_mnist_dir
from .mnist import load_mnist as load_mnist
from .mnist import read_idx as read_idx
from .npz import NPZ_KEYS as NPZ_KEYS
from .npz import is_npz_path as is_npz_path
from .npz import load_npz as load_npz
from .npz import npz_sha256 as npz_sha256
from .scaling import ONOFF_LEVELS as ONOFF_LEVELS
from .scaling import fit_scaling as fit_scaling
from .scaling import scale_inputs as scale_inputs
from .scaling import scaled_width as scaled_width
from .yinyang import DEFAULT_SIZES as _YINYANG_SIZES
from .yinyang import load_yinyang as load_yinyang
from .yinyang import yinyang_class as yinyang_class

_LOADERS = {"digits": load_digits, "mnist": load_mnist, "yinyang": load_yinyang}


def load_dataset(name: str, split: Literal["train", "test"] = "train", **kwargs: Any) -> Dataset:
    """Load a data set by name.

    Args:
        name: ``"digits"``, ``"mnist"`` or ``"yinyang"``.
        split: ``"train"`` or ``"test"``.
        **kwargs: Passed to the loader: :func:`load_digits` (test_fraction, seed), :func:`load_mnist`
            (data_dir, flatten) or :func:`load_yinyang` (n, seed).

    Returns:
        The :class:`Dataset`.

    Raises:
        ValueError: For an unknown name, and whatever the loader raises (see each loader).

    Example:
        >>> load_dataset("yinyang", "test", n=30).x.shape
        (30, 4)
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(_LOADERS)}.")
    return _LOADERS[name](split, **kwargs)


def dataset_info(data_dir: str | None = None) -> dict[str, dict[str, Any]]:
    """Describe each data set: sample shape, classes, split sizes, source, and where it is (or why not).

    Cheap: MNIST is located but not read; the digits file is read (45 KB) and checked.

    Args:
        data_dir: Folder passed on to :func:`find_mnist_dir` (the CLI's ``--data-dir``).

    Returns:
        ``{name: {"shape", "num_classes", "train", "test", "source", "license", "location", "status"}}``,
        where ``status`` is ``"ok"`` or the error message that says what is wrong and how to fix it.

    Example:
        >>> dataset_info()["digits"]["status"]
        'ok'
    """
    digits: dict[str, Any] = {
        "shape": (64,),
        "num_classes": 10,
        "source": "UCI optical recognition of handwritten digits (Alpaydin and Kaynak), embedded",
        "license": "CC BY 4.0",
        "location": str(DIGITS_PATH),
    }
    try:
        digits |= {"train": len(load_digits("train")), "test": len(load_digits("test")), "status": "ok"}
    except DataError as err:
        digits |= {"train": None, "test": None, "status": str(err)}
    mnist: dict[str, Any] = {
        "shape": (784,),
        "num_classes": 10,
        "train": MNIST_SIZES["train"],
        "test": MNIST_SIZES["test"],
        "source": f"IDX files from --data-dir, ${ENV_VAR} or the cache (LeCun, Cortes and Burges)",
        "license": "CC BY-SA 3.0",
    }
    try:
        mnist |= {"location": str(find_mnist_dir(data_dir)), "status": "ok"}
    except DataError as err:
        mnist |= {"location": None, "status": str(err)}
    yinyang = {
        "shape": (4,),
        "num_classes": 3,
        "train": _YINYANG_SIZES["train"],
        "test": _YINYANG_SIZES["test"],
        "source": "generated (Kriener, Goeltz and Petrovici, arXiv 2102.08211)",
        "license": "generated on the fly",
        "location": None,
        "status": "ok",
    }
    return {"digits": digits, "mnist": mnist, "yinyang": yinyang}
