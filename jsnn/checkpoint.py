"""Atomic checkpoints: a JSON header line followed by Equinox-serialised leaves.

File layout (one file, written to a temporary name and renamed into place)::

    {"format": "jsnn-checkpoint", "format_version": 1, "jsnn_version": ..., "config": {...},
     "step": ..., "epoch": ..., "batch": ..., "payload_sha256": ..., ...}\\n
    <bytes of equinox.tree_serialise_leaves(state)>

The header is readable without the network, so ``jsnn evaluate`` rebuilds the model
from ``config`` and then fills in the leaves. A checksum of the payload catches
truncated or corrupted files before any leaf is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["CheckpointError", "NonFiniteStateError", "atomic_write_bytes", "check_output_folder", "find_checkpoint",
           "is_finite_tree", "read_header", "load_checkpoint", "save_checkpoint", "staged_folder"]

FORMAT = "jsnn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or does not fit the model."""


class NonFiniteStateError(CheckpointError):
    """A state with NaN or infinite values was about to be saved; nothing was written."""


def is_finite_tree(tree: Any) -> bool:
    """Whether every floating-point leaf of ``tree`` (arrays, numpy arrays, floats) is finite.

    Example:
      >>> import jax.numpy as jnp
      >>> is_finite_tree({"w": jnp.ones(2), "step": 3}), is_finite_tree([jnp.array([1.0, jnp.nan])])
      (True, False)
    """
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, float) and not math.isfinite(leaf):
            return False
        inexact = hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact)
        if inexact and not bool(jnp.all(jnp.isfinite(jnp.asarray(leaf)))):
            return False
    return True


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Write a set of files as one: into a temporary sibling folder that replaces ``path`` on success.

    Readers never see a mix of old and new files: the new folder is renamed into place whole
    (the old one, if any, is removed after the rename). On an error nothing at ``path`` changes.

    Example:
      >>> import tempfile
      >>> out = Path(tempfile.mkdtemp()) / "tables"
      >>> with staged_folder(out) as tmp:
      ...     _ = (tmp / "a.txt").write_text("new")
      >>> sorted(p.name for p in out.iterdir())
      ['a.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; give the usual permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = tmp.with_suffix(".old")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_output_folder(path: str | os.PathLike, *, flag: str = "--out") -> Path:
    """``path`` as a folder that outputs can be written into, checked before any work starts.

    Args:
      path: the output folder (it may not exist yet).
      flag: the option that named it, for the message.

    Returns:
      ``Path(path)``.

    Raises:
      ValueError: the path is empty, is an existing file, or lies below a file.

    Example:
      >>> import tempfile
      >>> check_output_folder(tempfile.mkdtemp() + "/run").name
      'run'
    """
    if not str(path).strip():
        raise ValueError(f"{flag} is empty; name an output folder.")
    path = Path(path)
    for part in [path, *path.parents]:
        if part.exists():
            if not part.is_dir():
                what = "is a file" if part == path else f"lies below the file {part}"
                raise ValueError(f"{flag} {path} {what}; name a folder.")
            break
    return path


def save_checkpoint(path: str | os.PathLike, state: Any, header: dict[str, Any]) -> None:
    """Serialise ``state`` (any Equinox-serialisable pytree) with a JSON ``header``, atomically.

    A state with a NaN or infinite floating-point leaf is refused before anything is written, so a
    good checkpoint is never replaced by a diverged one.

    Args:
      path: destination file.
      state: the pytree to store (model, optimiser state, ...).
      header: JSON-serialisable metadata (config, step, ...); format fields are added.

    Raises:
      NonFiniteStateError: ``state`` holds NaN or infinite values (``path`` is left as it was).

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> p = tempfile.mkdtemp() + "/c.eqx"
      >>> save_checkpoint(p, {"w": jnp.ones(2)}, {"step": 3})
      >>> read_header(p)["step"]
      3
    """
    from jsnn import __version__

    if not is_finite_tree(state):
        raise NonFiniteStateError(f"refused to write {path}: the state holds NaN or infinite values.")
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, state)
    payload = buffer.getvalue()
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jsnn_version": __version__,
        **header,
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_bytes": len(payload),
    }
    atomic_write_bytes(path, json.dumps(full, sort_keys=True).encode() + b"\n" + payload)


def _split(path: Path) -> tuple[dict[str, Any], bytes]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the checkpoint.eqx file that "
                              "`jsnn train --out DIR` wrote into DIR.")
    raw = path.read_bytes()
    line, sep, payload = raw.partition(b"\n")
    try:
        header = json.loads(line.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not sep or not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a jsnn checkpoint (no valid header); it may be corrupted "
                              "or a different file.")
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {header.get('format_version')}; this jsnn "
                              f"reads format {FORMAT_VERSION}.")
    if len(payload) != header.get("payload_bytes") or hashlib.sha256(payload).hexdigest() != header.get(
        "payload_sha256"
    ):
        raise CheckpointError(f"{path} is truncated or corrupted (checksum mismatch); resume from an "
                              "earlier checkpoint or retrain.")
    return header, payload


def find_checkpoint(path: str | os.PathLike, name: str = "checkpoint.eqx") -> Path:
    """The checkpoint file ``path``, or the ``name`` file inside the run folder ``path``.

    Raises:
      CheckpointError: ``path`` is a folder without that file.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / name).is_file():
            raise CheckpointError(f"{path} is a folder without a {name}; pass the checkpoint file that "
                                  "`jsnn train --out DIR` wrote, or its folder DIR.")
        path = path / name
    return path


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a checkpoint, after verifying the payload checksum."""
    return _split(Path(path))[0]


def load_checkpoint(path: str | os.PathLike, like: Any) -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint into a pytree with the structure of ``like``.

    Args:
      path: the checkpoint file.
      like: a pytree of the same structure, shapes and dtypes (e.g. a freshly built model).

    Returns:
      ``(state, header)``.

    Raises:
      CheckpointError: missing, corrupted, or not matching ``like``.
    """
    header, payload = _split(Path(path))
    try:
        state = eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    except Exception as err:  # equinox raises several types for a structure mismatch
        raise CheckpointError(f"{path} does not match the model built from its own config "
                              f"({type(err).__name__}: {err}).") from None
    return state, header
