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

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx

__all__ = ["CheckpointError", "atomic_write_bytes", "read_header", "load_checkpoint", "save_checkpoint"]

FORMAT = "jsnn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or does not fit the model."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | os.PathLike, state: Any, header: dict[str, Any]) -> None:
    """Serialise ``state`` (any Equinox-serialisable pytree) with a JSON ``header``, atomically.

    Args:
      path: destination file.
      state: the pytree to store (model, optimiser state, ...).
      header: JSON-serialisable metadata (config, step, ...); format fields are added.

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> p = tempfile.mkdtemp() + "/c.eqx"
      >>> save_checkpoint(p, {"w": jnp.ones(2)}, {"step": 3})
      >>> read_header(p)["step"]
      3
    """
    from jsnn import __version__

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
