"""The embedded 8x8 handwritten digits: jsnn's default data set, no download needed.

The file ``digits.npz`` beside this module holds the test part of the UCI "Optical Recognition of
Handwritten Digits" data set as bundled with scikit-learn: ``images`` (1797, 8, 8) uint8 with values
0..16 and ``target`` (1797,) uint8, about 180 samples per class.

Attribution: E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
Learning Repository, 1998, https://doi.org/10.24432/C50P49, licensed under CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/). See ``jsnn/data/NOTICE``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import numpy as np

from .dataset import DataError, Dataset

DIGITS_PATH = Path(__file__).with_name("digits.npz")
DIGITS_SHA256 = "a7e90fa73760e8f2b1dedf547e10a262714d3855f807565302a081a95da5177c"
_MAX_PIXEL = 16


def _read_verified() -> tuple[np.ndarray, np.ndarray]:
    """Read the embedded file after checking its sha256; return (images, target)."""
    try:
        raw = DIGITS_PATH.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"the embedded digits file {DIGITS_PATH} is missing; the jsnn installation is incomplete. "
            "Reinstall jsnn (pip install --force-reinstall jsnn)."
        ) from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DIGITS_SHA256:
        raise DataError(
            f"the embedded digits file {DIGITS_PATH} is corrupt: sha256 {digest}, expected {DIGITS_SHA256}. "
            "Reinstall jsnn (pip install --force-reinstall jsnn)."
        )
    with np.load(DIGITS_PATH, allow_pickle=False) as archive:
        return archive["images"], archive["target"]


def load_digits(
    split: Literal["train", "test"] = "train", *, test_fraction: float = 0.2, seed: int = 0
) -> Dataset:
    """Load the embedded 8x8 digits with a stratified, deterministic train/test split.

    For each class c with n_c samples, the samples of c are permuted by ``np.random.default_rng(seed)``
    (classes in order 0..9) and the first ``round(test_fraction * n_c)`` go to the test split (halves
    round up), the rest to train. Both splits keep the file's original sample order.
    Pixels are scaled as x = pixel / 16.

    Args:
        split: ``"train"`` or ``"test"``.
        test_fraction: Fraction of each class that goes to the test split, in (0, 1).
        seed: Seed of the split; the same seed always gives the same split.

    Returns:
        A :class:`Dataset` with ``x`` float32 (N, 64) in [0, 1], ``y`` int32 (N,), 10 classes.

    Raises:
        ValueError: For an unknown split or a ``test_fraction`` that leaves a class empty in a split.
        DataError: If the embedded file is missing or fails its sha256 check.

    References:
        Alpaydin and Kaynak, Optical Recognition of Handwritten Digits, UCI Machine Learning
        Repository (1998), doi:10.24432/C50P49 (no arXiv id).

    Example:
        >>> from jsnn.data import load_digits
        >>> train = load_digits("train")
        >>> train.x.shape, train.x.dtype, train.num_classes
        ((1438, 64), dtype('float32'), 10)
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1; got {test_fraction}.")
    images, target = _read_verified()
    rng = np.random.default_rng(seed)
    in_test = np.zeros(target.shape[0], dtype=bool)
    for c in range(10):
        members = np.flatnonzero(target == c)
        n_test = int(np.floor(test_fraction * members.size + 0.5))
        if not 0 < n_test < members.size:
            raise ValueError(
                f"test_fraction={test_fraction} puts {n_test} of the {members.size} samples of class {c} "
                "in the test split; choose a fraction that leaves both splits non-empty."
            )
        in_test[rng.permutation(members)[:n_test]] = True
    keep = in_test if split == "test" else ~in_test
    x = images[keep].reshape(-1, 64).astype(np.float32) / np.float32(_MAX_PIXEL)
    return Dataset(x=x, y=target[keep].astype(np.int32), num_classes=10, name=f"digits/{split}")
